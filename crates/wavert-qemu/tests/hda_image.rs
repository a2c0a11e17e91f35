//! The shipped driver image (`rswavert.sys`, cross-built by `cargo xtask
//! cross`) on QEMU's HD Audio controller: `DriverEntry`, `AddDevice` and
//! `StartDevice` of the image with the controller's PCI resources, its
//! `MmMapIoSpaceEx` window trapped (`wavert_emulator::image::mmio_trap`)
//! and every register access forwarded to QEMU over qtest, its common page
//! from QEMU's guest RAM, its ISR called through the emulated interrupt
//! line and its DPC run by the kernel stand-in; then a render stream played
//! byte-exact through QEMU's `wav` audiodev, and the removal and unload
//! checked for leaks and violations.
//!
//! The image is `RSWAVERT_IMAGE`; the tests are ignored without it and run
//! by `cargo xtask test`'s image stage (`--include-ignored`), which fails
//! if they run none. QEMU that cannot be set up fails them (never skips).
#![allow(
    clippy::cast_precision_loss,
    reason = "figures for the report: byte counts stay far below 2^52"
)]

mod common;
#[path = "common/continuity.rs"]
mod continuity;
#[path = "common/coupling.rs"]
mod coupling;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use common::{install, leading_silence, wav_data};
use continuity::{continuity, QEMU_CODEC_BUFFER_FRAMES};
use coupling::{couple_clocks, Coupling};
use portcls_sys::KSSTATE_RUN;
use wavert_emulator::ac97::qemu_memory_config;
use wavert_emulator::cable::CableAdapter;
use wavert_emulator::engine::{negotiate_format, FormatRequest, Stream};
use wavert_emulator::hda::image_device;
use wavert_emulator::image::kernel::Kernel;
use wavert_emulator::image::{mmio_trap, start_image_adapter};
use wavert_emulator::machine::{ClockMode, Machine as Emu, QPC_PER_MS};
use wavert_emulator::memory::PhysicalMemory;
use wavert_emulator::port::InterruptLine;
use wavert_miniport::adapter::HDA_SUBDEVICES;
use wavert_qemu::machine::{CARD_IRQ, INTEL_HDA_ICH9};
use wavert_qemu::{Audiodev, Card, Machine as Qemu};

const FRAME_BYTES: u32 = 4;

fn image() -> PathBuf {
    std::env::var_os("RSWAVERT_IMAGE")
        .map(PathBuf::from)
        .expect("RSWAVERT_IMAGE must name the cross-built rswavert.sys (cargo xtask cross)")
}

/// Frame `k` of the test signal: left a counter from 1, right its
/// complement, so every frame is distinct and none is silence.
const fn frame(k: u64) -> [u8; 4] {
    #[allow(clippy::cast_possible_truncation, reason = "the counter wraps")]
    let left = (k + 1) as u16;
    let [l0, l1] = left.to_le_bytes();
    let [r0, r1] = (!left).to_le_bytes();
    [l0, l1, r0, r1]
}

struct Signal {
    next: u64,
}

impl Signal {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_exact_mut(4) {
            chunk.copy_from_slice(&frame(self.next));
            self.next += 1;
        }
    }
}

/// QEMU's ICH9 controller writing `wav`, the emulator over its RAM, and
/// the shipped image started on it.
struct ImageRig {
    qemu: Arc<Qemu>,
    emu: Arc<Emu>,
    line: Arc<InterruptLine>,
    adapter: CableAdapter,
    kernel: Arc<Kernel>,
    /// RAM pages and MDLs in use before `DriverEntry`.
    pages_before: usize,
    mdls_before: usize,
    /// Register accesses `StartDevice` made.
    start_accesses: u64,
    build: String,
}

impl ImageRig {
    fn start(wav: &Path, rate: u32) -> Self {
        let path = image();
        let qemu = Arc::new(
            Qemu::start_with_card(
                install(),
                &Audiodev::Wav {
                    path: wav.to_owned(),
                    frequency: rate,
                },
                Card::Hda {
                    ich9: true,
                    duplex: true,
                },
            )
            .unwrap(),
        );
        assert_eq!(qemu.firmware_setup_hda().unwrap(), INTEL_HDA_ICH9);
        let memory = PhysicalMemory::with_file(qemu.ram().path(), qemu_memory_config()).unwrap();
        let emu = Emu::new(memory, ClockMode::Virtual);
        let line = Arc::new(InterruptLine::new(&emu));
        let pages_before = emu.memory.pages_in_use();
        let mdls_before = emu.memory.live_mdls();
        let trapped_at_start = mmio_trap::trapped_accesses();
        let adapter = start_image_adapter(&emu, &path, image_device(&qemu, &line))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let start_accesses = mmio_trap::trapped_accesses() - trapped_at_start;
        let driver = adapter.image().expect("the image runs");
        let build = driver.describe();
        let kernel = Arc::clone(driver.kernel());
        Self {
            qemu,
            emu,
            line,
            adapter,
            kernel,
            pages_before,
            mdls_before,
            start_accesses,
            build,
        }
    }

    /// The 1 ms clock coupling, the image's DPCs run at each step.
    fn couple(&self) -> Coupling {
        let kernel = Arc::clone(&self.kernel);
        couple_clocks(
            &self.emu,
            &self.qemu,
            &self.line,
            CARD_IRQ,
            None,
            move || {
                kernel.run_dpcs();
            },
        )
    }

    /// Removes the image (its removal and unload held to no violation and
    /// no page or MDL left), stops QEMU and returns the audio of its WAV.
    fn finish(self, wav: &Path) -> Vec<u8> {
        let Self {
            qemu,
            emu,
            adapter,
            kernel,
            pages_before,
            mdls_before,
            ..
        } = self;
        drop(kernel);
        adapter.remove();
        let violations = emu.violations();
        assert!(violations.is_empty(), "{violations:#?}");
        assert_eq!(emu.memory.pages_in_use(), pages_before, "pages leaked");
        assert_eq!(emu.memory.live_mdls(), mdls_before, "MDLs leaked");
        qemu.check().unwrap();
        qemu.terminate().unwrap();
        let file = fs::read(wav).unwrap();
        fs::remove_file(wav).unwrap();
        wav_data(&file)
    }
}

/// What one render run saw.
#[derive(Debug, Default)]
struct Played {
    /// The last play position (bytes).
    last: u64,
    monotonic: bool,
    notifications: u64,
    glitches: u64,
    register_checks: u64,
    /// Register accesses in RUN, and interrupts delivered meanwhile.
    run_accesses: u64,
    interrupts: u64,
}

/// Opens the render pin at `rate` with a 100 ms buffer and two
/// notifications, plays the test signal for `ms` of machine time (each
/// packet written at its notification, the position register checked
/// against `GetPosition`), and closes it. With `sleep_at`, the device goes
/// through a system sleep (S3, D3 with every controller register lost, 60
/// ms) at that millisecond; the register is checked only before it (after
/// a resume mid-buffer it counts from the resume boundary).
fn play(rig: &ImageRig, rate: u32, ms: u32, sleep_at: Option<u32>) -> Played {
    let render = rig
        .adapter
        .wave_filter("HdaWaveRender")
        .expect("HdaWaveRender");
    let request = FormatRequest {
        rate,
        bits: 16,
        channels: 2,
        float: false,
        container_bits: 0,
    };
    let (_, format) = negotiate_format(&render.miniport, render.description, 0, &request).unwrap();
    let mut stream = Stream::open(&rig.emu, &render.miniport, 0, false, &format).unwrap();
    stream.allocate(rate * FRAME_BYTES / 10, Some(2)).unwrap();
    stream.register_event().unwrap();
    let latency = stream.hw_latency().unwrap();
    assert_eq!(latency.FifoSize, 256, "QEMU's SDnFIFOS, read by the image");
    let register = stream
        .position_register()
        .unwrap()
        .expect("a position register");
    let mut signal = Signal { next: 0 };
    stream.prefill(&mut |out| signal.fill(out)).unwrap();
    stream.set_state(KSSTATE_RUN).unwrap();
    // From here on only the ISR touches registers: positions come from the
    // position buffer in memory.
    let trapped_before_run = mmio_trap::trapped_accesses();
    let interrupts_before_run = rig.line.delivered();
    let mut played = Played {
        monotonic: true,
        ..Played::default()
    };
    let mut slept = false;
    for t in 0..ms {
        if sleep_at == Some(t) {
            sleep(rig, &mut stream);
            slept = true;
        }
        rig.emu.advance(QPC_PER_MS);
        for _ in 0..stream.take_notifications() {
            let play = stream.position().unwrap();
            played.monotonic &= play >= played.last;
            played.last = play;
            if !slept {
                stream.check_position_register(&register).unwrap();
                played.register_checks += 1;
            }
            stream
                .write_packet(play, &mut |out| signal.fill(out))
                .unwrap();
        }
    }
    played.run_accesses = mmio_trap::trapped_accesses() - trapped_before_run;
    played.interrupts = u64::from(rig.line.delivered() - interrupts_before_run);
    played.glitches = stream.stats.glitches;
    played.notifications = stream.stats.notifications;
    stream.close().unwrap();
    played
}

/// A system sleep through the image's `IAdapterPowerManagement2`: D3, the
/// controller driven into reset by the test (every register lost), 60 ms
/// with the position standing and no event, D0.
fn sleep(rig: &ImageRig, stream: &mut Stream) {
    use portcls_sys::{PowerDeviceD0, PowerDeviceD3, PowerSystemSleeping3, PowerSystemWorking};
    use wavert_core::bus::RegisterBus;
    let portcls = rig.adapter.portcls();
    assert!(portcls.has_power_management(), "the image registered none");
    portcls.query_device_power(PowerDeviceD3).unwrap();
    let held = stream.position().unwrap();
    let before = rig.emu.qpc();
    portcls
        .set_device_power(PowerDeviceD3, Some(PowerSystemSleeping3))
        .unwrap();
    stream.device_unpowered((before, rig.emu.qpc()));
    let accesses = mmio_trap::trapped_accesses();
    rig.qemu
        .hda_registers()
        .write32(wavert_core::hda::reg::GCTL, 0);
    for _ in 0..60 {
        rig.emu.advance(QPC_PER_MS);
        assert_eq!(stream.position().unwrap(), held, "moved in D3");
        assert_eq!(stream.take_notifications(), 0, "signalled in D3");
    }
    assert_eq!(
        mmio_trap::trapped_accesses(),
        accesses,
        "the image touched a register in D3"
    );
    let before = rig.emu.qpc();
    portcls
        .set_device_power(PowerDeviceD0, Some(PowerSystemWorking))
        .unwrap();
    stream.device_powered((before, rig.emu.qpc()));
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn the_image_goes_on_after_a_sleep_on_qemus_ich9_hda() {
    let rate = 48_000;
    let wav = std::env::temp_dir().join(format!(
        "wavert-qemu-hda-image-sleep-{}.wav",
        std::process::id()
    ));
    let rig = ImageRig::start(&wav, rate);
    let coupling = rig.couple();
    let played = play(&rig, rate, 2_000, Some(1_013));
    rig.emu.cancel_timer(coupling.timer);
    let pcm = rig.finish(&wav);
    let c = continuity(&pcm);
    println!(
        "wavert-qemu figures: hda image render 48 kHz (ich9) across one S3 with a controller \
         reset: {} frames of the signal in order, jumps {:?}, {} silent frames inside, \
         position {} at the end",
        c.frames, c.jumps, c.silent_inside, played.last
    );
    assert_eq!(c.wrong, None, "the output is not the signal going forward");
    assert!(c.jumps.len() <= 1, "{:?}", c.jumps);
    assert!(c.jumps.iter().all(|j| *j <= QEMU_CODEC_BUFFER_FRAMES + 32));
    assert!(c.silent_inside <= 60 * 48 + 480, "{}", c.silent_inside);
    // The audio went on after the sleep: nearly 2 s of the signal came
    // out (less the gap, the buffer in flight and QEMU's codec buffer).
    assert!(
        c.frames + c.jumps.iter().sum::<u64>() + 4_800 + QEMU_CODEC_BUFFER_FRAMES
            >= played.last / 4,
        "{} frames out of {}",
        c.frames,
        played.last / 4
    );
    assert!(played.last / 4 >= 95_000, "{} bytes played", played.last);
    assert_eq!(played.glitches, 0);
    assert!(played.monotonic);
    assert!(played.register_checks > 0);
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn the_image_plays_48k_byte_exact_on_qemus_ich9_hda() {
    let started = Instant::now();
    let rate = 48_000;
    let wav =
        std::env::temp_dir().join(format!("wavert-qemu-hda-image-{}.wav", std::process::id()));
    let rig = ImageRig::start(&wav, rate);
    let names: Vec<String> = rig
        .emu
        .registrations()
        .subdevices
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let expected: Vec<&str> = HDA_SUBDEVICES.iter().map(|s| s.name).collect();
    assert_eq!(names, expected, "the image registered other subdevices");
    assert!(rig.start_accesses > 0, "StartDevice reached no register");
    // The image holds its common page (CORB, RIRB, position buffer).
    assert!(rig.emu.memory.pages_in_use() > rig.pages_before);

    let coupling = rig.couple();
    let played = play(&rig, rate, 2_600, None);
    rig.emu.cancel_timer(coupling.timer);
    let services_per_step = coupling.services_per_step.load(Ordering::Relaxed);
    let counters = rig.kernel.counters();
    let (start_accesses, build) = (rig.start_accesses, rig.build.clone());
    let pcm = rig.finish(&wav);
    let pcm = &pcm[leading_silence(&pcm)..];
    let seconds = played.last as f64 / f64::from(rate * FRAME_BYTES);
    println!("{build}");
    println!(
        "wavert-qemu figures: hda image render 48 kHz (ich9): {seconds:.1} s audio in {:.2} s \
         wall; {start_accesses} trapped register accesses at StartDevice, {} in RUN for {} \
         interrupts ({:.2} per interrupt); {} notifications, {} DPCs run, position register \
         agreed {} times; {} bytes reached the WAV file",
        started.elapsed().as_secs_f64(),
        played.run_accesses,
        played.interrupts,
        played.run_accesses as f64 / played.interrupts.max(1) as f64,
        played.notifications,
        counters.dpcs_run,
        played.register_checks,
        pcm.len(),
    );
    let expected: Vec<u8> = (0..pcm.len() as u64 / 4).flat_map(frame).collect();
    assert_eq!(
        pcm.iter().zip(&expected).position(|(a, b)| a != b),
        None,
        "QEMU's output differs from the signal"
    );
    assert!(
        pcm.len() as f64 / f64::from(rate * FRAME_BYTES) >= 2.0,
        "only {} bytes reached the WAV file",
        pcm.len()
    );
    assert_eq!(
        played.glitches, 0,
        "the engine wrote behind the play position"
    );
    assert!(played.monotonic);
    // Two notifications per 100 ms buffer, each from the image's ISR and DPC.
    let expected_notifications = played.last * 2 / u64::from(rate * FRAME_BYTES / 10);
    assert!(
        played.notifications.abs_diff(expected_notifications) <= 2,
        "{} notifications, expected about {expected_notifications}",
        played.notifications
    );
    assert!(counters.dpcs_run >= played.notifications);
    assert!(played.register_checks >= played.notifications);
    // The image's ISR: one INTSTS read and one status write per interrupt,
    // and no other register access in RUN (GetPosition reads memory).
    assert!(played.interrupts > 0 && services_per_step >= 1);
    assert!(played.interrupts.abs_diff(expected_notifications) <= 2);
    assert_eq!(played.run_accesses, 2 * played.interrupts);
}
