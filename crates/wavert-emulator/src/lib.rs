//! A user-mode PortCls and Windows audio engine that drive a WaveRT miniport
//! through its COM vtables, exactly as Windows does.
//!
//! * [`memory`]: RAM as a memory file, scattered page allocation, MDLs and
//!   page-by-page mappings, fault injection and leak tracking.
//! * [`machine`]: the emulated computer: QPC (virtual or real time), kernel
//!   timers, kernel events, registrations, protocol violations.
//! * [`port`]: the port-side COM objects (`IPortWaveRT`, `IPortTopology`,
//!   `IPortWaveRTStream`, `IInterruptSync`, `IResourceList`).
//! * [`engine`]: the audio engine's sequence: intersection, pin creation,
//!   buffer, events, stepwise states, event-driven pumping, packets, close.
//! * [`cable`]: the product's virtual cable (`wavert-miniport`) loaded as
//!   PortCls loads it: its `Platform` over the machine, its
//!   `PortClsServices` over the port objects, `StartDevice`, and the wave
//!   filters found by their registered subdevice names.
//! * [`ac97`]: the product's AC'97 miniport on QEMU's AC'97 (`wavert-qemu`):
//!   `StartDevice` from a PCI resource list, an event-driven render stream,
//!   QEMU's WAV output compared with the input.
//! * [`image`]: the shipped `rswavert.sys` executed: a PE loader, kernel
//!   and PortCls stand-ins with Driver Verifier's rules, and the Windows
//!   life cycle (`DriverEntry`, `AddDevice`, `StartDevice`, removal, unload).
//! * [`ks`]: KS property requests routed to the miniport's filter and node
//!   automation tables as PortCls routes them.
//! * [`ks_formats`]: the format rules over [`ks`]: `PROPOSEDATAFORMAT`
//!   accepts exactly what `NewStream` opens, `PROPOSEDATAFORMAT2` and a
//!   wildcard intersection give the default format.
//! * [`ks_topology`]: the HLK's KS topology rules (node basic support,
//!   channel round trips, jacks) over [`ks`].
//! * [`range_table`]: a pin's data-range table as KS reads it: the
//!   attribute list after a range flagged `KSDATARANGE_ATTRIBUTES`, the
//!   `KSPROPERTY_PIN_DATARANGES` value, and the rule that host ranges name
//!   the signal-processing mode.
//! * [`irql`]: each thread's IRQL, raised by spinlocks, DPCs and ISRs; the
//!   host-built driver's spin lock ([`irql::EmuLock`]) and the heap check
//!   ([`irql::DriverHeap`], this crate's global allocator).
//! * [`hlk`]: position rules of the HLK `WaveTest` and KS position tests.
//! * [`modes`]: `GetModes` with its size protocol checked, streams opened
//!   in a mode, and the wave filters' packet-size constraints decoded and
//!   held to their rules.
//! * [`packets`]: packet mode (Windows 10's `IMiniportWaveRTOutputStream`
//!   and `IMiniportWaveRTInputStream`) as the audio engine uses it, and the
//!   rules its answers are held to against the engine's own clock.
//! * [`personality`]: the port personalities (`windows`, `reactos`,
//!   `hostile`): the orders a real PortCls may call in, and the record of
//!   what each miniport tolerated.
//! * [`faulty`]: the product's cable behind a `Backend` decorator that
//!   injects one fault (page order, no events, a leaked buffer, moving in
//!   PAUSE, a default at the corner of the ranges): the device that shows
//!   the emulator's own checks fail when they should.
//! * [`tamper`]: a wave miniport over a real one that changes exactly one
//!   answer at the trampoline (a short buffer, an offset past the MDL, a
//!   position at the buffer's end, ...): what proves the port's rules fire.
//! * [`timing`]: notification lateness and position error against the
//!   ideal clock of a stream (what a cable user hears as crackle or drift).
//! * [`concurrency`]: a bounded stress with the device (timer, ISR, DPC)
//!   and the engine's stream lives on their own threads, its checks
//!   (monotonic positions, events alive in RUN, no signal after
//!   unregister, no use after free, no leak).
//! * [`signal`]: test signals, alignment and bit-exact comparison, WAV and SVG output.
//!
//! `unsafe` lives in the memory model and the port objects (they are the
//! boundary the miniport calls across), one `// SAFETY:` per operation.

pub mod ac97;
pub mod cable;
pub mod concurrency;
pub mod engine;
pub mod faulty;
pub mod hda;
pub mod hlk;
pub mod image;
pub mod irql;
pub mod ks;
pub mod ks_formats;
pub mod ks_topology;
pub mod machine;
pub mod memory;
pub mod modes;
pub mod packets;
pub mod personality;
pub mod port;
pub mod power;
pub mod qemu_card;
pub mod range_table;
pub mod realtime;
pub mod session;
pub mod signal;
pub mod tamper;
pub mod timing;

/// Every binary that links the emulator counts the host-built driver's heap
/// allocations at `DISPATCH_LEVEL` and above (see [`irql`]).
#[global_allocator]
static HEAP: irql::DriverHeap = irql::DriverHeap;
