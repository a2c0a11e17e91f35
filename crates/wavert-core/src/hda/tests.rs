//! The HD Audio back-end against the register-level model in [`super::sim`].

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure, with its location"
)]

extern crate std;

use std::vec::Vec;

use super::codec::{self, AmpCaps, PcmFormat, Verb};
use super::sim::{CodecModel, SimHda, SimMemory, SIM_FIFO_BYTES};
use super::stream::{resume_list, Direction, PositionTracker, Stream, StreamProgram};
use super::{reg, Controller, HdaError, HwLatency, RegisterBus, RingMemory, Transport};
use crate::geometry::CyclicBuffer;
use crate::sg::{build, encode, Descriptor, SgProfile};

const BASE: u64 = 0x10_0000;
const RINGS: RingMemory = RingMemory {
    corb: BASE,
    rirb: BASE + 0x400,
};
const BDL: u64 = BASE + 0x1000;
const POSITIONS: u64 = BASE + 0x2000;
/// Five scattered pages, buffer starting at a page boundary (WaveRT
/// buffers are page allocations).
const PAGES: [u64; 5] = [
    0x0030_0000,
    0x0010_2000,
    0x0010_3000,
    0x0050_0000,
    0x0020_0000,
];
const BUFFER: u32 = 4 * 4096 + 2048;

fn no_stall() -> impl FnMut(u32) {
    |_| {}
}

fn up<'m>(sim: &mut SimHda<'m>, memory: &'m SimMemory, prefer: Transport) -> Controller {
    let mut mem = memory;
    Controller::bring_up(sim, &mut mem, RINGS, prefer, &mut no_stall()).unwrap()
}

fn send_fn<'a, 'm>(
    controller: &'a mut Controller,
    sim: &'a mut SimHda<'m>,
    memory: &'m SimMemory,
) -> impl FnMut(Verb) -> Result<u32, HdaError> + use<'a, 'm> {
    move |verb| {
        let mut mem = memory;
        controller.command(sim, &mut mem, verb, &mut |_| {})
    }
}

#[test]
fn bring_up_resets_finds_the_codec_and_answers_verbs_through_the_rings() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let mut controller = up(&mut sim, &memory, Transport::Rings);
    assert_eq!(controller.codec_mask(), 1);
    assert_eq!(controller.transport(), Transport::Rings);
    let caps = controller.capabilities();
    assert_eq!((caps.input_streams, caps.output_streams), (4, 4));
    assert!(caps.addresses_64bit);
    assert_eq!(caps.output_descriptor(0), Some(4));
    assert_eq!(caps.input_descriptor(0), Some(0));
    // Several verbs in a row: each needs the previous response
    // acknowledged in RIRBSTS, or the model stops fetching.
    let mut send = send_fn(&mut controller, &mut sim, &memory);
    for _ in 0..300 {
        assert_eq!(
            send(Verb::get_parameter(0, 0, codec::param::VENDOR_ID)).unwrap(),
            0x1AF4_0022
        );
    }
    assert_eq!(memory.stray_writes(), 0);
}

#[test]
fn the_model_stops_fetching_verbs_until_rirbsts_is_acknowledged() {
    // The rule the driver's acknowledgement exists for: a verb written
    // after an unacknowledged response gets no answer.
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let _controller = up(&mut sim, &memory, Transport::Rings);
    let rirb_wp = sim.read16(reg::RIRBWP);
    let corb_wp = sim.read16(reg::CORBWP);
    for (n, slot) in [(1u16, corb_wp + 1), (2, corb_wp + 2)] {
        let verb = Verb::get_parameter(0, 0, codec::param::VENDOR_ID).encode();
        memory.store(RINGS.corb + u64::from(slot) * 4, &verb.to_le_bytes());
        sim.write16(reg::CORBWP, slot);
        let answered = sim.read16(reg::RIRBWP).wrapping_sub(rirb_wp) & 0xFF;
        assert_eq!(answered, 1, "verb {n}: only the first is answered");
    }
    sim.write8(reg::RIRBSTS, reg::RIRBSTS_RINTFL);
    assert_eq!(sim.read16(reg::RIRBWP).wrapping_sub(rirb_wp) & 0xFF, 2);
}

#[test]
fn dead_rings_fall_back_to_the_immediate_interface() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    sim.faults.dead_rings = true;
    let mut controller = up(&mut sim, &memory, Transport::Rings);
    assert_eq!(controller.transport(), Transport::Immediate);
    assert_eq!(controller.stats().fallbacks_to_immediate, 1);
    let info = codec::walk(0, &mut send_fn(&mut controller, &mut sim, &memory)).unwrap();
    assert_eq!(info.vendor_id, 0x1AF4_0022);

    // Control: healthy rings keep the rings.
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let controller = up(&mut sim, &memory, Transport::Rings);
    assert_eq!(controller.stats().fallbacks_to_immediate, 0);
}

#[test]
fn immediate_transport_answers_every_verb() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Output));
    let mut controller = up(&mut sim, &memory, Transport::Immediate);
    let mut send = send_fn(&mut controller, &mut sim, &memory);
    for _ in 0..10 {
        assert_eq!(
            send(Verb::get_parameter(0, 0, codec::param::VENDOR_ID)).unwrap(),
            0x1AF4_0012
        );
    }
}

#[test]
fn bring_up_failures_are_reported() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, None);
    let mut mem = &memory;
    let err = Controller::bring_up(&mut sim, &mut mem, RINGS, Transport::Rings, &mut no_stall());
    assert_eq!(err, Err(HdaError::NoCodec));

    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    sim.faults.stuck_in_reset = true;
    let err = Controller::bring_up(&mut sim, &mut mem, RINGS, Transport::Rings, &mut no_stall());
    assert_eq!(
        err,
        Err(HdaError::ResetTimeout {
            leaving_reset: true
        })
    );

    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let misaligned = RingMemory {
        corb: BASE + 0x40,
        rirb: BASE + 0x400,
    };
    let err = Controller::bring_up(
        &mut sim,
        &mut mem,
        misaligned,
        Transport::Rings,
        &mut no_stall(),
    );
    assert_eq!(err, Err(HdaError::BadAddress(BASE + 0x40)));
}

#[test]
fn the_walk_finds_qemus_paths_formats_amplifiers_and_jacks() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let mut controller = up(&mut sim, &memory, Transport::Rings);
    let info = codec::walk(0, &mut send_fn(&mut controller, &mut sim, &memory)).unwrap();
    assert_eq!(info.function_group, 1);
    let render = info.render.unwrap();
    assert_eq!((render.converter.node, render.pin.node), (2, 3));
    let capture = info.capture.unwrap();
    assert_eq!((capture.converter.node, capture.pin.node), (4, 5));
    let pcm = render.converter.pcm;
    assert!(pcm.has_rate(44_100) && pcm.has_rate(48_000) && pcm.has_rate(96_000));
    assert!(!pcm.has_rate(8_000) && !pcm.has_rate(192_000));
    assert!(pcm.has_bits(16) && !pcm.has_bits(24));
    assert_eq!(pcm.rate_range(), Some((16_000, 96_000)));
    let amp = render.converter.amp.unwrap();
    assert_eq!(
        (amp.offset(), amp.steps(), amp.step_quarter_db()),
        (0x4A, 0x4A, 4)
    );
    assert!(amp.can_mute());
    assert_eq!(render.pin.default_device(), 0, "line out");
    assert_eq!(capture.pin.default_device(), 8, "line in");
    assert_eq!((render.pin.color(), capture.pin.color()), (4, 5));
    assert_eq!(render.delay_samples(), 0);
    assert_eq!(
        sim.codec.unknown_verbs, 0,
        "every verb the walk sent is one QEMU knows"
    );

    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Output));
    let mut controller = up(&mut sim, &memory, Transport::Rings);
    let info = codec::walk(0, &mut send_fn(&mut controller, &mut sim, &memory)).unwrap();
    assert!(info.render.is_some());
    assert!(info.capture.is_none(), "hda-output has no input converter");
}

#[test]
fn the_converter_delay_reaches_the_path_delay() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    sim.codec.converter_delay = 3;
    let mut controller = up(&mut sim, &memory, Transport::Rings);
    let info = codec::walk(0, &mut send_fn(&mut controller, &mut sim, &memory)).unwrap();
    assert_eq!(info.render.unwrap().delay_samples(), 3);
    assert_eq!(info.capture.unwrap().delay_samples(), 3);
}

#[test]
fn hardware_latency_comes_from_the_fifo_register_and_the_widget_delays() {
    let memory = SimMemory::new(BASE);
    let rig = rig(&memory, true, BUFFER / 2);
    let mut sim = rig.sim;
    let fifo = rig.stream.fifo_bytes(&mut sim);
    // QEMU: 256-byte FIFO, no widget delay.
    assert_eq!(
        HwLatency::new(fifo, 0, 48_000),
        HwLatency {
            fifo_bytes: 256,
            chipset_delay_hns: 0,
            codec_delay_hns: 0
        }
    );
    // Three sample periods at 48 kHz are 62.5 us: 625 x 100 ns; at 44.1 kHz
    // 68.03 us, rounded up to 681.
    assert_eq!(HwLatency::new(fifo, 3, 48_000).codec_delay_hns, 625);
    assert_eq!(HwLatency::new(fifo, 3, 44_100).codec_delay_hns, 681);
    assert_eq!(
        HwLatency::new(fifo, 3, 0).codec_delay_hns,
        30_000_000,
        "rate 0 is not a division by zero"
    );
}

#[test]
fn connection_lists_expand_ranges_in_both_forms_and_stop_at_capacity() {
    // A node answering a connection list: `length_word` for the length
    // parameter, `entries` for GET_CONNECTION_LIST from any index.
    let list = |length_word: u32, responses: &'static [u32]| {
        move |verb: Verb| -> Result<u32, HdaError> {
            let id = (verb.payload >> 8) & 0xFFF;
            let data = verb.payload & 0xFF;
            Ok(match id {
                0xF00 => length_word,
                0xF02 => responses[usize::try_from(data).unwrap() / 4 % responses.len()],
                _ => 0,
            })
        }
    };
    let mut out = [0u8; codec::MAX_CONNECTIONS];
    // Short form, 3 entries: 0x02, then 0x85 (range 3..=5), then 0x09.
    let n = codec::read_connections(&mut list(3, &[0x0009_8502]), 0, 7, &mut out).unwrap();
    assert_eq!(&out[..usize::from(n)], &[2, 3, 4, 5, 9]);
    // Long form (bit 7 of the length), 2 entries: 0x0010 and a range to 0x0012.
    let n = codec::read_connections(&mut list(0x82, &[0x8012_0010]), 0, 7, &mut out).unwrap();
    assert_eq!(&out[..usize::from(n)], &[0x10, 0x11, 0x12]);
    // A range of 100 nodes keeps the first MAX_CONNECTIONS.
    let n = codec::read_connections(&mut list(2, &[0x0000_E401]), 0, 7, &mut out).unwrap();
    assert_eq!(usize::from(n), codec::MAX_CONNECTIONS);
    assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn amplifier_range_in_sixteen_sixteen_decibels() {
    let (min, max, step) = AmpCaps(super::sim::SIM_AMP_CAPS).range_db_fixed();
    assert_eq!((min, max, step), (-74 * 65_536, 0, 65_536));
    // A codec whose 0 dB sits mid-range: 0x20 steps of 0.75 dB, 0 dB at 0x10.
    let (min, max, step) = AmpCaps((2 << 16) | (0x20 << 8) | 0x10).range_db_fixed();
    assert_eq!((min, max, step), (-12 * 65_536, 12 * 65_536, 49_152));
}

#[test]
fn stream_format_words_follow_the_spec_table() {
    let f = |rate, bits, channels| {
        PcmFormat {
            rate,
            bits,
            channels,
        }
        .encode()
    };
    assert_eq!(f(48_000, 16, 2), Ok(0x0011));
    assert_eq!(f(44_100, 16, 2), Ok(0x4011));
    assert_eq!(f(96_000, 24, 2), Ok(0x0831));
    assert_eq!(f(8_000, 16, 1), Ok(0x0510));
    assert_eq!(f(192_000, 32, 8), Ok(0x1847));
    assert_eq!(f(12_345, 16, 2), Err(HdaError::UnsupportedFormat));
    assert_eq!(f(48_000, 12, 2), Err(HdaError::UnsupportedFormat));
    assert_eq!(f(48_000, 16, 0), Err(HdaError::UnsupportedFormat));
    for rate in [
        8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000,
    ] {
        for (bits, channels) in [(16, 2), (24, 6), (32, 16), (8, 1)] {
            let format = PcmFormat {
                rate,
                bits,
                channels,
            };
            assert_eq!(PcmFormat::decode(format.encode().unwrap()), Ok(format));
        }
    }
    assert_eq!(PcmFormat::decode(0x8011), Err(HdaError::UnsupportedFormat));
}

/// A controller, its walk, and one stream set up through the real calls.
struct Rig<'m> {
    sim: SimHda<'m>,
    controller: Controller,
    stream: Stream,
    segments: Vec<Descriptor>,
}

fn segments(period: u32) -> Vec<Descriptor> {
    let buffer = CyclicBuffer::new(&PAGES, 0, BUFFER).unwrap();
    let mut out = [Descriptor::default(); 64];
    let n = build(&buffer, &SgProfile::HDA, period, &mut out).unwrap();
    out[..n].to_vec()
}

fn rig(memory: &SimMemory, output: bool, period: u32) -> Rig<'_> {
    let mut sim = SimHda::new(memory, Some(CodecModel::Duplex));
    let mut controller = up(&mut sim, memory, Transport::Rings);
    let info = codec::walk(0, &mut send_fn(&mut controller, &mut sim, memory)).unwrap();
    let path = if output { info.render } else { info.capture }.unwrap();
    let format = PcmFormat {
        rate: 48_000,
        bits: 16,
        channels: 2,
    };
    let tag = 1;
    let mut verbs = [Verb::decode(0); 7];
    let n = codec::path_setup_verbs(&info, &path, output, tag, &format, &mut verbs).unwrap();
    {
        let mut send = send_fn(&mut controller, &mut sim, memory);
        for verb in &verbs[..n] {
            send(*verb).unwrap();
        }
    }
    let segments = segments(period);
    let mut list = [0u8; 64 * 16];
    let bytes = encode(&SgProfile::HDA, &segments, &mut list).unwrap();
    memory.store(BDL, &list[..bytes]);
    let caps = controller.capabilities();
    let (index, direction) = if output {
        (caps.output_descriptor(0).unwrap(), Direction::Render)
    } else {
        (caps.input_descriptor(0).unwrap(), Direction::Capture)
    };
    let mut stream = Stream::new(index, direction);
    stream
        .program(
            &mut sim,
            StreamProgram {
                bdl_physical: BDL,
                entries: u16::try_from(segments.len()).unwrap(),
                cyclic_bytes: BUFFER,
                format: format.encode().unwrap(),
                tag,
            },
            &mut no_stall(),
        )
        .unwrap();
    controller
        .enable_position_buffer(&mut sim, POSITIONS)
        .unwrap();
    controller.set_stream_interrupt(&mut sim, index, true);
    stream.start(&mut sim).unwrap();
    Rig {
        sim,
        controller,
        stream,
        segments,
    }
}

/// The physical pieces of `bytes` of cyclic-order DMA, merged where
/// contiguous.
fn expected_pieces(segments: &[Descriptor], bytes: u64) -> Vec<(u64, u32)> {
    let mut out: Vec<(u64, u32)> = Vec::new();
    let mut left = bytes;
    while left > 0 {
        for s in segments {
            if left == 0 {
                break;
            }
            let len = u32::try_from(left.min(u64::from(s.length_bytes))).unwrap();
            push_merged(&mut out, s.address, len);
            left -= u64::from(len);
        }
    }
    out
}

fn push_merged(out: &mut Vec<(u64, u32)>, address: u64, len: u32) {
    if let Some(last) = out.last_mut() {
        if last.0 + u64::from(last.1) == address {
            last.1 += len;
            return;
        }
    }
    out.push((address, len));
}

#[test]
fn path_setup_sets_the_converter_stream_format_and_unity_gain() {
    let memory = SimMemory::new(BASE);
    let rig = rig(&memory, true, BUFFER / 2);
    let dac = rig.sim.codec.dac;
    assert_eq!(dac.stream_tag, 1);
    assert_eq!(dac.format, 0x0011);
    assert_eq!((dac.amp_left, dac.amp_right), (0x4A, 0x4A));
    assert_eq!(rig.sim.codec.unknown_verbs, 0);
}

#[test]
fn path_setup_refuses_what_the_converter_does_not_list() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let mut controller = up(&mut sim, &memory, Transport::Rings);
    let info = codec::walk(0, &mut send_fn(&mut controller, &mut sim, &memory)).unwrap();
    let path = info.render.unwrap();
    let mut verbs = [Verb::decode(0); 7];
    for (format, tag, expected) in [
        (
            PcmFormat {
                rate: 8_000,
                bits: 16,
                channels: 2,
            },
            1,
            HdaError::UnsupportedFormat,
        ),
        (
            PcmFormat {
                rate: 48_000,
                bits: 24,
                channels: 2,
            },
            1,
            HdaError::UnsupportedFormat,
        ),
        (
            PcmFormat {
                rate: 48_000,
                bits: 16,
                channels: 2,
            },
            0,
            HdaError::BadStreamTag(0),
        ),
        (
            PcmFormat {
                rate: 48_000,
                bits: 16,
                channels: 2,
            },
            16,
            HdaError::BadStreamTag(16),
        ),
    ] {
        assert_eq!(
            codec::path_setup_verbs(&info, &path, true, tag, &format, &mut verbs),
            Err(expected)
        );
    }
}

#[test]
fn looping_render_moves_every_byte_in_order_across_wraps_with_two_accesses_per_interrupt() {
    let memory = SimMemory::new(BASE);
    let period = BUFFER / 2;
    let mut rig = rig(&memory, true, period);
    assert_eq!(rig.sim.starts(4), 1);
    let mut pieces: Vec<(u64, u32)> = Vec::new();
    let mut interrupts = 0u32;
    let mut moved_total = 0u64;
    let chunk = 192 * 4; // 4 ms at 48 kHz stereo 16-bit
    for _ in 0..200 {
        let moved = rig
            .sim
            .transfer(true, chunk, &mut |a, l| push_merged(&mut pieces, a, l));
        assert_eq!(moved, chunk);
        moved_total += u64::from(moved);
        // The position buffer holds LPIB; the stream turns it linear.
        let entry = memory.read_u32(POSITIONS + rig.stream.position_buffer_offset());
        assert_eq!(entry, rig.sim.lpib(4));
        assert_eq!(rig.stream.position_from_buffer(entry).unwrap(), moved_total);
        if rig.sim.interrupt_line() {
            let report = rig.controller.service_interrupt(&mut rig.sim);
            assert_eq!(report.streams, rig.stream.interrupt_bit());
            assert_eq!(report.register_accesses, 2, "INTSTS read + SDnSTS write");
            assert!(!rig.sim.interrupt_line(), "acknowledged");
            interrupts += 1;
        }
    }
    assert_eq!(pieces, expected_pieces(&rig.segments, moved_total));
    let periods = u32::try_from(moved_total / u64::from(period)).unwrap();
    assert_eq!(
        interrupts, periods,
        "one interrupt per period, none in between"
    );
    assert_eq!(rig.sim.starts(4), 1, "programmed once, never restarted");
    assert_eq!(rig.stream.stats().position_register_accesses, 0);
    assert_eq!(rig.stream.stats().position_buffer_reads, 200);
}

#[test]
fn ioc_only_where_notifications_are_due() {
    // Four physically contiguous pieces (two of the pages are adjacent);
    // the midpoint notification splits one more.
    for (notifications, entries) in [(1u32, 4usize), (2, 5)] {
        let list = segments(BUFFER / notifications);
        let with_ioc = list.iter().filter(|d| d.interrupt_on_completion).count();
        assert_eq!(with_ioc, usize::try_from(notifications).unwrap());
        assert_eq!(list.len(), entries);
    }
}

/// A bus whose device is gone: every read is all ones.
struct Gone;
impl RegisterBus for Gone {
    fn read8(&mut self, _: u16) -> u8 {
        0xFF
    }
    fn read16(&mut self, _: u16) -> u16 {
        0xFFFF
    }
    fn read32(&mut self, _: u16) -> u32 {
        u32::MAX
    }
    fn write8(&mut self, _: u16, _: u8) {}
    fn write16(&mut self, _: u16, _: u16) {}
    fn write32(&mut self, _: u16, _: u32) {}
}

#[test]
fn the_isr_claims_nothing_on_a_shared_line_and_nothing_from_a_removed_device() {
    let memory = SimMemory::new(BASE);
    let mut rig = rig(&memory, true, BUFFER / 2);
    let report = rig.controller.service_interrupt(&mut rig.sim);
    assert!(!report.claimed());
    assert_eq!(report.register_accesses, 1);
    assert_eq!(rig.controller.stats().not_mine, 1);

    let report = rig.controller.service_interrupt(&mut Gone);
    assert!(
        !report.claimed(),
        "all ones is a missing device, not 30 streams"
    );
}

#[test]
fn capture_moves_through_the_input_descriptor() {
    let memory = SimMemory::new(BASE);
    let mut rig = rig(&memory, false, BUFFER / 2);
    assert_eq!(rig.stream.index(), 0);
    let mut pieces = Vec::new();
    let moved = rig.sim.transfer(false, BUFFER + 4096, &mut |a, l| {
        push_merged(&mut pieces, a, l);
    });
    assert_eq!(moved, BUFFER + 4096);
    assert_eq!(pieces, expected_pieces(&rig.segments, u64::from(moved)));
    let entry = memory.read_u32(POSITIONS + rig.stream.position_buffer_offset());
    assert_eq!(entry, 4096);
    assert_eq!(
        rig.sim.transfer(true, 64, &mut |_, _| {}),
        0,
        "no render stream bound"
    );
}

#[test]
fn a_stale_position_buffer_is_seen_against_the_link_position() {
    // The check an emulator runs when the position register is offered:
    // buffer entry and LPIB agree. With the fault the entry stays put.
    for stale in [false, true] {
        let memory = SimMemory::new(BASE);
        let mut rig = rig(&memory, true, BUFFER / 2);
        rig.sim.faults.stale_position_buffer = stale;
        rig.sim.transfer(true, 4000, &mut |_, _| {});
        let entry = memory.read_u32(POSITIONS + rig.stream.position_buffer_offset());
        let from_buffer = rig.stream.position_from_buffer(entry).unwrap();
        let mut other = rig.stream;
        let from_register = other.position_from_register(&mut rig.sim).unwrap();
        assert_eq!(from_buffer == from_register, !stale);
        assert_eq!(from_register, 4000);
    }
}

#[test]
fn halt_freezes_the_position_and_stop_reprograms_from_zero() {
    let memory = SimMemory::new(BASE);
    let mut rig = rig(&memory, true, BUFFER / 2);
    rig.sim.transfer(true, 1000, &mut |_, _| {});
    assert!(rig.stream.halt(&mut rig.sim, &mut no_stall()));
    assert_eq!(rig.sim.transfer(true, 1000, &mut |_, _| {}), 0, "paused");
    assert_eq!(
        rig.stream.position_from_register(&mut rig.sim).unwrap(),
        1000
    );
    assert!(rig.stream.stop(&mut rig.sim, &mut no_stall()));
    assert_eq!(
        rig.stream.position_from_register(&mut rig.sim),
        Err(HdaError::NotRunning)
    );
    assert_eq!(rig.stream.start(&mut rig.sim), Err(HdaError::NotRunning));
}

/// The physical pieces of `bytes` of DMA in cyclic order from buffer
/// offset `from`, merged where contiguous (read off the unrotated list).
fn pieces_from(segments: &[Descriptor], size: u32, from: u32, bytes: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let (mut at, mut left) = (from, bytes);
    while left > 0 {
        let s = segments
            .iter()
            .find(|s| at >= s.buffer_offset && at - s.buffer_offset < s.length_bytes)
            .unwrap();
        let into = at - s.buffer_offset;
        let len = u32::try_from(left.min(u64::from(s.length_bytes - into))).unwrap();
        push_merged(&mut out, s.address + u64::from(into), len);
        left -= u64::from(len);
        at = (at + len) % size;
    }
    out
}

#[test]
fn a_resume_list_starts_at_the_next_boundary_and_holds_every_byte_once() {
    for notifications in [1, 2] {
        let list = segments(BUFFER / notifications);
        let iocs: Vec<u32> = list
            .iter()
            .filter(|d| d.interrupt_on_completion)
            .map(|d| d.buffer_offset + d.length_bytes)
            .collect();
        for held in (0..BUFFER).step_by(52) {
            let mut rotated = Vec::new();
            let point = resume_list(&list, BUFFER, held, 256, &mut |i, d| {
                assert_eq!(i, rotated.len());
                rotated.push(*d);
                true
            })
            .unwrap();
            let expected_origin = held.next_multiple_of(128) % BUFFER;
            assert_eq!(point.origin, expected_origin, "held at {held}");
            assert_eq!(
                (u64::from(held) + u64::from(point.skipped)) % u64::from(BUFFER),
                u64::from(point.origin)
            );
            assert!(point.skipped < 128);
            assert_eq!(usize::from(point.entries), rotated.len());
            assert_eq!(rotated[0].buffer_offset, point.origin);
            assert!(rotated.iter().all(|d| d.address % 128 == 0));
            assert_eq!(
                rotated
                    .iter()
                    .map(|d| u64::from(d.length_bytes))
                    .sum::<u64>(),
                u64::from(BUFFER)
            );
            // Played in order, the rotated list is the buffer from origin.
            let mut played = Vec::new();
            for d in &rotated {
                push_merged(&mut played, d.address, d.length_bytes);
            }
            assert_eq!(
                played,
                pieces_from(&list, BUFFER, point.origin, u64::from(BUFFER))
            );
            // The same packet ends raise the interrupt, nothing else.
            let mut rotated_iocs: Vec<u32> = rotated
                .iter()
                .filter(|d| d.interrupt_on_completion)
                .map(|d| d.buffer_offset + d.length_bytes)
                .collect();
            rotated_iocs.sort_unstable();
            assert_eq!(rotated_iocs, iocs, "held at {held}");
        }
    }
}

#[test]
fn a_full_resume_list_starts_at_the_next_entry_and_bad_geometry_is_refused() {
    let list = segments(BUFFER / 2);
    let full = list.len();
    let inside = list[1].buffer_offset + 200;
    let point = resume_list(&list, BUFFER, inside, full, &mut |_, _| true).unwrap();
    assert_eq!(point.origin, list[2].buffer_offset, "no room to split");
    assert_eq!(usize::from(point.entries), full);
    assert_eq!(point.skipped, list[2].buffer_offset - inside);
    let at_boundary = list[1].buffer_offset;
    let point = resume_list(&list, BUFFER, at_boundary, full, &mut |_, _| true).unwrap();
    assert_eq!((point.origin, point.skipped), (at_boundary, 0));
    for (list, size, held) in [
        (&list[..], BUFFER, BUFFER),
        (&list[..], BUFFER + 128, 0),
        (&list[1..], BUFFER, 0),
        (&list[..0], BUFFER, 0),
    ] {
        assert_eq!(
            resume_list(list, size, held, 256, &mut |_, _| true),
            Err(HdaError::BadBufferGeometry)
        );
    }
    assert_eq!(
        resume_list(&list, BUFFER, 0, 256, &mut |_, _| false),
        Err(HdaError::BadBufferGeometry),
        "a list that could not be written"
    );
}

#[test]
fn a_stream_goes_on_at_its_byte_after_the_controller_lost_everything() {
    let memory = SimMemory::new(BASE);
    let mut rig = rig(&memory, true, BUFFER / 2);
    // Held mid-entry, off any 128-byte boundary, in the second lap.
    let before = u64::from(BUFFER) + 1000;
    let mut pieces = Vec::new();
    for _ in 0..2 {
        let chunk = u32::try_from(before / 2).unwrap();
        rig.sim
            .transfer(true, chunk, &mut |a, l| push_merged(&mut pieces, a, l));
        let entry = memory.read_u32(POSITIONS + rig.stream.position_buffer_offset());
        rig.stream.position_from_buffer(entry).unwrap();
    }
    assert!(rig.stream.halt(&mut rig.sim, &mut no_stall()));
    let held = rig.stream.last_position();
    assert_eq!(held, before);
    // Power loss: the controller and codec are reset; the driver brings
    // them up again and sets the path up as at open.
    rig.controller = up(&mut rig.sim, &memory, Transport::Rings);
    assert_eq!(rig.sim.lpib(4), 0);
    let info = codec::walk(0, &mut send_fn(&mut rig.controller, &mut rig.sim, &memory)).unwrap();
    let format = PcmFormat {
        rate: 48_000,
        bits: 16,
        channels: 2,
    };
    let mut verbs = [Verb::decode(0); 7];
    let n = codec::path_setup_verbs(&info, &info.render.unwrap(), true, 1, &format, &mut verbs)
        .unwrap();
    for verb in &verbs[..n] {
        send_fn(&mut rig.controller, &mut rig.sim, &memory)(*verb).unwrap();
    }
    let offset = u32::try_from(held % u64::from(BUFFER)).unwrap();
    let mut list = [0u8; 65 * 16];
    let point = resume_list(&rig.segments, BUFFER, offset, 256, &mut |i, d| {
        encode(
            &SgProfile::HDA,
            core::slice::from_ref(d),
            &mut list[i * 16..],
        )
        .is_ok()
    })
    .unwrap();
    assert_eq!((point.origin, point.skipped), (1024, 24));
    memory.store(BDL, &list[..usize::from(point.entries) * 16]);
    rig.controller
        .enable_position_buffer(&mut rig.sim, POSITIONS)
        .unwrap();
    let resumed_at = held + u64::from(point.skipped);
    rig.stream
        .program_resuming(
            &mut rig.sim,
            StreamProgram {
                bdl_physical: BDL,
                entries: point.entries,
                cyclic_bytes: BUFFER,
                format: format.encode().unwrap(),
                tag: 1,
            },
            resumed_at,
            &mut no_stall(),
        )
        .unwrap();
    rig.stream.start(&mut rig.sim).unwrap();
    let mut after = Vec::new();
    let mut moved = 0u64;
    for _ in 0..60 {
        moved += u64::from(
            rig.sim
                .transfer(true, 700, &mut |a, l| push_merged(&mut after, a, l)),
        );
        let entry = memory.read_u32(POSITIONS + rig.stream.position_buffer_offset());
        assert_eq!(
            rig.stream.position_from_buffer(entry).unwrap(),
            resumed_at + moved,
            "the position goes on from the held byte"
        );
    }
    assert!(moved > 2 * u64::from(BUFFER), "wrapped twice");
    assert_eq!(pieces, pieces_from(&rig.segments, BUFFER, 0, before));
    assert_eq!(
        after,
        pieces_from(&rig.segments, BUFFER, point.origin, moved),
        "the DMA goes on at the boundary after the held byte, in buffer order"
    );
}

#[test]
fn program_checks_its_inputs() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let _controller = up(&mut sim, &memory, Transport::Rings);
    let good = StreamProgram {
        bdl_physical: BDL,
        entries: 4,
        cyclic_bytes: 4096,
        format: 0x11,
        tag: 1,
    };
    let mut stream = Stream::new(4, Direction::Render);
    assert_eq!(stream.program(&mut sim, good, &mut no_stall()), Ok(()));
    for (bad, expected) in [
        (
            StreamProgram { entries: 0, ..good },
            HdaError::BadBufferGeometry,
        ),
        (
            StreamProgram {
                entries: 257,
                ..good
            },
            HdaError::BadBufferGeometry,
        ),
        (
            StreamProgram {
                cyclic_bytes: 0,
                ..good
            },
            HdaError::BadBufferGeometry,
        ),
        (
            StreamProgram {
                bdl_physical: BDL + 8,
                ..good
            },
            HdaError::BadAddress(BDL + 8),
        ),
        (StreamProgram { tag: 0, ..good }, HdaError::BadStreamTag(0)),
    ] {
        assert_eq!(
            stream.program(&mut sim, bad, &mut no_stall()),
            Err(expected)
        );
    }
    assert_eq!(stream.fifo_bytes(&mut sim), SIM_FIFO_BYTES);
    assert_eq!(sim.unknown_accesses(), 0);
}

#[test]
fn the_position_tracker_wraps_and_refuses_values_beyond_the_buffer() {
    let mut t = PositionTracker::new(1000);
    assert_eq!(t.update(400), Ok(400));
    assert_eq!(t.update(900), Ok(900));
    assert_eq!(t.update(100), Ok(1100));
    assert_eq!(t.update(1000), Ok(2000), "LPIB == CBL reads as the wrap");
    assert_eq!(
        t.update(1001),
        Err(HdaError::PositionOutOfRange { lpib: 1001 })
    );
    assert_eq!(t.linear(), 2000);
}

#[test]
fn the_wall_clock_counts_at_24_mhz() {
    let memory = SimMemory::new(BASE);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let _controller = up(&mut sim, &memory, Transport::Rings);
    let first = Controller::wall_clock(&mut sim);
    sim.advance_ns(1_000_000);
    let second = Controller::wall_clock(&mut sim);
    assert_eq!(second.wrapping_sub(first), 24_000);
    assert_eq!(super::WALL_CLOCK_HZ, (24_000_000, 1));
}
