//! DMA strategies against the simulated AC'97 engine.

use proptest::prelude::*;
use wavert_core::dma::sim::{Ac97Engine, AC97_RING};
use wavert_core::dma::{DmaError, LoopingDma, Refill, RefillDma};
use wavert_core::sg::Descriptor;

/// Segment table from lengths, offsets accumulated.
fn segments(lengths: &[u32]) -> (Vec<Descriptor>, u32) {
    let mut o = 0;
    let table = lengths
        .iter()
        .map(|&len| {
            let d = Descriptor {
                address: u64::from(o) + 0x1000,
                length_bytes: len,
                buffer_offset: o,
                interrupt_on_completion: true,
            };
            o += len;
            d
        })
        .collect();
    (table, o)
}

/// The driver side: apply a refill to the engine.
fn apply(engine: &mut Ac97Engine, table: &[Descriptor], refill: Refill) {
    for w in refill.writes {
        let d = table[w.segment as usize];
        engine.write_slot(w.slot, w.segment, d.length_bytes, d.interrupt_on_completion);
    }
    engine.write_lvi(refill.last_valid_index);
}

/// Engine, strategy, bytes seen as (segment, offset, len), segment table, size.
type Drive = (
    Ac97Engine,
    RefillDma,
    Vec<(u32, u32, u32)>,
    Vec<Descriptor>,
    u32,
);

/// Drives a stream: each tick the engine moves `ticks[i]` bytes; interrupts
/// are serviced only on ticks where `serve[i]` is true. Returns the engine,
/// the strategy and the bytes seen in order as (segment, offset, len).
fn drive(lengths: &[u32], ticks: &[(u32, bool)]) -> Drive {
    let (table, size) = segments(lengths);
    let mut dma = RefillDma::new(
        u32::try_from(lengths.len()).expect("few segments"),
        AC97_RING,
        AC97_RING - 1,
    )
    .expect("valid");
    let mut engine = Ac97Engine::new();
    let first = dma.start();
    apply(&mut engine, &table, first);
    engine.run();
    let mut seen = Vec::new();
    for &(bytes, serve) in ticks {
        engine.step(bytes, &mut |s, o, l| seen.push((s, o, l)));
        if serve && engine.take_interrupt() {
            let r = dma
                .on_interrupt(engine.civ(), engine.is_halted())
                .expect("consistent");
            apply(&mut engine, &table, r);
        }
        // The position the driver computes equals what the engine moved.
        let moved: u64 = seen.iter().map(|&(_, _, l)| u64::from(l)).sum();
        let pos = dma
            .linear_position(
                &table,
                size,
                engine.civ(),
                engine.is_halted(),
                engine.remaining_bytes(),
            )
            .expect("consistent");
        assert_eq!(pos, moved, "position matches the engine");
    }
    (engine, dma, seen, table, size)
}

/// Bytes came in cyclic-buffer order: segment k after k-1, offsets contiguous.
fn assert_in_order(seen: &[(u32, u32, u32)], table: &[Descriptor]) {
    let mut seg = 0usize;
    let mut off = 0u32;
    for &(s, o, l) in seen {
        assert_eq!((s as usize, o), (seg, off), "order");
        off += l;
        if off == table[seg].length_bytes {
            seg = (seg + 1) % table.len();
            off = 0;
        }
    }
}

#[test]
fn looping_strategy_programs_once() {
    let mut l = LoopingDma::new(12).expect("valid");
    assert_eq!(l.on_interrupt(), Err(DmaError::NotRunning));
    assert_eq!(l.start(), 11);
    assert_eq!(l.on_interrupt(), Ok(()));
    assert_eq!(LoopingDma::new(0), Err(DmaError::ZeroSegments));
}

#[test]
fn refill_rejections() {
    assert_eq!(RefillDma::new(0, 32, 31), Err(DmaError::ZeroSegments));
    assert_eq!(
        RefillDma::new(4, 32, 32),
        Err(DmaError::BadRing {
            ring: 32,
            ahead: 32
        })
    );
    assert_eq!(
        RefillDma::new(4, 1, 0),
        Err(DmaError::BadRing { ring: 1, ahead: 0 })
    );
    let mut d = RefillDma::new(47, 32, 31).expect("valid");
    assert_eq!(d.on_interrupt(0, false), Err(DmaError::NotRunning));
    let _ = d.start();
    assert_eq!(d.on_interrupt(32, false), Err(DmaError::CivOutOfRange(32)));
    // Slot 31 holds nothing yet (31 valid: slots 0..=30).
    assert_eq!(
        d.on_interrupt(31, false),
        Err(DmaError::InconsistentCiv {
            civ: 31,
            expected_next: 0
        })
    );
    assert_eq!(
        d.on_interrupt(5, true),
        Err(DmaError::InconsistentCiv {
            civ: 5,
            expected_next: 0
        })
    );
    assert_eq!(
        d.linear_position(&[], 1, 0, false, 0),
        Err(DmaError::SegmentTableMismatch)
    );
}

#[test]
fn more_segments_than_slots_cycle_in_buffer_order() {
    // A 47-page buffer (1 s of 48 kHz stereo 16-bit) through 32 slots.
    let lengths = vec![4096; 47];
    let ticks = vec![(1000u32, true); 2000];
    let (engine, dma, seen, table, size) = drive(&lengths, &ticks);
    assert_eq!(engine.invalid_fetches(), 0);
    assert_eq!(engine.halts(), 0);
    assert_in_order(&seen, &table);
    assert_eq!(dma.completed(), 2_000_000 / 4096);
    assert_eq!(size, 47 * 4096);
}

#[test]
fn late_interrupt_halts_then_resumes_in_place() {
    let lengths = vec![4096; 40];
    // Serve nothing for 40 ticks of 4096 (more than the 31 valid slots).
    let mut ticks = vec![(4096u32, false); 40];
    ticks.extend(vec![(4096u32, true); 100]);
    let (engine, _dma, seen, table, _) = drive(&lengths, &ticks);
    assert_eq!(engine.halts(), 1);
    assert_eq!(engine.invalid_fetches(), 0);
    assert_in_order(&seen, &table);
}

fn lengths_strategy() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec((1u32..=2048).prop_map(|x| x * 2), 1..80)
}

proptest! {
    /// Serviced every tick while each tick moves less than 30 segments'
    /// worth: never halts, never fetches an invalid slot, data in order.
    #[test]
    fn steady_state_never_halts(lengths in lengths_strategy(), ticks in proptest::collection::vec(1u32..20_000, 1..300)) {
        let min = *lengths.iter().min().unwrap();
        let ticks: Vec<_> = ticks.into_iter().map(|t| (t % (min * 30) + 1, true)).collect();
        let (engine, _, seen, table, _) = drive(&lengths, &ticks);
        prop_assert_eq!(engine.invalid_fetches(), 0);
        prop_assert_eq!(engine.halts(), 0);
        assert_in_order(&seen, &table);
        let moved: u64 = seen.iter().map(|&(_, _, l)| u64::from(l)).sum();
        prop_assert_eq!(moved, ticks.iter().map(|&(t, _)| u64::from(t)).sum::<u64>());
    }

    /// Arbitrarily delayed interrupts: the engine may halt, but never fetches
    /// an invalid slot, resumes at the next segment and the driver's position
    /// always equals the bytes the engine moved (checked inside `drive`).
    #[test]
    fn delayed_interrupts_resume_correctly(lengths in lengths_strategy(), ticks in proptest::collection::vec((1u32..50_000, any::<bool>()), 1..300)) {
        let (engine, dma, seen, table, _) = drive(&lengths, &ticks);
        prop_assert_eq!(engine.invalid_fetches(), 0);
        assert_in_order(&seen, &table);
        prop_assert!(dma.loaded() - dma.completed() <= u64::from(AC97_RING - 1));
    }
}
