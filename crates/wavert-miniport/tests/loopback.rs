//! The cable driven as Windows drives it: through the miniport and stream
//! vtables, over a fake port stream with shuffled pages.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::too_many_lines,
    clippy::missing_const_for_fn,
    clippy::cast_possible_truncation,
    reason = "test code: one long scenario, buffer offsets far below 2^32"
)]

mod common;

use std::ptr;

use common::{fake_event, ks_format, FakePortStream, Rig, QPC_FREQUENCY};
use portcls_sys::{KSAUDIO_POSITION, KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN, STATUS_SUCCESS};
use wavert_miniport::{Direction, DmaMode};

/// The byte the render client writes at linear position `k`.
fn pattern(k: u64) -> u8 {
    let x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 29;
    (x ^ (k >> 3)) as u8
}

/// Irregular tick lengths in QPC ticks (0.3 ms to 2.9 ms).
fn tick(i: usize) -> u64 {
    [3_000, 10_000, 29_000, 7_700, 15_001, 4_321][i % 6]
}

struct Case {
    float: bool,
    channels: u16,
    rate: u32,
    container: u16,
    valid: u16,
    notifications: u32,
    requested: u32,
}

/// Renders the pattern for ~0.4 s while capturing, then checks every
/// captured byte against what was rendered. Both streams start at the same
/// QPC, so capture byte k must be render byte k.
fn loopback(mode: DmaMode, case: &Case) {
    let rig = Rig::new(mode);
    let format = ks_format(
        case.float,
        case.channels,
        case.rate,
        case.container,
        case.valid,
    );
    let render_port = FakePortStream::new();
    let capture_port = FakePortStream::new();
    let render = rig
        .new_stream(Direction::Render, &render_port, 0, &format)
        .unwrap();
    let capture = rig
        .new_stream(Direction::Capture, &capture_port, 0, &format)
        .unwrap();
    let ra = render
        .allocate(Some(case.notifications), case.requested)
        .unwrap();
    let ca = capture
        .allocate(Some(case.notifications), case.requested / 3 * 2)
        .unwrap();
    assert_eq!(ra.offset, 0);
    let block = u32::from(case.channels) * u32::from(case.container) / 8;
    assert_eq!(ra.size % (block * case.notifications), 0);
    assert_eq!(ca.size % (block * case.notifications), 0);
    let unit = block * case.notifications;
    assert!(
        ra.size >= case.requested && ra.size - case.requested < unit,
        "the request rounded up to whole frames per packet: {} for {}",
        ra.size,
        case.requested
    );
    // The pages really are scattered.
    let pages = render_port.pages(ra.mdl);
    assert!(pages.len() < 2 || pages.windows(2).any(|w| w[1] != w[0] + 4096));

    let (render_event, capture_event) = (fake_event(1), fake_event(2));
    assert_eq!(render.register(render_event), STATUS_SUCCESS);
    assert_eq!(capture.register(capture_event), STATUS_SUCCESS);

    let rmem = render_port.memory(ra.mdl);
    let cmem = capture_port.memory(ca.mdl);
    let rsize = u64::from(ra.size);
    let csize = u64::from(ca.size);
    // The client fills the whole buffer before RUN.
    for k in 0..rsize {
        // SAFETY: inside the fake's buffer.
        unsafe { rmem.wrapping_add(k as usize).write(pattern(k)) };
    }
    // Both reach RUN at the same QPC.
    for s in [KSSTATE_ACQUIRE, KSSTATE_PAUSE] {
        assert_eq!(render.set_state(s), STATUS_SUCCESS);
        assert_eq!(capture.set_state(s), STATUS_SUCCESS);
    }
    assert_eq!(render.set_state(KSSTATE_RUN), STATUS_SUCCESS);
    assert_eq!(capture.set_state(KSSTATE_RUN), STATUS_SUCCESS);
    assert!(rig
        .log
        .timer_running
        .load(std::sync::atomic::Ordering::SeqCst));

    let mut render_linear = 0u64;
    let mut capture_linear = 0u64;
    let mut last_render_offset = 0u64;
    let mut last_capture_offset = 0u64;
    let mut captured = Vec::new();
    let duration = QPC_FREQUENCY * 2 / 5;
    let start = rig.log.now();
    let mut i = 0;
    while rig.log.now() - start < duration {
        let now = rig.log.advance(tick(i));
        i += 1;
        rig.cable.on_timer(now);
        let rp = render.position().PlayOffset;
        let cp = capture.position().PlayOffset;
        assert!(rp < rsize && cp < csize);
        let rdelta = (rp + rsize - last_render_offset) % rsize;
        let cdelta = (cp + csize - last_capture_offset) % csize;
        last_render_offset = rp;
        last_capture_offset = cp;
        // The client rewrites what was consumed with the next cycle's bytes.
        for k in render_linear + rsize..render_linear + rdelta + rsize {
            // SAFETY: inside the fake's buffer.
            unsafe { rmem.wrapping_add((k % rsize) as usize).write(pattern(k)) };
        }
        render_linear += rdelta;
        for k in capture_linear..capture_linear + cdelta {
            // SAFETY: inside the fake's buffer.
            captured.push(unsafe { cmem.wrapping_add((k % csize) as usize).read() });
        }
        capture_linear += cdelta;
    }
    let elapsed = rig.log.now() - start;
    let expected_bytes = elapsed * u64::from(case.rate) / QPC_FREQUENCY * u64::from(block);
    assert!(
        capture_linear == expected_bytes,
        "{capture_linear} vs {expected_bytes}"
    );
    assert_eq!(render_linear, capture_linear);
    let mismatch = captured
        .iter()
        .enumerate()
        .find(|&(k, &b)| b != pattern(k as u64));
    assert_eq!(mismatch, None, "first mismatching capture byte");
    let stats = rig.cable.stats();
    assert_eq!(stats.silence_bytes, 0);
    assert_eq!(stats.dma_errors, 0);
    assert_eq!(stats.copied_bytes, capture_linear);

    // One signal per poll that crossed a packet end; ticks are shorter than
    // packets here, so that is one per packet.
    let render_packets = render_linear / (rsize / u64::from(case.notifications));
    let capture_packets = capture_linear / (csize / u64::from(case.notifications));
    assert_eq!(rig.log.signals_for(render_event) as u64, render_packets);
    assert_eq!(rig.log.signals_for(capture_event) as u64, capture_packets);

    render.stop();
    capture.stop();
    assert!(!rig
        .log
        .timer_running
        .load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(render.position(), KSAUDIO_POSITION::default());
    assert_eq!(render.unregister(render_event), STATUS_SUCCESS);
    render.free(true, ra.mdl, ra.size);
    capture.free(true, ca.mdl, ca.size);
    assert_eq!(render_port.outstanding(), 0);
    assert_eq!(capture_port.outstanding(), 0);
    drop((render, capture));
    assert_eq!(render_port.refs(), 1, "the stream released its port stream");
    assert_eq!(capture_port.refs(), 1);
    assert!(
        render_port.bad_calls().is_empty(),
        "{:?}",
        render_port.bad_calls()
    );
    assert!(capture_port.bad_calls().is_empty());
}

const CASES: [Case; 5] = [
    // 16-bit stereo 48 kHz, 10 ms packets.
    Case {
        float: false,
        channels: 2,
        rate: 48_000,
        container: 16,
        valid: 16,
        notifications: 2,
        requested: 3840,
    },
    // 24-bit packed stereo 44.1 kHz: 6-byte frames straddle pages.
    Case {
        float: false,
        channels: 2,
        rate: 44_100,
        container: 24,
        valid: 24,
        notifications: 2,
        requested: 26_460,
    },
    // 32-bit float 8 channels 192 kHz.
    Case {
        float: true,
        channels: 8,
        rate: 192_000,
        container: 32,
        valid: 32,
        notifications: 1,
        requested: 131_072,
    },
    // 16-bit mono 44.1 kHz, one notification.
    Case {
        float: false,
        channels: 1,
        rate: 44_100,
        container: 16,
        valid: 16,
        notifications: 1,
        requested: 9000,
    },
    // 24-bit 6 channels 96 kHz (18-byte frames).
    Case {
        float: false,
        channels: 6,
        rate: 96_000,
        container: 24,
        valid: 24,
        notifications: 2,
        requested: 50_000,
    },
];

#[test]
fn bit_exact_looping() {
    for case in &CASES {
        loopback(DmaMode::Looping, case);
    }
}

#[test]
fn bit_exact_refill() {
    for case in &CASES {
        loopback(DmaMode::Refill, case);
    }
}

#[test]
fn capture_without_render_is_silence_and_render_alone_consumes() {
    for mode in [DmaMode::Looping, DmaMode::Refill] {
        let rig = Rig::new(mode);
        let format = ks_format(false, 2, 48_000, 16, 16);
        let port = FakePortStream::new();
        let capture = rig
            .new_stream(Direction::Capture, &port, 0, &format)
            .unwrap();
        let a = capture.allocate(Some(2), 9600).unwrap();
        let mem = port.memory(a.mdl);
        // SAFETY: inside the fake's buffer.
        unsafe { ptr::write_bytes(mem, 0x55, a.size as usize) };
        capture.run();
        for i in 0..40 {
            rig.cable.on_timer(rig.log.advance(tick(i)));
        }
        let moved = capture.position().PlayOffset;
        assert!(moved > 0);
        // SAFETY: inside the fake's buffer.
        let bytes = unsafe { std::slice::from_raw_parts(mem, moved as usize) };
        assert!(bytes.iter().all(|&b| b == 0));
        capture.stop();
        capture.free(true, a.mdl, a.size);

        let render_port = FakePortStream::new();
        let render = rig
            .new_stream(Direction::Render, &render_port, 0, &format)
            .unwrap();
        let ra = render.allocate(None, 9600).unwrap();
        render.run();
        for i in 0..40 {
            rig.cable.on_timer(rig.log.advance(tick(i)));
        }
        assert!(render.position().PlayOffset > 0);
        render.stop();
        render.free(false, ra.mdl, ra.size);
        assert_eq!(render_port.outstanding(), 0);
        assert_eq!(rig.cable.stats().dma_errors, 0);
    }
}

#[test]
fn pause_freezes_and_stop_resets() {
    let rig = Rig::new(DmaMode::Refill);
    let format = ks_format(false, 2, 48_000, 16, 16);
    let port = FakePortStream::new();
    let s = rig
        .new_stream(Direction::Render, &port, 0, &format)
        .unwrap();
    let a = s.allocate(Some(2), 19_200).unwrap();
    s.run();
    rig.log.advance(QPC_FREQUENCY / 20); // 50 ms
    let p1 = s.position().PlayOffset;
    assert_eq!(p1, 48_000 * 4 / 20);
    assert_eq!(s.set_state(KSSTATE_PAUSE), STATUS_SUCCESS);
    rig.log.advance(QPC_FREQUENCY / 10);
    assert_eq!(s.position().PlayOffset, p1);
    assert_eq!(s.set_state(KSSTATE_RUN), STATUS_SUCCESS);
    rig.log.advance(QPC_FREQUENCY / 100);
    assert_eq!(s.position().PlayOffset, p1 + 48_000 * 4 / 100);
    s.stop();
    assert_eq!(s.position().PlayOffset, 0);
    s.free(true, a.mdl, a.size);
}

#[test]
fn late_timer_skips_whole_cycles_without_breaking_the_copy() {
    let rig = Rig::new(DmaMode::Refill);
    let format = ks_format(false, 2, 48_000, 16, 16);
    let port = FakePortStream::new();
    let s = rig
        .new_stream(Direction::Render, &port, 0, &format)
        .unwrap();
    let a = s.allocate(Some(2), 3840).unwrap();
    s.run();
    // 5 seconds without a service: hundreds of buffer cycles.
    rig.log.advance(QPC_FREQUENCY * 5);
    let p = s.position().PlayOffset;
    assert_eq!(p, (48_000 * 4 * 5) % u64::from(a.size));
    assert!(rig.cable.stats().skipped_bytes > 0);
    assert_eq!(rig.cable.stats().dma_errors, 0);
    s.stop();
}

#[test]
fn registers_are_not_supported_and_latency_is_reported() {
    let rig = Rig::new(DmaMode::Looping);
    let format = ks_format(false, 2, 48_000, 16, 16);
    let port = FakePortStream::new();
    let s = rig
        .new_stream(Direction::Render, &port, 0, &format)
        .unwrap();
    assert_eq!(
        s.registers(),
        (
            portcls_sys::STATUS_NOT_SUPPORTED,
            portcls_sys::STATUS_NOT_SUPPORTED
        )
    );
    let mut latency = portcls_sys::KSRTAUDIO_HWLATENCY {
        FifoSize: 9,
        ChipsetDelay: 9,
        CodecDelay: 9,
    };
    // SAFETY: live stream, writable latency.
    unsafe { (s.0.vtbl().base__.GetHWLatency)(s.0.this(), &raw mut latency) };
    assert_eq!(latency, wavert_miniport::cable::HW_LATENCY);
}
