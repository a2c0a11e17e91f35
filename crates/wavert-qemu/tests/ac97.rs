//! wavert-core's AC'97 back-end on QEMU's AC'97 device model.
//!
//! These tests set QEMU up themselves ([`ensure_qemu`]) and fail with the
//! reason when that is impossible: a QEMU test that silently skips proves
//! nothing.
//!
//! Each test prints one `wavert-qemu figures:` line that `cargo xtask`
//! collects into its summary.
#![allow(
    clippy::cast_precision_loss,
    reason = "figures for the report: byte and interrupt counts stay far below 2^52"
)]

mod common;

use std::f64::consts::PI;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use common::{install, leading_silence, wav_data};
use wavert_core::ac97::{Channel, ChannelKind, Codec};
use wavert_core::geometry::{CyclicBuffer, PAGE_SIZE};
use wavert_core::sg::{build, Descriptor, SgProfile};
use wavert_qemu::{ensure_qemu, Audiodev, Machine};

const MS: u64 = 1_000_000;
/// QEMU's audio timer period: DMA moves on these ticks.
const TICK_NS: u64 = 10 * MS;
const FRAME_BYTES: u32 = 4;
/// Descriptor lists for PCM out and PCM in, 8-byte aligned below 4 GiB.
const PCM_OUT_LIST: u64 = 0x0010_0000;
const PCM_IN_LIST: u64 = 0x0010_0100;
/// Buffer pages: 33 pages of 4 KiB spread from 16 MiB, never two adjacent
/// in list order, so every page boundary is a descriptor boundary.
const BUFFER_PAGES: usize = 33;
const BUFFER_BYTES: u32 = 32 * PAGE_SIZE;
const PERIOD_BYTES: u32 = PAGE_SIZE;
/// What the capture test fills the buffer with before the engine writes it.
const POISON: u8 = 0xA5;

fn pages() -> Vec<u64> {
    // 7 is coprime with 33: a permutation, spaced two pages apart.
    (0..BUFFER_PAGES as u64)
        .map(|i| 0x0100_0000 + ((i * 7) % BUFFER_PAGES as u64) * 2 * u64::from(PAGE_SIZE))
        .collect()
}

fn segments(pages: &[u64], first_page_offset: u32) -> Vec<Descriptor> {
    let buffer = CyclicBuffer::new(pages, first_page_offset, BUFFER_BYTES).unwrap();
    let mut out = vec![Descriptor::default(); 256];
    let n = build(&buffer, &SgProfile::AC97, PERIOD_BYTES, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Frame `k` of the test signal: left a sample counter (starting at 1 so
/// frame 0 is not silence), right a 997 Hz sine.
fn frame(k: u64, rate: u32) -> [u8; 4] {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the counter wraps by design"
    )]
    let left = (k + 1) as u16;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "a test tone: amplitude 12000 fits, k stays far below 2^52"
    )]
    let right = ((2.0 * PI * 997.0 * k as f64 / f64::from(rate)).sin() * 12_000.0).round() as i16;
    let [l0, l1] = left.to_le_bytes();
    let [r0, r1] = right.to_le_bytes();
    [l0, l1, r0, r1]
}

/// The interrupt handler: one channel on the line.
fn service(
    channel: &mut Channel,
    machine: &Machine,
    segments: &[Descriptor],
) -> Result<(), String> {
    channel
        .service_interrupt(&mut machine.bus_master(), &mut machine.ram(), segments)
        .map(|_| ())
        .map_err(|e| format!("ISR: {e:?}"))
}

/// Physical address of byte `offset` of the cyclic buffer.
fn physical(pages: &[u64], first_page_offset: u32, offset: u32) -> u64 {
    let at = first_page_offset + offset;
    pages[(at / PAGE_SIZE) as usize] + u64::from(at % PAGE_SIZE)
}

/// The application side of a render stream: keeps everything between the
/// play position and one buffer ahead written with the signal.
struct Writer {
    pages: Vec<u64>,
    first_page_offset: u32,
    rate: u32,
    written: u64,
}

impl Writer {
    fn fill_to(&mut self, machine: &Machine, end: u64) {
        let size = u64::from(BUFFER_BYTES);
        while self.written < end {
            let offset = u32::try_from(self.written % size).unwrap();
            let in_page = PAGE_SIZE - (self.first_page_offset + offset) % PAGE_SIZE;
            let len = u64::from(in_page.min(BUFFER_BYTES - offset)).min(end - self.written);
            let bytes: Vec<u8> = (0..len / 4)
                .flat_map(|i| frame(self.written / 4 + i, self.rate))
                .collect();
            let at = physical(&self.pages, self.first_page_offset, offset);
            machine.ram().write_bytes(at, &bytes).unwrap();
            self.written += len;
        }
    }
}

struct RenderResult {
    /// The WAV file's sample data.
    pcm: Vec<u8>,
    stats: wavert_core::ac97::ChannelStats,
    interrupts_raised: u64,
    register_accesses: u64,
    final_position: u64,
    virtual_seconds: f64,
    wall_seconds: f64,
}

/// Plays the signal at `rate` for `ticks` audio ticks; at tick `late_at`
/// the ISR is held off for `late_ns` of virtual time (one long step).
fn render(rate: u32, first_page_offset: u32, ticks: u32, late: Option<(u32, u64)>) -> RenderResult {
    let started = Instant::now();
    let install = install();
    let wav = std::env::temp_dir().join(format!(
        "wavert-qemu-render-{}-{rate}-{}.wav",
        std::process::id(),
        late.map_or(0, |l| l.0)
    ));
    let machine = Machine::start(
        install,
        &Audiodev::Wav {
            path: wav.clone(),
            frequency: rate,
        },
    )
    .unwrap();
    machine.firmware_setup().unwrap();
    let codec = Codec::bring_up(
        &mut machine.mixer(),
        &mut machine.bus_master(),
        rate,
        rate,
        &mut |us| {
            machine.clock_step(u64::from(us) * 1_000).unwrap();
        },
    )
    .unwrap();
    assert_eq!(codec.render_rate(), rate);

    let pages = pages();
    let segments = segments(&pages, first_page_offset);
    let mut writer = Writer {
        pages,
        first_page_offset,
        rate,
        written: 0,
    };
    writer.fill_to(&machine, u64::from(BUFFER_BYTES));
    let mut channel = Channel::new(ChannelKind::PcmOut, PCM_OUT_LIST).unwrap();
    channel
        .start(&mut machine.bus_master(), &mut machine.ram(), &segments)
        .unwrap();
    let accesses_at_start = machine.register_accesses();

    let mut last_position = 0;
    for tick in 0..ticks {
        let step = match late {
            Some((at, ns)) if at == tick => ns,
            _ => TICK_NS,
        };
        machine
            .step_and_deliver(step, &mut |m| service(&mut channel, m, &segments))
            .unwrap();
        let position = channel
            .position(&mut machine.bus_master(), &segments, BUFFER_BYTES)
            .unwrap();
        assert!(
            position >= last_position,
            "position went back: {last_position} -> {position}"
        );
        last_position = position;
        writer.fill_to(&machine, position + u64::from(BUFFER_BYTES));
    }
    let register_accesses = machine.register_accesses() - accesses_at_start;
    let interrupts_raised = machine.interrupts_raised();
    channel.stop(&mut machine.bus_master());
    machine.check().unwrap();
    let virtual_seconds = machine.virtual_ns() as f64 / 1e9;
    machine.shutdown().unwrap();
    let file = fs::read(&wav).unwrap();
    fs::remove_file(&wav).unwrap();
    RenderResult {
        pcm: wav_data(&file),
        stats: channel.stats(),
        interrupts_raised,
        register_accesses,
        final_position: last_position,
        virtual_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
    }
}

/// Bytes QEMU's audio layer may hold between DMA and the WAV back-end:
/// two timer ticks of audio.
fn max_audio_layer_lead(rate: u32) -> u64 {
    2 * u64::from(rate * FRAME_BYTES) * TICK_NS / 1_000_000_000
}

fn figures(name: &str, r: &RenderResult, rate: u32) {
    let audio_seconds = r.final_position as f64 / f64::from(rate * FRAME_BYTES);
    println!(
        "wavert-qemu figures: {name}: {:.1} s audio in {:.2} s wall; {:.1} interrupts/s, \
         {:.1} register accesses/s (ISR {:.2}/interrupt, {} halts); virtual {:.1} s",
        audio_seconds,
        r.wall_seconds,
        r.stats.interrupts as f64 / audio_seconds,
        r.register_accesses as f64 / audio_seconds,
        r.stats.interrupt_register_accesses as f64 / r.stats.interrupts.max(1) as f64,
        r.stats.halts,
        r.virtual_seconds,
    );
}

fn assert_byte_exact_render(rate: u32, first_page_offset: u32, name: &str) {
    let ticks = 1_050; // 10.5 s of virtual time
    let r = render(rate, first_page_offset, ticks, None);
    figures(name, &r, rate);
    let silence = leading_silence(&r.pcm);
    let played = &r.pcm[silence..];
    let expected: Vec<u8> = (0..played.len() as u64 / 4)
        .flat_map(|k| frame(k, rate))
        .collect();
    let first_difference = played.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "output differs from the signal (no gap, no change allowed)"
    );
    assert_eq!(played.len() % 4, 0);
    let seconds = played.len() as f64 / f64::from(rate * FRAME_BYTES);
    assert!(
        seconds >= 10.0,
        "only {seconds:.2} s of signal reached the WAV file"
    );
    // QEMU's audio layer buffers what DMA fetched for up to a tick before
    // the WAV back-end writes it: the file trails the position by that much.
    let lead = r.final_position - played.len() as u64;
    assert!(
        lead <= max_audio_layer_lead(rate),
        "WAV trails the position by {lead} bytes"
    );
    assert_eq!(
        r.stats.halts, 0,
        "steady state must never starve the engine"
    );
    assert_eq!(r.stats.fifo_errors, 0);
    assert_eq!(r.stats.not_mine, 0);
    assert_eq!(r.stats.interrupt_register_accesses, 3 * r.stats.interrupts);
    assert_eq!(r.interrupts_raised, r.stats.interrupts);
    // One interrupt per segment completed.
    let segment_count = segments(&pages(), first_page_offset).len() as u64;
    let completed_segments = r.final_position * segment_count / u64::from(BUFFER_BYTES);
    assert!(r.stats.interrupts.abs_diff(completed_segments) <= 1);
}

#[test]
fn render_48k_is_byte_exact_without_halts() {
    assert_byte_exact_render(48_000, 0, "render 48 kHz");
}

#[test]
fn render_44k1_from_mid_page_is_byte_exact_without_halts() {
    assert_byte_exact_render(44_100, 0x800, "render 44.1 kHz");
}

#[test]
fn late_interrupt_halts_then_recovers_in_order() {
    let rate = 48_000;
    // At 2 s, one 1.5 s step: longer than the 31 pages (~660 ms) queued.
    let r = render(rate, 0, 400, Some((200, 1_500 * MS)));
    figures("render 48 kHz, late ISR", &r, rate);
    assert_eq!(r.stats.halts, 1, "exactly the induced halt");
    assert_eq!(r.stats.run_bit_restarts, 0, "QEMU resumes on the new LVI");
    let pcm = &r.pcm[leading_silence(&r.pcm)..];
    // The signal must come out in order with nothing skipped or repeated;
    // while halted QEMU fills with the last frame (BUP) or silence.
    let mut next = 0u64;
    let mut filler = 0u64;
    for f in pcm.chunks_exact(4) {
        if f == frame(next, rate) {
            next += 1;
        } else if next > 0 && (f == frame(next - 1, rate) || f == [0, 0, 0, 0]) {
            filler += 1;
        } else {
            panic!("frame {next}: got {f:?}, want {:?}", frame(next, rate));
        }
    }
    assert!(filler > 0, "the halt must be audible as filler");
    let lead = r.final_position - next * 4;
    assert!(
        lead <= max_audio_layer_lead(rate),
        "WAV trails the position by {lead} bytes"
    );
    // After the restart the engine ran clean: the one halt was the induced one,
    // and audio continued for the remaining ~2 s.
    assert!(next > u64::from(rate) * 3, "{next} frames");
}

/// The whole cyclic buffer, in buffer order.
fn read_buffer(m: &Machine, pages: &[u64], first_page_offset: u32) -> Vec<u8> {
    let mut out = vec![0u8; BUFFER_BYTES as usize];
    let mut offset = 0u32;
    while offset < BUFFER_BYTES {
        let in_page =
            (PAGE_SIZE - (first_page_offset + offset) % PAGE_SIZE).min(BUFFER_BYTES - offset);
        let at = physical(pages, first_page_offset, offset);
        m.ram()
            .read_bytes(at, &mut out[offset as usize..(offset + in_page) as usize])
            .unwrap();
        offset += in_page;
    }
    out
}

/// Fills linear buffer bytes `from..to` with [`POISON`], as a capture
/// client marks what it has consumed.
fn poison(m: &Machine, pages: &[u64], first_page_offset: u32, from: u64, to: u64) {
    let mut linear = from;
    while linear < to {
        // One write per piece that stays inside a page and the buffer.
        let offset = u32::try_from(linear % u64::from(BUFFER_BYTES)).unwrap();
        let in_page =
            (PAGE_SIZE - (first_page_offset + offset) % PAGE_SIZE).min(BUFFER_BYTES - offset);
        let len = u64::from(in_page).min(to - linear);
        m.ram()
            .write_bytes(
                physical(pages, first_page_offset, offset),
                &vec![POISON; usize::try_from(len).unwrap()],
            )
            .unwrap();
        linear += len;
    }
}

#[test]
fn capture_lands_where_positions_say() {
    let started = Instant::now();
    let rate = 48_000;
    let install = install();
    let machine = Machine::start(install, &Audiodev::None { frequency: rate }).unwrap();
    machine.firmware_setup().unwrap();
    Codec::bring_up(
        &mut machine.mixer(),
        &mut machine.bus_master(),
        rate,
        rate,
        &mut |us| {
            machine.clock_step(u64::from(us) * 1_000).unwrap();
        },
    )
    .unwrap();
    let first_page_offset = 0x400;
    let pages = pages();
    let segments = segments(&pages, first_page_offset);
    poison(
        &machine,
        &pages,
        first_page_offset,
        0,
        u64::from(BUFFER_BYTES),
    );
    let mut channel = Channel::new(ChannelKind::PcmIn, PCM_IN_LIST).unwrap();
    channel
        .start(&mut machine.bus_master(), &mut machine.ram(), &segments)
        .unwrap();
    let accesses_at_start = machine.register_accesses();
    let mut consumed = 0u64;
    for _ in 0..1_050 {
        machine
            .step_and_deliver(TICK_NS, &mut |m| service(&mut channel, m, &segments))
            .unwrap();
        let position = channel
            .position(&mut machine.bus_master(), &segments, BUFFER_BYTES)
            .unwrap();
        assert!(position >= consumed);
        assert!(
            position - consumed <= u64::from(BUFFER_BYTES),
            "overrun: the test reads every tick"
        );
        let buffer = read_buffer(&machine, &pages, first_page_offset);
        for (offset, &byte) in buffer.iter().enumerate() {
            // Linear distance of this byte ahead of what was consumed.
            let size = u64::from(BUFFER_BYTES);
            let ahead = (offset as u64 + size - consumed % size) % size;
            let captured = ahead < position - consumed;
            let want = if captured { 0 } else { POISON };
            assert_eq!(
                byte, want,
                "buffer offset {offset}: consumed {consumed}, position {position}"
            );
        }
        poison(&machine, &pages, first_page_offset, consumed, position);
        consumed = position;
    }
    let register_accesses = machine.register_accesses() - accesses_at_start;
    let stats = channel.stats();
    channel.stop(&mut machine.bus_master());
    machine.check().unwrap();
    let audio_seconds = consumed as f64 / f64::from(rate * FRAME_BYTES);
    println!(
        "wavert-qemu figures: capture 48 kHz: {:.1} s audio in {:.2} s wall; {:.1} interrupts/s, \
         {:.1} register accesses/s (ISR {:.2}/interrupt, {} halts)",
        audio_seconds,
        started.elapsed().as_secs_f64(),
        stats.interrupts as f64 / audio_seconds,
        register_accesses as f64 / audio_seconds,
        stats.interrupt_register_accesses as f64 / stats.interrupts.max(1) as f64,
        stats.halts,
    );
    assert!(audio_seconds >= 10.0, "captured only {audio_seconds:.2} s");
    assert_eq!(stats.halts, 0);
    assert_eq!(stats.fifo_errors, 0);
    assert_eq!(stats.interrupt_register_accesses, 3 * stats.interrupts);
    assert_eq!(machine.interrupts_raised(), stats.interrupts);
    machine.shutdown().unwrap();
}

#[test]
fn setup_is_idempotent_and_cached() {
    let first = install();
    let again = ensure_qemu().unwrap();
    assert!(!again.built_now, "a second call must use the cache");
    assert_eq!(again.module_dir, first.module_dir);
    assert!(again
        .module_dir
        .join(wavert_qemu::setup::MODULE_FILE)
        .is_file());
    let _: PathBuf = again.binary;
}
