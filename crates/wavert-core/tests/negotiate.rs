//! Buffer size negotiation.

use proptest::prelude::*;
use wavert_core::negotiate::{negotiate, pages_for, BufferRequest, DeviceLimits, NegotiateError};

const LIMITS: DeviceLimits = DeviceLimits {
    min_bytes: 1024,
    max_bytes: 4 * 1024 * 1024,
    granularity_bytes: 1,
};

const fn req(bytes: u32, n: u32, align: u32) -> BufferRequest {
    BufferRequest {
        requested_bytes: bytes,
        notification_count: n,
        block_align: align,
    }
}

#[test]
fn rounds_to_whole_frames_per_packet() {
    // 5.1 16-bit: 12-byte frames; two packets: unit 24 bytes.
    let plan = negotiate(&req(10_000, 2, 12), &LIMITS).expect("valid");
    assert_eq!(
        plan.size_bytes, 10_008,
        "the next multiple of 24 at or above the request: never smaller than asked"
    );
    assert_eq!(plan.packet_bytes * 2, plan.size_bytes);
    assert_eq!(plan.packet_bytes % 12, 0);
    assert_eq!(plan.pages(), pages_for(plan.size_bytes));
}

#[test]
fn a_request_within_a_unit_of_the_cap_gets_the_largest_size_under_it() {
    let capped = DeviceLimits {
        max_bytes: 1000,
        min_bytes: 100,
        granularity_bytes: 1,
    };
    let plan = negotiate(&req(995, 1, 12), &capped).expect("valid");
    assert_eq!(plan.size_bytes, 996, "1008 would pass the cap of 1000");
}

#[test]
fn small_requests_rise_to_the_minimum() {
    let plan = negotiate(&req(10, 1, 12), &LIMITS).expect("valid");
    assert_eq!(plan.size_bytes, 1032, "smallest multiple of 12 >= 1024");
}

#[test]
fn granularity_applies_per_packet() {
    let hda = DeviceLimits {
        granularity_bytes: 128,
        ..LIMITS
    };
    let plan = negotiate(&req(100_000, 2, 6), &hda).expect("valid");
    assert_eq!(plan.packet_bytes % 384, 0, "lcm(6, 128) = 384");
}

#[test]
fn absurd_requests_get_clear_errors() {
    assert_eq!(
        negotiate(&req(0, 1, 4), &LIMITS),
        Err(NegotiateError::ZeroSize)
    );
    assert_eq!(
        negotiate(&req(u32::MAX, 1, 4), &LIMITS),
        Err(NegotiateError::ExceedsDeviceMaximum {
            requested: u32::MAX,
            maximum: LIMITS.max_bytes
        })
    );
    for n in [0, 3, 4, u32::MAX] {
        assert_eq!(
            negotiate(&req(4096, n, 4), &LIMITS),
            Err(NegotiateError::InvalidNotificationCount(n))
        );
    }
    assert_eq!(
        negotiate(&req(4096, 1, 0), &LIMITS),
        Err(NegotiateError::ZeroBlockAlign)
    );
    let huge = DeviceLimits {
        min_bytes: 1,
        max_bytes: u32::MAX,
        granularity_bytes: 0xFFFF_FFF1,
    };
    assert_eq!(
        negotiate(&req(4096, 2, 7), &huge),
        Err(NegotiateError::Overflow)
    );
    let bad = DeviceLimits {
        min_bytes: 10,
        max_bytes: 5,
        granularity_bytes: 1,
    };
    assert_eq!(
        negotiate(&req(5, 1, 4), &bad),
        Err(NegotiateError::InvalidLimits)
    );
    let narrow = DeviceLimits {
        min_bytes: 1000,
        max_bytes: 1010,
        granularity_bytes: 1,
    };
    assert_eq!(
        negotiate(&req(1005, 2, 32), &narrow),
        Err(NegotiateError::NoValidSize { unit: 64 })
    );
}

#[test]
fn shrink_to_pages_gives_closest_smaller_size() {
    let plan = negotiate(&req(192_000, 2, 4), &LIMITS).expect("valid");
    assert_eq!(plan.pages(), 47);
    let smaller = plan.shrink_to_pages(40).expect("fits");
    assert_eq!(
        smaller.size_bytes,
        40 * 4096,
        "40 pages of 4096 is a multiple of 8"
    );
    let odd = negotiate(&req(192_000, 2, 12), &LIMITS).expect("valid");
    let s = odd.shrink_to_pages(10).expect("fits");
    assert_eq!(s.size_bytes, 40_960 - 40_960 % 24);
    assert_eq!(
        plan.shrink_to_pages(100),
        Ok(plan),
        "enough pages: unchanged"
    );
    assert_eq!(
        plan.shrink_to_pages(0),
        Err(NegotiateError::InsufficientPages {
            available_pages: 0,
            needed_pages: 1
        })
    );
}

proptest! {
    #[test]
    fn granted_plans_obey_every_rule(
        bytes in 1u32..=4 * 1024 * 1024,
        n in 1u32..=2,
        align in 1u32..=32,
        gran in prop_oneof![Just(1u32), Just(2), Just(128)],
        pages in 0u32..1200,
    ) {
        let limits = DeviceLimits { granularity_bytes: gran, ..LIMITS };
        let plan = negotiate(&req(bytes, n, align), &limits).expect("always possible in these limits");
        prop_assert!(plan.size_bytes >= limits.min_bytes && plan.size_bytes <= limits.max_bytes);
        prop_assert_eq!(plan.size_bytes % n, 0);
        prop_assert_eq!(plan.packet_bytes % align, 0);
        prop_assert_eq!(plan.packet_bytes % gran, 0);
        // At least the request (AllocateAudioBuffer's rule), and the
        // smallest such size: one unit less would be below the request or the
        // minimum. Near the cap, where rounding up would pass it, the largest
        // size under the cap.
        let wanted = bytes.max(limits.min_bytes);
        if u64::from(wanted).next_multiple_of(u64::from(plan.unit_bytes)) <= u64::from(limits.max_bytes) {
            prop_assert!(plan.size_bytes >= wanted);
            prop_assert!(plan.size_bytes - plan.unit_bytes < wanted);
        } else {
            prop_assert!(plan.size_bytes + plan.unit_bytes > limits.max_bytes);
        }
        match plan.shrink_to_pages(pages) {
            Ok(s) => {
                prop_assert!(s.pages() <= pages);
                prop_assert!(s.size_bytes <= plan.size_bytes);
                prop_assert_eq!(s.size_bytes % plan.unit_bytes, 0);
                prop_assert!(s.size_bytes >= limits.min_bytes);
                // Closest: one more unit would not fit (or exceed the plan).
                let next = u64::from(s.size_bytes) + u64::from(plan.unit_bytes);
                prop_assert!(next > u64::from(pages) * 4096 || next > u64::from(plan.size_bytes));
            }
            Err(NegotiateError::InsufficientPages { .. }) => {
                prop_assert!(u64::from(pages) * 4096 < u64::from(limits.min_bytes) + u64::from(plan.unit_bytes));
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }
}
