//! The AC'97 WaveRT miniport (`wavert_miniport::ac97`) through its COM
//! vtables on QEMU's AC'97: the full path Windows takes.
//!
//! The emulator plays PortCls and the audio engine (`wavert_emulator`:
//! port objects, `IInterruptSync`, `IResourceList`, the engine's stream
//! sequence and the HLK position checks); its physical memory is QEMU's
//! guest RAM file, so the buffers and descriptor lists the miniport
//! allocates through `IPortWaveRTStream` are where QEMU's DMA reads and
//! writes. The miniport's port I/O goes over qtest. A 1 ms emulator timer
//! couples the clocks: it steps QEMU by 1 ms, raises the emulator's
//! interrupt line while QEMU's IRQ 10 is asserted (running the miniport's
//! ISR), then runs the DPC the ISR queued.
//!
//! Tests fail (never skip) when QEMU cannot be set up.
#![allow(
    clippy::cast_precision_loss,
    reason = "figures for the report: byte and interrupt counts stay far below 2^52"
)]

mod common;
#[path = "common/coupling.rs"]
mod coupling;

use std::f64::consts::PI;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use portcls_sys::KSSTATE_RUN;
use wavert_com::ComPtr;
use wavert_core::ac97::ChannelStats;
use wavert_emulator::ac97::{qemu_memory_config, Ac97Platform, QemuIo};
use wavert_emulator::cable::EmuPortCls;
use wavert_emulator::engine::{negotiate_format, FormatRequest, Stream};
use wavert_emulator::hlk;
use wavert_emulator::machine::{ClockMode, Machine as Emu, QPC_PER_MS};
use wavert_emulator::memory::PhysicalMemory;
use wavert_emulator::port::{new_resource_list, InterruptLine, Port, ResourceDescriptor};
use wavert_miniport::ac97::Ac97Device;
use wavert_miniport::adapter::{install_ac97, AC97_SUBDEVICES};
use wavert_miniport::Direction;
use wavert_qemu::machine::{AC97_IRQ, BUS_MASTER_PORT, MIXER_PORT};
use wavert_qemu::{Audiodev, Machine as Qemu};

use common::{install, leading_silence, wav_data};
use coupling::{couple_clocks, Coupling};

const FRAME_BYTES: u32 = 4;

// The platform, port I/O and PortCls services are the emulator's own
// (`wavert_emulator::ac97::{Ac97Platform, QemuIo}`, `cable::EmuPortCls`): one
// double beside each trait, shared with the CLI's AC'97 session.

type Device = Ac97Device<Ac97Platform, QemuIo>;

/// QEMU + emulator + the miniport installed from a PCI resource list.
struct Rig {
    qemu: Arc<Qemu>,
    emu: Arc<Emu>,
    device: Arc<Device>,
    ports: Vec<Port>,
    /// The emulated PortCls, kept for its power IRPs.
    services: EmuPortCls,
    /// What `StartDevice` registered (kept, as the driver keeps it).
    _registration: wavert_miniport::adapter::Registration,
    coupling: Coupling,
    /// While set, the coupling timer steps QEMU without running the ISR.
    hold_isr: Arc<AtomicBool>,
}

impl Rig {
    fn start(audiodev: &Audiodev) -> Self {
        let qemu = Arc::new(Qemu::start(install(), audiodev).unwrap());
        qemu.firmware_setup().unwrap();
        let memory = PhysicalMemory::with_file(qemu.ram().path(), qemu_memory_config()).unwrap();
        let emu = Emu::new(memory, ClockMode::Virtual);
        let line = Arc::new(InterruptLine::new(&emu));
        let services =
            EmuPortCls::new(Arc::clone(&emu), None).with_interrupt_line(Arc::clone(&line));
        let resources = new_resource_list(
            &emu,
            &[
                ResourceDescriptor::port(u64::from(MIXER_PORT), 1024),
                ResourceDescriptor::port(u64::from(BUS_MASTER_PORT), 256),
                ResourceDescriptor::interrupt(u16::from(AC97_IRQ), u32::from(AC97_IRQ), 1),
            ],
        );
        let platform = Ac97Platform::new(Arc::clone(&emu));
        let (device, registration) = install_ac97(
            &services,
            platform,
            QemuIo::new(Arc::clone(&qemu), &emu),
            &resources,
        )
        .unwrap();
        assert_eq!(registration.subdevice_count(), 4);
        assert_eq!(registration.connection_count(), 2);
        let registered = emu.registrations();
        let names: Vec<&str> = registered
            .subdevices
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let expected: Vec<&str> = AC97_SUBDEVICES.iter().map(|s| s.name).collect();
        assert_eq!(names, expected);
        assert_eq!(registered.connections.len(), 2);

        let hold_isr = Arc::new(AtomicBool::new(false));
        let coupling = {
            let device = Arc::clone(&device);
            let hold = Some(Arc::clone(&hold_isr));
            couple_clocks(&emu, &qemu, &line, AC97_IRQ, hold, move || {
                if device.platform().take_dpc() {
                    device.on_dpc();
                }
            })
        };
        let ports = services.take_ports();
        Self {
            qemu,
            emu,
            device,
            ports,
            services,
            _registration: registration,
            coupling,
            hold_isr,
        }
    }

    /// The wave miniport and its descriptor for `direction`.
    fn wave(
        &self,
        direction: Direction,
    ) -> (
        ComPtr<portcls_sys::IMiniportWaveRT>,
        &'static portcls_sys::PCFILTER_DESCRIPTOR,
    ) {
        let port = match direction {
            Direction::Render => &self.ports[0],
            Direction::Capture => &self.ports[2],
        };
        (port.wave_miniport().unwrap(), port.description().unwrap())
    }

    fn format(&self, direction: Direction, rate: u32) -> Vec<u8> {
        let (wave, description) = self.wave(direction);
        let request = FormatRequest {
            rate,
            bits: 16,
            channels: 2,
            float: false,
            container_bits: 0,
        };
        negotiate_format(&wave, description, 0, &request).unwrap().1
    }

    fn shutdown(self) -> Arc<Qemu> {
        self.emu.cancel_timer(self.coupling.timer);
        for port in &self.ports {
            port.unbind();
        }
        drop(self.ports);
        self.services.release_all();
        assert!(
            self.emu.violations().is_empty(),
            "{:?}",
            self.emu.violations()
        );
        self.qemu
    }
}

/// Frame `k` of the test signal: left a counter from 1, right a 997 Hz sine.
fn frame(k: u64, rate: u32) -> [u8; 4] {
    #[allow(clippy::cast_possible_truncation, reason = "the counter wraps")]
    let left = (k + 1) as u16;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "a test tone: amplitude 12000 fits"
    )]
    let right = ((2.0 * PI * 997.0 * k as f64 / f64::from(rate)).sin() * 12_000.0).round() as i16;
    let [l0, l1] = left.to_le_bytes();
    let [r0, r1] = right.to_le_bytes();
    [l0, l1, r0, r1]
}

/// The application: fills what it is given with the next frames.
struct Signal {
    rate: u32,
    next: u64,
}

impl Signal {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_exact_mut(4) {
            chunk.copy_from_slice(&frame(self.next, self.rate));
            self.next += 1;
        }
    }
}

/// Closes the stream, shuts QEMU down (which finalises its WAV file) and
/// returns the file's samples, removing it.
fn close_and_read_wav(stream: Stream, rig: Rig, wav: &std::path::Path) -> Vec<u8> {
    stream.close().unwrap();
    let qemu = rig.shutdown();
    qemu.check().unwrap();
    qemu.terminate().unwrap();
    let file = fs::read(wav).unwrap();
    fs::remove_file(wav).unwrap();
    wav_data(&file)
}

struct RenderRun {
    pcm: Vec<u8>,
    channel: ChannelStats,
    device: wavert_miniport::ac97::Ac97Stats,
    glitches: u64,
    notifications: u64,
    final_position: u64,
    register_accesses: u64,
    wall_seconds: f64,
    monotonic: bool,
}

/// Plays the signal through the miniport for `ms` of virtual time with a
/// buffer of `buffer_ms`; `late` = (at ms, for ms) holds the ISR off.
fn render(rate: u32, ms: u64, buffer_ms: u32, late: Option<(u64, u64)>) -> RenderRun {
    let started = Instant::now();
    let wav = std::env::temp_dir().join(format!(
        "wavert-qemu-miniport-{}-{rate}-{}.wav",
        std::process::id(),
        late.map_or(0, |l| l.0)
    ));
    let rig = Rig::start(&Audiodev::Wav {
        path: wav.clone(),
        frequency: rate,
    });
    let bytes = rig.format(Direction::Render, rate);
    let (wave, _) = rig.wave(Direction::Render);
    let mut stream = Stream::open(&rig.emu, &wave, 0, false, &bytes).unwrap();
    let granted = stream
        .allocate(rate * FRAME_BYTES * buffer_ms / 1000, Some(2))
        .unwrap();
    assert!(granted > 0);
    stream.register_event().unwrap();
    let latency = stream.hw_latency().unwrap();
    assert_eq!(latency.FifoSize, wavert_miniport::ac97::stream::FIFO_BYTES);
    let mut signal = Signal { rate, next: 0 };
    stream.prefill(&mut |out| signal.fill(out)).unwrap();
    let accesses_at_start = rig.qemu.register_accesses();
    stream.set_state(KSSTATE_RUN).unwrap();
    let mut last = 0;
    let mut monotonic = true;
    for t in 0..ms {
        if let Some((at, len)) = late {
            rig.hold_isr
                .store(t >= at && t < at + len, Ordering::Release);
        }
        rig.emu.advance(QPC_PER_MS);
        for _ in 0..stream.take_notifications() {
            let play = stream.position().unwrap();
            monotonic &= play >= last;
            last = play;
            stream
                .write_packet(play, &mut |out| signal.fill(out))
                .unwrap();
        }
    }
    let final_position = stream.position().unwrap();
    let register_accesses = rig.qemu.register_accesses() - accesses_at_start;
    let channel = rig.device.channel_stats(Direction::Render).unwrap();
    let device = rig.device.stats();
    let glitches = stream.stats.glitches;
    let notifications = stream.stats.notifications;
    RenderRun {
        pcm: close_and_read_wav(stream, rig, &wav),
        channel,
        device,
        glitches,
        notifications,
        final_position,
        register_accesses,
        wall_seconds: started.elapsed().as_secs_f64(),
        monotonic,
    }
}

fn figures(name: &str, r: &RenderRun, rate: u32) {
    let seconds = r.final_position as f64 / f64::from(rate * FRAME_BYTES);
    println!(
        "wavert-qemu figures: miniport {name}: {seconds:.1} s audio in {:.2} s wall; \
         {:.1} interrupts/s, {:.1} register accesses/s (ISR {:.2}/interrupt, {} halts); \
         {} notifications, {} DPCs",
        r.wall_seconds,
        r.channel.interrupts as f64 / seconds,
        r.register_accesses as f64 / seconds,
        r.channel.interrupt_register_accesses as f64 / r.channel.interrupts.max(1) as f64,
        r.channel.halts,
        r.notifications,
        r.device.dpcs_queued,
    );
}

fn assert_byte_exact(rate: u32, name: &str) {
    let r = render(rate, 10_500, 100, None);
    figures(name, &r, rate);
    let played = &r.pcm[leading_silence(&r.pcm)..];
    let expected: Vec<u8> = (0..played.len() as u64 / 4)
        .flat_map(|k| frame(k, rate))
        .collect();
    assert_eq!(
        played.iter().zip(&expected).position(|(a, b)| a != b),
        None,
        "QEMU's output differs from the signal"
    );
    let seconds = played.len() as f64 / f64::from(rate * FRAME_BYTES);
    assert!(seconds >= 10.0, "only {seconds:.2} s reached the WAV file");
    assert_eq!(r.glitches, 0, "the engine wrote behind the play position");
    assert!(r.monotonic);
    assert_eq!(
        r.channel.halts, 0,
        "steady state must never starve the engine"
    );
    assert_eq!(r.channel.fifo_errors, 0);
    assert_eq!(
        r.channel.interrupt_register_accesses,
        3 * r.channel.interrupts
    );
    assert_eq!(r.device.service_errors, 0);
    // Two notifications per 100 ms buffer.
    let expected_notifications = r.final_position * 2 / u64::from(rate * FRAME_BYTES / 10);
    assert!(
        r.notifications.abs_diff(expected_notifications) <= 2,
        "{} notifications, expected about {expected_notifications}",
        r.notifications
    );
    // Events come only from the DPC, never from the ISR.
    assert!(r.device.dpcs_queued >= r.notifications);
}

#[test]
fn miniport_render_48k_is_byte_exact_without_halts() {
    assert_byte_exact(48_000, "render 48 kHz");
}

#[test]
fn miniport_render_44k1_is_byte_exact_without_halts() {
    assert_byte_exact(44_100, "render 44.1 kHz");
}

#[test]
fn miniport_late_interrupt_halts_then_recovers_in_order() {
    let rate = 48_000;
    // A 1 s buffer: the 31 queued segments (~660 ms) run out during a
    // 1.5 s hold, and the client still has data ahead when it resumes.
    let r = render(rate, 4_000, 1_000, Some((2_000, 1_500)));
    figures("render 48 kHz, late ISR", &r, rate);
    assert_eq!(r.channel.halts, 1, "exactly the induced halt");
    assert!(r.monotonic, "position went back");
    assert_eq!(r.glitches, 0);
    let pcm = &r.pcm[leading_silence(&r.pcm)..];
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
    assert!(next > u64::from(rate) * 2, "{next} frames");
}

#[test]
fn miniport_capture_positions_and_notifications() {
    let started = Instant::now();
    let rate = 48_000;
    let rig = Rig::start(&Audiodev::None { frequency: rate });
    let bytes = rig.format(Direction::Capture, rate);
    let (wave, _) = rig.wave(Direction::Capture);
    let mut stream = Stream::open(&rig.emu, &wave, 0, true, &bytes).unwrap();
    let size = stream.allocate(rate * FRAME_BYTES / 10, Some(2)).unwrap();
    stream.register_event().unwrap();
    let accesses_at_start = rig.qemu.register_accesses();
    stream.set_state(KSSTATE_RUN).unwrap();
    let mut sink = Vec::new();
    let mut last = 0;
    for _ in 0..10_500 {
        rig.emu.advance(QPC_PER_MS);
        for _ in 0..stream.take_notifications() {
            let recorded = stream.position().unwrap();
            assert!(recorded >= last, "position went back");
            last = recorded;
            stream.read_packet(recorded, &mut sink).unwrap();
        }
    }
    let channel = rig.device.channel_stats(Direction::Capture).unwrap();
    let register_accesses = rig.qemu.register_accesses() - accesses_at_start;
    let seconds = last as f64 / f64::from(rate * FRAME_BYTES);
    println!(
        "wavert-qemu figures: miniport capture 48 kHz: {seconds:.1} s audio in {:.2} s wall; \
         {:.1} interrupts/s, {:.1} register accesses/s (ISR {:.2}/interrupt, {} halts); \
         {} notifications",
        started.elapsed().as_secs_f64(),
        channel.interrupts as f64 / seconds,
        register_accesses as f64 / seconds,
        channel.interrupt_register_accesses as f64 / channel.interrupts.max(1) as f64,
        channel.halts,
        stream.stats.notifications,
    );
    assert!(seconds >= 10.0, "captured only {seconds:.2} s");
    assert_eq!(stream.stats.glitches, 0);
    let expected = last * 2 / u64::from(size);
    assert!(stream.stats.notifications.abs_diff(expected) <= 2);
    assert_eq!(
        sink.len() as u64,
        stream.stats.notifications * u64::from(size / 2)
    );
    assert!(
        sink.iter().all(|&b| b == 0),
        "the none backend records silence"
    );
    assert_eq!(channel.halts, 0);
    assert_eq!(channel.interrupt_register_accesses, 3 * channel.interrupts);
    stream.close().unwrap();
    let qemu = rig.shutdown();
    qemu.check().unwrap();
}

fn hlk_on(direction: Direction) {
    let rate = 48_000;
    let rig = Rig::start(&Audiodev::None { frequency: rate });
    let bytes = rig.format(direction, rate);
    let (wave, _) = rig.wave(direction);
    let capture = direction == Direction::Capture;
    let findings =
        hlk::run_wavetest_positions(&rig.emu, &wave, 0, capture, &bytes, rate * FRAME_BYTES / 10)
            .unwrap();
    for f in &findings {
        println!("HLK {direction:?} {}: {:?}", f.rule, f.outcome);
    }
    let report = hlk::run_ks_position_test(&rig.emu, &wave, 0, capture, &bytes).unwrap();
    println!("HLK {direction:?} KS position: {report:?}");
    println!(
        "wavert-qemu figures: miniport HLK {direction:?}: WaveTest {}/{} rules, KS position {}",
        findings.iter().filter(|f| f.outcome.is_ok()).count(),
        findings.len(),
        if report.passed() { "passed" } else { "FAILED" }
    );
    assert!(findings.iter().all(|f| f.outcome.is_ok()), "{findings:?}");
    assert!(report.passed(), "{report:?}");
    assert!(rig.coupling.services_per_step.load(Ordering::Relaxed) >= 1);
    rig.shutdown().check().unwrap();
}

#[test]
fn miniport_hlk_positions_render() {
    hlk_on(Direction::Render);
}

#[test]
fn miniport_hlk_positions_capture() {
    hlk_on(Direction::Capture);
}

/// What a power loss leaves of the card (QEMU's model ignores the cold
/// reset bit of `GLOB_CNT`, so the test clears the registers itself while
/// the device is in D3): the codec's registers at their reset values (a
/// write to register 00h), both bus-master channels reset with their list
/// base gone, the AC-link held in reset.
fn lose_registers(qemu: &Qemu) {
    use wavert_core::ac97::{nabm, nam, RegisterBus};
    let mut io = qemu.io_ports();
    io.write16(MIXER_PORT + nam::RESET, 0);
    for channel in [nabm::PCM_OUT, nabm::PCM_IN] {
        io.write8(BUS_MASTER_PORT + channel + nabm::CR, nabm::CR_RESET);
        io.write32(BUS_MASTER_PORT + channel + nabm::BDBAR, 0);
    }
    io.write32(BUS_MASTER_PORT + nabm::GLOB_CNT, 0);
}

struct PowerRun {
    pcm: Vec<u8>,
    /// Frames the engine had handed over when each cycle began.
    held_positions: Vec<u64>,
    final_position: u64,
    glitches: u64,
    hold_ms: u64,
}

/// One system sleep (S3) at `t` ms: `QueryPowerChangeState`, D3 through
/// `PowerChangeState2`, every register lost, `hold_ms` in D3 with the
/// position standing and no event, then D0. Returns the held position.
fn sleep_through_d3(rig: &Rig, stream: &mut Stream, hold_ms: u64, t: u64) -> u64 {
    use portcls_sys::{PowerDeviceD0, PowerDeviceD3, PowerSystemSleeping3, PowerSystemWorking};
    rig.services.query_device_power(PowerDeviceD3).unwrap();
    let held = stream.position().unwrap();
    let before = rig.emu.qpc();
    rig.services
        .set_device_power(PowerDeviceD3, Some(PowerSystemSleeping3))
        .unwrap();
    stream.device_unpowered((before, rig.emu.qpc()));
    lose_registers(&rig.qemu);
    for _ in 0..hold_ms {
        rig.emu.advance(QPC_PER_MS);
        assert_eq!(stream.position().unwrap(), held, "moved in D3 at {t} ms");
        assert_eq!(stream.take_notifications(), 0, "signalled in D3 at {t} ms");
    }
    let before = rig.emu.qpc();
    rig.services
        .set_device_power(PowerDeviceD0, Some(PowerSystemWorking))
        .unwrap();
    stream.device_powered((before, rig.emu.qpc()));
    held
}

/// Plays the signal for `ms` with a D0 -> D3 -> D0 cycle (a system sleep,
/// S3, via `PowerChangeState2`) at each of `cycles_at` ms, the registers
/// lost while in D3; out of D0 the position must stand and no event come.
/// `fault` replaces the AC'97's power hooks with a broken variant.
fn render_with_power_cycles(
    ms: u64,
    cycles_at: &[u64],
    fault: Option<wavert_emulator::power::PowerFault>,
) -> PowerRun {
    let rate = 48_000;
    let hold_ms = 60;
    let wav = std::env::temp_dir().join(format!(
        "wavert-qemu-miniport-power-{}-{}.wav",
        std::process::id(),
        fault.is_some()
    ));
    let rig = Rig::start(&Audiodev::Wav {
        path: wav.clone(),
        frequency: rate,
    });
    if let Some(fault) = fault {
        wavert_emulator::power::register_power(
            &rig.services,
            Arc::new(wavert_emulator::power::FaultyPower::new(
                Arc::clone(&rig.device),
                Arc::clone(&rig.emu),
                fault,
            )),
        )
        .unwrap();
    }
    assert!(rig.services.has_power_management());
    let bytes = rig.format(Direction::Render, rate);
    let (wave, _) = rig.wave(Direction::Render);
    let mut stream = Stream::open(&rig.emu, &wave, 0, false, &bytes).unwrap();
    stream.allocate(rate * FRAME_BYTES / 10, Some(2)).unwrap();
    stream.register_event().unwrap();
    let mut signal = Signal { rate, next: 0 };
    stream.prefill(&mut |out| signal.fill(out)).unwrap();
    stream.set_state(KSSTATE_RUN).unwrap();
    let mut held_positions = Vec::new();
    for t in 0..ms {
        if cycles_at.contains(&t) {
            held_positions.push(sleep_through_d3(&rig, &mut stream, hold_ms, t));
        }
        rig.emu.advance(QPC_PER_MS);
        for _ in 0..stream.take_notifications() {
            let play = stream.position().unwrap();
            stream
                .write_packet(play, &mut |out| signal.fill(out))
                .unwrap();
        }
    }
    let final_position = stream.position().unwrap();
    let glitches = stream.stats.glitches;
    PowerRun {
        pcm: close_and_read_wav(stream, rig, &wav),
        held_positions,
        final_position,
        glitches,
        hold_ms,
    }
}

/// What a capture stream saw across power cycles.
struct CaptureRun {
    /// Bytes the engine had read when each cycle began.
    held_positions: Vec<u64>,
    /// The capture position at the end.
    final_position: u64,
    /// Notifications after the last resume.
    notifications_after_last: u64,
    packet_bytes: u64,
    sink: Vec<u8>,
    glitches: u64,
}

/// Records for `ms` from QEMU's `none` input with a D0 -> D3 -> D0 cycle
/// (S3) at each of `cycles_at` ms, the registers lost while in D3: out of
/// D0 the position must stand and no event come, and it must never go
/// back. `fault` replaces the AC'97's power hooks with a broken variant.
fn capture_with_power_cycles(
    ms: u64,
    cycles_at: &[u64],
    fault: Option<wavert_emulator::power::PowerFault>,
) -> CaptureRun {
    let rate = 48_000;
    let rig = Rig::start(&Audiodev::None { frequency: rate });
    if let Some(fault) = fault {
        wavert_emulator::power::register_power(
            &rig.services,
            Arc::new(wavert_emulator::power::FaultyPower::new(
                Arc::clone(&rig.device),
                Arc::clone(&rig.emu),
                fault,
            )),
        )
        .unwrap();
    }
    let bytes = rig.format(Direction::Capture, rate);
    let (wave, _) = rig.wave(Direction::Capture);
    let mut stream = Stream::open(&rig.emu, &wave, 0, true, &bytes).unwrap();
    let size = stream.allocate(rate * FRAME_BYTES / 10, Some(2)).unwrap();
    stream.register_event().unwrap();
    stream.set_state(KSSTATE_RUN).unwrap();
    let mut sink = Vec::new();
    let mut last = 0;
    let mut held_positions = Vec::new();
    let mut notifications_after_last = 0;
    for t in 0..ms {
        if cycles_at.contains(&t) {
            held_positions.push(sleep_through_d3(&rig, &mut stream, 60, t));
            notifications_after_last = 0;
        }
        rig.emu.advance(QPC_PER_MS);
        for _ in 0..stream.take_notifications() {
            let recorded = stream.position().unwrap();
            assert!(recorded >= last, "position went back at {t} ms");
            last = recorded;
            stream.read_packet(recorded, &mut sink).unwrap();
            notifications_after_last += 1;
        }
    }
    let final_position = stream.position().unwrap();
    let glitches = stream.stats.glitches;
    stream.close().unwrap();
    rig.shutdown().check().unwrap();
    CaptureRun {
        held_positions,
        final_position,
        notifications_after_last,
        packet_bytes: u64::from(size / 2),
        sink,
        glitches,
    }
}

#[test]
fn miniport_capture_records_on_across_d3_cycles_with_a_cold_reset() {
    let rate = 48_000;
    let per_ms = u64::from(rate * FRAME_BYTES / 1000);
    let r = capture_with_power_cycles(2_500, &[410, 1_133, 1_876], None);
    println!(
        "wavert-qemu figures: miniport capture 48 kHz across 3 S3/D3 cycles: position {} bytes at the end, held at {:?}, {} packets read",
        r.final_position,
        r.held_positions,
        r.sink.len() as u64 / r.packet_bytes
    );
    assert_eq!(r.held_positions.len(), 3);
    // The device recorded through the 2.5 s it was in D0 (the 3 x 60 ms in
    // D3 add nothing), give or take the DMA's 10 ms granularity and a
    // packet in transfer.
    let expected = 2_500 * per_ms;
    assert!(
        r.final_position.abs_diff(expected) <= r.packet_bytes + 20 * per_ms,
        "{} bytes recorded, {expected} expected",
        r.final_position
    );
    // After the last resume the events came at the packet rate again:
    // 624 ms of D0 at 50 ms per packet.
    assert!(
        r.notifications_after_last.abs_diff(624 / 50) <= 1,
        "{} notifications after the last resume",
        r.notifications_after_last
    );
    assert!(
        r.sink.iter().all(|&b| b == 0),
        "the none backend records silence"
    );
    assert_eq!(r.glitches, 0);
}

#[test]
fn a_capture_that_never_resumes_is_caught_on_qemu() {
    let per_ms = u64::from(48_000 * FRAME_BYTES / 1000);
    let r = capture_with_power_cycles(
        1_500,
        &[410],
        Some(wavert_emulator::power::PowerFault::NoResume),
    );
    // The position stays where the sleep held it (what the test above
    // requires to move on).
    assert!(
        r.final_position <= r.held_positions[0] + r.packet_bytes,
        "{} bytes after a resume that never happened (held at {})",
        r.final_position,
        r.held_positions[0]
    );
    assert!(r.final_position < 1_000 * per_ms);
    assert_eq!(r.notifications_after_last, 0);
}

/// The output without its silent frames, checked against the signal: how
/// many frames of the signal came out in order before the first wrong one,
/// and how many silent frames sat between signal frames.
fn signal_after_silence(pcm: &[u8], rate: u32) -> (u64, u64, Option<u64>) {
    let pcm = &pcm[leading_silence(pcm)..];
    let mut next = 0u64;
    let mut silent = 0u64;
    let mut trailing = 0u64;
    for f in pcm.chunks_exact(4) {
        if f == frame(next, rate) {
            next += 1;
            silent += trailing;
            trailing = 0;
        } else if f == [0, 0, 0, 0] {
            trailing += 1;
        } else {
            return (next, silent, Some(next));
        }
    }
    (next, silent, None)
}

#[test]
fn miniport_render_is_byte_exact_across_d3_cycles_with_a_cold_reset() {
    let rate = 48_000;
    // Three sleeps at uneven moments: three phases in the 100 ms buffer.
    let r = render_with_power_cycles(2_500, &[410, 1_133, 1_876], None);
    let (frames, silent, wrong) = signal_after_silence(&r.pcm, rate);
    println!(
        "wavert-qemu figures: miniport render 48 kHz across 3 S3/D3 cycles: {frames} frames in \
         order, {silent} silent frames inside, held at {:?}",
        r.held_positions
    );
    assert_eq!(
        wrong, None,
        "frame {frames} of the signal is wrong after a resume"
    );
    assert_eq!(r.held_positions.len(), 3);
    let phases: std::collections::BTreeSet<u64> = r
        .held_positions
        .iter()
        .map(|p| p % u64::from(rate * FRAME_BYTES / 10))
        .collect();
    assert_eq!(phases.len(), 3, "{:?}", r.held_positions);
    // Everything the engine handed over up to the end came out, and the
    // silence inside is no longer than the three transitions.
    assert!(
        frames * 4 + u64::from(rate * FRAME_BYTES / 5) >= r.final_position,
        "{frames}"
    );
    assert!(
        silent <= 3 * r.hold_ms * u64::from(rate) / 1000 + u64::from(rate / 100),
        "{silent} silent frames"
    );
    assert_eq!(r.glitches, 0);
}

#[test]
fn a_missing_resume_after_d3_is_caught_on_qemu() {
    let rate = 48_000;
    let r = render_with_power_cycles(
        1_500,
        &[410],
        Some(wavert_emulator::power::PowerFault::NoResume),
    );
    let (frames, _, _) = signal_after_silence(&r.pcm, rate);
    // Nothing after the sleep: the output stops where the device was held.
    assert!(
        frames * 4 <= r.held_positions[0] + u64::from(rate * FRAME_BYTES / 10),
        "{frames} frames came out after a resume that never happened"
    );
}
