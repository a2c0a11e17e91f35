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

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wavert_core::ac97::{nabm, Channel, ChannelKind, DmaMemory, RegisterBus};
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::geometry::CyclicBuffer;
use wavert_core::range::{intersect, DeviceRange, KSDATARANGE_AUDIO_SIZE};
use wavert_core::sg::{build, Descriptor, ListMode, SgProfile};

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
        container_for_24: 32,
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
        b.iter(|| intersect(black_box(&client_range), &device).expect("intersects"));
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
    let interrupts = after.interrupts - before.interrupts;
    let accesses = after.interrupt_register_accesses - before.interrupt_register_accesses;
    if interrupts > 0 {
        #[allow(clippy::cast_precision_loss, reason = "a ratio of counts for a report")]
        let per_interrupt = accesses as f64 / interrupts as f64;
        record_figure("ac97_isr_accesses_per_interrupt", per_interrupt);
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

criterion_group!(
    benches,
    descriptor_lists,
    format_intersection,
    ac97_interrupt
);
criterion_main!(benches);
