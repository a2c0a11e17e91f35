//! Cyclic-buffer geometry over scattered pages, and descriptor lists.

// Page counts here are below 1000: the casts between usize, u32 and u64 are exact.
#![allow(clippy::cast_possible_truncation)]

use proptest::prelude::*;
use wavert_core::geometry::{CyclicBuffer, GeometryError, PAGE_SIZE};
use wavert_core::sg::{
    build, encode, encode_entry, max_entries_for, Descriptor, IocPolicy, SgError, SgProfile,
    AC97_BUP, AC97_IOC,
};

/// A page list in a scrambled order with gaps: page i at a distinct address.
fn scattered(n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|i| ((i * 7919) % 10_007 + 16) * 4096)
        .collect()
}

/// The byte at buffer offset `o` seen through a flat model of the pages.
fn model_address(pages: &[u64], first: u32, o: u32) -> u64 {
    let v = u64::from(first) + u64::from(o);
    pages[(v / 4096) as usize] + v % 4096
}

#[test]
fn frame_341_of_5_1_16bit_straddles_the_first_boundary() {
    let pages = scattered(4);
    let buf = CyclicBuffer::new(&pages, 0, 3 * 4096).expect("valid");
    let runs: Vec<_> = buf.frame_runs(341, 12).expect("inside").collect();
    assert_eq!(341 * 12, 4092);
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].physical, runs[0].len), (pages[0] + 4092, 4));
    assert_eq!((runs[1].physical, runs[1].len), (pages[1], 8));
    assert_eq!(buf.frame_runs(340, 12).expect("inside").count(), 1);
}

#[test]
fn locate_maps_offsets_through_first_page_offset() {
    let pages = scattered(3);
    let buf = CyclicBuffer::new(&pages, 100, 8000).expect("valid");
    let l = buf.locate(3996).expect("inside");
    assert_eq!((l.page_index, l.page_offset, l.physical), (1, 0, pages[1]));
    assert_eq!(
        buf.locate(8000),
        Err(GeometryError::OffsetOutOfRange {
            offset: 8000,
            size: 8000
        })
    );
}

#[test]
fn geometry_rejections() {
    let pages = scattered(2);
    assert_eq!(
        CyclicBuffer::new(&pages, 0, 0),
        Err(GeometryError::ZeroSize)
    );
    assert_eq!(
        CyclicBuffer::new(&pages, 4096, 10),
        Err(GeometryError::FirstOffsetTooLarge(4096))
    );
    assert_eq!(
        CyclicBuffer::new(&pages, 1, 8192),
        Err(GeometryError::NotEnoughPages {
            needed: 3,
            given: 2
        })
    );
    assert_eq!(
        CyclicBuffer::new(&[4096, 8193], 0, 8192),
        Err(GeometryError::PageNotAligned {
            index: 1,
            address: 8193
        })
    );
    assert_eq!(
        CyclicBuffer::new(&[u64::MAX - 4095], 0, 10),
        Err(GeometryError::PageAddressOverflow { index: 0 })
    );
    let buf = CyclicBuffer::new(&pages, 0, 100).expect("valid");
    assert_eq!(
        buf.runs(0, 101).err(),
        Some(GeometryError::RangeTooLong {
            len: 101,
            size: 100
        })
    );
}

proptest! {
    #[test]
    fn runs_cover_ranges_exactly_with_wraparound(
        npages in 1usize..20, first in 0u32..4096, size_seed in any::<u32>(),
        start_seed in any::<u32>(), len_seed in any::<u32>(),
    ) {
        let pages = scattered(npages + 1);
        let max = (npages as u32) * 4096 - first;
        let size = size_seed % max + 1;
        let buf = CyclicBuffer::new(&pages, first, size).expect("valid");
        let start = start_seed % size;
        let len = len_seed % (size + 1);
        let mut o = start;
        let mut total = 0;
        for run in buf.runs(start, len).expect("valid") {
            prop_assert_eq!(run.buffer_offset, o);
            prop_assert!(run.len >= 1 && run.len <= PAGE_SIZE);
            prop_assert_eq!(run.physical, model_address(&pages, first, o));
            // Within one page: the last byte is in the same page as the first.
            prop_assert_eq!(run.physical / 4096, (run.physical + u64::from(run.len) - 1) / 4096);
            total += run.len;
            o = (o + run.len) % size;
        }
        prop_assert_eq!(total, len);
    }
}

fn flat_bytes(d: &[Descriptor]) -> u64 {
    d.iter().map(|e| u64::from(e.length_bytes)).sum()
}

#[test]
fn hda_list_splits_at_pages_and_periods_with_ioc_at_period_ends() {
    let pages = scattered(12);
    let size = 12 * 4096;
    let buf = CyclicBuffer::new(&pages, 0, size).expect("valid");
    let mut out = [Descriptor::default(); 256];
    let n = build(&buf, &SgProfile::HDA, size / 2, &mut out).expect("fits");
    assert_eq!(
        n, 12,
        "scattered pages: one entry per page, periods on page ends"
    );
    let iocs: Vec<_> = out[..n]
        .iter()
        .filter(|d| d.interrupt_on_completion)
        .map(|d| d.buffer_offset + d.length_bytes)
        .collect();
    assert_eq!(iocs, vec![size / 2, size]);
    assert_eq!(flat_bytes(&out[..n]), u64::from(size));
}

#[test]
fn adjacent_pages_coalesce_up_to_the_entry_limit() {
    let pages: Vec<u64> = (0..40u64).map(|i| 0x10_0000 + i * 4096).collect();
    let size = 40 * 4096;
    let buf = CyclicBuffer::new(&pages, 0, size).expect("valid");
    let mut out = [Descriptor::default(); 64];
    let n = build(&buf, &SgProfile::AC97, size, &mut out).expect("fits");
    // 0xFFFE samples = 131068 bytes per entry at most.
    assert_eq!(n, 2);
    assert_eq!(out[0].length_bytes, 131_068);
    assert_eq!(out[1].length_bytes, size - 131_068);
    let no_merge = SgProfile {
        coalesce: false,
        ..SgProfile::AC97
    };
    assert_eq!(build(&buf, &no_merge, size, &mut out), Ok(40));
}

#[test]
fn descriptor_rejections() {
    let pages = scattered(300);
    let buf = CyclicBuffer::new(&pages, 0, 300 * 4096).expect("valid");
    let mut out = vec![Descriptor::default(); 400];
    assert_eq!(
        build(&buf, &SgProfile::HDA, 300 * 4096, &mut out),
        Err(SgError::TooManyEntries { max: 256 })
    );
    assert_eq!(
        build(&buf, &SgProfile::HDA, 7, &mut out),
        Err(SgError::BadPeriod {
            period: 7,
            size: 300 * 4096
        })
    );
    assert_eq!(
        build(&buf, &SgProfile::AC97, 300 * 4096, &mut out[..5]),
        Err(SgError::OutputTooSmall { capacity: 5 })
    );
    let small = CyclicBuffer::new(&pages[..2], 64, 4096).expect("valid");
    assert_eq!(
        build(&small, &SgProfile::HDA, 4096, &mut out),
        Err(SgError::MisalignedEntry {
            index: 0,
            address: pages[0] + 64
        })
    );
    let odd = CyclicBuffer::new(&pages[..2], 0, 4095).expect("valid");
    assert_eq!(
        build(&odd, &SgProfile::AC97, 4095, &mut out),
        Err(SgError::LengthNotInUnit {
            index: 0,
            length: 4095
        })
    );
    let high = [0x1_0000_0000u64];
    let hb = CyclicBuffer::new(&high, 0, 4096).expect("valid");
    assert_eq!(
        build(&hb, &SgProfile::AC97, 4096, &mut out),
        Err(SgError::AddressTooHigh {
            index: 0,
            address: 0x1_0000_0000
        })
    );
    let broken = SgProfile {
        max_entry_bytes: 1,
        ..SgProfile::AC97
    };
    assert_eq!(
        build(&hb, &broken, 4096, &mut out),
        Err(SgError::InvalidProfile)
    );
    let long = Descriptor {
        address: 0,
        length_bytes: 200_000,
        buffer_offset: 0,
        interrupt_on_completion: false,
    };
    assert_eq!(
        encode_entry(&SgProfile::AC97, 3, &long, &mut [0; 8]),
        Err(SgError::BadEntryLength {
            index: 3,
            length: 200_000
        })
    );
    let ok = Descriptor {
        length_bytes: 8,
        ..long
    };
    assert_eq!(
        encode(&SgProfile::AC97, &[ok; 33], &mut [0; 1024]),
        Err(SgError::TooManyEntries { max: 32 })
    );
    assert_eq!(
        encode(&SgProfile::AC97, &[ok; 2], &mut [0; 12]),
        Err(SgError::OutputTooSmall { capacity: 12 })
    );
}

#[test]
fn encodings_match_the_device_layouts() {
    let d = Descriptor {
        address: 0x1234_5000,
        length_bytes: 8192,
        buffer_offset: 0,
        interrupt_on_completion: true,
    };
    let mut b = [0u8; 8];
    assert_eq!(encode_entry(&SgProfile::AC97, 0, &d, &mut b), Ok(8));
    assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 0x1234_5000);
    let ctl = u32::from_le_bytes(b[4..8].try_into().unwrap());
    assert_eq!(ctl & 0xFFFF, 4096, "length in 16-bit samples");
    assert_eq!(ctl & (AC97_IOC | AC97_BUP), AC97_IOC | AC97_BUP);
    let d = Descriptor {
        address: 0x1_2345_6780,
        interrupt_on_completion: false,
        ..d
    };
    let mut h = [0u8; 16];
    assert_eq!(encode_entry(&SgProfile::HDA, 0, &d, &mut h), Ok(16));
    assert_eq!(
        u64::from_le_bytes(h[0..8].try_into().unwrap()),
        0x1_2345_6780
    );
    assert_eq!(u32::from_le_bytes(h[8..12].try_into().unwrap()), 8192);
    assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 0);
}

proptest! {
    /// For any shuffled page list, offset and period split, the list covers
    /// the buffer in order, exactly, within every device limit, with IOC
    /// exactly at period ends (HDA) and at the bound `max_entries_for` gives.
    #[test]
    fn lists_cover_the_buffer_within_limits(
        npages in 1usize..60, seed in any::<u64>(), adjacent in any::<bool>(),
        periods in 1u32..=2, hda in any::<bool>(), frames_seed in any::<u32>(),
    ) {
        let mut pages: Vec<u64> = if adjacent {
            (0..npages as u64).map(|i| 0x20_0000 + i * 4096).collect()
        } else { scattered(npages) };
        // Deterministic shuffle of some pages (keeps some adjacency).
        let mut s = seed;
        for i in (1..pages.len()).rev() {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            if s >> 63 == 1 { pages.swap(i, (s % (i as u64 + 1)) as usize); }
        }
        let profile = if hda { SgProfile::HDA } else { SgProfile::AC97 };
        let unit = if hda { 128 * periods } else { 4 * periods };
        let max = npages as u32 * 4096;
        let size = (frames_seed % (max / unit)).max(1) * unit;
        let buf = CyclicBuffer::new(&pages, 0, size).expect("valid");
        let mut out = vec![Descriptor::default(); 512];
        let n = match build(&buf, &profile, size / periods, &mut out) {
            Ok(n) => n,
            Err(SgError::TooManyEntries { .. }) => { prop_assert!(hda); return Ok(()); }
            Err(e) => { prop_assert!(false, "{:?}", e); unreachable!() }
        };
        prop_assert!(n as u64 <= max_entries_for(size, 0, periods, &profile));
        let mut o = 0u32;
        for d in &out[..n] {
            prop_assert_eq!(d.buffer_offset, o);
            prop_assert_eq!(d.address, model_address(&pages, 0, o));
            prop_assert!(d.length_bytes > 0 && d.length_bytes <= profile.max_entry_bytes);
            prop_assert_eq!(d.length_bytes % profile.length_unit.bytes(), 0);
            prop_assert_eq!(d.address % u64::from(profile.address_alignment), 0);
            // Physically contiguous throughout.
            for k in [0, d.length_bytes - 1] {
                prop_assert_eq!(model_address(&pages, 0, o + k), d.address + u64::from(k));
            }
            let end = o + d.length_bytes;
            let period_end = end % (size / periods) == 0;
            match profile.ioc {
                IocPolicy::PeriodEnds => prop_assert_eq!(d.interrupt_on_completion, period_end),
                IocPolicy::EveryEntry => prop_assert!(d.interrupt_on_completion),
            }
            // No entry crosses a period boundary.
            prop_assert_eq!(o / (size / periods), (end - 1) / (size / periods));
            o = end;
        }
        prop_assert_eq!(o, size);
        let mut bytes = vec![0u8; n * profile.layout.entry_size()];
        if n <= usize::from(profile.max_entries) {
            prop_assert_eq!(encode(&profile, &out[..n], &mut bytes), Ok(bytes.len()));
        }
    }
}
