//! Benchmarks: descriptor building over a large scattered buffer, and the
//! QPC-to-position step.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use wavert_core::geometry::CyclicBuffer;
use wavert_core::position::QpcClock;
use wavert_core::sg::{build, Descriptor, ListMode, SgProfile};

/// 1 s of 192 kHz, 8 channels, 32-bit: 6,144,000 bytes = 1500 pages.
const BUFFER_BYTES: u32 = 192_000 * 8 * 4;

fn shuffled_pages(n: u64) -> Vec<u64> {
    let mut pages: Vec<u64> = (0..n).map(|i| 0x1000_0000 + i * 4096).collect();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..pages.len()).rev() {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from((s >> 33) % (i as u64 + 1)).unwrap_or(0);
        pages.swap(i, j);
    }
    pages
}

fn descriptors(c: &mut Criterion) {
    let pages = shuffled_pages(u64::from(BUFFER_BYTES.div_ceil(4096)));
    let buffer = CyclicBuffer::new(&pages, 0, BUFFER_BYTES).expect("valid buffer");
    // HDA entry layout with a list long enough for 1500 scattered pages.
    let profile = SgProfile {
        mode: ListMode::Refill,
        ..SgProfile::HDA
    };
    let mut out = vec![Descriptor::default(); 2048];
    let mut group = c.benchmark_group("sg_build");
    group.throughput(Throughput::Elements(pages.len() as u64));
    group.bench_function("1s_192k_8ch_32bit_shuffled_pages", |b| {
        b.iter(|| build(black_box(&buffer), &profile, BUFFER_BYTES / 2, &mut out).expect("builds"));
    });
    group.finish();
}

fn position(c: &mut Criterion) {
    let mut clock = QpcClock::new(10_000_000, 192_000, 32, BUFFER_BYTES, BUFFER_BYTES / 2)
        .expect("valid clock");
    clock.run(0);
    let mut qpc = 0u64;
    c.bench_function("position_from_qpc_update", |b| {
        b.iter(|| {
            qpc += 10_007;
            clock.update(black_box(qpc));
            black_box(clock.presentation())
        });
    });
}

criterion_group!(benches, descriptors, position);
criterion_main!(benches);
