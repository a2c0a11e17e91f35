//! The driver's hot paths, each measured beside a reference in the same run so
//! `cargo xtask bench` can report ratios (see `docs/performance.md`).
//!
//! Benchmark ids are `<group>/<id>`; xtask reads criterion's estimates for
//! exactly these ids, so renaming one here means renaming it in
//! `xtask/src/bench.rs`.
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcls_sys::{KSSTATE_RUN, KSSTATE_STOP};
use wavert_core::ac97::{nabm, Channel, ChannelKind, DmaMemory, RegisterBus};
use wavert_core::convert::Converter;
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::geometry::CyclicBuffer;
use wavert_core::hda::sim::{CodecModel, SimHda, SimMemory};
use wavert_core::hda::stream::{Direction, Stream as HdaStream, StreamProgram};
use wavert_core::hda::{reg, Controller, RingMemory, Transport};
use wavert_core::notify::NotificationSchedule;
use wavert_core::position::QpcClock;
use wavert_core::range::{intersect, DeviceRange, KSDATARANGE_AUDIO_SIZE};
use wavert_core::sg::{build, Descriptor, ListMode, SgProfile};
use wavert_core::state::TimedStream;
use wavert_emulator::cable::{start_cable_adapter, CableAdapter, CableOptions};
use wavert_emulator::engine::{negotiate_format, streaming_pin, FormatRequest, Stream};
use wavert_emulator::image::RegistryData;
use wavert_emulator::machine::{ClockMode, Machine};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::session::{run_loopback, LoopbackConfig};
use wavert_emulator::signal;
use wavert_miniport::adapter::{SubdeviceKind, CABLE_SUBDEVICES};
use wavert_miniport::Direction as WaveDirection;

const PAGE: u64 = 4096;

/// Page addresses in a fixed pseudo-random order (no two adjacent), as a
/// fragmented non-paged pool hands them out.
fn shuffled_pages(count: u64) -> Vec<u64> {
    let mut pages: Vec<u64> = (0..count)
        .map(|index| 0x1000_0000 + index * 2 * PAGE)
        .collect();
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    for index in (1..pages.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let other = usize::try_from((state >> 33) % (index as u64 + 1)).unwrap_or(0);
        pages.swap(index, other);
    }
    pages
}

/// Descriptor lists for 1 s at 192 kHz, 8 channels, 32-bit (1500 pages) and
/// for a quarter of it: equal ns per page means linear in pages.
fn descriptor_lists(c: &mut Criterion) {
    let mut group = c.benchmark_group("sg");
    let profile = SgProfile {
        mode: ListMode::Refill,
        ..SgProfile::HDA
    };
    let mut out = vec![Descriptor::default(); 2048];
    for (id, bytes) in [
        ("list_1500_pages", 6_144_000_u32),
        ("list_375_pages", 1_536_000),
    ] {
        let pages = shuffled_pages(u64::from(bytes).div_ceil(PAGE));
        let buffer = CyclicBuffer::new(&pages, 0, bytes).expect("valid buffer");
        group.throughput(Throughput::Elements(pages.len() as u64));
        group.bench_function(id, |b| {
            b.iter(|| build(black_box(&buffer), &profile, bytes / 2, &mut out).expect("builds"));
        });
    }
    group.finish();
}

/// `DataRangeIntersection`'s core over the full advertised range, against
/// parsing the client's WAVEFORMATEXTENSIBLE alone.
fn format_intersection(c: &mut Criterion) {
    let device = DeviceRange {
        sample_type: SampleType::Pcm,
        max_channels: 8,
        min_bits: 16,
        max_bits: 32,
        min_rate: 44_100,
        max_rate: 192_000,
        containers_for_24: &[32],
    };
    let mut client_range = [0_u8; KSDATARANGE_AUDIO_SIZE];
    device
        .write_ks_data_range(&mut client_range)
        .expect("range encodes");
    let format = AudioFormat::extensible(SampleType::Pcm, 8, 192_000, 32, 32).expect("valid");
    let mut wave_format = [0_u8; 64];
    let length = format.write_waveformat(&mut wave_format).expect("encodes");

    let mut group = c.benchmark_group("intersect");
    group.bench_function("full_range", |b| {
        b.iter(|| intersect(black_box(&client_range), &device, &format).expect("intersects"));
    });
    group.bench_function("reference_parse_waveformat", |b| {
        b.iter(|| AudioFormat::parse(black_box(&wave_format[..length])).expect("parses"));
    });
    group.finish();
}

/// An in-memory AC'97 bus-master window that plays the engine: before each
/// interrupt one more entry has completed (CIV moves on, BCIS set). It counts
/// every access, so the ISR's register traffic is measured, not assumed.
#[derive(Default)]
struct CountingBusMaster {
    current_index: u8,
    last_valid_index: u8,
    status: u16,
    accesses: u64,
}

impl CountingBusMaster {
    const OUT_CIV: u16 = nabm::PCM_OUT + nabm::CIV;
    const OUT_LVI: u16 = nabm::PCM_OUT + nabm::LVI;
    const OUT_SR: u16 = nabm::PCM_OUT + nabm::SR;

    /// The engine finished the current entry and raised its interrupt.
    const fn complete_entry(&mut self) {
        self.current_index = (self.current_index + 1) % 32;
        self.status |= nabm::SR_COMPLETION;
    }
}

impl RegisterBus for CountingBusMaster {
    fn read8(&mut self, offset: u16) -> u8 {
        self.accesses += 1;
        match offset {
            Self::OUT_CIV => self.current_index,
            Self::OUT_LVI => self.last_valid_index,
            _ => 0,
        }
    }
    fn read16(&mut self, offset: u16) -> u16 {
        self.accesses += 1;
        if offset == Self::OUT_SR {
            self.status
        } else {
            0
        }
    }
    fn read32(&mut self, offset: u16) -> u32 {
        self.accesses += 1;
        if offset == Self::OUT_CIV {
            u32::from(self.current_index)
                | u32::from(self.last_valid_index) << 8
                | u32::from(self.status) << 16
        } else {
            0
        }
    }
    fn write8(&mut self, offset: u16, value: u8) {
        self.accesses += 1;
        if offset == Self::OUT_LVI {
            self.last_valid_index = value;
        }
    }
    fn write16(&mut self, offset: u16, value: u16) {
        self.accesses += 1;
        if offset == Self::OUT_SR {
            self.status &= !value;
        }
    }
    fn write32(&mut self, _offset: u16, _value: u32) {
        self.accesses += 1;
    }
}

/// Descriptor memory that keeps nothing: the benchmark measures the ISR's
/// logic and register traffic, not memory writes.
struct DiscardingMemory;

impl DmaMemory for DiscardingMemory {
    fn write(&mut self, _physical: u64, _bytes: &[u8]) {}
}

/// The AC'97 interrupt service for PCM out in steady state. Writes the
/// register accesses per interrupt to `target/bench-figures/` for
/// `cargo xtask bench`.
fn ac97_interrupt(c: &mut Criterion) {
    // 64 KiB of 16-bit stereo in 2 KiB entries: 32 segments, as the ring.
    let pages = shuffled_pages(16);
    let buffer = CyclicBuffer::new(&pages, 0, 65_536).expect("valid buffer");
    let mut segments = vec![Descriptor::default(); 64];
    let count = build(&buffer, &SgProfile::AC97, 2_048, &mut segments).expect("builds");
    segments.truncate(count);

    let mut bus = CountingBusMaster::default();
    let mut channel = Channel::new(ChannelKind::PcmOut, 0x10_0000).expect("list address");
    channel
        .start(&mut bus, &mut DiscardingMemory, &segments)
        .expect("starts");
    let before = channel.stats();
    c.bench_function("ac97/isr_pcm_out", |b| {
        b.iter(|| {
            bus.complete_entry();
            channel
                .service_interrupt(&mut bus, &mut DiscardingMemory, black_box(&segments))
                .expect("services")
        });
    });
    let after = channel.stats();
    record_per_interrupt(
        "ac97_isr_accesses_per_interrupt",
        after.interrupt_register_accesses - before.interrupt_register_accesses,
        after.interrupts - before.interrupts,
    );
}

/// An HD Audio controller with a completion always pending on stream
/// descriptor 4 (the first output): every ISR call is a real one. INTSTS
/// reads the pending bit until the status byte is written.
#[derive(Default)]
struct PendingCompletionHda {
    pending: bool,
}

impl RegisterBus for PendingCompletionHda {
    fn read8(&mut self, _offset: u16) -> u8 {
        0
    }
    fn read16(&mut self, _offset: u16) -> u16 {
        0
    }
    fn read32(&mut self, offset: u16) -> u32 {
        if offset == reg::INTSTS && self.pending {
            reg::INTSTS_GIS | 1 << 4
        } else {
            0
        }
    }
    fn write8(&mut self, offset: u16, _value: u8) {
        if offset == reg::stream_base(4) + reg::SD_STS {
            self.pending = false;
        }
    }
    fn write16(&mut self, _offset: u16, _value: u16) {}
    fn write32(&mut self, _offset: u16, _value: u32) {}
}

/// The HD Audio ISR for one interrupting stream, and the position read
/// from the DMA position buffer beside it (no register access at all):
/// the counts go to `target/bench-figures/` for `cargo xtask bench`.
fn hda_interrupt_and_position(c: &mut Criterion) {
    let memory = SimMemory::new(0x10_0000);
    let mut sim = SimHda::new(&memory, Some(CodecModel::Duplex));
    let rings = RingMemory {
        corb: 0x10_0000,
        rirb: 0x10_0400,
    };
    let mut controller =
        Controller::bring_up(&mut sim, &mut &memory, rings, Transport::Rings, &mut |_| {})
            .expect("brings up");
    let mut stream = HdaStream::new(4, Direction::Render);
    stream
        .program(
            &mut sim,
            StreamProgram {
                bdl_physical: 0x10_1000,
                entries: 16,
                cyclic_bytes: 65_536,
                format: 0x0011,
                tag: 1,
            },
            &mut |_| {},
        )
        .expect("programs");
    let mut bus = PendingCompletionHda::default();
    let before = controller.stats();
    c.bench_function("hda/isr_stream", |b| {
        b.iter(|| {
            bus.pending = true;
            controller.service_interrupt(black_box(&mut bus))
        });
    });
    let after = controller.stats();
    record_per_interrupt(
        "hda_isr_accesses_per_interrupt",
        after.interrupt_register_accesses - before.interrupt_register_accesses,
        after.interrupts - before.interrupts,
    );
    let mut entry = 0u32;
    c.bench_function("hda/position_from_buffer", |b| {
        b.iter(|| {
            entry = (entry + 192) % 65_536;
            stream
                .position_from_buffer(black_box(entry))
                .expect("in range")
        });
    });
    #[allow(clippy::cast_precision_loss, reason = "a count for a report")]
    let register_accesses = stream.stats().position_register_accesses as f64;
    record_figure("hda_position_register_accesses", register_accesses);
}

/// Records register accesses per interrupt over a benchmark's run (nothing
/// when no interrupt was serviced, as under a filter that skipped it).
fn record_per_interrupt(name: &str, accesses: u64, interrupts: u64) {
    if interrupts > 0 {
        #[allow(clippy::cast_precision_loss, reason = "a ratio of counts for a report")]
        let per_interrupt = accesses as f64 / interrupts as f64;
        record_figure(name, per_interrupt);
    }
}

/// Writes a counted (not timed) figure where `cargo xtask bench` reads it.
fn record_figure(name: &str, value: f64) {
    // Benchmarks run in the package directory; a relative CARGO_TARGET_DIR
    // is relative to the workspace root, where cargo was started.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let directory = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir));
    let directory = directory.join("bench-figures");
    std::fs::create_dir_all(&directory).expect("figure directory");
    std::fs::write(directory.join(name), format!("{value}\n")).expect("figure written");
}

/// QPC ticks per millisecond (the emulator's QPC runs at 10 MHz).
const QPC_PER_MS: u64 = 10_000;

fn emulated_machine(mode: ClockMode) -> Arc<Machine> {
    let memory = PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 64 << 20,
        ..MemoryConfig::default()
    })
    .expect("emulated RAM");
    Machine::new(memory, mode)
}

fn cable_adapter(machine: &Arc<Machine>) -> CableAdapter {
    start_cable_adapter(machine, CableOptions::default()).expect("StartDevice")
}

/// Opens the cable's render or capture pin with `format`, allocates a buffer
/// of two packets of `period_ms`, and runs it.
fn running_stream(
    machine: &Arc<Machine>,
    adapter: &CableAdapter,
    capture: bool,
    format: FormatRequest,
    period_ms: u32,
) -> Stream {
    let name = if capture { "WaveCapture" } else { "WaveRender" };
    running_stream_on(machine, adapter, name, capture, format, period_ms)
}

/// [`running_stream`] on the wave filter registered as `name`.
fn running_stream_on(
    machine: &Arc<Machine>,
    adapter: &CableAdapter,
    name: &str,
    capture: bool,
    format: FormatRequest,
    period_ms: u32,
) -> Stream {
    let filter = adapter.wave_filter(name).expect("registered filter");
    let pin = streaming_pin(filter.description, capture).expect("streaming pin");
    let (negotiated, bytes) =
        negotiate_format(&filter.miniport, filter.description, pin, &format).expect("format");
    let mut stream =
        Stream::open(machine, &filter.miniport, pin, capture, &bytes).expect("NewStream");
    let period_bytes = u64::from(negotiated.sample_rate()) * u64::from(period_ms) / 1000
        * u64::from(negotiated.block_align());
    stream
        .allocate(
            u32::try_from(period_bytes * 2).expect("buffer size"),
            Some(2),
        )
        .expect("buffer");
    stream.set_state(KSSTATE_RUN).expect("RUN");
    stream
}

fn close(mut stream: Stream) {
    stream.set_state(KSSTATE_STOP).expect("STOP");
    stream.close().expect("clean close");
}

/// The bare computation behind a Windows x64 call from this host's own
/// convention, as every vtable slot is reached here: what the calling
/// convention alone costs on Linux. A win64 function that calls System V
/// code must save the ten registers (xmm6-xmm15) the Windows convention
/// keeps and System V does not; a Windows build, all win64, only saves
/// those it uses.
type PositionAcrossWin64 = portcls_sys::windows_fn!(fn(&mut TimedStream, u64) -> u32);

#[portcls_sys::windows_abi]
extern "system" fn position_across_win64(stream: &mut TimedStream, qpc: u64) -> u32 {
    bare_position(stream, qpc)
}

#[inline(never)]
fn bare_position(stream: &mut TimedStream, qpc: u64) -> u32 {
    stream.position(qpc).cyclic_offset
}

/// `GetPosition` through the stream's vtable, as the port calls it for
/// `KSPROPERTY_AUDIO_POSITION`, against a plain atomic load and against the
/// bare position-from-QPC computation it wraps (wavert-core's clock advanced
/// to a new QPC and read as a cyclic offset, nothing else).
fn get_position(c: &mut Criterion) {
    let machine = emulated_machine(ClockMode::Virtual);
    let adapter = cable_adapter(&machine);
    let stream = running_stream(&machine, &adapter, false, FormatRequest::default(), 10);
    let reference = AtomicU64::new(0x1234);
    let mut bare = TimedStream::new(
        QpcClock::new(10_000_000, 48_000, 4, 3_840, 1_920).expect("clock"),
        NotificationSchedule::new(3_840, 2).expect("schedule"),
    );
    for state in [1, 2, 3] {
        bare.set_state(state, 0).expect("stepwise to RUN");
    }
    let mut qpc = 0_u64;
    {
        let mut group = c.benchmark_group("position");
        group.bench_function("get_position_vtable", |b| {
            b.iter(|| black_box(stream.raw_position().expect("position")));
        });
        group.bench_function("reference_atomic_load", |b| {
            b.iter(|| black_box(black_box(&reference).load(Ordering::Acquire)));
        });
        group.bench_function("reference_position_from_qpc", |b| {
            b.iter(|| {
                qpc += 37;
                black_box(bare.position(black_box(qpc)).cyclic_offset)
            });
        });
        group.bench_function("reference_position_across_win64", |b| {
            let bridged = black_box(position_across_win64 as PositionAcrossWin64);
            b.iter(|| {
                qpc += 37;
                black_box(bridged(&mut bare, black_box(qpc)))
            });
        });
        group.finish();
    }
    close(stream);
    adapter.remove();
}

/// The cable's work per period with render and capture running (the
/// render engine's service, the capture copy from the render pages into
/// the capture pages, notifications), against one `copy_from_slice` of the
/// same bytes between two contiguous buffers.
fn loopback_copy(c: &mut Criterion) {
    let cases = [
        ("48k_2ch_16bit", FormatRequest::default()),
        (
            "192k_8ch_32bit",
            FormatRequest {
                rate: 192_000,
                bits: 32,
                channels: 8,
                float: false,
                container_bits: 0,
            },
        ),
    ];
    let mut group = c.benchmark_group("loopback");
    for (format_name, format) in cases {
        for period_ms in [1_u32, 10] {
            let machine = emulated_machine(ClockMode::Virtual);
            let adapter = cable_adapter(&machine);
            let capture = running_stream(&machine, &adapter, true, format, 20);
            let render = running_stream(&machine, &adapter, false, format, 20);
            let cable = Arc::clone(adapter.cable().expect("cable"));
            let bytes = usize::try_from(
                u64::from(format.rate) * u64::from(period_ms) / 1000
                    * u64::from(format.channels)
                    * u64::from(format.bits / 8),
            )
            .expect("period bytes");
            let mut now = machine.qpc();
            let step = u64::from(period_ms) * QPC_PER_MS;
            group.bench_function(format!("cable_{format_name}_{period_ms}ms"), |b| {
                b.iter(|| {
                    now += step;
                    cable.on_timer(black_box(now));
                });
            });
            let source = vec![0x5a_u8; bytes];
            let mut destination = vec![0_u8; bytes];
            group.bench_function(format!("reference_{format_name}_{period_ms}ms"), |b| {
                b.iter(|| destination.copy_from_slice(black_box(&source)));
            });
            black_box(&destination);
            drop(cable);
            close(render);
            close(capture);
            adapter.remove();
        }
    }
    group.finish();
}

/// The format converter (`wavert_core::convert`) on 10 ms of audio: a
/// sample-type and channel change at one rate beside a `copy_from_slice`
/// of the output bytes, and 44.1 -> 48 kHz stereo resampling (its CPU
/// share is the median over 10 ms).
fn format_conversion(c: &mut Criterion) {
    let pcm16 = |rate, channels| {
        AudioFormat::extensible(SampleType::Pcm, channels, rate, 16, 16).expect("16-bit format")
    };
    let float = AudioFormat::extensible(SampleType::Float, 6, 48_000, 32, 32).expect("float 5.1");
    let mut group = c.benchmark_group("convert");

    let from = pcm16(48_000, 2);
    let mut converter =
        Converter::new(&from, &float, Vec::<i32>::new()).expect("no-rate-change converter");
    let input: Vec<u8> = (0..480_u32 * 4)
        .map(|i| i.to_le_bytes()[0].wrapping_mul(7))
        .collect();
    let mut output = vec![0_u8; 480 * 24];
    group.bench_function("pcm16_2ch_to_float_6ch_10ms", |b| {
        b.iter(|| converter.convert(black_box(&input), &mut output));
    });
    let source = vec![0x5a_u8; output.len()];
    group.bench_function("reference_float_6ch_10ms", |b| {
        b.iter(|| output.copy_from_slice(black_box(&source)));
    });

    let (from, to) = (pcm16(44_100, 2), pcm16(48_000, 2));
    let storage = vec![0; Converter::<Vec<i32>>::storage_len(&from, &to)];
    let mut resampler = Converter::new(&from, &to, storage).expect("resampling converter");
    let input: Vec<u8> = (0..2_048_u32 * 4)
        .map(|i| i.to_le_bytes()[0].wrapping_mul(13))
        .collect();
    let mut output = vec![0_u8; 480 * 4];
    group.bench_function("resample_44k1_to_48k_2ch_10ms", |b| {
        b.iter(|| {
            let needed = usize::try_from(resampler.inputs_needed(480)).expect("small count");
            resampler.convert(black_box(&input[..needed * 4]), &mut output)
        });
    });
    black_box(&output);
    group.finish();
}

/// `AllocateBufferWithNotification` end to end in the emulator for the
/// cable's largest buffer (2 MiB = 512 pages; the 1 s at 192 kHz, 8
/// channels, 32-bit a client may ask for is capped there) at that format:
/// pin creation, the page allocation, mapping, the descriptor list, and the
/// close that frees it.
fn allocate_audio_buffer(c: &mut Criterion) {
    let machine = emulated_machine(ClockMode::Virtual);
    let adapter = cable_adapter(&machine);
    let filter = adapter.wave_filter("WaveRender").expect("render filter");
    let pin = streaming_pin(filter.description, false).expect("pin");
    let format = FormatRequest {
        rate: 192_000,
        bits: 32,
        channels: 8,
        float: false,
        container_bits: 0,
    };
    let (_, bytes) =
        negotiate_format(&filter.miniport, filter.description, pin, &format).expect("format");
    {
        let mut group = c.benchmark_group("allocate");
        group.throughput(Throughput::Elements(512));
        group.bench_function("buffer_2mib_192k_8ch_32bit", |b| {
            b.iter(|| {
                let mut stream = Stream::open(&machine, &filter.miniport, pin, false, &bytes)
                    .expect("NewStream");
                let granted = stream.allocate(6_144_000, Some(2)).expect("buffer");
                assert_eq!(granted, 2 << 20, "the device maximum is granted");
                stream.close().expect("clean close")
            });
        });
        group.finish();
    }
    adapter.remove();
}

/// CPU time of this thread in nanoseconds, so the figure is CPU time, not
/// wall time on a shared machine.
fn thread_cpu_nanos() -> u64 {
    wavert_emulator::realtime::thread_cpu_nanos().expect("the thread CPU clock")
}

/// One minute of virtual time on `machine`, a `period_ms` step at a time:
/// the CPU time this thread spent (the timers' work), as a fraction of
/// one core.
fn cpu_fraction_of_a_minute(machine: &Machine, period_ms: u32) -> f64 {
    let audio_ms: u64 = 60_000;
    let started = thread_cpu_nanos();
    for _ in 0..audio_ms / u64::from(period_ms) {
        machine.advance(u64::from(period_ms) * QPC_PER_MS);
    }
    let cpu = thread_cpu_nanos() - started;
    #[allow(clippy::cast_precision_loss, reason = "a fraction for a report")]
    let fraction = cpu as f64 / (audio_ms as f64 * 1e6);
    fraction
}

/// One minute of loopback at 48 kHz stereo in virtual time, the engine
/// period (two packets per buffer) at 1 ms and 10 ms: the CPU time the
/// cable's timer work takes, as a fraction of one core.
fn cable_cpu_cost(_c: &mut Criterion) {
    for period_ms in [1_u32, 10] {
        let machine = emulated_machine(ClockMode::Virtual);
        let adapter = cable_adapter(&machine);
        let format = FormatRequest::default();
        let capture = running_stream(&machine, &adapter, true, format, period_ms);
        let render = running_stream(&machine, &adapter, false, format, period_ms);
        let fraction = cpu_fraction_of_a_minute(&machine, period_ms);
        record_figure(&format!("cable_cpu_fraction_{period_ms}ms"), fraction);
        close(render);
        close(capture);
        adapter.remove();
    }
}

/// Eight cables at once (the device's `CableCount` at its most), each
/// looping 48 kHz stereo back for one minute of virtual time at a 10 ms
/// period: the CPU time all their timer work takes together, as a fraction
/// of one core (issue 16's target: under 1 %).
fn eight_cable_cpu_cost(_c: &mut Criterion) {
    const CABLES: usize = 8;
    const PERIOD_MS: u32 = 10;
    let machine = emulated_machine(ClockMode::Virtual);
    let adapter = start_cable_adapter(
        &machine,
        CableOptions {
            registry: vec![(
                "CableCount".to_owned(),
                RegistryData::Dword(u32::try_from(CABLES).expect("a small count")),
            )],
            ..CableOptions::default()
        },
    )
    .expect("StartDevice with eight cables");
    let format = FormatRequest::default();
    let mut streams = Vec::new();
    for table in CABLE_SUBDEVICES.iter().take(CABLES) {
        for (capture, direction) in [
            (true, WaveDirection::Capture),
            (false, WaveDirection::Render),
        ] {
            let name = table
                .iter()
                .find(|s| s.kind == SubdeviceKind::Wave(direction))
                .map(|s| s.name)
                .expect("a wave subdevice");
            streams.push(running_stream_on(
                &machine, &adapter, name, capture, format, PERIOD_MS,
            ));
        }
    }
    let fraction = cpu_fraction_of_a_minute(&machine, PERIOD_MS);
    record_figure("eight_cables_cpu_fraction_10ms", fraction);
    for stream in streams {
        close(stream);
    }
    adapter.remove();
}

/// The smallest engine period at which a real-time loopback of 60 s runs
/// with zero glitches and a bit-exact capture at the reported latency
/// (within one frame, after the start offset), tried from 10 ms down. The
/// event lateness of each run (p99 and max, in microseconds) is recorded
/// beside it: in the emulator the timer fires on the engine's own thread,
/// so that lateness is the host scheduler's wake-up lateness. Skipped in
/// criterion's `--test` smoke mode (it takes minutes).
fn minimum_period(_c: &mut Criterion) {
    if std::env::args().any(|argument| argument == "--test") {
        return;
    }
    let mut smallest_frames = None;
    for period_ms in [10_u32, 5, 3, 2, 1] {
        let machine = emulated_machine(ClockMode::RealTime);
        let adapter = cable_adapter(&machine);
        let render = adapter.wave_filter("WaveRender").expect("render");
        let capture = adapter.wave_filter("WaveCapture").expect("capture");
        let config = LoopbackConfig {
            period_ms,
            ..LoopbackConfig::default()
        };
        let mut rendered = Vec::new();
        let result = run_loopback(
            &machine,
            render.as_filter(),
            capture.as_filter(),
            &config,
            &mut |format| {
                rendered = signal::test_signal(format, 60.0);
                rendered.clone()
            },
            &mut |_| {},
        );
        adapter.remove();
        let Ok(result) = result else { break };
        let lateness = result.render_lateness();
        let us = |ticks: u64| f64::from(u32::try_from(ticks).unwrap_or(u32::MAX)) / 10.0;
        record_figure(
            &format!("event_lateness_p99_us_{period_ms}ms"),
            us(lateness.percentile_ticks(99)),
        );
        record_figure(
            &format!("event_lateness_max_us_{period_ms}ms"),
            us(lateness.max_ticks()),
        );
        let block = result.format.block_align() as usize;
        let bit_exact = signal::find_alignment(&rendered, &result.captured, block, 96_000)
            .is_some_and(|lag| {
                result.lag_is_reported_latency(lag as u64)
                    && signal::mismatched_frames(&rendered, &result.captured, block, lag).0 == 0
            });
        if bit_exact && result.render.glitches == 0 && result.capture.glitches == 0 {
            smallest_frames = Some(48 * period_ms);
        } else {
            break;
        }
    }
    if let Some(frames) = smallest_frames {
        record_figure("minimum_period_frames_48k", f64::from(frames));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = descriptor_lists, format_intersection, ac97_interrupt, hda_interrupt_and_position,
        get_position,
        loopback_copy, format_conversion, allocate_audio_buffer, cable_cpu_cost,
        eight_cable_cpu_cost, minimum_period
}
criterion_main!(benches);
