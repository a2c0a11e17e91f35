//! wavert-core's HD Audio back-end on QEMU's `intel-hda` / `ich9-intel-hda`
//! controllers with the `hda-output` / `hda-duplex` codecs.
//!
//! As the AC'97 tests: QEMU is set up by the test ([`ensure_qemu`]) and a
//! missing QEMU fails the test with its reason, never skips it. Each test
//! prints one `wavert-qemu figures:` line for `cargo xtask`'s summary.
#![allow(
    clippy::cast_precision_loss,
    reason = "figures for the report: byte and interrupt counts stay far below 2^52"
)]

mod common;

use std::fs;
use std::time::Instant;

use common::{install, leading_silence, wav_data};
use wavert_core::geometry::{CyclicBuffer, PAGE_SIZE};
use wavert_core::hda::codec::{self, CodecInfo, PcmFormat, Verb};
use wavert_core::hda::stream::{Direction, Stream, StreamProgram};
use wavert_core::hda::{Controller, ControllerStats, HdaError, RingMemory, Transport};
use wavert_core::sg::{build, encode, Descriptor, SgProfile};
use wavert_qemu::{Audiodev, Card, Machine};

const MS: u64 = 1_000_000;
/// One step of virtual time between the driver's looks (QEMU's audio
/// timer period; the codec's own transfer timer ticks every 1 ms inside).
const TICK_NS: u64 = 10 * MS;
const FRAME_BYTES: u32 = 4;
const RINGS: RingMemory = RingMemory {
    corb: 0x0010_0000,
    rirb: 0x0010_0400,
};
const BDL: u64 = 0x0010_1000;
const POSITIONS: u64 = 0x0010_2000;
const BUFFER_PAGES: usize = 33;
const BUFFER_BYTES: u32 = 32 * PAGE_SIZE;
/// Two notifications per buffer (the WaveRT event-driven default).
const PERIOD_BYTES: u32 = BUFFER_BYTES / 2;
/// Bytes the codec model holds between the controller's DMA and the audio
/// back-end (hda-codec.c `HDAAudioStream.buf`).
const CODEC_BUFFER_BYTES: u64 = 8192;
const POISON: u8 = 0xA5;

fn pages() -> Vec<u64> {
    pages_at(0x0100_0000)
}

fn pages_at(base: u64) -> Vec<u64> {
    // A permutation of 33 pages spaced two apart: no two adjacent in list
    // order, so every page is its own BDL entry.
    (0..BUFFER_PAGES as u64)
        .map(|i| base + ((i * 7) % BUFFER_PAGES as u64) * 2 * u64::from(PAGE_SIZE))
        .collect()
}

fn segments(pages: &[u64], first_page_offset: u32) -> Vec<Descriptor> {
    let buffer = CyclicBuffer::new(pages, first_page_offset, BUFFER_BYTES).unwrap();
    let mut out = vec![Descriptor::default(); 256];
    let n = build(&buffer, &SgProfile::HDA, PERIOD_BYTES, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Frame `k` of the test signal: left a counter from 1, right its
/// bitwise complement, so every frame is distinct and none is silence.
const fn frame(k: u64) -> [u8; 4] {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the counter wraps by design"
    )]
    let left = (k + 1) as u16;
    let [l0, l1] = left.to_le_bytes();
    let [r0, r1] = (!left).to_le_bytes();
    [l0, l1, r0, r1]
}

fn physical(pages: &[u64], first_page_offset: u32, offset: u32) -> u64 {
    let at = first_page_offset + offset;
    pages[(at / PAGE_SIZE) as usize] + u64::from(at % PAGE_SIZE)
}

/// Writes linear buffer bytes `from..to`, one write per piece inside a
/// page, with `bytes_for(linear, len)`.
fn write_linear(
    machine: &Machine,
    pages: &[u64],
    first_page_offset: u32,
    from: u64,
    to: u64,
    bytes_for: &dyn Fn(u64, u64) -> Vec<u8>,
) {
    let mut linear = from;
    while linear < to {
        let offset = u32::try_from(linear % u64::from(BUFFER_BYTES)).unwrap();
        let in_page =
            (PAGE_SIZE - (first_page_offset + offset) % PAGE_SIZE).min(BUFFER_BYTES - offset);
        let len = u64::from(in_page).min(to - linear);
        let at = physical(pages, first_page_offset, offset);
        machine
            .ram()
            .write_bytes(at, &bytes_for(linear, len))
            .unwrap();
        linear += len;
    }
}

fn signal(linear: u64, len: u64) -> Vec<u8> {
    (0..len / 4).flat_map(|i| frame(linear / 4 + i)).collect()
}

/// A controller brought up, its codec walked, and one stream's path set.
struct Rig {
    controller: Controller,
    info: CodecInfo,
    stream: Stream,
    segments: Vec<Descriptor>,
    vendor_device: u32,
}

fn stall(machine: &Machine) -> impl FnMut(u32) + '_ {
    move |us| machine.clock_step(u64::from(us) * 1_000).unwrap()
}

fn send(controller: &mut Controller, machine: &Machine, verb: Verb) -> Result<u32, HdaError> {
    controller.command(
        &mut machine.hda_registers(),
        &mut machine.ram(),
        verb,
        &mut stall(machine),
    )
}

/// The controller brought up and its codec walked.
struct Brought {
    controller: Controller,
    info: CodecInfo,
    vendor_device: u32,
}

fn bring_up(machine: &Machine) -> Brought {
    let vendor_device = machine.firmware_setup_hda().unwrap();
    let mut controller = Controller::bring_up(
        &mut machine.hda_registers(),
        &mut machine.ram(),
        RINGS,
        Transport::Rings,
        &mut stall(machine),
    )
    .unwrap();
    assert_eq!(
        controller.transport(),
        Transport::Rings,
        "QEMU's rings answer"
    );
    let codec_address = controller.first_codec();
    let info = codec::walk(codec_address, &mut |verb| {
        send(&mut controller, machine, verb)
    })
    .unwrap();
    Brought {
        controller,
        info,
        vendor_device,
    }
}

/// Opens one stream: path verbs, BDL over `pages`, descriptor programmed
/// with its interrupt enabled (not started).
fn open_stream(
    machine: &Machine,
    brought: &mut Brought,
    output: bool,
    rate: u32,
    (pages, first_page_offset): (&[u64], u32),
    (bdl, tag): (u64, u8),
) -> (Stream, Vec<Descriptor>) {
    let info = brought.info;
    let path = if output { info.render } else { info.capture }.unwrap();
    let format = PcmFormat {
        rate,
        bits: 16,
        channels: 2,
    };
    let mut verbs = [Verb::decode(0); 7];
    let n = codec::path_setup_verbs(&info, &path, output, tag, &format, &mut verbs).unwrap();
    for verb in &verbs[..n] {
        send(&mut brought.controller, machine, *verb).unwrap();
    }
    let segments = segments(pages, first_page_offset);
    let mut list = vec![0u8; segments.len() * 16];
    encode(&SgProfile::HDA, &segments, &mut list).unwrap();
    machine.ram().write_bytes(bdl, &list).unwrap();
    let caps = brought.controller.capabilities();
    let (index, direction) = if output {
        (caps.output_descriptor(0).unwrap(), Direction::Render)
    } else {
        (caps.input_descriptor(0).unwrap(), Direction::Capture)
    };
    let mut stream = Stream::new(index, direction);
    stream
        .program(
            &mut machine.hda_registers(),
            StreamProgram {
                bdl_physical: bdl,
                entries: u16::try_from(segments.len()).unwrap(),
                cyclic_bytes: BUFFER_BYTES,
                format: format.encode().unwrap(),
                tag,
            },
            &mut stall(machine),
        )
        .unwrap();
    brought
        .controller
        .set_stream_interrupt(&mut machine.hda_registers(), index, true);
    (stream, segments)
}

fn set_up(machine: &Machine, output: bool, rate: u32, first_page_offset: u32) -> Rig {
    let mut brought = bring_up(machine);
    let (stream, segments) = open_stream(
        machine,
        &mut brought,
        output,
        rate,
        (&pages(), first_page_offset),
        (BDL, 1),
    );
    brought
        .controller
        .enable_position_buffer(&mut machine.hda_registers(), POSITIONS)
        .unwrap();
    Rig {
        controller: brought.controller,
        info: brought.info,
        stream,
        segments,
        vendor_device: brought.vendor_device,
    }
}

/// A machine with `hda-duplex` on the `none` back-end (paced silence in,
/// nothing out), on `intel-hda` or `ich9-intel-hda`.
fn silent_machine(rate: u32, ich9: bool) -> Machine {
    Machine::start_with_card(
        install(),
        &Audiodev::None { frequency: rate },
        Card::Hda { ich9, duplex: true },
    )
    .unwrap()
}

fn position_entry(machine: &Machine, stream: &Stream) -> u32 {
    let mut entry = [0u8; 4];
    machine
        .ram()
        .read_bytes(POSITIONS + stream.position_buffer_offset(), &mut entry)
        .unwrap();
    u32::from_le_bytes(entry)
}

/// What a run measured.
struct Run {
    stats: ControllerStats,
    interrupts_raised: u64,
    final_position: u64,
    register_accesses: u64,
    wall_clock_checks: u32,
    wall_seconds: f64,
    fifo_bytes: u16,
}

/// Runs the stream for `ticks` steps; after each, the position from the
/// position buffer must equal LPIB (the register the buffer mirrors), must
/// not go back, and must track virtual time within the codec's buffer; the
/// wall clock must have advanced 24 ticks per microsecond of virtual time.
/// `after_tick(position)` lets the caller play the application.
fn run(machine: &Machine, rig: &mut Rig, ticks: u32, after_tick: &mut dyn FnMut(u64)) -> Run {
    let started = Instant::now();
    let fifo_bytes = rig.stream.fifo_bytes(&mut machine.hda_registers());
    rig.stream.start(&mut machine.hda_registers()).unwrap();
    let accesses_at_start = machine.register_accesses();
    let mut wall_before = Controller::wall_clock(&mut machine.hda_registers());
    let mut ns_before = machine.virtual_ns();
    let mut last = 0u64;
    let mut wall_clock_checks = 0;
    let controller = &mut rig.controller;
    for _ in 0..ticks {
        machine
            .step_and_deliver(TICK_NS, &mut |m| {
                let report = controller.service_interrupt(&mut m.hda_registers());
                if report.claimed() {
                    Ok(())
                } else {
                    Err("the line rose but INTSTS showed nothing".to_owned())
                }
            })
            .unwrap();
        let entry = position_entry(machine, &rig.stream);
        let mut register_view = rig.stream;
        let position = rig.stream.position_from_buffer(entry).unwrap();
        let from_register = register_view
            .position_from_register(&mut machine.hda_registers())
            .unwrap();
        assert_eq!(
            position, from_register,
            "position buffer stale against LPIB"
        );
        assert!(position >= last, "position went back: {last} -> {position}");
        last = position;
        let wall = Controller::wall_clock(&mut machine.hda_registers());
        let ns = machine.virtual_ns();
        let expected_ticks = (ns * 24 / 1_000) - (ns_before * 24 / 1_000);
        let got = u64::from(wall.wrapping_sub(wall_before));
        assert!(
            got.abs_diff(expected_ticks) <= 24,
            "WALCLK advanced {got} for {expected_ticks} expected"
        );
        wall_clock_checks += 1;
        wall_before = wall;
        ns_before = ns;
        after_tick(position);
    }
    Run {
        stats: rig.controller.stats(),
        interrupts_raised: machine.interrupts_raised(),
        final_position: last,
        register_accesses: machine.register_accesses() - accesses_at_start,
        wall_clock_checks,
        wall_seconds: started.elapsed().as_secs_f64(),
        fifo_bytes,
    }
}

fn figures(name: &str, r: &Run, rate: u32) {
    let audio_seconds = r.final_position as f64 / f64::from(rate * FRAME_BYTES);
    println!(
        "wavert-qemu figures: {name}: {:.1} s audio in {:.2} s wall; {:.1} interrupts/s, \
         {:.1} register accesses/s (ISR {:.2}/interrupt), {} WALCLK checks, SDnFIFOS {} B",
        audio_seconds,
        r.wall_seconds,
        r.stats.interrupts as f64 / audio_seconds,
        r.register_accesses as f64 / audio_seconds,
        r.stats.interrupt_register_accesses as f64 / r.stats.interrupts.max(1) as f64,
        r.wall_clock_checks,
        r.fifo_bytes,
    );
}

fn assert_interrupts_follow_periods(r: &Run) {
    assert_eq!(r.stats.not_mine, 0);
    assert_eq!(
        r.stats.interrupt_register_accesses,
        2 * r.stats.interrupts,
        "two register accesses per interrupt"
    );
    assert_eq!(r.interrupts_raised, r.stats.interrupts);
    let periods = r.final_position / u64::from(PERIOD_BYTES);
    assert!(
        r.stats.interrupts.abs_diff(periods) <= 1,
        "{} interrupts for {periods} periods",
        r.stats.interrupts
    );
}

fn assert_byte_exact_render(rate: u32, card: Card, first_page_offset: u32, name: &str) {
    let wav = std::env::temp_dir().join(format!(
        "wavert-qemu-hda-render-{}-{rate}.wav",
        std::process::id()
    ));
    let machine = Machine::start_with_card(
        install(),
        &Audiodev::Wav {
            path: wav.clone(),
            frequency: rate,
        },
        card,
    )
    .unwrap();
    let mut rig = set_up(&machine, true, rate, first_page_offset);
    let expected_id = match card {
        Card::Hda { ich9: true, .. } => 0x293E_8086,
        _ => 0x2668_8086,
    };
    assert_eq!(rig.vendor_device, expected_id);
    assert_eq!(rig.info.vendor_id >> 16, 0x1AF4, "QEMU's codec");
    let pages = pages();
    write_linear(
        &machine,
        &pages,
        first_page_offset,
        0,
        u64::from(BUFFER_BYTES),
        &signal,
    );
    let mut written = u64::from(BUFFER_BYTES);
    let start_ns = machine.virtual_ns();
    let r = run(&machine, &mut rig, 1_050, &mut |position| {
        // The application: everything the DMA has passed is refilled with
        // the signal one buffer ahead.
        let end = position + u64::from(BUFFER_BYTES);
        write_linear(&machine, &pages, first_page_offset, written, end, &signal);
        written = end;
        // QEMU's progress: the codec pulls bytes at the nominal rate of
        // virtual time, at most its buffer ahead of the back-end.
        let due = (machine.virtual_ns() - start_ns) * u64::from(rate * FRAME_BYTES) / 1_000_000_000;
        assert!(
            position.abs_diff(due) <= CODEC_BUFFER_BYTES + 2 * u64::from(rate * FRAME_BYTES) / 100,
            "position {position}, due by virtual time {due}"
        );
    });
    figures(name, &r, rate);
    assert!(rig
        .stream
        .halt(&mut machine.hda_registers(), &mut stall(&machine)));
    machine.check().unwrap();
    machine.shutdown().unwrap();
    let file = fs::read(&wav).unwrap();
    fs::remove_file(&wav).unwrap();
    let pcm = wav_data(&file);
    let silence = leading_silence(&pcm);
    let played = &pcm[silence..];
    let expected = signal(0, played.len() as u64);
    let first_difference = played.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "output differs from the signal");
    let seconds = played.len() as f64 / f64::from(rate * FRAME_BYTES);
    assert!(
        seconds >= 10.0,
        "only {seconds:.2} s of signal reached the WAV file"
    );
    let lead = r.final_position - played.len() as u64;
    assert!(
        lead <= CODEC_BUFFER_BYTES + 2 * u64::from(rate * FRAME_BYTES) / 100,
        "WAV trails the position by {lead} bytes"
    );
    assert_interrupts_follow_periods(&r);
    assert!(r.fifo_bytes > 0);
    assert_eq!(
        rig.segments
            .iter()
            .filter(|d| d.interrupt_on_completion)
            .count(),
        2
    );
}

#[test]
fn hda_render_48k_on_intel_hda_is_byte_exact() {
    assert_byte_exact_render(
        48_000,
        Card::Hda {
            ich9: false,
            duplex: false,
        },
        0,
        "HDA render 48 kHz (intel-hda, hda-output)",
    );
}

#[test]
fn hda_render_44k1_on_ich9_from_mid_page_is_byte_exact() {
    assert_byte_exact_render(
        44_100,
        Card::Hda {
            ich9: true,
            duplex: true,
        },
        0x800,
        "HDA render 44.1 kHz (ich9-intel-hda, hda-duplex)",
    );
}

#[test]
fn hda_capture_lands_where_the_position_buffer_says() {
    let rate = 48_000;
    let machine = silent_machine(rate, false);
    let first_page_offset = 0x400;
    let mut rig = set_up(&machine, false, rate, first_page_offset);
    let pages = pages();
    let poison = |_: u64, len: u64| vec![POISON; usize::try_from(len).unwrap()];
    write_linear(
        &machine,
        &pages,
        first_page_offset,
        0,
        u64::from(BUFFER_BYTES),
        &poison,
    );
    let mut consumed = 0u64;
    let r = run(&machine, &mut rig, 1_050, &mut |position| {
        assert!(position - consumed <= u64::from(BUFFER_BYTES), "overrun");
        // Everything between consumed and position is captured (silence
        // from the `none` back-end), everything else still poison.
        let size = u64::from(BUFFER_BYTES);
        let mut offset = 0u32;
        while offset < BUFFER_BYTES {
            let in_page =
                (PAGE_SIZE - (first_page_offset + offset) % PAGE_SIZE).min(BUFFER_BYTES - offset);
            let mut bytes = vec![0u8; in_page as usize];
            machine
                .ram()
                .read_bytes(physical(&pages, first_page_offset, offset), &mut bytes)
                .unwrap();
            for (i, &byte) in bytes.iter().enumerate() {
                let at = u64::from(offset) + i as u64;
                let ahead = (at + size - consumed % size) % size;
                let want = if ahead < position - consumed {
                    0
                } else {
                    POISON
                };
                assert_eq!(
                    byte, want,
                    "offset {at}: consumed {consumed}, position {position}"
                );
            }
            offset += in_page;
        }
        write_linear(
            &machine,
            &pages,
            first_page_offset,
            consumed,
            position,
            &poison,
        );
        consumed = position;
    });
    figures("HDA capture 48 kHz (intel-hda, hda-duplex)", &r, rate);
    let audio_seconds = r.final_position as f64 / f64::from(rate * FRAME_BYTES);
    assert!(audio_seconds >= 10.0, "captured only {audio_seconds:.2} s");
    assert_interrupts_follow_periods(&r);
    assert!(rig
        .stream
        .stop(&mut machine.hda_registers(), &mut stall(&machine)));
    machine.check().unwrap();
    machine.shutdown().unwrap();
}

#[test]
fn hda_stale_position_buffer_is_caught_and_a_restarted_stream_plays_from_zero() {
    let rate = 48_000;
    let machine = silent_machine(rate, false);
    let mut rig = set_up(&machine, true, rate, 0);
    let pages = pages();
    write_linear(&machine, &pages, 0, 0, u64::from(BUFFER_BYTES), &signal);
    let lpib = |m: &Machine, s: &Stream| {
        let mut view = *s;
        view.position_from_register(&mut m.hda_registers()).unwrap()
    };
    rig.stream.start(&mut machine.hda_registers()).unwrap();
    for _ in 0..50 {
        machine.clock_step(TICK_NS).unwrap();
    }
    // Control: the buffer entry mirrors LPIB.
    let entry = position_entry(&machine, &rig.stream);
    assert!(entry > 0);
    assert_eq!(u64::from(entry), lpib(&machine, &rig.stream));

    // Fault: the position buffer switched off behind the stream's back. The
    // check every run makes (entry == LPIB) now fails, as it must.
    rig.controller
        .disable_position_buffer(&mut machine.hda_registers());
    for _ in 0..10 {
        machine.clock_step(TICK_NS).unwrap();
    }
    assert_eq!(position_entry(&machine, &rig.stream), entry, "stale");
    assert_ne!(
        u64::from(entry),
        lpib(&machine, &rig.stream),
        "a stale position register must be told apart from LPIB"
    );

    // Stop, reprogram, restart: LPIB starts from 0 and the position buffer
    // follows again.
    assert!(rig
        .stream
        .stop(&mut machine.hda_registers(), &mut stall(&machine)));
    let mut brought = Brought {
        controller: rig.controller,
        info: rig.info,
        vendor_device: rig.vendor_device,
    };
    (rig.stream, _) = open_stream(&machine, &mut brought, true, rate, (&pages, 0), (BDL, 1));
    brought
        .controller
        .enable_position_buffer(&mut machine.hda_registers(), POSITIONS)
        .unwrap();
    rig.stream.start(&mut machine.hda_registers()).unwrap();
    for _ in 0..5 {
        machine.clock_step(TICK_NS).unwrap();
    }
    let entry = position_entry(&machine, &rig.stream);
    let position = rig.stream.position_from_buffer(entry).unwrap();
    let five_ticks = 5 * u64::from(rate * FRAME_BYTES) / 100;
    assert!(
        position <= five_ticks + CODEC_BUFFER_BYTES && position > 0,
        "restarted position {position}"
    );
    assert_eq!(position, lpib(&machine, &rig.stream));
    machine.check().unwrap();
    machine.shutdown().unwrap();
}

#[test]
fn hda_render_and_capture_run_at_the_same_time() {
    let rate = 48_000;
    let machine = silent_machine(rate, true);
    let mut brought = bring_up(&machine);
    let render_pages = pages_at(0x0100_0000);
    let capture_pages = pages_at(0x0200_0000);
    let (mut render, _) = open_stream(
        &machine,
        &mut brought,
        true,
        rate,
        (&render_pages, 0),
        (BDL, 1),
    );
    let (mut capture, _) = open_stream(
        &machine,
        &mut brought,
        false,
        rate,
        (&capture_pages, 0),
        (BDL + 0x1000, 2),
    );
    brought
        .controller
        .enable_position_buffer(&mut machine.hda_registers(), POSITIONS)
        .unwrap();
    write_linear(
        &machine,
        &render_pages,
        0,
        0,
        u64::from(BUFFER_BYTES),
        &signal,
    );
    let mut written = u64::from(BUFFER_BYTES);
    render.start(&mut machine.hda_registers()).unwrap();
    capture.start(&mut machine.hda_registers()).unwrap();
    let mut stream_acks = [0u64; 2];
    let controller = &mut brought.controller;
    let (render_bit, capture_bit) = (render.interrupt_bit(), capture.interrupt_bit());
    let mut positions = (0u64, 0u64);
    for _ in 0..1_050 {
        machine
            .step_and_deliver(TICK_NS, &mut |m| {
                let report = controller.service_interrupt(&mut m.hda_registers());
                assert_eq!(report.streams & !(render_bit | capture_bit), 0);
                stream_acks[0] += u64::from(report.streams & render_bit != 0);
                stream_acks[1] += u64::from(report.streams & capture_bit != 0);
                assert_eq!(
                    report.register_accesses,
                    1 + report.streams.count_ones(),
                    "INTSTS once, one status byte per stream"
                );
                Ok(())
            })
            .unwrap();
        let r = render
            .position_from_buffer(position_entry(&machine, &render))
            .unwrap();
        let c = capture
            .position_from_buffer(position_entry(&machine, &capture))
            .unwrap();
        assert!(r >= positions.0 && c >= positions.1);
        positions = (r, c);
        let end = r + u64::from(BUFFER_BYTES);
        write_linear(&machine, &render_pages, 0, written, end, &signal);
        written = end;
    }
    check_duplex(brought.controller.stats(), stream_acks, positions, rate);
    machine.check().unwrap();
    machine.shutdown().unwrap();
}

/// The duplex run's figures line and its checks: both directions ran the
/// whole time at the same rate, each stream's completions match its
/// periods, and every interrupt cost INTSTS plus one byte per stream.
fn check_duplex(stats: ControllerStats, stream_acks: [u64; 2], positions: (u64, u64), rate: u32) {
    let (r, c) = positions;
    println!(
        "wavert-qemu figures: HDA render + capture 48 kHz (ich9-intel-hda, hda-duplex): \
         render {:.1} s, capture {:.1} s, {} interrupts for {} stream completions, \
         ISR {:.2} accesses/interrupt",
        r as f64 / f64::from(rate * FRAME_BYTES),
        c as f64 / f64::from(rate * FRAME_BYTES),
        stats.interrupts,
        stream_acks[0] + stream_acks[1],
        stats.interrupt_register_accesses as f64 / stats.interrupts.max(1) as f64,
    );
    let seconds = |p: u64| p as f64 / f64::from(rate * FRAME_BYTES);
    assert!(seconds(r) >= 10.0 && seconds(c) >= 10.0);
    assert!(
        r.abs_diff(c) <= 2 * CODEC_BUFFER_BYTES,
        "both directions run at the same rate: render {r}, capture {c}"
    );
    for (acks, position) in [(stream_acks[0], r), (stream_acks[1], c)] {
        let periods = position / u64::from(PERIOD_BYTES);
        assert!(
            acks.abs_diff(periods) <= 1,
            "{acks} completions for {periods} periods"
        );
    }
    assert_eq!(
        stats.interrupt_register_accesses,
        stats.interrupts + stream_acks[0] + stream_acks[1]
    );
    assert_eq!(stats.not_mine, 0);
}
