//! The physical memory model: a memory file stands for the machine's RAM.
//!
//! The file is placed in the physical address space as QEMU's `pc` machine
//! places guest RAM ([`RamLayout`]): a low part at address 0 and, unless
//! the [`Layout`] is [`Layout::Low`], the rest from 4 GiB up, so the same
//! file can be QEMU's guest RAM (`-object
//! memory-backend-file,mem-path=...,share=on`) and a device with a 32-bit
//! DMA limit meets pages it cannot reach. Allocations honour the
//! `[LowAddress, HighAddress]` range a driver passes, page by page, as
//! `MmAllocatePagesForMdlEx` does: every page lies wholly in the range, and
//! a range that cannot supply the request gives fewer pages or none.
//! [`PhysicalMemory::check_dma`] is the device side: whether an address a
//! driver programmed into a bus master lies in pages it holds and the
//! device reaches.
//!
//! Page allocations hand out page frames in a shuffled, non-contiguous order,
//! and [`PhysicalMemory::map`] builds a virtually contiguous view of an MDL's
//! pages by mapping each file page at its place: a miniport that walks the
//! pages in the wrong order produces wrong audio, exactly as on Windows.
//!
//! An MDL is an opaque handle: the address of a record this model owns. The
//! model checks every handle it is given, and records misuse (unknown MDL,
//! freeing a mapped MDL, unmapping the wrong address) as protocol violations
//! instead of crashing, so a test can assert there were none.
//!
//! # Use after free
//!
//! Two traps catch a device or driver that touches a buffer it gave back:
//!
//! * **Unmapped views stay reserved.** [`PhysicalMemory::unmap`] replaces
//!   the view with inaccessible memory and keeps the addresses (the last
//!   [`QUARANTINE_SLOTS`] views of the process), so a later mapping never
//!   lands there. An access through a stale pointer (the cable's timer
//!   still copying through an unmapped view, say) faults; the process's
//!   `SIGSEGV` handler (`image::io_trap`, which also traps port I/O) finds
//!   the address in a quarantined view, records it, makes that page
//!   accessible (fresh zeroes, no RAM behind it) and lets the access run
//!   again. The next [`PhysicalMemory::violations`] reports it.
//! * **Freed pages are poisoned.** [`PhysicalMemory::free`] fills each
//!   frame with [`FREED_PAGE_POISON`]; a frame handed out again, or checked
//!   with [`PhysicalMemory::check_freed_pages`], that no longer holds the
//!   pattern was written after it was freed (a DMA engine still running on
//!   it, or a mapping nobody unmapped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

pub use wavert_qemu::layout::{RamLayout, HIGH_RAM_BASE};

/// The page size of the modelled machine (x86-64).
pub const PAGE_SIZE: usize = 4096;
const PAGE_U64: u64 = 4096;

/// How page frames are handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragmentation {
    /// Ascending frames (a freshly booted machine): buffers come out contiguous.
    Contiguous,
    /// Free frames shuffled once with this seed: every buffer is scattered.
    Shuffled(u64),
}

/// An injected failure of one allocation call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails outright (NULL).
    Fail,
    /// `AllocatePagesForMdl` succeeds with at most this many pages (other
    /// calls treat it as [`Fault::Fail`] unless the number covers the request).
    Partial {
        /// Pages handed out at most.
        pages: usize,
    },
}

/// Which model operation an allocation call was (for fault injection and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocPoint {
    /// `IPortWaveRTStream::AllocatePagesForMdl`.
    Pages,
    /// `IPortWaveRTStream::AllocateContiguousPagesForMdl`.
    ContiguousPages,
    /// `IPortWaveRTStream::MapAllocatedPages`.
    Map,
}

/// Where the RAM file sits in the physical address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// All of RAM below 4 GiB: physical address = file offset.
    Low,
    /// The first `below_4g` bytes at address 0, the rest from 4 GiB (QEMU's
    /// `max-ram-below-4g`; RAM no larger than that is all low, as in QEMU).
    Split {
        /// Bytes below 4 GiB (whole pages).
        below_4g: u64,
    },
    /// Half of RAM (whole pages) below 4 GiB, half from 4 GiB: the default,
    /// so that every run hands a driver that asks for any page some pages
    /// above 4 GiB, and a driver for a 32-bit device that forgets its limit
    /// is caught.
    HalfHigh,
}

impl Layout {
    /// The placement of `size` bytes (whole pages).
    #[must_use]
    pub const fn of(self, size: u64) -> RamLayout {
        match self {
            Self::Low => RamLayout::low(size),
            Self::Split { below_4g } => RamLayout::new(size, below_4g / PAGE_U64 * PAGE_U64),
            Self::HalfHigh => RamLayout::new(size, size / 2 / PAGE_U64 * PAGE_U64),
        }
    }
}

/// Construction parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Size of the RAM file in bytes (rounded down to whole pages).
    pub size_bytes: u64,
    /// Where it sits in the physical address space.
    pub layout: Layout,
    /// Low memory never handed out. A PC keeps the real-mode area, the VGA
    /// window and the BIOS below 1 MiB, which QEMU's guest RAM mirrors.
    pub reserved_low_bytes: u64,
    /// Page order.
    pub fragmentation: Fragmentation,
    /// Most pages in use at once (`None`: all of RAM).
    pub page_budget: Option<usize>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            size_bytes: 64 << 20,
            layout: Layout::HalfHigh,
            reserved_low_bytes: 1 << 20,
            fragmentation: Fragmentation::Shuffled(0x5EED),
            page_budget: None,
        }
    }
}

/// What the model holds for one MDL.
#[derive(Debug)]
struct MdlRecord {
    frames: Vec<u64>,
}

/// A live mapping.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    mdl: usize,
    len: usize,
}

#[derive(Debug, Default)]
struct State {
    free: Vec<u64>,
    in_use: HashSet<u64>,
    mdls: HashMap<usize, Box<MdlRecord>>,
    mappings: HashMap<usize, Mapping>,
    faults: BTreeMap<u64, Fault>,
    calls: u64,
    call_log: Vec<AllocPoint>,
    violations: Vec<String>,
    budget: Option<usize>,
    peak_in_use: usize,
    /// Frames freed (and poisoned) and not handed out since.
    poisoned: HashSet<u64>,
}

/// The byte every freed page frame is filled with.
pub const FREED_PAGE_POISON: u8 = 0xDF;

/// How many unmapped views the process keeps reserved (the oldest is
/// released when another is unmapped).
pub const QUARANTINE_SLOTS: usize = 512;

/// One unmapped view kept reserved, and the stale accesses it caught. Read
/// by the `SIGSEGV` handler, so lock-free.
struct QuarantineSlot {
    /// The view's base (0: slot free). Written last, read first.
    start: AtomicUsize,
    len: AtomicUsize,
    /// The [`PhysicalMemory::id`] it belongs to.
    owner: AtomicU64,
    /// The MDL the view was mapped from.
    mdl: AtomicUsize,
    /// Pages of it accessed since the last report.
    hits: AtomicU64,
    /// The first address accessed (0: none).
    first: AtomicUsize,
}

impl QuarantineSlot {
    const fn empty() -> Self {
        Self {
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            owner: AtomicU64::new(0),
            mdl: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            first: AtomicUsize::new(0),
        }
    }
}

static QUARANTINE: [QuarantineSlot; QUARANTINE_SLOTS] =
    [const { QuarantineSlot::empty() }; QUARANTINE_SLOTS];

/// The next slot to fill; its lock serializes writers.
static QUARANTINE_NEXT: Mutex<usize> = Mutex::new(0);

/// Ids of [`PhysicalMemory`] instances (0 is never used).
static NEXT_MEMORY_ID: AtomicU64 = AtomicU64::new(1);

/// `si_code` of a `SIGSEGV` for an access the page's protection forbids
/// (Linux `asm-generic/siginfo.h`; the `libc` crate does not name it).
const SEGV_ACCERR: libc::c_int = 2;

/// Called by the process's `SIGSEGV` handler: if the fault is an access to
/// an unmapped view this model keeps reserved, records it, makes the page
/// accessible and returns `true` (the access then runs again and
/// succeeds). Async-signal-safe: atomics and one `mprotect`.
///
/// # Safety
///
/// `info` is null or the `siginfo_t` the kernel passed for a `SIGSEGV` on
/// this thread.
pub(crate) unsafe fn on_stale_access(info: *const libc::siginfo_t) -> bool {
    if info.is_null() {
        return false;
    }
    // SAFETY: the kernel's valid `siginfo_t` (caller's contract).
    let info = unsafe { &*info };
    if info.si_code != SEGV_ACCERR {
        return false;
    }
    // SAFETY: for SIGSEGV the kernel fills in `si_addr`.
    let address = unsafe { info.si_addr() }.addr();
    for slot in &QUARANTINE {
        let start = slot.start.load(Ordering::Acquire);
        if start == 0 || address < start || address - start >= slot.len.load(Ordering::Acquire) {
            continue;
        }
        let page = address & !(PAGE_SIZE - 1);
        // SAFETY: the page lies in a reservation this model made and owns
        // (a private anonymous mapping); making it accessible touches no
        // other memory.
        let rc = unsafe {
            libc::mprotect(
                ptr::with_exposed_provenance_mut::<libc::c_void>(page),
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return false;
        }
        slot.hits.fetch_add(1, Ordering::AcqRel);
        let _ = slot
            .first
            .compare_exchange(0, address, Ordering::AcqRel, Ordering::Acquire);
        return true;
    }
    false
}

/// The modelled RAM.
#[derive(Debug)]
pub struct PhysicalMemory {
    /// Tags this model's quarantined views.
    id: u64,
    file: OwnedFd,
    size: u64,
    layout: RamLayout,
    /// The whole file mapped once, for access by physical address.
    whole: *mut u8,
    state: Mutex<State>,
}

// SAFETY: `whole` is a shared file mapping that lives as long as `self`; all
// access goes through bounds-checked copies, and the bookkeeping is behind the
// mutex, so the model may be shared between threads like RAM is.
unsafe impl Send for PhysicalMemory {}
// SAFETY: as above.
unsafe impl Sync for PhysicalMemory {}

/// A small deterministic generator (`SplitMix64`) for the page shuffle.
const fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn os_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl PhysicalMemory {
    /// RAM in an anonymous memory file (`memfd_create`).
    ///
    /// # Errors
    ///
    /// The OS error of `memfd_create`, `ftruncate` or `mmap`.
    pub fn anonymous(config: MemoryConfig) -> io::Result<Self> {
        let name = CString::new("wavert-emulator-ram").map_err(io::Error::other)?;
        // SAFETY: `name` is a valid C string for the call's duration.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error("memfd_create"));
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::from_fd(file, config, true)
    }

    /// RAM in the file at `path` (created, and grown to the size, if needed):
    /// the form QEMU can share as guest RAM.
    ///
    /// # Errors
    ///
    /// The OS error of opening, sizing or mapping the file.
    pub fn with_file(path: &Path, config: MemoryConfig) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let grow = file.metadata()?.len() < config.size_bytes;
        Self::from_fd(OwnedFd::from(file), config, grow)
    }

    fn from_fd(file: OwnedFd, config: MemoryConfig, set_len: bool) -> io::Result<Self> {
        let size = config.size_bytes / PAGE_U64 * PAGE_U64;
        let layout = config.layout.of(size);
        if size == 0 || config.reserved_low_bytes >= layout.below_4g() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the memory below 4 GiB must exceed the reserved low memory",
            ));
        }
        let len = usize::try_from(size).map_err(io::Error::other)?;
        let off_len = libc::off_t::try_from(size).map_err(io::Error::other)?;
        if set_len {
            // SAFETY: `file` is an open, writable descriptor.
            if unsafe { libc::ftruncate(file.as_raw_fd(), off_len) } != 0 {
                return Err(os_error("ftruncate"));
            }
        }
        // SAFETY: a new shared mapping of the whole file; no existing memory is touched.
        let whole = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if whole == libc::MAP_FAILED {
            return Err(os_error("mmap of the RAM file"));
        }
        // Physical frame numbers: the low part above the reserved memory,
        // then the high part from 4 GiB.
        let first = config.reserved_low_bytes.div_ceil(PAGE_U64);
        let high_first = HIGH_RAM_BASE / PAGE_U64;
        let mut free: Vec<u64> = (first..layout.below_4g() / PAGE_U64)
            .chain(high_first..high_first + layout.above_4g() / PAGE_U64)
            .collect();
        if let Fragmentation::Shuffled(seed) = config.fragmentation {
            let mut s = seed;
            for i in (1..free.len()).rev() {
                let j = usize::try_from(split_mix(&mut s) % (i as u64 + 1)).unwrap_or(0);
                free.swap(i, j);
            }
        }
        // Allocation pops from the end: reverse so the first frames come first.
        free.reverse();
        Ok(Self {
            id: NEXT_MEMORY_ID.fetch_add(1, Ordering::Relaxed),
            file,
            size,
            layout,
            whole: whole.cast(),
            state: Mutex::new(State {
                free,
                budget: config.page_budget,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Size of the RAM in bytes.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Where the RAM sits in the physical address space.
    #[must_use]
    pub const fn layout(&self) -> RamLayout {
        self.layout
    }

    /// Makes allocation call number `call` (0-based, counting every
    /// [`AllocPoint`] in order) fail as `fault` says.
    pub fn inject(&self, call: u64, fault: Fault) {
        self.state().faults.insert(call, fault);
    }

    /// Sets the most pages in use at once.
    pub fn set_page_budget(&self, pages: Option<usize>) {
        self.state().budget = pages;
    }

    /// Allocation calls so far, in order.
    #[must_use]
    pub fn allocation_calls(&self) -> Vec<AllocPoint> {
        self.state().call_log.clone()
    }

    /// Pages currently handed out.
    #[must_use]
    pub fn pages_in_use(&self) -> usize {
        self.state().in_use.len()
    }

    /// The most pages ever in use at once.
    #[must_use]
    pub fn peak_pages_in_use(&self) -> usize {
        self.state().peak_in_use
    }

    /// MDLs not yet freed.
    #[must_use]
    pub fn live_mdls(&self) -> usize {
        self.state().mdls.len()
    }

    /// Mappings not yet unmapped.
    #[must_use]
    pub fn live_mappings(&self) -> usize {
        self.state().mappings.len()
    }

    /// Misuse seen so far (unknown handles, double frees, accesses through
    /// unmapped views, ...).
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        let mut state = self.state();
        for slot in &QUARANTINE {
            if slot.owner.load(Ordering::Acquire) != self.id
                || slot.start.load(Ordering::Acquire) == 0
            {
                continue;
            }
            let hits = slot.hits.swap(0, Ordering::AcqRel);
            if hits == 0 {
                continue;
            }
            let start = slot.start.load(Ordering::Acquire);
            let first = slot.first.swap(0, Ordering::AcqRel);
            state.violations.push(format!(
                "use after free: the view at {start:#x} ({} bytes) of MDL {:#x} was accessed after \
                 UnmapAllocatedPages ({hits} page(s), first at offset {:#x})",
                slot.len.load(Ordering::Acquire),
                slot.mdl.load(Ordering::Acquire),
                first.saturating_sub(start)
            ));
        }
        state.violations.clone()
    }

    /// Records a protocol violation found by another part of the emulator.
    pub fn record_violation(&self, what: String) {
        self.state().violations.push(what);
    }

    fn next_fault(state: &mut State, point: AllocPoint) -> Option<Fault> {
        let call = state.calls;
        state.calls += 1;
        state.call_log.push(point);
        state.faults.remove(&call)
    }

    fn take_frames(&self, state: &mut State, frames: Vec<u64>) -> usize {
        for &f in &frames {
            state.in_use.insert(f);
            if state.poisoned.remove(&f) && !self.still_poisoned(f) {
                state.violations.push(Self::written_after_free(f));
            }
        }
        state.peak_in_use = state.peak_in_use.max(state.in_use.len());
        let record = Box::new(MdlRecord { frames });
        let handle = ptr::from_ref::<MdlRecord>(&record) as usize;
        state.mdls.insert(handle, record);
        handle
    }

    fn room(state: &State) -> usize {
        state
            .budget
            .map_or(usize::MAX, |b| b.saturating_sub(state.in_use.len()))
    }

    /// `AllocatePagesForMdl`: up to `bytes` rounded up to pages, each page
    /// wholly at or below `high_address` (the low end is 0, as Learn's
    /// `IPortWaveRTStream::AllocatePagesForMdl` page says and the port in
    /// `ReactOS` passes to `MmAllocatePagesForMdl`), in the free list's (shuffled)
    /// order. May return fewer pages than asked; `None` when none at all.
    pub fn allocate_pages(&self, high_address: u64, bytes: usize) -> Option<usize> {
        let mut state = self.state();
        let mut wanted = bytes.div_ceil(PAGE_SIZE);
        match Self::next_fault(&mut state, AllocPoint::Pages) {
            Some(Fault::Fail) => return None,
            Some(Fault::Partial { pages }) => wanted = wanted.min(pages),
            None => {}
        }
        wanted = wanted.min(Self::room(&state));
        let mut frames = Vec::with_capacity(wanted);
        let mut skipped = Vec::new();
        while frames.len() < wanted {
            let Some(f) = state.free.pop() else { break };
            if (f + 1) * PAGE_U64 - 1 <= high_address {
                frames.push(f);
            } else {
                skipped.push(f);
            }
        }
        // Frames above the limit go back in their order.
        state.free.extend(skipped.into_iter().rev());
        if frames.is_empty() {
            return None;
        }
        let handle = self.take_frames(&mut state, frames);
        drop(state);
        Some(handle)
    }

    /// `AllocateContiguousPagesForMdl`: all pages physically contiguous
    /// within `[low, high]`, or `None`.
    pub fn allocate_contiguous(&self, low: u64, high: u64, bytes: usize) -> Option<usize> {
        let mut state = self.state();
        let wanted = bytes.div_ceil(PAGE_SIZE);
        match Self::next_fault(&mut state, AllocPoint::ContiguousPages) {
            Some(Fault::Fail) => return None,
            Some(Fault::Partial { pages }) if pages < wanted => return None,
            _ => {}
        }
        if wanted == 0 || wanted > Self::room(&state) {
            return None;
        }
        let first_ok = low.div_ceil(PAGE_U64);
        let mut candidates: Vec<u64> = state
            .free
            .iter()
            .copied()
            .filter(|&f| f >= first_ok && (f + 1) * PAGE_U64 - 1 <= high)
            .collect();
        candidates.sort_unstable();
        let mut run = 0;
        let mut found = None;
        for (i, &f) in candidates.iter().enumerate() {
            run = if i > 0 && candidates[i - 1] + 1 == f {
                run + 1
            } else {
                1
            };
            if run >= wanted {
                found = Some(f + 1 - wanted as u64);
                break;
            }
        }
        let start = found?;
        let frames: Vec<u64> = (start..start + wanted as u64).collect();
        state
            .free
            .retain(|f| !(start..start + wanted as u64).contains(f));
        let handle = self.take_frames(&mut state, frames);
        drop(state);
        Some(handle)
    }

    /// Pages of an MDL, `None` (and a violation) for an unknown handle.
    #[must_use]
    pub fn page_count(&self, mdl: usize) -> Option<usize> {
        let mut state = self.state();
        let count = state.mdls.get(&mdl).map(|r| r.frames.len());
        if count.is_none() {
            state
                .violations
                .push(format!("page count of unknown MDL {mdl:#x}"));
        }
        drop(state);
        count
    }

    /// Physical address of page `index` of an MDL.
    #[must_use]
    pub fn page_address(&self, mdl: usize, index: usize) -> Option<u64> {
        let mut state = self.state();
        let address = state
            .mdls
            .get(&mdl)
            .and_then(|r| r.frames.get(index))
            .map(|f| f * PAGE_U64);
        if address.is_none() {
            state
                .violations
                .push(format!("page {index} of MDL {mdl:#x} does not exist"));
        }
        drop(state);
        address
    }

    /// The physical addresses of every page of an MDL, in order.
    #[must_use]
    pub fn page_addresses(&self, mdl: usize) -> Option<Vec<u64>> {
        let state = self.state();
        state
            .mdls
            .get(&mdl)
            .map(|r| r.frames.iter().map(|f| f * PAGE_U64).collect())
    }

    /// Whether a bus master that reaches addresses up to `reach` (all ones
    /// in its address bits: `0xFFFF_FFFF` for a 32-bit device) may move the
    /// `len` bytes at `address` a driver programmed into it: every page
    /// they touch must be held by a live MDL and lie within the reach.
    ///
    /// The device sees only the bits it has, so a driver that cut a 64-bit
    /// page address to them programmed that page's low alias. An address
    /// whose page equals the low bits of a live page above the reach is
    /// reported as that page, truncated, even when the alias is itself a
    /// live page: the device cannot tell them apart, so neither can this
    /// check, and a driver whose device has a limit holds no page above it.
    ///
    /// # Errors
    ///
    /// What is wrong with the first page that is wrong, in one line.
    pub fn check_dma(&self, address: u64, len: u64, reach: u64) -> Result<(), String> {
        let Some(last) = len.checked_sub(1) else {
            return Ok(());
        };
        let last = address
            .checked_add(last)
            .ok_or_else(|| format!("DMA at {address:#x} ({len} bytes) wraps the address space"))?;
        let state = self.state();
        for frame in address / PAGE_U64..=last / PAGE_U64 {
            let page = frame * PAGE_U64;
            let meant = state
                .in_use
                .iter()
                .map(|f| f * PAGE_U64)
                .filter(|&held| held > reach && held & reach == page)
                .min();
            if let Some(meant) = meant {
                return Err(format!(
                    "DMA at {address:#x} ({len} bytes): page {page:#x} is page {meant:#x} cut to the device's address bits ({reach:#x}): a page above the device's reach was handed to its DMA engine"
                ));
            }
            if !state.in_use.contains(&frame) {
                return Err(format!(
                    "DMA at {address:#x} ({len} bytes): page {page:#x} is held by no MDL"
                ));
            }
            if page + (PAGE_U64 - 1) > reach {
                return Err(format!(
                    "DMA at {address:#x} ({len} bytes): page {page:#x} is above the device's reach ({reach:#x})"
                ));
            }
        }
        drop(state);
        Ok(())
    }

    /// `MapAllocatedPages`: a virtually contiguous view of the MDL's pages.
    pub fn map(&self, mdl: usize) -> Option<*mut u8> {
        self.map_view(mdl, true)
    }

    /// The port's own mapping of a buffer for the client (the user-mode view
    /// of the audio engine): like [`Self::map`], but never a fault point.
    pub fn map_for_client(&self, mdl: usize) -> Option<*mut u8> {
        self.map_view(mdl, false)
    }

    fn map_view(&self, mdl: usize, fault_point: bool) -> Option<*mut u8> {
        let mut state = self.state();
        if fault_point && Self::next_fault(&mut state, AllocPoint::Map).is_some() {
            return None;
        }
        let Some(frames) = state.mdls.get(&mdl).map(|r| r.frames.clone()) else {
            state
                .violations
                .push(format!("map of unknown MDL {mdl:#x}"));
            return None;
        };
        let mapped = self.map_frames(&frames);
        let base = match mapped {
            Ok(base) => {
                state.mappings.insert(
                    base as usize,
                    Mapping {
                        mdl,
                        len: frames.len() * PAGE_SIZE,
                    },
                );
                Some(base)
            }
            Err(e) => {
                state.violations.push(format!("mapping failed: {e}"));
                None
            }
        };
        drop(state);
        base
    }

    fn map_frames(&self, frames: &[u64]) -> io::Result<*mut u8> {
        let len = frames.len() * PAGE_SIZE;
        // SAFETY: an anonymous PROT_NONE reservation; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(os_error("mmap reservation"));
        }
        let base = base.cast::<u8>();
        for (i, &frame) in frames.iter().enumerate() {
            let at = base.wrapping_add(i * PAGE_SIZE);
            let offset = self
                .layout
                .file_offset(frame * PAGE_U64, PAGE_U64)
                .ok_or_else(|| io::Error::other(format!("frame {frame:#x} is not RAM")))
                .and_then(|o| libc::off_t::try_from(o).map_err(io::Error::other));
            let offset = match offset {
                Ok(offset) => offset,
                Err(e) => {
                    // SAFETY: the reservation is ours and not yet handed out.
                    unsafe { libc::munmap(base.cast(), len) };
                    return Err(e);
                }
            };
            // SAFETY: MAP_FIXED replaces one page of the reservation made above,
            // which this function owns; the file page is inside the file.
            let page = unsafe {
                libc::mmap(
                    at.cast(),
                    PAGE_SIZE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    self.file.as_raw_fd(),
                    offset,
                )
            };
            if page == libc::MAP_FAILED {
                let e = os_error("mmap of a page");
                // SAFETY: the reservation is ours and not yet handed out.
                unsafe { libc::munmap(base.cast(), len) };
                return Err(e);
            }
        }
        Ok(base)
    }

    /// The page at frame `frame` (inside the file), as a slice of the
    /// whole-file mapping.
    fn frame_bytes(&self, frame: u64) -> Option<&[u8]> {
        let at = self.check_range(frame * PAGE_U64, PAGE_SIZE)?;
        // SAFETY: `at..at+PAGE_SIZE` lies inside the whole-file mapping
        // (checked above), which lives as long as `self`; the bytes are
        // plain integers, whatever another party writes meanwhile.
        Some(unsafe { std::slice::from_raw_parts(self.whole.wrapping_add(at), PAGE_SIZE) })
    }

    /// Whether a freed frame still holds nothing but the poison.
    fn still_poisoned(&self, frame: u64) -> bool {
        self.frame_bytes(frame)
            .is_some_and(|page| page.iter().all(|&b| b == FREED_PAGE_POISON))
    }

    fn written_after_free(frame: u64) -> String {
        format!(
            "use after free: page frame {:#x} was written after FreePagesFromMdl returned it \
             (a DMA engine still running on it, or a mapping nobody unmapped)",
            frame * PAGE_U64
        )
    }

    /// Checks every freed frame not handed out since for writes after its
    /// free; each one written is a violation (and is poisoned again).
    /// Returns how many were written.
    pub fn check_freed_pages(&self) -> usize {
        let mut state = self.state();
        let mut written: Vec<u64> = state
            .poisoned
            .iter()
            .copied()
            .filter(|&f| !self.still_poisoned(f))
            .collect();
        written.sort_unstable();
        state
            .violations
            .extend(written.iter().map(|&f| Self::written_after_free(f)));
        drop(state);
        for &f in &written {
            self.poison(f);
        }
        written.len()
    }

    fn poison(&self, frame: u64) {
        let _ = self.write_physical(frame * PAGE_U64, &[FREED_PAGE_POISON; PAGE_SIZE]);
    }

    /// Keeps an unmapped view's addresses reserved and inaccessible (see
    /// the module documentation), releasing the oldest kept view.
    fn quarantine(&self, base: *mut u8, len: usize, mdl: usize) {
        // A stale access to the view is caught by the SIGSEGV handler;
        // without it, it would kill the process, which is still no silent
        // corruption.
        if let Err(e) = crate::image::io_trap::install() {
            eprintln!("wavert-emulator: stale accesses to unmapped views are not trapped: {e}");
        }
        let mut next = QUARANTINE_NEXT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(slot) = QUARANTINE.get(*next) else {
            return;
        };
        *next = (*next + 1) % QUARANTINE_SLOTS;
        let old = slot.start.swap(0, Ordering::AcqRel);
        if old != 0 {
            let old_len = slot.len.load(Ordering::Acquire);
            // SAFETY: the oldest kept view, a reservation this model made;
            // nobody may use it (it was unmapped long ago), and the slot no
            // longer names it.
            unsafe { libc::munmap(ptr::with_exposed_provenance_mut(old), old_len) };
        }
        slot.len.store(len, Ordering::Release);
        slot.owner.store(self.id, Ordering::Release);
        slot.mdl.store(mdl, Ordering::Release);
        slot.hits.store(0, Ordering::Release);
        slot.first.store(0, Ordering::Release);
        slot.start
            .store(base.expose_provenance(), Ordering::Release);
        drop(next);
    }

    /// `UnmapAllocatedPages`.
    pub fn unmap(&self, base: *mut u8, mdl: usize) {
        let mut state = self.state();
        let Some(mapping) = state.mappings.get(&(base as usize)).copied() else {
            state
                .violations
                .push(format!("unmap of {base:p}, which is not a mapping"));
            return;
        };
        if mapping.mdl != mdl {
            state.violations.push(format!(
                "unmap of {base:p} with MDL {mdl:#x}, mapped from {:#x}",
                mapping.mdl
            ));
        }
        state.mappings.remove(&(base as usize));
        drop(state);
        // SAFETY: `base..base+len` is a mapping this model made and nobody
        // may use after UnmapAllocatedPages (the caller's contract); the new
        // inaccessible reservation replaces exactly it, in place.
        let reserved = unsafe {
            libc::mmap(
                base.cast(),
                mapping.len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if reserved == libc::MAP_FAILED {
            // SAFETY: as above; the view is simply released then.
            unsafe { libc::munmap(base.cast(), mapping.len) };
            return;
        }
        self.quarantine(base, mapping.len, mdl);
    }

    /// `FreePagesFromMdl`: the pages go back to the free list.
    pub fn free(&self, mdl: usize) {
        let mut state = self.state();
        if state.mappings.values().any(|m| m.mdl == mdl) {
            state
                .violations
                .push(format!("MDL {mdl:#x} freed while still mapped"));
        }
        let Some(record) = state.mdls.remove(&mdl) else {
            state
                .violations
                .push(format!("free of unknown (or already freed) MDL {mdl:#x}"));
            return;
        };
        for &f in &record.frames {
            state.in_use.remove(&f);
            self.poison(f);
            state.poisoned.insert(f);
        }
        // Freed pages are reused last, as a real free list would scatter them.
        let mut frames = record.frames;
        frames.reverse();
        let mut rest = std::mem::take(&mut state.free);
        frames.append(&mut rest);
        state.free = frames;
    }

    /// The offset in the whole-file mapping of `len` bytes at physical
    /// `address`, when all of them are RAM of one piece.
    fn check_range(&self, address: u64, len: usize) -> Option<usize> {
        let offset = self.layout.file_offset(address, len as u64)?;
        usize::try_from(offset).ok()
    }

    /// Reads RAM at a physical address (as a device's DMA would).
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the range leaves RAM.
    pub fn read_physical(&self, address: u64, out: &mut [u8]) -> io::Result<()> {
        let at = self
            .check_range(address, out.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "outside RAM"))?;
        let from = self.whole.wrapping_add(at);
        // SAFETY: `at..at+len` lies inside the whole-file mapping (checked above)
        // and `out` is a distinct Rust buffer.
        unsafe { ptr::copy_nonoverlapping(from, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Writes RAM at a physical address.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the range leaves RAM.
    pub fn write_physical(&self, address: u64, data: &[u8]) -> io::Result<()> {
        let at = self
            .check_range(address, data.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "outside RAM"))?;
        let to = self.whole.wrapping_add(at);
        // SAFETY: `at..at+len` lies inside the whole-file mapping (checked above)
        // and `data` is a distinct Rust buffer.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), to, data.len()) };
        Ok(())
    }
}

impl Drop for PhysicalMemory {
    fn drop(&mut self) {
        // The views this model keeps reserved go with it.
        {
            let _writers = QUARANTINE_NEXT
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for slot in &QUARANTINE {
                if slot.owner.load(Ordering::Acquire) != self.id {
                    continue;
                }
                let start = slot.start.swap(0, Ordering::AcqRel);
                if start != 0 {
                    // SAFETY: a reservation this model made, named by no
                    // slot any more, used by nobody.
                    unsafe {
                        libc::munmap(
                            ptr::with_exposed_provenance_mut(start),
                            slot.len.load(Ordering::Acquire),
                        );
                    };
                }
            }
        }
        let state = self.state();
        for (&base, m) in &state.mappings {
            // SAFETY: each recorded mapping was made by this model and is
            // released once, here, as the RAM goes away.
            unsafe { libc::munmap(base as *mut libc::c_void, m.len) };
        }
        drop(state);
        if let Ok(len) = usize::try_from(self.size) {
            // SAFETY: the whole-file mapping was made in `from_fd` with this length.
            unsafe { libc::munmap(self.whole.cast(), len) };
        }
    }
}
