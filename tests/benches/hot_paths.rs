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

criterion_group!(benches, descriptor_lists, format_intersection);
criterion_main!(benches);
