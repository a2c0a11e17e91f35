//! The kernel stand-ins the driver image imports from `ntoskrnl.exe` and
//! `hal.dll`, with Driver Verifier's discipline.
//!
//! Each stand-in is an `extern "win64"` function (the image's convention)
//! that does what the kernel documents and checks what Driver Verifier
//! checks: the caller's IRQL against the routine's documented limit, paged
//! pool at `DISPATCH_LEVEL` or above, executable pool, pool blocks freed
//! twice or never allocated, spinlocks released that were not held or at the
//! wrong IRQL, and at unload every pool block, timer and DPC left behind.
//! A violation names the rule and the call site as an offset in the image
//! (the first return address inside it on the caller's stack) and lands in
//! the machine's violation list, which every report prints and every test
//! requires empty.
//!
//! There is one kernel per process at a time ([`Kernel::install`]): the
//! image's imports carry no context, exactly like the real ones.

#![allow(
    non_snake_case,
    reason = "the kernel's export names, as the image imports them"
)]
#![allow(
    clippy::must_use_candidate,
    clippy::missing_const_for_fn,
    reason = "the stand-ins are called by the image through its import table, where attributes mean nothing"
)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{c_char, c_void, CStr};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use portcls_sys::{windows_abi, windows_fn, NTSTATUS, PKEVENT, STATUS_SUCCESS};

use crate::irql::{self, APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL};
use crate::machine::{lock, Machine, TimerCallback, QPC_FREQUENCY};

/// `POOL_FLAG_UNINITIALIZED` (`wdm.h`, `ExAllocatePool2`).
pub const POOL_FLAG_UNINITIALIZED: u64 = 0x2;
/// `POOL_FLAG_NON_PAGED`.
pub const POOL_FLAG_NON_PAGED: u64 = 0x40;
/// `POOL_FLAG_NON_PAGED_EXECUTE`: executable pool, refused under memory integrity.
pub const POOL_FLAG_NON_PAGED_EXECUTE: u64 = 0x80;
/// `POOL_FLAG_PAGED`.
pub const POOL_FLAG_PAGED: u64 = 0x100;

/// What uninitialised pool is filled with, so that reading it shows.
const POOL_POISON: u8 = 0xA5;
/// What freed pool is filled with before it goes back to the host.
const FREED_POISON: u8 = 0xDF;
/// Pool alignment on x64 Windows (16 bytes; page-sized blocks are page aligned there).
const POOL_ALIGN: usize = 16;

/// The process exit code after a bugcheck (the machine stopped).
pub const BUGCHECK_EXIT_CODE: i32 = 86;

/// `KeBugCheckEx`'s arguments and where it was called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bugcheck {
    /// The bugcheck code.
    pub code: u32,
    /// The four parameters.
    pub parameters: [usize; 4],
    /// The call site in the image.
    pub call_site: String,
}

struct PoolBlock {
    size: usize,
    tag: u32,
    call_site: String,
}

/// The signature of an `EXT_CALLBACK` (`ExAllocateTimer`).
pub type ExtCallback = windows_fn!(unsafe fn(timer: *mut c_void, context: *mut c_void));
/// The signature of a `KDEFERRED_ROUTINE` (`KeInitializeDpc`).
pub type DeferredRoutine = windows_fn!(
    unsafe fn(dpc: *mut c_void, context: *mut c_void, arg1: *mut c_void, arg2: *mut c_void)
);

struct TimerRecord {
    callback: ExtCallback,
    context: usize,
    armed: Option<u64>,
    call_site: String,
}

struct DpcRecord {
    routine: DeferredRoutine,
    context: usize,
    arguments: (usize, usize),
    queued: bool,
}

/// A BAR mapping `MmMapIoSpaceEx` made: an inaccessible reservation the
/// MMIO trap stands behind.
struct IoSpace {
    /// Bytes the driver asked for (what `MmUnmapIoSpace` must repeat).
    bytes: usize,
    /// Bytes reserved (whole pages).
    reserved: usize,
    call_site: String,
}

/// Contiguous memory `MmAllocateContiguousNodeMemory` handed out.
struct ContiguousBlock {
    mdl: usize,
    bytes: usize,
    physical: u64,
    call_site: String,
}

/// What the kernel saw over a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelCounters {
    /// Pool allocations.
    pub pool_allocations: u64,
    /// Pool frees.
    pub pool_frees: u64,
    /// Timer callbacks delivered.
    pub timer_callbacks: u64,
    /// DPCs run.
    pub dpcs_run: u64,
    /// `KeSetEvent` calls.
    pub events_signalled: u64,
    /// Spinlock acquisitions.
    pub spinlock_acquisitions: u64,
    /// `DbgPrint` lines.
    pub debug_prints: u64,
}

/// The emulated kernel of one image run.
pub struct Kernel {
    machine: Arc<Machine>,
    this: Weak<Self>,
    image_name: String,
    image_range: Mutex<Option<(usize, usize)>>,
    pool: Mutex<HashMap<usize, PoolBlock>>,
    freed: Mutex<HashSet<usize>>,
    timers: Mutex<HashMap<usize, TimerRecord>>,
    dpcs: Mutex<HashMap<usize, DpcRecord>>,
    dpc_queue: Mutex<VecDeque<usize>>,
    stall: Mutex<Option<StallHook>>,
    /// The device's memory BAR (physical base, length), if it has one.
    mmio_bar: Mutex<Option<(u64, u64)>>,
    io_spaces: Mutex<HashMap<usize, IoSpace>>,
    contiguous: Mutex<HashMap<usize, ContiguousBlock>>,
    counters: Mutex<KernelCounters>,
    violations: AtomicUsize,
    pub(super) portcls: super::portcls::PortClsState,
    pub(super) interfaces: super::device_interfaces::InterfaceState,
    pub(super) registry: super::registry::RegistryState,
}

/// What `KeStallExecutionProcessor` also does (e.g. run a device model's clock).
pub type StallHook = Box<dyn Fn(u32) + Send + Sync>;

static CURRENT: Mutex<Option<Arc<Kernel>>> = Mutex::new(None);
/// Whether a kernel is installed: image runs within one process take turns.
static BUSY: Mutex<bool> = Mutex::new(false);
static BUSY_CHANGED: std::sync::Condvar = std::sync::Condvar::new();
static NEXT_SPINLOCK_OWNER: AtomicU64 = AtomicU64::new(1);

/// The kernel the image's imports reach. Returns `None` outside a run.
#[must_use]
pub fn current() -> Option<Arc<Kernel>> {
    lock(&CURRENT).clone()
}

/// The kernel, or the process stops: an import called with no kernel
/// installed is a harness bug that must not pass silently.
fn kernel() -> Arc<Kernel> {
    current().unwrap_or_else(|| {
        eprintln!("rswavert image: a kernel import was called with no kernel installed");
        std::process::abort()
    })
}

/// Held while a kernel is installed; uninstalls it on drop.
pub struct Installed {
    kernel: Arc<Kernel>,
}

impl Installed {
    /// The kernel.
    #[must_use]
    pub const fn kernel(&self) -> &Arc<Kernel> {
        &self.kernel
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        *lock(&CURRENT) = None;
        *lock(&BUSY) = false;
        BUSY_CHANGED.notify_one();
    }
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("image", &self.kernel.image_name)
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// A kernel over `machine` for the image called `image_name`, installed
    /// as the process's kernel until the returned guard goes (waiting for a
    /// run in another thread to finish first).
    #[must_use]
    pub fn install(
        machine: &Arc<Machine>,
        image_name: &str,
        portcls: super::portcls::PortClsState,
    ) -> Installed {
        let mut busy = lock(&BUSY);
        while *busy {
            busy = BUSY_CHANGED
                .wait(busy)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *busy = true;
        drop(busy);
        let kernel = Arc::new_cyclic(|this| Self {
            machine: Arc::clone(machine),
            this: this.clone(),
            image_name: image_name.to_owned(),
            image_range: Mutex::new(None),
            pool: Mutex::new(HashMap::new()),
            freed: Mutex::new(HashSet::new()),
            timers: Mutex::new(HashMap::new()),
            dpcs: Mutex::new(HashMap::new()),
            dpc_queue: Mutex::new(VecDeque::new()),
            stall: Mutex::new(None),
            mmio_bar: Mutex::new(None),
            io_spaces: Mutex::new(HashMap::new()),
            contiguous: Mutex::new(HashMap::new()),
            counters: Mutex::new(KernelCounters::default()),
            violations: AtomicUsize::new(0),
            portcls,
            interfaces: super::device_interfaces::InterfaceState::default(),
            registry: super::registry::RegistryState::default(),
        });
        *lock(&CURRENT) = Some(Arc::clone(&kernel));
        Installed { kernel }
    }

    /// The machine.
    #[must_use]
    pub const fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    /// PortCls's state of this run (the FDO, the PnP IRPs it handled).
    #[must_use]
    pub const fn portcls(&self) -> &super::portcls::PortClsState {
        &self.portcls
    }

    /// Tells the kernel where the image lies (for call sites).
    pub fn set_image_range(&self, base: usize, size: usize) {
        *lock(&self.image_range) = Some((base, size));
    }

    /// What `KeStallExecutionProcessor` does besides returning (e.g. let a
    /// device model's clock run for that long).
    pub fn set_stall(&self, stall: Option<StallHook>) {
        *lock(&self.stall) = stall;
    }

    /// The device's memory BAR (physical base and length) that
    /// `MmMapIoSpaceEx` may map; `None`: the device has none.
    pub fn set_mmio_bar(&self, bar: Option<(u64, u64)>) {
        *lock(&self.mmio_bar) = bar;
    }

    /// The counters so far.
    #[must_use]
    pub fn counters(&self) -> KernelCounters {
        lock(&self.counters).clone()
    }

    /// Violations this kernel reported.
    #[must_use]
    pub fn violation_count(&self) -> usize {
        self.violations.load(Ordering::Acquire)
    }

    /// The first return address inside the image on the current stack, as
    /// `image+0xOFFSET`.
    #[must_use]
    pub fn call_site(&self) -> String {
        let range = *lock(&self.image_range);
        let Some((base, size)) = range else {
            return "before the image was mapped".to_owned();
        };
        let mut found = None;
        backtrace::trace(|frame| {
            let ip = frame.ip().addr();
            if ip >= base && ip - base < size {
                found = Some(ip - base);
                false
            } else {
                true
            }
        });
        found.map_or_else(
            || "outside the image".to_owned(),
            |offset| format!("{}+{offset:#x}", self.image_name),
        )
    }

    /// Reports a violation of `rule` at the current call site.
    pub fn violation(&self, rule: &str, detail: &str) {
        self.violations.fetch_add(1, Ordering::AcqRel);
        self.machine.violation(format!(
            "driver verifier: {rule}: {detail} (at {})",
            self.call_site()
        ));
    }

    /// Checks that the caller runs at or below `limit`.
    fn require_irql_at_most(&self, routine: &str, limit: u8) {
        if let Some(what) = irql::above(routine, limit) {
            self.violation("IRQL", &what);
        }
    }

    fn count(&self, update: impl FnOnce(&mut KernelCounters)) {
        update(&mut lock(&self.counters));
    }

    /// Runs the queued DPCs, at `DISPATCH_LEVEL`, if this processor is
    /// below it (which is when Windows delivers them).
    pub fn run_dpcs(&self) {
        if irql::current() >= DISPATCH_LEVEL {
            return;
        }
        loop {
            let next = lock(&self.dpc_queue).pop_front();
            let Some(address) = next else {
                return;
            };
            let call = {
                let mut dpcs = lock(&self.dpcs);
                dpcs.get_mut(&address).and_then(|record| {
                    record.queued.then(|| {
                        record.queued = false;
                        (record.routine, record.context, record.arguments)
                    })
                })
            };
            let Some((routine, context, (arg1, arg2))) = call else {
                continue;
            };
            self.count(|c| c.dpcs_run += 1);
            let ((), left) = irql::run_at(DISPATCH_LEVEL, || {
                // SAFETY: the routine and context the image gave KeInitializeDpc,
                // called as the kernel calls a KDEFERRED_ROUTINE, at DISPATCH_LEVEL.
                unsafe {
                    routine(
                        address as *mut c_void,
                        context as *mut c_void,
                        arg1 as *mut c_void,
                        arg2 as *mut c_void,
                    );
                };
            });
            if left != DISPATCH_LEVEL {
                self.violation(
                    "IRQL",
                    &format!("a DPC routine returned at {}", irql::name(left)),
                );
            }
        }
    }

    fn fire_timer(&self, timer: usize) {
        let call = {
            let mut timers = lock(&self.timers);
            timers
                .get_mut(&timer)
                .map(|record| (record.callback, record.context))
        };
        let Some((callback, context)) = call else {
            return;
        };
        self.count(|c| c.timer_callbacks += 1);
        // Timer callbacks run from a DPC, at DISPATCH_LEVEL.
        let ((), left) = irql::run_at(DISPATCH_LEVEL, || {
            // SAFETY: the callback and context the image gave ExAllocateTimer,
            // called as the kernel calls an EXT_CALLBACK.
            unsafe { callback(timer as *mut c_void, context as *mut c_void) };
        });
        if left != DISPATCH_LEVEL {
            self.violation(
                "IRQL",
                &format!("a timer callback returned at {}", irql::name(left)),
            );
        }
        self.run_dpcs();
    }

    /// Driver unload: everything the driver still holds is a violation.
    /// Returns the number of leaks found.
    pub fn check_unload(&self) -> usize {
        let mut leaks =
            self.interfaces.check_unload(&self.machine) + self.registry.check_unload(&self.machine);
        let blocks: Vec<(usize, usize, u32, String)> = lock(&self.pool)
            .iter()
            .map(|(&a, b)| (a, b.size, b.tag, b.call_site.clone()))
            .collect();
        for (address, size, tag, site) in blocks {
            leaks += 1;
            self.machine.violation(format!(
                "driver verifier: pool leak: {size} bytes with tag {} at {address:#x} still allocated at unload (allocated at {site})",
                tag_text(tag)
            ));
        }
        let timers: Vec<(usize, bool, String)> = lock(&self.timers)
            .iter()
            .map(|(&a, t)| (a, t.armed.is_some(), t.call_site.clone()))
            .collect();
        for (address, armed, site) in timers {
            leaks += 1;
            self.machine.violation(format!(
                "driver verifier: timer {address:#x} (allocated at {site}) not deleted at unload{}",
                if armed { ", and still set" } else { "" }
            ));
        }
        let spaces: Vec<(usize, usize, String)> = lock(&self.io_spaces)
            .iter()
            .map(|(&a, m)| (a, m.bytes, m.call_site.clone()))
            .collect();
        for (address, bytes, site) in spaces {
            leaks += 1;
            self.machine.violation(format!(
                "driver verifier: {bytes} bytes of I/O space mapped at {address:#x} not unmapped at unload (MmMapIoSpaceEx at {site})"
            ));
        }
        let blocks: Vec<(usize, usize, String)> = lock(&self.contiguous)
            .iter()
            .map(|(&a, b)| (a, b.bytes, b.call_site.clone()))
            .collect();
        for (address, bytes, site) in blocks {
            leaks += 1;
            self.machine.violation(format!(
                "driver verifier: {bytes} bytes of contiguous memory at {address:#x} not freed at unload (allocated at {site})"
            ));
        }
        let queued = lock(&self.dpcs).values().filter(|d| d.queued).count();
        if queued > 0 {
            leaks += queued;
            self.machine.violation(format!(
                "driver verifier: {queued} DPC(s) still queued at unload"
            ));
        }
        self.violations.fetch_add(leaks, Ordering::AcqRel);
        leaks
    }
}

fn tag_text(tag: u32) -> String {
    let bytes = tag.to_le_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("'{}'", String::from_utf8_lossy(&bytes))
    } else {
        format!("{tag:#010x}")
    }
}

// ---------------------------------------------------------------------------
// ntoskrnl.exe: pool

/// `ExAllocatePool2`.
///
/// # Safety
///
/// Called by the image as the kernel routine; no pointer argument.
#[windows_abi]
pub unsafe extern "system" fn ExAllocatePool2(flags: u64, size: usize, tag: u32) -> *mut c_void {
    let k = kernel();
    k.require_irql_at_most("ExAllocatePool2", DISPATCH_LEVEL);
    if flags & POOL_FLAG_PAGED != 0 && irql::current() >= DISPATCH_LEVEL {
        k.violation(
            "paged pool at raised IRQL",
            &format!(
                "ExAllocatePool2(POOL_FLAG_PAGED) at {}",
                irql::name(irql::current())
            ),
        );
    }
    if flags & POOL_FLAG_NON_PAGED_EXECUTE != 0 {
        k.violation(
            "executable pool",
            "ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE) is refused under memory integrity",
        );
        return std::ptr::null_mut();
    }
    if flags & (POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED) == 0 {
        k.violation(
            "pool flags",
            &format!("ExAllocatePool2 flags {flags:#x} name no pool type"),
        );
        return std::ptr::null_mut();
    }
    let Ok(layout) = std::alloc::Layout::from_size_align(size.max(1), POOL_ALIGN) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a non-zero-sized layout.
    let block = unsafe { std::alloc::alloc(layout) };
    if block.is_null() {
        return std::ptr::null_mut();
    }
    let fill = if flags & POOL_FLAG_UNINITIALIZED != 0 {
        POOL_POISON
    } else {
        0
    };
    // SAFETY: `block` has `layout.size()` writable bytes.
    unsafe { block.write_bytes(fill, layout.size()) };
    lock(&k.pool).insert(
        block.addr(),
        PoolBlock {
            size: layout.size(),
            tag,
            call_site: k.call_site(),
        },
    );
    lock(&k.freed).remove(&block.addr());
    k.count(|c| c.pool_allocations += 1);
    block.cast()
}

/// `ExFreePool`.
///
/// # Safety
///
/// `block` is what the image got from `ExAllocatePool2`; anything else is
/// reported, not freed.
#[windows_abi]
pub unsafe extern "system" fn ExFreePool(block: *mut c_void) {
    let k = kernel();
    k.require_irql_at_most("ExFreePool", DISPATCH_LEVEL);
    if block.is_null() {
        k.violation("pool free", "ExFreePool(NULL)");
        return;
    }
    let Some(record) = lock(&k.pool).remove(&block.addr()) else {
        let twice = lock(&k.freed).contains(&block.addr());
        k.violation(
            "pool free",
            &format!(
                "ExFreePool({block:p}): {}",
                if twice {
                    "freed twice"
                } else {
                    "never allocated"
                }
            ),
        );
        return;
    };
    lock(&k.freed).insert(block.addr());
    k.count(|c| c.pool_frees += 1);
    let block = block.cast::<u8>();
    // SAFETY: a live block of `record.size` bytes we allocated; poisoned so a
    // use after free reads garbage, not stale data.
    unsafe { block.write_bytes(FREED_POISON, record.size) };
    let Ok(layout) = std::alloc::Layout::from_size_align(record.size, POOL_ALIGN) else {
        return;
    };
    // SAFETY: allocated in ExAllocatePool2 with this size and alignment.
    unsafe { std::alloc::dealloc(block, layout) };
}

// ---------------------------------------------------------------------------
// ntoskrnl.exe: spinlocks

/// `KeAcquireSpinLockRaiseToDpc`.
///
/// # Safety
///
/// `spinlock` points to the image's `KSPIN_LOCK` (a pointer-sized word).
#[windows_abi]
pub unsafe extern "system" fn KeAcquireSpinLockRaiseToDpc(spinlock: *mut usize) -> u8 {
    let k = kernel();
    k.require_irql_at_most("KeAcquireSpinLockRaiseToDpc", DISPATCH_LEVEL);
    // SAFETY: a KSPIN_LOCK is a naturally aligned pointer-sized word; all
    // access to it goes through these atomics.
    let word = unsafe { std::sync::atomic::AtomicUsize::from_ptr(spinlock) };
    let owner = usize::try_from(NEXT_SPINLOCK_OWNER.fetch_add(1, Ordering::Relaxed)).unwrap_or(1);
    if word
        .compare_exchange(0, owner, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // One processor runs the image here: a held lock can never be
        // released by anyone else, so this is the deadlock a real machine hangs in.
        k.violation(
            "spinlock",
            &format!("KeAcquireSpinLockRaiseToDpc({spinlock:p}) on a lock already held (deadlock)"),
        );
        word.store(owner, Ordering::Release);
    }
    k.count(|c| c.spinlock_acquisitions += 1);
    irql::set(DISPATCH_LEVEL)
}

/// `KeReleaseSpinLock`.
///
/// # Safety
///
/// `spinlock` points to the image's `KSPIN_LOCK`.
#[windows_abi]
pub unsafe extern "system" fn KeReleaseSpinLock(spinlock: *mut usize, new_irql: u8) {
    let k = kernel();
    // SAFETY: as in KeAcquireSpinLockRaiseToDpc.
    let word = unsafe { std::sync::atomic::AtomicUsize::from_ptr(spinlock) };
    if word.swap(0, Ordering::Release) == 0 {
        k.violation(
            "spinlock",
            &format!("KeReleaseSpinLock({spinlock:p}) on a lock that is not held"),
        );
    }
    let now = irql::current();
    if now != DISPATCH_LEVEL {
        k.violation(
            "spinlock",
            &format!(
                "KeReleaseSpinLock at {} (must be DISPATCH_LEVEL)",
                irql::name(now)
            ),
        );
    }
    if new_irql > DISPATCH_LEVEL {
        k.violation(
            "spinlock",
            &format!(
                "KeReleaseSpinLock to {}, above DISPATCH_LEVEL",
                irql::name(new_irql)
            ),
        );
    }
    irql::set(new_irql);
    k.run_dpcs();
}

// ---------------------------------------------------------------------------
// ntoskrnl.exe: events

/// `KeSetEvent`.
///
/// # Safety
///
/// `event` is a `KEVENT` the image was given (the machine checks it is one
/// the emulated port made).
#[windows_abi]
pub unsafe extern "system" fn KeSetEvent(event: PKEVENT, _increment: i32, wait: u8) -> i32 {
    let k = kernel();
    k.require_irql_at_most(
        "KeSetEvent",
        if wait == 0 { DISPATCH_LEVEL } else { APC_LEVEL },
    );
    k.count(|c| c.events_signalled += 1);
    k.machine.set_event(event);
    0
}

// ---------------------------------------------------------------------------
// ntoskrnl.exe: high-resolution timers

/// `ExAllocateTimer`.
///
/// # Safety
///
/// `callback`, if any, is an `EXT_CALLBACK` of the image.
#[windows_abi]
pub unsafe extern "system" fn ExAllocateTimer(
    callback: Option<ExtCallback>,
    context: *mut c_void,
    _attributes: u32,
) -> *mut c_void {
    let k = kernel();
    k.require_irql_at_most("ExAllocateTimer", DISPATCH_LEVEL);
    let Some(callback) = callback else {
        k.violation("timer", "ExAllocateTimer without a callback");
        return std::ptr::null_mut();
    };
    // The timer object is a small block of our own; its address is the handle.
    let handle = Box::into_raw(Box::new(0u64)).cast::<c_void>();
    lock(&k.timers).insert(
        handle.addr(),
        TimerRecord {
            callback,
            context: context.addr(),
            armed: None,
            call_site: k.call_site(),
        },
    );
    handle
}

fn timer_known(k: &Kernel, routine: &str, timer: *mut c_void) -> bool {
    let known = lock(&k.timers).contains_key(&timer.addr());
    if !known {
        k.violation(
            "timer",
            &format!("{routine}({timer:p}) on a timer ExAllocateTimer did not return (or deleted)"),
        );
    }
    known
}

/// Cancels a timer's machine schedule; whether it was set.
fn disarm(k: &Kernel, timer: usize) -> bool {
    let armed = lock(&k.timers).get_mut(&timer).and_then(|t| t.armed.take());
    armed.is_some_and(|id| k.machine.cancel_timer(id))
}

/// `ExSetTimer`: a negative due time is relative (100 ns units), a positive
/// one absolute system time (not used by drivers of this kind: refused);
/// a period of 0 fires once.
///
/// # Safety
///
/// `timer` comes from `ExAllocateTimer`.
#[windows_abi]
pub unsafe extern "system" fn ExSetTimer(
    timer: *mut c_void,
    due_time: i64,
    period: i64,
    _parameters: *mut c_void,
) -> u8 {
    let k = kernel();
    k.require_irql_at_most("ExSetTimer", DISPATCH_LEVEL);
    if !timer_known(&k, "ExSetTimer", timer) {
        return 0;
    }
    if due_time > 0 || period < 0 {
        k.violation(
            "timer",
            &format!("ExSetTimer due time {due_time} / period {period}: only relative due times and non-negative periods are modelled"),
        );
        return 0;
    }
    let was_set = disarm(&k, timer.addr());
    let to_qpc = |hundred_ns: u64| hundred_ns * QPC_FREQUENCY / 10_000_000;
    let due = to_qpc(due_time.unsigned_abs());
    let period = to_qpc(period.unsigned_abs());
    let this = k.this.clone();
    let address = timer.addr();
    let callback: TimerCallback = Arc::new(move |_now| {
        if let Some(k) = this.upgrade() {
            if period == 0 {
                // Fired once: no longer set.
                if let Some(t) = lock(&k.timers).get_mut(&address) {
                    t.armed = None;
                }
            }
            k.fire_timer(address);
        }
    });
    let id = k.machine.start_timer_due(due, period, callback);
    if let Some(t) = lock(&k.timers).get_mut(&address) {
        t.armed = Some(id);
    }
    u8::from(was_set)
}

/// `ExCancelTimer`.
///
/// # Safety
///
/// `timer` comes from `ExAllocateTimer`.
#[windows_abi]
pub unsafe extern "system" fn ExCancelTimer(timer: *mut c_void, _parameters: *mut c_void) -> u8 {
    let k = kernel();
    k.require_irql_at_most("ExCancelTimer", DISPATCH_LEVEL);
    if !timer_known(&k, "ExCancelTimer", timer) {
        return 0;
    }
    u8::from(disarm(&k, timer.addr()))
}

/// `ExDeleteTimer`: with `wait`, only below `DISPATCH_LEVEL`.
///
/// # Safety
///
/// `timer` comes from `ExAllocateTimer` and is not used again.
#[windows_abi]
pub unsafe extern "system" fn ExDeleteTimer(
    timer: *mut c_void,
    cancel: u8,
    wait: u8,
    _parameters: *mut c_void,
) -> u8 {
    let k = kernel();
    k.require_irql_at_most(
        "ExDeleteTimer",
        if wait == 0 { DISPATCH_LEVEL } else { APC_LEVEL },
    );
    if !timer_known(&k, "ExDeleteTimer", timer) {
        return 0;
    }
    let was_set = disarm(&k, timer.addr());
    if was_set && cancel == 0 {
        k.violation(
            "timer",
            "ExDeleteTimer(Cancel = FALSE) on a timer that is still set",
        );
    }
    lock(&k.timers).remove(&timer.addr());
    // SAFETY: the handle is the box ExAllocateTimer made, deleted once (it
    // left the table above, so a second delete is reported, not freed).
    drop(unsafe { Box::from_raw(timer.cast::<u64>()) });
    u8::from(was_set)
}

// ---------------------------------------------------------------------------
// ntoskrnl.exe: DPCs

/// `KeInitializeDpc`.
///
/// # Safety
///
/// `dpc` is the image's `KDPC`; `routine` its `KDEFERRED_ROUTINE`.
#[windows_abi]
pub unsafe extern "system" fn KeInitializeDpc(
    dpc: *mut c_void,
    routine: Option<DeferredRoutine>,
    context: *mut c_void,
) {
    let k = kernel();
    let Some(routine) = routine else {
        k.violation("DPC", "KeInitializeDpc without a routine");
        return;
    };
    let previous = lock(&k.dpcs).insert(
        dpc.addr(),
        DpcRecord {
            routine,
            context: context.addr(),
            arguments: (0, 0),
            queued: false,
        },
    );
    if previous.is_some_and(|p| p.queued) {
        k.violation("DPC", &format!("KeInitializeDpc({dpc:p}) on a queued DPC"));
    }
}

/// `KeInsertQueueDpc`: `TRUE` if queued, `FALSE` if it already was.
///
/// # Safety
///
/// `dpc` was initialised with `KeInitializeDpc`.
#[windows_abi]
pub unsafe extern "system" fn KeInsertQueueDpc(
    dpc: *mut c_void,
    arg1: *mut c_void,
    arg2: *mut c_void,
) -> u8 {
    let k = kernel();
    let queued = {
        let mut dpcs = lock(&k.dpcs);
        match dpcs.get_mut(&dpc.addr()) {
            None => None,
            Some(record) if record.queued => Some(false),
            Some(record) => {
                record.queued = true;
                record.arguments = (arg1.addr(), arg2.addr());
                Some(true)
            }
        }
    };
    match queued {
        None => {
            k.violation(
                "DPC",
                &format!("KeInsertQueueDpc({dpc:p}) on a DPC never initialised"),
            );
            0
        }
        Some(true) => {
            lock(&k.dpc_queue).push_back(dpc.addr());
            1
        }
        Some(false) => 0,
    }
}

/// `KeRemoveQueueDpc`: `TRUE` if it was queued.
///
/// # Safety
///
/// `dpc` was initialised with `KeInitializeDpc`.
#[windows_abi]
pub unsafe extern "system" fn KeRemoveQueueDpc(dpc: *mut c_void) -> u8 {
    let k = kernel();
    let was = lock(&k.dpcs)
        .get_mut(&dpc.addr())
        .is_some_and(|record| std::mem::replace(&mut record.queued, false));
    lock(&k.dpc_queue).retain(|&queued| queued != dpc.addr());
    u8::from(was)
}

/// `KeFlushQueuedDpcs`: `PASSIVE_LEVEL` only; runs what is queued.
///
/// # Safety
///
/// No arguments; the queued DPCs are the image's own.
#[windows_abi]
pub unsafe extern "system" fn KeFlushQueuedDpcs() {
    let k = kernel();
    k.require_irql_at_most("KeFlushQueuedDpcs", PASSIVE_LEVEL);
    k.run_dpcs();
}

// ---------------------------------------------------------------------------
// ntoskrnl.exe: debugging and bugcheck

/// `DbgPrint`: the line goes to the machine's driver log and the report.
///
/// Up to three arguments after the format (the driver's own calls pass
/// one); `%s %c %d %i %u %x %X %p %%` with `l`, `ll`, `h`, `I64` and `z`
/// size prefixes.
///
/// # Safety
///
/// `format` is a NUL-terminated string; the arguments are what its
/// conversions say (strings NUL-terminated).
#[windows_abi]
pub unsafe extern "system" fn DbgPrint(
    format: *const c_char,
    arg1: usize,
    arg2: usize,
    arg3: usize,
) -> NTSTATUS {
    let k = kernel();
    if format.is_null() {
        k.violation("DbgPrint", "NULL format");
        return STATUS_SUCCESS;
    }
    // SAFETY: the caller passes a NUL-terminated format.
    let format = unsafe { CStr::from_ptr(format) }.to_bytes();
    // SAFETY: the arguments match the conversions (the caller's contract).
    let line = unsafe { format_print(format, &[arg1, arg2, arg3]) };
    let line = line.trim_end_matches('\n').to_owned();
    k.count(|c| c.debug_prints += 1);
    k.machine.log(line);
    STATUS_SUCCESS
}

/// A small `printf` over register-passed arguments.
///
/// # Safety
///
/// `%s` arguments are NUL-terminated strings (or NULL).
unsafe fn format_print(format: &[u8], arguments: &[usize]) -> String {
    let mut out = String::new();
    let mut next = arguments.iter().copied();
    let mut bytes = format.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            out.push(char::from(byte));
            continue;
        }
        // Flags and width are passed through as written; size prefixes skipped.
        while let Some(&b) = bytes.peek() {
            if b"lhzI64".contains(&b) {
                bytes.next();
            } else {
                break;
            }
        }
        let Some(conversion) = bytes.next() else {
            break;
        };
        if conversion == b'%' {
            out.push('%');
            continue;
        }
        let Some(argument) = next.next() else {
            out.push_str("<missing argument>");
            continue;
        };
        match conversion {
            b's' if argument == 0 => out.push_str("(null)"),
            b's' => {
                // SAFETY: a NUL-terminated string (the caller's contract).
                let text = unsafe { CStr::from_ptr(argument as *const c_char) };
                out.push_str(&text.to_string_lossy());
            }
            b'c' => out.push(char::from(u8::try_from(argument & 0xFF).unwrap_or(b'?'))),
            b'd' | b'i' => {
                #[allow(
                    clippy::cast_possible_wrap,
                    reason = "the C conversion reinterprets the bits"
                )]
                let value = argument as i64;
                out.push_str(&value.to_string());
            }
            b'u' => out.push_str(&argument.to_string()),
            b'x' => {
                let _ = write!(out, "{argument:x}");
            }
            b'X' => {
                let _ = write!(out, "{argument:X}");
            }
            b'p' => {
                let _ = write!(out, "{argument:016X}");
            }
            other => {
                out.push('%');
                out.push(char::from(other));
            }
        }
    }
    out
}

/// `KeBugCheckEx`: the machine stops. The bugcheck is reported with its call
/// site and the process exits with [`BUGCHECK_EXIT_CODE`].
///
/// # Safety
///
/// No pointer is dereferenced.
#[windows_abi]
pub unsafe extern "system" fn KeBugCheckEx(
    code: u32,
    p1: usize,
    p2: usize,
    p3: usize,
    p4: usize,
) -> ! {
    let bugcheck = Bugcheck {
        code,
        parameters: [p1, p2, p3, p4],
        call_site: current().map_or_else(|| "unknown".to_owned(), |k| k.call_site()),
    };
    if let Some(k) = current() {
        k.violation(
            "bugcheck",
            &format!("KeBugCheckEx({code:#x}, {p1:#x}, {p2:#x}, {p3:#x}, {p4:#x})"),
        );
    }
    eprintln!(
        "*** BUGCHECK {:#010x} ({:#x}, {:#x}, {:#x}, {:#x}) at {}: the emulated machine stopped",
        bugcheck.code,
        bugcheck.parameters[0],
        bugcheck.parameters[1],
        bugcheck.parameters[2],
        bugcheck.parameters[3],
        bugcheck.call_site
    );
    std::process::exit(BUGCHECK_EXIT_CODE)
}

// ---------------------------------------------------------------------------
// ntoskrnl.exe: I/O space and contiguous memory (the HD Audio controller)

/// `PAGE_READWRITE`.
pub const PAGE_READWRITE: u32 = 0x04;
/// `PAGE_NOCACHE`.
pub const PAGE_NOCACHE: u32 = 0x200;
/// The `PAGE_EXECUTE*` protections.
const PAGE_EXECUTE_ANY: u32 = 0xF0;

/// Bytes rounded up to whole pages.
const fn whole_pages(bytes: usize) -> usize {
    bytes.div_ceil(crate::memory::PAGE_SIZE) * crate::memory::PAGE_SIZE
}

/// Checks a page protection a driver passes for device or DMA memory:
/// no-execute (memory integrity) and non-cached. Whether it is acceptable.
fn check_protection(k: &Kernel, routine: &str, protect: u32) -> bool {
    if protect & PAGE_EXECUTE_ANY != 0 {
        k.violation(
            "executable memory",
            &format!("{routine} with protection {protect:#x} (PAGE_EXECUTE_*) is refused under memory integrity"),
        );
        return false;
    }
    if protect & !PAGE_NOCACHE != PAGE_READWRITE {
        k.violation(
            "page protection",
            &format!("{routine} with protection {protect:#x} (PAGE_READWRITE expected)"),
        );
        return false;
    }
    if protect & PAGE_NOCACHE == 0 {
        k.violation(
            "page protection",
            &format!("{routine} without PAGE_NOCACHE: device registers and memory the device writes must not be cached"),
        );
    }
    true
}

/// `MmMapIoSpaceEx`: maps `bytes` of the device's memory BAR.
///
/// `physical..physical + bytes` must lie inside the BAR. Returns an
/// inaccessible reservation of that length registered with the MMIO trap,
/// so every access the image makes to it is trapped and sent to the device
/// (see `image::mmio_trap`).
///
/// # Safety
///
/// No pointer argument.
#[windows_abi]
pub unsafe extern "system" fn MmMapIoSpaceEx(
    physical: i64,
    bytes: usize,
    protect: u32,
) -> *mut c_void {
    let k = kernel();
    k.require_irql_at_most("MmMapIoSpaceEx", DISPATCH_LEVEL);
    if !check_protection(&k, "MmMapIoSpaceEx", protect) {
        return std::ptr::null_mut();
    }
    let bar = *lock(&k.mmio_bar);
    let inside = u64::try_from(physical)
        .ok()
        .zip(bar)
        .and_then(|(address, (base, len))| {
            let end = address.checked_add(bytes as u64)?;
            (bytes > 0 && address >= base && end <= base + len).then_some(address - base)
        });
    let Some(bar_offset) = inside else {
        k.violation(
            "I/O space",
            &format!(
                "MmMapIoSpaceEx({physical:#x}, {bytes:#x}) outside the device's memory resources ({bar:x?})"
            ),
        );
        return std::ptr::null_mut();
    };
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let reserved = whole_pages(bytes);
        // SAFETY: a fresh anonymous inaccessible reservation; no existing
        // memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserved,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        if let Err(why) = super::io_trap::install() {
            k.violation(
                "I/O space",
                &format!("the MMIO trap is not installed: {why}"),
            );
        }
        super::mmio_trap::register_window(base.expose_provenance(), bytes, bar_offset);
        lock(&k.io_spaces).insert(
            base.addr(),
            IoSpace {
                bytes,
                reserved,
                call_site: k.call_site(),
            },
        );
        base
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        let _ = bar_offset;
        k.violation("I/O space", "MMIO is trapped on x86_64 Linux only");
        std::ptr::null_mut()
    }
}

/// `MmUnmapIoSpace`: releases a mapping `MmMapIoSpaceEx` made, with the
/// length it was made with (anything else is a violation).
///
/// # Safety
///
/// `base` is what `MmMapIoSpaceEx` returned (anything else is reported).
#[windows_abi]
pub unsafe extern "system" fn MmUnmapIoSpace(base: *mut c_void, bytes: usize) {
    let k = kernel();
    k.require_irql_at_most("MmUnmapIoSpace", DISPATCH_LEVEL);
    let Some(space) = lock(&k.io_spaces).remove(&base.addr()) else {
        k.violation(
            "I/O space",
            &format!("MmUnmapIoSpace({base:p}, {bytes:#x}) of an address MmMapIoSpaceEx did not return (or unmapped already)"),
        );
        return;
    };
    if space.bytes != bytes {
        k.violation(
            "I/O space",
            &format!(
                "MmUnmapIoSpace({base:p}, {bytes:#x}) of a mapping of {:#x} bytes",
                space.bytes
            ),
        );
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let _ = super::mmio_trap::unregister_window(base.expose_provenance());
        // SAFETY: the reservation MmMapIoSpaceEx made, no longer registered
        // and given back by the driver.
        unsafe { libc::munmap(base, space.reserved) };
    }
}

/// `MmAllocateContiguousNodeMemory`: physically contiguous, mapped RAM.
///
/// The pages lie between the two addresses (the node is not modelled);
/// their contents are undefined (filled with the pool poison).
///
/// # Safety
///
/// No pointer argument.
#[windows_abi]
pub unsafe extern "system" fn MmAllocateContiguousNodeMemory(
    bytes: usize,
    lowest: i64,
    highest: i64,
    boundary: i64,
    protect: u32,
    _preferred_node: u32,
) -> *mut c_void {
    let k = kernel();
    k.require_irql_at_most("MmAllocateContiguousNodeMemory", DISPATCH_LEVEL);
    if !check_protection(&k, "MmAllocateContiguousNodeMemory", protect) {
        return std::ptr::null_mut();
    }
    if boundary != 0 {
        k.violation(
            "contiguous memory",
            &format!("MmAllocateContiguousNodeMemory boundary {boundary:#x}: only 0 is modelled"),
        );
        return std::ptr::null_mut();
    }
    let memory = &k.machine.memory;
    let (Ok(low), Ok(high)) = (u64::try_from(lowest), u64::try_from(highest)) else {
        return std::ptr::null_mut();
    };
    let Some(mdl) = irql::as_kernel(|| memory.allocate_contiguous(low, high, bytes)) else {
        return std::ptr::null_mut();
    };
    let (Some(physical), Some(base)) = (
        memory.page_address(mdl, 0),
        irql::as_kernel(|| memory.map(mdl)),
    ) else {
        memory.free(mdl);
        return std::ptr::null_mut();
    };
    // SAFETY: the mapping covers the whole allocation, at least `bytes`.
    unsafe { base.write_bytes(POOL_POISON, bytes) };
    lock(&k.contiguous).insert(
        base.addr(),
        ContiguousBlock {
            mdl,
            bytes,
            physical,
            call_site: k.call_site(),
        },
    );
    base.cast()
}

/// `MmGetPhysicalAddress` of an address inside contiguous memory the
/// driver holds (the only memory this kernel knows the frames of; any
/// other address is a violation and gives 0).
///
/// # Safety
///
/// No dereference of `address`.
#[windows_abi]
pub unsafe extern "system" fn MmGetPhysicalAddress(address: *mut c_void) -> i64 {
    let k = kernel();
    let at = address.addr();
    let found = lock(&k.contiguous)
        .iter()
        .find(|(&base, block)| at >= base && at - base < block.bytes)
        .map(|(&base, block)| block.physical + (at - base) as u64);
    if let Some(physical) = found {
        return i64::try_from(physical).unwrap_or(0);
    }
    k.violation(
        "physical address",
        &format!("MmGetPhysicalAddress({address:p}) of memory that is not the driver's contiguous memory"),
    );
    0
}

/// `MmFreeContiguousMemory` of a block `MmAllocateContiguousNodeMemory`
/// returned (its base; anything else is a violation).
///
/// # Safety
///
/// `base` is what `MmAllocateContiguousNodeMemory` returned.
#[windows_abi]
pub unsafe extern "system" fn MmFreeContiguousMemory(base: *mut c_void) {
    let k = kernel();
    k.require_irql_at_most("MmFreeContiguousMemory", DISPATCH_LEVEL);
    let Some(block) = lock(&k.contiguous).remove(&base.addr()) else {
        k.violation(
            "contiguous memory",
            &format!("MmFreeContiguousMemory({base:p}) of memory MmAllocateContiguousNodeMemory did not return (or freed already)"),
        );
        return;
    };
    let memory = &k.machine.memory;
    irql::as_kernel(|| {
        memory.unmap(base.cast(), block.mdl);
        memory.free(block.mdl);
    });
}

// ---------------------------------------------------------------------------
// ntoskrnl.exe: the C runtime the compiler calls

/// `memcpy`.
///
/// # Safety
///
/// As C's `memcpy`.
#[windows_abi]
pub unsafe extern "system" fn memcpy(
    dst: *mut c_void,
    src: *const c_void,
    n: usize,
) -> *mut c_void {
    // SAFETY: the C contract: both ranges valid for `n` bytes, not overlapping.
    unsafe { std::ptr::copy_nonoverlapping(src.cast::<u8>(), dst.cast::<u8>(), n) };
    dst
}

/// `memmove`.
///
/// # Safety
///
/// As C's `memmove`.
#[windows_abi]
pub unsafe extern "system" fn memmove(
    dst: *mut c_void,
    src: *const c_void,
    n: usize,
) -> *mut c_void {
    // SAFETY: the C contract: both ranges valid for `n` bytes (may overlap).
    unsafe { std::ptr::copy(src.cast::<u8>(), dst.cast::<u8>(), n) };
    dst
}

/// `memset`.
///
/// # Safety
///
/// As C's `memset`.
#[windows_abi]
pub unsafe extern "system" fn memset(dst: *mut c_void, value: i32, n: usize) -> *mut c_void {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "C converts the int to unsigned char"
    )]
    let byte = value as u8;
    // SAFETY: the C contract: `dst` valid for `n` bytes.
    unsafe { dst.cast::<u8>().write_bytes(byte, n) };
    dst
}

// ---------------------------------------------------------------------------
// hal.dll

/// `KeQueryPerformanceCounter`.
///
/// # Safety
///
/// `frequency` is NULL or writable.
#[windows_abi]
pub unsafe extern "system" fn KeQueryPerformanceCounter(frequency: *mut i64) -> i64 {
    let k = kernel();
    if !frequency.is_null() {
        // SAFETY: the caller's LARGE_INTEGER.
        unsafe { frequency.write(i64::try_from(QPC_FREQUENCY).unwrap_or(i64::MAX)) };
    }
    i64::try_from(k.machine.qpc()).unwrap_or(i64::MAX)
}

/// `KeStallExecutionProcessor`.
///
/// # Safety
///
/// No pointer argument.
#[windows_abi]
pub unsafe extern "system" fn KeStallExecutionProcessor(microseconds: u32) {
    let k = kernel();
    if microseconds > 50 {
        // The documentation asks for stalls of at most 50 µs.
        k.violation(
            "stall",
            &format!("KeStallExecutionProcessor({microseconds}) exceeds the documented 50 µs"),
        );
    }
    let stall = lock(&k.stall);
    if let Some(stall) = stall.as_ref() {
        stall(microseconds);
    }
}

/// The kernel's exports this emulator implements, by module and name.
#[must_use]
pub fn exports() -> Vec<(&'static str, &'static str, usize)> {
    exports! {
        "ntoskrnl.exe": [
            ExAllocatePool2,
            ExFreePool,
            KeAcquireSpinLockRaiseToDpc,
            KeReleaseSpinLock,
            KeSetEvent,
            ExAllocateTimer,
            ExSetTimer,
            ExCancelTimer,
            ExDeleteTimer,
            KeInitializeDpc,
            KeInsertQueueDpc,
            KeRemoveQueueDpc,
            KeFlushQueuedDpcs,
            DbgPrint,
            KeBugCheckEx,
            MmMapIoSpaceEx,
            MmUnmapIoSpace,
            MmAllocateContiguousNodeMemory,
            MmGetPhysicalAddress,
            MmFreeContiguousMemory,
            memcpy,
            memmove,
            memset,
        ],
        "hal.dll": [
            KeQueryPerformanceCounter,
            KeStallExecutionProcessor,
        ],
    }
}

#[cfg(test)]
mod tests {
    //! Each Driver Verifier rule, broken on purpose by calling the stand-ins
    //! as a faulty driver would, must be reported.

    use super::*;
    use crate::cable::EmuPortCls;
    use crate::image::portcls::PortClsState;
    use crate::machine::ClockMode;
    use crate::memory::{MemoryConfig, PhysicalMemory};

    fn with_kernel(test: impl FnOnce(&Arc<Kernel>)) -> Vec<String> {
        let memory = PhysicalMemory::anonymous(MemoryConfig::default()).expect("memory");
        let machine = Machine::new(memory, ClockMode::Virtual);
        let services = Arc::new(EmuPortCls::new(Arc::clone(&machine), None));
        let installed = Kernel::install(&machine, "broken.sys", PortClsState::new(services));
        test(installed.kernel());
        drop(installed);
        machine.violations()
    }

    fn reported(violations: &[String], what: &str) -> bool {
        violations.iter().any(|v| v.contains(what))
    }

    #[test]
    fn a_clean_sequence_reports_nothing() {
        let violations = with_kernel(|k| {
            // SAFETY: the stand-ins called as a correct driver calls them.
            let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, 0x7472_7772) };
            assert!(!block.is_null());
            let mut spinlock = 0usize;
            // SAFETY: as above.
            let old = unsafe { KeAcquireSpinLockRaiseToDpc(&raw mut spinlock) };
            assert_eq!((old, irql::current()), (PASSIVE_LEVEL, DISPATCH_LEVEL));
            // SAFETY: as above.
            unsafe { KeReleaseSpinLock(&raw mut spinlock, old) };
            // SAFETY: as above.
            unsafe { ExFreePool(block) };
            assert_eq!(k.check_unload(), 0);
        });
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(irql::current(), PASSIVE_LEVEL);
    }

    #[test]
    fn pool_freed_twice_or_never_allocated_is_reported() {
        let violations = with_kernel(|_| {
            // SAFETY: deliberately wrong frees; the stand-in reports them without freeing.
            let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, 0) };
            // SAFETY: as above.
            unsafe { ExFreePool(block) };
            // SAFETY: as above.
            unsafe { ExFreePool(block) };
            let mut local = 0u64;
            // SAFETY: as above.
            unsafe { ExFreePool((&raw mut local).cast()) };
        });
        assert!(reported(&violations, "freed twice"), "{violations:?}");
        assert!(reported(&violations, "never allocated"), "{violations:?}");
    }

    #[test]
    fn paged_pool_at_dispatch_and_irql_limits_are_reported() {
        let violations = with_kernel(|_| {
            let ((), _) = irql::run_at(DISPATCH_LEVEL, || {
                // SAFETY: paged pool at DISPATCH_LEVEL, on purpose.
                let block = unsafe { ExAllocatePool2(POOL_FLAG_PAGED, 16, 0) };
                // SAFETY: our block.
                unsafe { ExFreePool(block) };
            });
            let ((), _) = irql::run_at(crate::irql::DEVICE_IRQL, || {
                // SAFETY: a pool call above DISPATCH_LEVEL, on purpose.
                let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 16, 0) };
                // SAFETY: our block.
                unsafe { ExFreePool(block) };
            });
            let ((), _) = irql::run_at(DISPATCH_LEVEL, || {
                // SAFETY: KeFlushQueuedDpcs above PASSIVE_LEVEL, on purpose.
                unsafe { KeFlushQueuedDpcs() };
            });
            // SAFETY: executable pool, on purpose.
            let block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED_EXECUTE, 16, 0) };
            assert!(block.is_null());
        });
        assert!(
            reported(&violations, "paged pool at raised IRQL"),
            "{violations:?}"
        );
        assert!(
            reported(&violations, "ExAllocatePool2 called at DIRQL"),
            "{violations:?}"
        );
        assert!(
            reported(&violations, "KeFlushQueuedDpcs called at DISPATCH_LEVEL"),
            "{violations:?}"
        );
        assert!(reported(&violations, "executable pool"), "{violations:?}");
    }

    #[test]
    fn a_stall_longer_than_documented_is_reported() {
        let violations = with_kernel(|_| {
            // SAFETY: 50 µs is allowed, 51 µs is not (on purpose).
            unsafe { KeStallExecutionProcessor(50) };
            // SAFETY: as above.
            unsafe { KeStallExecutionProcessor(51) };
        });
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            reported(&violations, "KeStallExecutionProcessor(51)"),
            "{violations:?}"
        );
    }

    #[test]
    fn spinlock_misuse_is_reported() {
        let violations = with_kernel(|_| {
            let mut spinlock = 0usize;
            // SAFETY: releasing a lock never acquired, on purpose.
            unsafe { KeReleaseSpinLock(&raw mut spinlock, PASSIVE_LEVEL) };
            // SAFETY: acquire, then release at the wrong IRQL, on purpose.
            let old = unsafe { KeAcquireSpinLockRaiseToDpc(&raw mut spinlock) };
            irql::set(PASSIVE_LEVEL);
            // SAFETY: as above.
            unsafe { KeReleaseSpinLock(&raw mut spinlock, old) };
        });
        assert!(reported(&violations, "not held"), "{violations:?}");
        assert!(
            reported(&violations, "KeReleaseSpinLock at PASSIVE_LEVEL"),
            "{violations:?}"
        );
    }

    #[windows_abi]
    unsafe extern "system" fn ignore_timer(_timer: *mut c_void, _context: *mut c_void) {}

    #[windows_abi]
    unsafe extern "system" fn ignore_dpc(
        _dpc: *mut c_void,
        _context: *mut c_void,
        _a: *mut c_void,
        _b: *mut c_void,
    ) {
    }

    #[test]
    fn what_is_left_at_unload_is_reported() {
        let violations = with_kernel(|k| {
            // SAFETY: a block, a set timer and a queued DPC left behind, on purpose.
            let _block = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, 24, 0x6b61_656c) };
            // SAFETY: as above.
            let timer = unsafe { ExAllocateTimer(Some(ignore_timer), std::ptr::null_mut(), 0) };
            // SAFETY: as above.
            unsafe { ExSetTimer(timer, -10_000, 10_000, std::ptr::null_mut()) };
            let mut dpc = [0u64; 8];
            let dpc = dpc.as_mut_ptr().cast::<c_void>();
            // SAFETY: as above.
            unsafe { KeInitializeDpc(dpc, Some(ignore_dpc), std::ptr::null_mut()) };
            let ((), _) = irql::run_at(DISPATCH_LEVEL, || {
                // SAFETY: as above; queued at DISPATCH so that it stays queued.
                unsafe { KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut()) };
            });
            assert_eq!(k.check_unload(), 3);
        });
        assert!(
            reported(&violations, "pool leak: 24 bytes with tag 'leak'"),
            "{violations:?}"
        );
        assert!(
            reported(&violations, "not deleted at unload, and still set"),
            "{violations:?}"
        );
        assert!(
            reported(&violations, "DPC(s) still queued at unload"),
            "{violations:?}"
        );
    }

    #[test]
    fn timers_fire_at_dispatch_on_the_machine_clock_and_dpcs_run_after() {
        static FIRED_AT: AtomicU64 = AtomicU64::new(0);
        #[windows_abi]
        unsafe extern "system" fn record(_timer: *mut c_void, _context: *mut c_void) {
            FIRED_AT.store(u64::from(irql::current()) + 1, Ordering::SeqCst);
        }
        let violations = with_kernel(|k| {
            // SAFETY: a timer used as the cable uses it.
            let timer = unsafe { ExAllocateTimer(Some(record), std::ptr::null_mut(), 0) };
            // SAFETY: one-shot in 1 ms.
            unsafe { ExSetTimer(timer, -10_000, 0, std::ptr::null_mut()) };
            k.machine().advance(crate::machine::QPC_PER_MS / 2);
            assert_eq!(FIRED_AT.load(Ordering::SeqCst), 0, "not due yet");
            k.machine().advance(crate::machine::QPC_PER_MS);
            assert_eq!(
                FIRED_AT.load(Ordering::SeqCst),
                u64::from(DISPATCH_LEVEL) + 1,
                "fired once, at DISPATCH_LEVEL"
            );
            assert_eq!(k.machine().running_timers(), 0, "one-shot");
            // SAFETY: our timer, deleted once.
            unsafe { ExDeleteTimer(timer, 1, 1, std::ptr::null_mut()) };
        });
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn dbgprint_formats_its_arguments() {
        let text = c"cable";
        // SAFETY: `%s` gets a NUL-terminated string, `%x` and `%d` integers.
        let line =
            unsafe { format_print(b"rswavert: %s %x %d%%", &[text.as_ptr().addr(), 0xbeef, 7]) };
        assert_eq!(line, "rswavert: cable beef 7%");
    }

    #[test]
    fn event_timer_and_dpc_misuse_is_reported() {
        let violations = with_kernel(|_| {
            let ((), _) = irql::run_at(crate::irql::DEVICE_IRQL, || {
                // SAFETY: KeSetEvent above DISPATCH_LEVEL, on purpose (the
                // machine also reports the unknown event).
                unsafe { KeSetEvent(std::ptr::null_mut(), 0, 0) };
            });
            let mut not_a_timer = 0u64;
            let bogus = (&raw mut not_a_timer).cast::<c_void>();
            // SAFETY: a timer ExAllocateTimer never returned, on purpose.
            unsafe { ExSetTimer(bogus, -10_000, 0, std::ptr::null_mut()) };
            // SAFETY: a set timer deleted without Cancel, on purpose.
            let timer = unsafe { ExAllocateTimer(Some(ignore_timer), std::ptr::null_mut(), 0) };
            // SAFETY: as above.
            unsafe { ExSetTimer(timer, -10_000, 10_000, std::ptr::null_mut()) };
            // SAFETY: as above.
            unsafe { ExDeleteTimer(timer, 0, 1, std::ptr::null_mut()) };
            // SAFETY: the same timer again, now deleted, on purpose.
            unsafe { ExCancelTimer(timer, std::ptr::null_mut()) };
            let mut dpc = [0u64; 8];
            let dpc = dpc.as_mut_ptr().cast::<c_void>();
            // SAFETY: a DPC never initialised, on purpose.
            unsafe { KeInsertQueueDpc(dpc, std::ptr::null_mut(), std::ptr::null_mut()) };
        });
        assert!(
            reported(&violations, "KeSetEvent called at DIRQL"),
            "{violations:?}"
        );
        assert!(reported(&violations, "ExSetTimer("), "{violations:?}");
        assert!(
            reported(&violations, "ExDeleteTimer(Cancel = FALSE)"),
            "{violations:?}"
        );
        assert!(reported(&violations, "ExCancelTimer("), "{violations:?}");
        assert!(reported(&violations, "never initialised"), "{violations:?}");
    }

    /// An ISR that drops the IRQL it was called at.
    #[windows_abi]
    unsafe extern "system" fn lowers_irql(
        _sync: *mut portcls_sys::IInterruptSync,
        _context: *mut c_void,
    ) -> NTSTATUS {
        irql::set(PASSIVE_LEVEL);
        STATUS_SUCCESS
    }

    #[test]
    fn portcls_above_passive_and_a_routine_leaving_another_irql_are_reported() {
        let violations = with_kernel(|k| {
            let ((), _) = irql::run_at(DISPATCH_LEVEL, || {
                let mut driver = [0u64; 4];
                // SAFETY: PcInitializeAdapterDriver at DISPATCH_LEVEL, on
                // purpose; it refuses the missing AddDevice too.
                let _ = unsafe {
                    crate::image::portcls::PcInitializeAdapterDriver(
                        driver.as_mut_ptr().cast(),
                        std::ptr::null_mut(),
                        None,
                    )
                };
            });
            let line = crate::port::InterruptLine::new(k.machine());
            let sync = line.interface();
            let register = sync.vtbl().RegisterServiceRoutine;
            // SAFETY: a live interrupt object; the routine needs no context.
            unsafe { register(sync.this(), Some(lowers_irql), std::ptr::null_mut(), 0) };
            let connect = sync.vtbl().Connect;
            // SAFETY: as above.
            unsafe { connect(sync.this()) };
            assert!(line.raise());
        });
        assert!(
            reported(
                &violations,
                "PcInitializeAdapterDriver called at DISPATCH_LEVEL"
            ),
            "{violations:?}"
        );
        assert!(
            reported(
                &violations,
                "an interrupt service routine returned at PASSIVE_LEVEL"
            ),
            "{violations:?}"
        );
    }

    /// Set in the child process of the bugcheck test.
    const BUGCHECK_CHILD: &str = "RSWAVERT_BUGCHECK_CHILD";

    #[test]
    fn a_bugcheck_stops_the_machine_with_its_code() {
        if std::env::var_os(BUGCHECK_CHILD).is_some() {
            let _ = with_kernel(|_| {
                // SAFETY: the bugcheck the image's panic handler raises; it never returns.
                unsafe { KeBugCheckEx(0xDEAD, 1, 2, 3, 4) }
            });
            return;
        }
        let exe = std::env::current_exe().expect("test binary");
        let child = std::process::Command::new(exe)
            .args([
                "--exact",
                "image::kernel::tests::a_bugcheck_stops_the_machine_with_its_code",
                "--nocapture",
            ])
            .env(BUGCHECK_CHILD, "1")
            .output()
            .expect("child");
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert_eq!(child.status.code(), Some(BUGCHECK_EXIT_CODE), "{stderr}");
        assert!(
            stderr.contains("BUGCHECK 0x0000dead (0x1, 0x2, 0x3, 0x4)"),
            "{stderr}"
        );
    }

    #[windows_abi]
    const unsafe extern "system" fn no_start(
        _device: portcls_sys::PDEVICE_OBJECT,
        _irp: portcls_sys::PIRP,
        _resources: portcls_sys::PRESOURCELIST,
    ) -> NTSTATUS {
        STATUS_SUCCESS
    }

    /// `PcDispatchIrp` of a stop IRP on `device`.
    fn dispatch_stop(device: *mut portcls_sys::DEVICE_OBJECT) -> NTSTATUS {
        let mut stack = [0u8; portcls_sys::IO_STACK_LOCATION_SIZE];
        stack[portcls_sys::IO_STACK_LOCATION_MajorFunction_OFFSET] = portcls_sys::IRP_MJ_PNP;
        stack[portcls_sys::IO_STACK_LOCATION_MinorFunction_OFFSET] =
            portcls_sys::IRP_MN_STOP_DEVICE;
        let mut irp = [0u64; portcls_sys::IRP_SIZE / 8];
        irp[portcls_sys::IRP_CurrentStackLocation_OFFSET / 8] = stack.as_mut_ptr() as u64;
        // SAFETY: an IRP whose stack location lives for the call.
        unsafe { crate::image::portcls::PcDispatchIrp(device, irp.as_mut_ptr().cast()) }
    }

    #[test]
    fn portcls_device_extension_and_dispatch_rules_are_reported() {
        let mut pdo = [0u64; 0x150 / 8];
        let mut driver = [0u64; 0x150 / 8];
        // A DeviceExtensionSize between 0 and PORT_CLASS_DEVICE_EXTENSION_SIZE.
        let violations = with_kernel(|_| {
            // SAFETY: the stand-in reads nothing of the objects.
            let status = unsafe {
                crate::image::portcls::PcAddAdapterDevice(
                    driver.as_mut_ptr().cast(),
                    pdo.as_mut_ptr().cast(),
                    Some(no_start),
                    4,
                    8,
                )
            };
            assert_eq!(status, portcls_sys::STATUS_INVALID_PARAMETER);
        });
        assert!(
            reported(&violations, "DeviceExtensionSize 8"),
            "{violations:?}"
        );

        // The adapter's slot is free to write; PortCls's elements are not;
        // and only the FDO may be passed to PcDispatchIrp.
        let violations = with_kernel(|k| {
            // SAFETY: as above.
            let status = unsafe {
                crate::image::portcls::PcAddAdapterDevice(
                    driver.as_mut_ptr().cast(),
                    pdo.as_mut_ptr().cast(),
                    Some(no_start),
                    4,
                    0,
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
            let fdo = k.portcls().device_object();
            #[allow(clippy::cast_ptr_alignment, reason = "an 8-byte aligned block")]
            let field = fdo
                .cast::<u8>()
                .wrapping_add(portcls_sys::DEVICE_OBJECT_DeviceExtension_OFFSET)
                .cast::<*mut u64>();
            // SAFETY: the FDO block, DeviceExtension at its x64 offset.
            let extension = unsafe { field.read() };
            let slot = extension.wrapping_add(portcls_sys::PORT_CLASS_ADAPTER_SLOT);
            // SAFETY: inside the 64-element extension.
            unsafe { slot.write(0x1234) };
            assert_eq!(dispatch_stop(fdo), STATUS_SUCCESS);
            assert!(
                k.machine().violations().is_empty(),
                "the adapter slot is the driver's"
            );
            assert_eq!(k.portcls().adapter_slot(), 0x1234);
            let portcls_element = extension.wrapping_add(2);
            // SAFETY: inside the extension: element 2, PortCls's.
            unsafe { portcls_element.write(0) };
            assert_eq!(dispatch_stop(fdo), STATUS_SUCCESS);
            assert_eq!(
                dispatch_stop(pdo.as_mut_ptr().cast()),
                portcls_sys::STATUS_INVALID_PARAMETER
            );
            assert_eq!(k.portcls().dispatched(), [0x04, 0x04]);
        });
        assert!(
            reported(
                &violations,
                "wrote PortCls's part of the device extension (ULONG_PTR elements [2]"
            ),
            "{violations:?}"
        );
        assert!(
            reported(&violations, "not the FDO PcAddAdapterDevice made"),
            "{violations:?}"
        );
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn io_space_and_contiguous_memory_clean_use_reports_nothing() {
        let violations = with_kernel(|k| {
            k.set_mmio_bar(Some((0xE000_0000, 0x4000)));
            let protect = PAGE_READWRITE | PAGE_NOCACHE;
            // SAFETY: the stand-ins called as a correct driver calls them.
            let bar = unsafe { MmMapIoSpaceEx(0xE000_0000, 0x4000, protect) };
            assert!(!bar.is_null());
            // SAFETY: as above.
            let page = unsafe {
                MmAllocateContiguousNodeMemory(0x1000, 0, 0xFFFF_FFFF, 0, protect, 0x8000_0000)
            };
            assert!(!page.is_null());
            // SAFETY: as above.
            let physical =
                unsafe { MmGetPhysicalAddress(page.cast::<u8>().wrapping_add(0x10).cast()) };
            assert_eq!(physical & 0xFFF, 0x10);
            let start = k.machine.memory.page_address(
                lock(&k.contiguous).get(&page.addr()).map_or(0, |b| b.mdl),
                0,
            );
            assert_eq!(Some(u64::try_from(physical).unwrap() - 0x10), start);
            // SAFETY: as above.
            unsafe { MmFreeContiguousMemory(page) };
            // SAFETY: as above.
            unsafe { MmUnmapIoSpace(bar, 0x4000) };
            assert_eq!(k.check_unload(), 0);
        });
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn io_space_and_contiguous_memory_misuse_is_reported() {
        let violations = with_kernel(|k| {
            k.set_mmio_bar(Some((0xE000_0000, 0x4000)));
            let protect = PAGE_READWRITE | PAGE_NOCACHE;
            // Each call below is deliberately wrong; the stand-ins report
            // them without touching the pointers they are given.
            // SAFETY: see above.
            assert!(unsafe { MmMapIoSpaceEx(0xE000_2000, 0x4000, protect) }.is_null());
            // SAFETY: see above (PAGE_EXECUTE_READWRITE).
            assert!(unsafe { MmMapIoSpaceEx(0xE000_0000, 0x4000, 0x40) }.is_null());
            // SAFETY: see above.
            unsafe { MmUnmapIoSpace(std::ptr::without_provenance_mut(0x1000), 0x4000) };
            // SAFETY: see above (cached).
            let bar = unsafe { MmMapIoSpaceEx(0xE000_0000, 0x4000, PAGE_READWRITE) };
            assert!(!bar.is_null());
            // SAFETY: see above (the wrong length).
            unsafe { MmUnmapIoSpace(bar, 0x1000) };
            // SAFETY: see above (never unmapped: a leak at unload).
            let _ = unsafe { MmMapIoSpaceEx(0xE000_0000, 0x100, protect) };
            let mut local = 0u64;
            // SAFETY: see above.
            unsafe { MmFreeContiguousMemory((&raw mut local).cast()) };
            // SAFETY: see above.
            let _ = unsafe { MmGetPhysicalAddress((&raw mut local).cast()) };
            // SAFETY: see above (never freed: a leak at unload).
            let _ =
                unsafe { MmAllocateContiguousNodeMemory(0x1000, 0, 0xFFFF_FFFF, 0, protect, 0) };
            assert_eq!(k.check_unload(), 2);
        });
        for what in [
            "outside the device's memory resources",
            "PAGE_EXECUTE_",
            "did not return (or unmapped already)",
            "without PAGE_NOCACHE",
            "of a mapping of 0x4000 bytes",
            "MmAllocateContiguousNodeMemory did not return",
            "not the driver's contiguous memory",
            "I/O space mapped at",
            "contiguous memory at",
        ] {
            assert!(reported(&violations, what), "{what}: {violations:?}");
        }
    }
}
