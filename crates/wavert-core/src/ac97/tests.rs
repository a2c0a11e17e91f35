//! The AC'97 back-end against the register-level model in [`super::sim`].

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure, with its location"
)]

extern crate std;

use std::vec::Vec;

use super::sim::{SimAc97, SimMemory};
use super::{nabm, nam, Ac97Error, Channel, ChannelKind, Codec, RegisterBus};
use crate::geometry::CyclicBuffer;
use crate::sg::{build, Descriptor, SgProfile};

const LIST_BASE: u64 = 0x10_0000;
/// A 5-page buffer scattered out of order, starting mid-page, so entries
/// split at page ends and wrap at an odd place.
const PAGES: [u64; 5] = [
    0x0030_0000,
    0x0010_2000,
    0x0010_3000,
    0x0050_0000,
    0x0020_0000,
];
const FIRST_OFFSET: u32 = 0x600;
const BUFFER_SIZE: u32 = 4 * 4096;
const PERIOD: u32 = BUFFER_SIZE / 8;

fn segments() -> Vec<Descriptor> {
    let buffer = CyclicBuffer::new(&PAGES, FIRST_OFFSET, BUFFER_SIZE).unwrap();
    let mut out = [Descriptor::default(); 64];
    let n = build(&buffer, &SgProfile::AC97, PERIOD, &mut out).unwrap();
    out[..n].to_vec()
}

/// Every physical byte range of the buffer in cyclic order, `cycles` times,
/// as (address, len) pieces merged where contiguous.
fn expected_stream(segments: &[Descriptor], bytes: u64) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut left = bytes;
    'outer: loop {
        for s in segments {
            if left == 0 {
                break 'outer;
            }
            let len = u32::try_from(left.min(u64::from(s.length_bytes))).unwrap();
            push_merged(&mut out, u32::try_from(s.address).unwrap(), len);
            left -= u64::from(len);
        }
    }
    out
}

fn push_merged(out: &mut Vec<(u32, u32)>, address: u32, len: u32) {
    if let Some(last) = out.last_mut() {
        if last.0 + last.1 == address {
            last.1 += len;
            return;
        }
    }
    out.push((address, len));
}

fn brought_up(sim: &mut SimAc97, memory: &SimMemory) -> Codec {
    let (mut mixer, mut bus_master) = sim.windows(memory);
    Codec::bring_up(&mut mixer, &mut bus_master, 44_100, 32_000, &mut |_| {}).unwrap()
}

#[test]
fn bring_up_leaves_variable_rates_and_unity_gain() {
    let memory = SimMemory::new(LIST_BASE);
    let mut sim = SimAc97::new();
    let codec = brought_up(&mut sim, &memory);
    assert_eq!(codec.render_rate(), 44_100);
    assert_eq!(codec.capture_rate(), 32_000);
    assert_eq!(sim.mixer_register(nam::FRONT_DAC_RATE), 44_100);
    assert_eq!(sim.mixer_register(nam::ADC_RATE), 32_000);
    assert_eq!(sim.mixer_register(nam::MASTER_VOLUME), 0);
    assert_eq!(sim.mixer_register(nam::PCM_OUT_VOLUME), 0);
    assert_ne!(
        sim.mixer_register(nam::EXTENDED_AUDIO_CONTROL) & nam::VARIABLE_RATE,
        0
    );
    assert_eq!(
        sim.rate_writes_after_volume(),
        0,
        "volumes must follow rates"
    );
    assert_eq!(sim.bad_width_accesses(), 0);
}

#[test]
fn rate_change_reapplies_volume() {
    let memory = SimMemory::new(LIST_BASE);
    let mut sim = SimAc97::new();
    let mut codec = brought_up(&mut sim, &memory);
    sim.mixer().write16(nam::MASTER_VOLUME, nam::MUTE);
    codec.set_render_rate(&mut sim.mixer(), 22_050).unwrap();
    assert_eq!(sim.mixer_register(nam::FRONT_DAC_RATE), 22_050);
    assert_eq!(sim.mixer_register(nam::MASTER_VOLUME), nam::UNITY_GAIN);
    assert_eq!(sim.rate_writes_after_volume(), 0);
}

#[test]
fn bring_up_failures_are_reported() {
    let memory = SimMemory::new(LIST_BASE);
    let mut absent = SimAc97::new().without_codec();
    let mut stalled_us = 0u64;
    let (mut mixer, mut bus_master) = absent.windows(&memory);
    let result = Codec::bring_up(&mut mixer, &mut bus_master, 48_000, 48_000, &mut |us| {
        stalled_us += u64::from(us);
    });
    assert_eq!(result, Err(Ac97Error::CodecNotReady));
    // It waited for the codec (about 600 ms) rather than giving up at once.
    assert!(stalled_us >= 500_000, "{stalled_us}");

    let mut sim = SimAc97::new();
    for rate in [7_999, 48_001, 0] {
        let (mut mixer, mut bus_master) = sim.windows(&memory);
        let result = Codec::bring_up(&mut mixer, &mut bus_master, rate, 48_000, &mut |_| {});
        assert_eq!(result, Err(Ac97Error::RateOutOfRange(rate)));
    }
}

#[test]
fn channel_rejects_unusable_list_addresses() {
    assert!(Channel::new(ChannelKind::PcmOut, 0x1000).is_ok());
    for bad in [0x1004, 0xFFFF_FF08, 0x1_0000_0000] {
        assert_eq!(
            Channel::new(ChannelKind::PcmOut, bad),
            Err(Ac97Error::BadListAddress(bad))
        );
    }
}

/// Runs a channel on the model: `chunks` of `chunk` bytes, servicing the
/// interrupt after each chunk unless `late` says to skip it. Returns the
/// pieces moved, the channel and the model.
fn run(
    kind: ChannelKind,
    sim: &mut SimAc97,
    chunk: u32,
    chunks: u32,
    late: impl Fn(u32) -> bool,
) -> (Vec<(u32, u32)>, Channel, Vec<u64>) {
    let memory = SimMemory::new(LIST_BASE);
    let segments = segments();
    let mut channel = Channel::new(kind, LIST_BASE + 0x100).unwrap();
    channel
        .start(&mut sim.bus_master(&memory), &mut &memory, &segments)
        .unwrap();
    let mut pieces = Vec::new();
    let mut positions = Vec::new();
    let mut moved_total = 0u64;
    for i in 0..chunks {
        let moved = sim.step(kind.base(), chunk, &memory, &mut |a, l| {
            push_merged(&mut pieces, a, l);
        });
        moved_total += u64::from(moved);
        if late(i) || !sim.interrupt_line() {
            continue;
        }
        let report = channel
            .service_interrupt(&mut sim.bus_master(&memory), &mut &memory, &segments)
            .unwrap();
        assert_ne!(report.acknowledged, 0);
        assert!(
            !sim.interrupt_line(),
            "every status bit seen is acknowledged"
        );
        let position = channel
            .position(&mut sim.bus_master(&memory), &segments, BUFFER_SIZE)
            .unwrap();
        // Between steps nothing moves: the position is exactly what moved.
        assert_eq!(position, moved_total);
        positions.push(position);
    }
    assert_eq!(sim.bad_width_accesses(), 0);
    assert_eq!(memory.stray_writes(), 0);
    (pieces, channel, positions)
}

#[test]
fn steady_render_never_halts_and_plays_in_order_in_three_accesses() {
    let mut sim = SimAc97::new();
    let chunk = 1_764; // 10 ms at 44.1 kHz stereo 16-bit
    let chunks = 2_000;
    let (pieces, channel, positions) = run(ChannelKind::PcmOut, &mut sim, chunk, chunks, |_| false);
    let total = u64::from(chunk) * u64::from(chunks);
    assert_eq!(pieces, expected_stream(&segments(), total));
    let stats = channel.stats();
    assert_eq!(stats.halts, 0);
    assert_eq!(sim.halts(nabm::PCM_OUT), 0);
    assert!(stats.interrupts > 100);
    assert_eq!(stats.interrupt_register_accesses, 3 * stats.interrupts);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn capture_channel_uses_its_own_registers() {
    let mut sim = SimAc97::new();
    let (pieces, channel, _) = run(ChannelKind::PcmIn, &mut sim, 1_000, 300, |_| false);
    assert_eq!(pieces, expected_stream(&segments(), 300_000));
    assert_eq!(channel.stats().halts, 0);
    assert_eq!(sim.halts(nabm::PCM_OUT), 0);
    assert_eq!(sim.halts(nabm::PCM_IN), 0);
}

#[test]
fn late_interrupt_halts_then_restarts_in_order() {
    let mut sim = SimAc97::new();
    // Ignore the interrupt for chunks 100..400: 300 x 1 KiB is more than the
    // 31 slots (a bit under 31 x 2 KiB here) loaded ahead.
    let (pieces, channel, positions) = run(ChannelKind::PcmOut, &mut sim, 1_024, 1_000, |i| {
        (100..400).contains(&i)
    });
    let stats = channel.stats();
    assert_eq!(stats.halts, 1);
    assert_eq!(sim.halts(nabm::PCM_OUT), 1);
    assert_eq!(stats.run_bit_restarts, 0, "a new LVI resumes this engine");
    // Nothing skipped, nothing repeated: the stream is the buffer in order,
    // just shorter by what the halt cost.
    let moved: u64 = pieces.iter().map(|p| u64::from(p.1)).sum();
    assert!(moved < 1_024 * 1_000);
    assert_eq!(pieces, expected_stream(&segments(), moved));
    assert!(positions.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn engine_that_ignores_lvi_is_restarted_with_the_run_bit() {
    let mut sim = SimAc97::new().without_resume_on_lvi();
    let (pieces, channel, _) = run(ChannelKind::PcmOut, &mut sim, 1_024, 1_000, |i| {
        (100..400).contains(&i)
    });
    let stats = channel.stats();
    assert_eq!(stats.halts, 1);
    assert_eq!(stats.run_bit_restarts, 1);
    let moved: u64 = pieces.iter().map(|p| u64::from(p.1)).sum();
    assert_eq!(pieces, expected_stream(&segments(), moved));
}

#[test]
fn interrupt_of_another_channel_costs_one_read() {
    let memory = SimMemory::new(LIST_BASE);
    let segments = segments();
    let mut sim = SimAc97::new();
    let mut channel = Channel::new(ChannelKind::PcmIn, LIST_BASE).unwrap();
    channel
        .start(&mut sim.bus_master(&memory), &mut &memory, &segments)
        .unwrap();
    let report = channel
        .service_interrupt(&mut sim.bus_master(&memory), &mut &memory, &segments)
        .unwrap();
    assert_eq!(report.acknowledged, 0);
    assert_eq!(report.register_accesses, 1);
    assert_eq!(channel.stats().not_mine, 1);
    channel.stop(&mut sim.bus_master(&memory));
    assert!(!channel.is_running());
    assert_eq!(
        channel.service_interrupt(&mut sim.bus_master(&memory), &mut &memory, &segments),
        Err(Ac97Error::NotRunning)
    );
}

#[test]
fn start_writes_the_list_and_runs_from_slot_zero() {
    let memory = SimMemory::new(LIST_BASE);
    let segments = segments();
    let mut sim = SimAc97::new();
    let mut channel = Channel::new(ChannelKind::PcmOut, LIST_BASE).unwrap();
    channel
        .start(&mut sim.bus_master(&memory), &mut &memory, &segments)
        .unwrap();
    let mut bus = sim.bus_master(&memory);
    assert_eq!(bus.read32(nabm::PCM_OUT + nabm::BDBAR), 0x10_0000);
    assert_eq!(bus.read8(nabm::PCM_OUT + nabm::CIV), 0);
    assert_eq!(bus.read8(nabm::PCM_OUT + nabm::LVI), 30);
    assert_eq!(
        bus.read8(nabm::PCM_OUT + nabm::CR) & nabm::CR_RUN,
        nabm::CR_RUN
    );
    // Slot 1 holds segment 1 (the list is loaded in order), IOC and BUP set.
    let second = &segments[1];
    assert_eq!(u64::from(memory.read_u32(LIST_BASE + 8)), second.address);
    assert_eq!(
        memory.read_u32(LIST_BASE + 12),
        (1 << 31) | (1 << 30) | (second.length_bytes / 2)
    );
}

/// How a channel comes back after the model lost its registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comeback {
    /// [`Channel::resume_at`] the paused position (the product).
    ResumeAt,
    /// [`Channel::start`] again (a driver that forgets the position).
    Restart,
    /// [`Channel::resume`] (a driver that sets the run bit on reset registers).
    RunBitOnly,
}

/// Renders `before` chunks, pauses mid-segment, loses every register (a
/// fresh model: power off), brings the codec up again, comes back as
/// `comeback` says and renders `after` chunks. Returns the pieces moved and
/// the position read before the loss and right after the comeback.
fn power_loss_run(comeback: Comeback, before: u32, after: u32) -> (Vec<(u32, u32)>, u64, u64) {
    let memory = SimMemory::new(LIST_BASE);
    let segments = segments();
    let kind = ChannelKind::PcmOut;
    let mut sim = SimAc97::new();
    brought_up(&mut sim, &memory);
    let mut channel = Channel::new(kind, LIST_BASE + 0x100).unwrap();
    channel
        .start(&mut sim.bus_master(&memory), &mut &memory, &segments)
        .unwrap();
    let mut pieces = Vec::new();
    let chunk = 1_000; // not a divisor of any segment: pauses land mid-entry
    let serve = |sim: &mut SimAc97, channel: &mut Channel, pieces: &mut Vec<(u32, u32)>| {
        sim.step(kind.base(), chunk, &memory, &mut |a, l| {
            push_merged(pieces, a, l);
        });
        if sim.interrupt_line() {
            channel
                .service_interrupt(&mut sim.bus_master(&memory), &mut &memory, &segments)
                .unwrap();
        }
    };
    for _ in 0..before {
        serve(&mut sim, &mut channel, &mut pieces);
    }
    channel.pause(&mut sim.bus_master(&memory)).unwrap();
    let held = channel
        .paused_position(&mut sim.bus_master(&memory), &segments, BUFFER_SIZE)
        .unwrap();
    sim.mixer().write16(nam::POWERDOWN, nam::POWERDOWN_D3);
    // Power off: every register back to its reset value.
    sim = SimAc97::new();
    brought_up(&mut sim, &memory);
    let resumed = match comeback {
        Comeback::ResumeAt => channel.resume_at(
            &mut sim.bus_master(&memory),
            &mut &memory,
            &segments,
            BUFFER_SIZE,
            held,
        ),
        Comeback::Restart => channel.start(&mut sim.bus_master(&memory), &mut &memory, &segments),
        Comeback::RunBitOnly => channel.resume(&mut sim.bus_master(&memory)),
    };
    resumed.unwrap();
    let after_position = channel
        .position(&mut sim.bus_master(&memory), &segments, BUFFER_SIZE)
        .unwrap_or(u64::MAX);
    for _ in 0..after {
        serve(&mut sim, &mut channel, &mut pieces);
    }
    (pieces, held, after_position)
}

#[test]
fn resume_at_continues_byte_exact_after_a_power_loss() {
    let segments = segments();
    for before in [3, 17, 40] {
        let (pieces, held, resumed) = power_loss_run(Comeback::ResumeAt, before, 60);
        assert_eq!(held, u64::from(before) * 1_000, "{before}");
        assert_eq!(
            resumed, held,
            "{before}: the position goes on from where it was"
        );
        // The stream is the uninterrupted one: no byte lost, none repeated.
        assert_eq!(
            pieces,
            expected_stream(&segments, u64::from(before + 60) * 1_000),
            "{before}"
        );
    }
    // The controls: a driver that restarts from the top repeats the
    // buffer's start; one that only sets the run bit on reset registers
    // moves nothing (BDBAR is 0, the model's list is gone).
    for comeback in [Comeback::Restart, Comeback::RunBitOnly] {
        let (pieces, _, _) = power_loss_run(comeback, 17, 60);
        assert_ne!(
            pieces,
            expected_stream(&segments, 77 * 1_000),
            "{comeback:?} went unnoticed"
        );
    }
}
