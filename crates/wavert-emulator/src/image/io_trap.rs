//! Port I/O trap: runs a driver image's `in`/`out` instructions in a Linux user-mode process.
//!
//! The AC'97 back-end of the driver does port I/O with the plain x86
//! instructions `in al|ax|eax, dx|imm8` and `out dx|imm8, al|ax|eax`. In a
//! Linux user-mode process (I/O privilege level 0, no `ioperm`) every one of
//! them raises a general-protection fault, which the kernel delivers as
//! `SIGSEGV` with `si_code == SI_KERNEL`. [`install`] puts a process-wide
//! `SIGSEGV` handler in place that
//!
//! 1. checks that the fault is such a `#GP` (`SI_KERNEL`) at a user-space
//!    instruction pointer,
//! 2. [`decode`]s the instruction at `RIP` (reading only the bytes the decoder
//!    asks for, one at a time, so it never reads past the faulting
//!    instruction),
//! 3. forwards the access to the current [`PortIoHandler`] (see
//!    [`set_handler`]),
//! 4. writes the result into the saved registers exactly as the CPU would
//!    (`in al` replaces only `AL`, `in ax` only `AX`, `in eax` writes `EAX`
//!    and clears the upper half of `RAX`; `RDX`, the flags and every other
//!    register are left alone), advances `RIP` past the instruction and
//!    returns, so the interrupted code resumes after the instruction.
//!
//! # Faults that are not port I/O
//!
//! An access to an unmapped buffer view the memory model keeps reserved
//! (`SEGV_ACCERR` inside one of its quarantined views) is recorded there and
//! resumed (see [`crate::memory`], "Use after free"); the memory model
//! installs this handler for that. Then the port trap; then a register
//! access to a memory BAR window the image mapped (`SEGV_ACCERR` inside a
//! window [`super::mmio_trap`] registered, at one of the six `mov` forms
//! it decodes), emulated by that module.
//!
//! Anything else (another fault kind, an instruction that is not one of the
//! forms [`decode`] accepts, such as `ins`/`outs`, `hlt` or `cli`, no handler
//! set, or a handler that panicked) is passed on to the action that was in
//! place before [`install`]: a previous `SA_SIGINFO` or plain handler is
//! called with the same arguments (on Linux that is usually the Rust
//! runtime's stack-overflow handler, which resets `SIGSEGV` to the default
//! and returns); a previous `SIG_DFL` or `SIG_IGN` is replaced by `SIG_DFL`
//! and the handler returns. The faulting instruction then runs again, faults
//! again, and the process dies of `SIGSEGV` as it would have without the
//! trap. Nothing is ever skipped silently.
//!
//! # Why calling the handler from the signal handler is acceptable
//!
//! A [`PortIoHandler`] may lock a mutex, allocate and write to a socket, none
//! of which is async-signal-safe in general. It is acceptable here because
//! the signal is not asynchronous: it is a synchronous fault, delivered on
//! the faulting thread, at an `in`/`out` instruction of the driver image (or
//! of a test). Such an instruction is never inside `malloc`, the standard
//! library's locks or any lock of this crate, so the handler runs in the same
//! state as an ordinary call made from that instruction would. Requirements
//! this places on the embedder:
//!
//! - The handler must not take a lock that the thread running the driver may
//!   hold while it calls into the driver (a non-reentrant lock taken twice on
//!   one thread deadlocks); locks held by *other* threads are fine, the
//!   handler just waits for them.
//! - The handler must not panic. Its code paths should be panic-free; should
//!   one panic anyway, the call is made through [`std::panic::catch_unwind`]
//!   and the fault falls back to the previous action (the process dies).
//!   Under `panic = "abort"` a panic aborts the process directly.
//! - The handler must not itself execute `in`/`out` or fault: `SIGSEGV` is
//!   blocked while it runs, so the kernel would kill the process.
//! - `errno` is saved and restored around the whole signal handler.
//!
//! # Stack
//!
//! The action is installed with `SA_SIGINFO` but deliberately without
//! `SA_ONSTACK`: the handler then runs on the faulting thread's own stack
//! (the one the driver runs on, megabytes), not on the small alternate
//! signal stack the Rust runtime gives each thread (`SIGSTKSZ`, 8 KiB, part
//! of which the kernel fills with the saved register state), which a socket
//! round trip in a debug build could overflow. The cost: after [`install`],
//! a genuine stack overflow anywhere in the process can no longer be
//! reported by the Rust runtime ("has overflowed its stack"); the kernel
//! cannot push the signal frame and kills the process with `SIGSEGV`.
//!
//! # Other caveats
//!
//! - The instruction bytes are read from the image, which must therefore be
//!   mapped readable (`PROT_READ | PROT_EXEC`, as any PE loader maps code),
//!   not execute-only through a protection key.
//! - Only faults with `RIP` below 2^47 (ordinary user-space addresses) are
//!   decoded.
//! - A chained previous handler is called directly, with this handler's
//!   signal mask (only `SIGSEGV` blocked) rather than its own `sa_mask`, and
//!   its `SA_RESETHAND`/`SA_NODEFER` flags are not emulated.
//! - The trap stays installed for the life of the process; if someone else
//!   later replaces the `SIGSEGV` action, port I/O faults are no longer
//!   handled.
//!
//! The whole module only exists on `x86_64` Linux (the `cfg` below).

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::ffi::{c_int, c_void};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Width of one port access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortWidth {
    /// 8 bits (`AL`).
    Byte,
    /// 16 bits (`AX`).
    Word,
    /// 32 bits (`EAX`).
    Dword,
}

impl PortWidth {
    /// Number of bytes the access moves.
    #[must_use]
    pub const fn bytes(self) -> u8 {
        match self {
            Self::Byte => 1,
            Self::Word => 2,
            Self::Dword => 4,
        }
    }

    /// Mask of the value bits the access moves.
    #[must_use]
    pub const fn mask(self) -> u32 {
        match self {
            Self::Byte => 0xFF,
            Self::Word => 0xFFFF,
            Self::Dword => 0xFFFF_FFFF,
        }
    }
}

/// Direction of a port access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `in`: the port is read into the accumulator.
    In,
    /// `out`: the accumulator is written to the port.
    Out,
}

/// Where an instruction takes its port number from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortSource {
    /// An 8-bit immediate in the instruction (`E4`-`E7`), zero-extended.
    Imm8(u8),
    /// The low 16 bits of `RDX` (`EC`-`EF`).
    Dx,
}

/// A decoded `in`/`out` instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decoded {
    /// Read (`in`) or write (`out`).
    pub direction: Direction,
    /// Width of the access and of the accumulator part involved.
    pub width: PortWidth,
    /// Where the port number comes from.
    pub port: PortSource,
    /// Length of the instruction in bytes, prefix included (1 to 3).
    pub len: u8,
}

impl Decoded {
    /// The port the instruction accesses, given the value of `RDX`.
    #[must_use]
    pub fn port_number(&self, rdx: u64) -> u16 {
        match self.port {
            PortSource::Imm8(port) => u16::from(port),
            PortSource::Dx => {
                let [lo, hi, ..] = rdx.to_le_bytes();
                u16::from_le_bytes([lo, hi])
            }
        }
    }

    /// Performs the access on `handler` with the registers `rax` and `rdx` as
    /// they were at the instruction, and returns `RAX` as the CPU leaves it:
    /// unchanged for `out`; for `in`, only `AL` or `AX` replaced (the other
    /// bytes kept), or `EAX` written and zero-extended into `RAX`.
    pub fn perform(&self, rax: u64, rdx: u64, handler: &dyn PortIoHandler) -> u64 {
        let port = self.port_number(rdx);
        match self.direction {
            Direction::Out => {
                let [b0, b1, b2, b3, ..] = rax.to_le_bytes();
                let value = u32::from_le_bytes([b0, b1, b2, b3]) & self.width.mask();
                handler.write(port, self.width, value);
                rax
            }
            Direction::In => merge_in(rax, self.width, handler.read(port, self.width)),
        }
    }
}

/// `RAX` after an `in` of `width` that read `value` (whose bits above the
/// width are ignored).
pub(crate) fn merge_in(rax: u64, width: PortWidth, value: u32) -> u64 {
    match width {
        PortWidth::Byte => (rax & !0xFF) | u64::from(value & 0xFF),
        PortWidth::Word => (rax & !0xFFFF) | u64::from(value & 0xFFFF),
        PortWidth::Dword => u64::from(value),
    }
}

/// Decodes `bytes` (starting at the instruction) as one of the port I/O
/// forms the trap emulates, or returns `None`.
///
/// Accepted: an optional single `66` operand-size prefix, then `E4 ib` /
/// `E5 ib` (`in al|ax|eax, imm8`), `E6 ib` / `E7 ib` (`out imm8, al|ax|eax`),
/// `EC` / `ED` (`in al|ax|eax, dx`) or `EE` / `EF` (`out dx, al|ax|eax`). The
/// prefix selects `ax` over `eax` and, as on the CPU, has no effect on the
/// byte forms. Rejected: everything else, including the string forms
/// `6C`-`6F`, `rep`/`lock`/segment/REX prefixes, a repeated `66`, and input
/// that ends before the instruction does. Bytes after the instruction are
/// ignored.
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<Decoded> {
    decode_with(|index| bytes.get(index).copied())
}

/// [`decode`] over a byte source that is asked for each byte only once the
/// bytes before it have made it part of an accepted instruction.
fn decode_with(mut fetch: impl FnMut(usize) -> Option<u8>) -> Option<Decoded> {
    let mut at = 0;
    let mut opcode = fetch(at)?;
    let operand_size_prefix = opcode == 0x66;
    if operand_size_prefix {
        at += 1;
        opcode = fetch(at)?;
    }
    let wide = if operand_size_prefix {
        PortWidth::Word
    } else {
        PortWidth::Dword
    };
    let (direction, width, immediate) = match opcode {
        0xE4 => (Direction::In, PortWidth::Byte, true),
        0xE5 => (Direction::In, wide, true),
        0xE6 => (Direction::Out, PortWidth::Byte, true),
        0xE7 => (Direction::Out, wide, true),
        0xEC => (Direction::In, PortWidth::Byte, false),
        0xED => (Direction::In, wide, false),
        0xEE => (Direction::Out, PortWidth::Byte, false),
        0xEF => (Direction::Out, wide, false),
        _ => return None,
    };
    at += 1;
    let port = if immediate {
        let imm = fetch(at)?;
        at += 1;
        PortSource::Imm8(imm)
    } else {
        PortSource::Dx
    };
    Some(Decoded {
        direction,
        width,
        port,
        len: u8::try_from(at).ok()?,
    })
}

/// The device side of trapped port I/O.
///
/// Called from the `SIGSEGV` handler on the thread that executed the
/// instruction; see the module documentation for what that allows and
/// forbids. Implementations must not panic.
pub trait PortIoHandler: Send + Sync {
    /// Reads `width` from `port`. Only the low `width` bits of the result are
    /// used.
    fn read(&self, port: u16, width: PortWidth) -> u32;

    /// Writes `value` (already masked to `width`) to `port`.
    fn write(&self, port: u16, width: PortWidth, value: u32);
}

/// The handler trapped accesses go to.
static HANDLER: Mutex<Option<Arc<dyn PortIoHandler>>> = Mutex::new(None);

/// Whether [`install`] has succeeded; its lock serializes installation.
static INSTALLED: Mutex<bool> = Mutex::new(false);

/// The `SIGSEGV` action in place before [`install`].
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Accesses completed by the trap.
static TRAPPED: AtomicU64 = AtomicU64::new(0);

/// Sets the process-wide handler trapped accesses go to (`None`: no handler,
/// so a port I/O fault kills the process) and returns the previous one.
///
/// A fault being handled on another thread finishes with the handler it
/// started with.
pub fn set_handler(handler: Option<Arc<dyn PortIoHandler>>) -> Option<Arc<dyn PortIoHandler>> {
    let mut slot = HANDLER.lock().unwrap_or_else(PoisonError::into_inner);
    std::mem::replace(&mut *slot, handler)
}

/// Number of port accesses the trap has completed since the process started.
#[must_use]
pub fn trapped_accesses() -> u64 {
    TRAPPED.load(Ordering::Relaxed)
}

/// Installs the process-wide `SIGSEGV` handler that emulates port I/O,
/// keeping the previous action for faults that are not port I/O.
///
/// Idempotent and thread-safe: later calls return `Ok(())` without touching
/// the action again. Accesses are only emulated while a handler is set
/// ([`set_handler`]).
///
/// # Errors
///
/// The OS error text if `sigaction` fails; the trap is then not installed and
/// a later call tries again.
pub fn install() -> Result<(), String> {
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if *installed {
        return Ok(());
    }

    // SAFETY: `sigaction` is plain data (integers, a signal set and an
    // optional function pointer), for which all-zero bytes are a valid value.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null `act` only queries; `previous` is a valid, writable
    // `sigaction`.
    let rc = unsafe { libc::sigaction(libc::SIGSEGV, ptr::null(), &raw mut previous) };
    if rc != 0 {
        return Err(format!(
            "sigaction(SIGSEGV) query failed: {}",
            io::Error::last_os_error()
        ));
    }
    // Set before the new action goes in, so the signal handler always finds
    // it. Only a failed earlier attempt can have set it already, with the
    // same action (nothing of ours replaced it in between).
    let _ = PREVIOUS.set(previous);

    // SAFETY: as above, all-zero bytes are a valid `sigaction`.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsegv as *const () as libc::sighandler_t;
    // No SA_ONSTACK: see "Stack" in the module documentation. No SA_NODEFER:
    // a fault inside the handler must kill the process, not recurse.
    action.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `action.sa_mask` is a valid, writable signal set.
    let rc = unsafe { libc::sigemptyset(&raw mut action.sa_mask) };
    if rc != 0 {
        return Err(format!(
            "sigemptyset failed: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: `action` is fully initialized, its handler has the
    // `SA_SIGINFO` signature, and a null `oldact` is allowed.
    let rc = unsafe { libc::sigaction(libc::SIGSEGV, &raw const action, ptr::null_mut()) };
    if rc != 0 {
        return Err(format!(
            "sigaction(SIGSEGV) install failed: {}",
            io::Error::last_os_error()
        ));
    }
    *installed = true;
    drop(installed);
    Ok(())
}

/// A previous `SA_SIGINFO` handler.
type SigInfoHandler = unsafe extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);

/// A previous plain handler.
type PlainHandler = unsafe extern "C" fn(c_int);

/// Index of `RIP` in `mcontext_t::gregs`.
#[allow(clippy::cast_sign_loss, reason = "a small non-negative index")]
const GREG_RIP: usize = libc::REG_RIP as usize;

/// Index of `RAX` in `mcontext_t::gregs`.
#[allow(clippy::cast_sign_loss, reason = "a small non-negative index")]
const GREG_RAX: usize = libc::REG_RAX as usize;

/// Index of `RDX` in `mcontext_t::gregs`.
#[allow(clippy::cast_sign_loss, reason = "a small non-negative index")]
const GREG_RDX: usize = libc::REG_RDX as usize;

/// Highest address (exclusive) whose faults are decoded: the top of the
/// ordinary (47-bit) user address space.
const USER_SPACE_END: u64 = 1 << 47;

/// Reinterprets a saved register as unsigned.
const fn reg_to_u64(reg: libc::greg_t) -> u64 {
    u64::from_ne_bytes(reg.to_ne_bytes())
}

/// Reinterprets a register value as a saved register.
const fn u64_to_reg(value: u64) -> libc::greg_t {
    libc::greg_t::from_ne_bytes(value.to_ne_bytes())
}

/// The `SIGSEGV` action installed by [`install`].
extern "C" fn on_sigsegv(signum: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: `__errno_location` has no preconditions; it returns this
    // thread's errno slot.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: the slot is valid and aligned for the life of the thread.
    let saved_errno = unsafe { errno.read() };

    // SAFETY: called with the kernel's `info` for this signal.
    let stale = unsafe { crate::memory::on_stale_access(info) };
    // SAFETY: called with the kernel's `info` and `context` for this signal
    // (each of the two traps checks the fault is its own).
    let handled = stale
        || unsafe { emulate(info, context) }
        || unsafe { super::mmio_trap::emulate(info, context) };
    if !handled {
        // SAFETY: as above, the kernel's arguments for this signal.
        unsafe { pass_on(signum, info, context) };
    }

    // SAFETY: as for the read.
    unsafe { errno.write(saved_errno) };
}

/// Emulates the faulting instruction if it is trapped port I/O and a
/// handler is set, updating the saved registers; returns whether it did.
///
/// # Safety
///
/// `info` and `context` must be null or the `siginfo_t` and `ucontext_t` the
/// kernel passed to an `SA_SIGINFO` handler for a `SIGSEGV` on this thread.
unsafe fn emulate(info: *mut libc::siginfo_t, context: *mut c_void) -> bool {
    if info.is_null() || context.is_null() {
        return false;
    }
    // SAFETY: `info` is the kernel's valid `siginfo_t` (caller's contract).
    let code = unsafe { (*info).si_code };
    if code != libc::SI_KERNEL {
        return false;
    }
    let Some(handler) = HANDLER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    else {
        return false;
    };
    let context = context.cast::<libc::ucontext_t>();
    // SAFETY: `context` is the kernel's valid `ucontext_t`, and nothing else
    // refers to its registers while this handler runs.
    let gregs = unsafe { &mut (*context).uc_mcontext.gregs };
    let rip = reg_to_u64(gregs[GREG_RIP]);
    if rip >= USER_SPACE_END {
        return false;
    }
    let Some(decoded) = decode_with(|index| {
        let address = usize::try_from(rip).ok()?.checked_add(index)?;
        let byte = ptr::with_exposed_provenance::<u8>(address);
        // SAFETY: the CPU raised #GP (SI_KERNEL) on the instruction at RIP,
        // a user-space address, so it fetched all of that instruction
        // (a fetch from unmapped memory would have been a page fault). The
        // decoder asks for a byte only once the bytes before it belong to an
        // accepted instruction, so every byte read lies within it, in mapped
        // code (readable, see the module caveats).
        Some(unsafe { byte.read_volatile() })
    }) else {
        return false;
    };

    let rax = reg_to_u64(gregs[GREG_RAX]);
    let rdx = reg_to_u64(gregs[GREG_RDX]);
    let Ok(new_rax) = panic::catch_unwind(AssertUnwindSafe(|| {
        decoded.perform(rax, rdx, handler.as_ref())
    })) else {
        return false;
    };
    gregs[GREG_RAX] = u64_to_reg(new_rax);
    gregs[GREG_RIP] = u64_to_reg(rip + u64::from(decoded.len));
    TRAPPED.fetch_add(1, Ordering::Relaxed);
    true
}

/// Hands a fault the trap does not emulate to the previous action, or
/// restores the default action so the fault re-raises when the handler
/// returns.
///
/// # Safety
///
/// As for [`emulate`]: the kernel's arguments for a `SIGSEGV` on this
/// thread.
unsafe fn pass_on(signum: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    match PREVIOUS.get() {
        Some(previous)
            if previous.sa_sigaction != libc::SIG_DFL && previous.sa_sigaction != libc::SIG_IGN =>
        {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the action's handler field holds a
                // three-argument handler function.
                let handler: SigInfoHandler = unsafe { std::mem::transmute(previous.sa_sigaction) };
                // SAFETY: the handler was installed for SIGSEGV and gets the
                // kernel's own arguments for one.
                unsafe { handler(signum, info, context) };
            } else {
                // SAFETY: without SA_SIGINFO the field holds a one-argument
                // handler function.
                let handler: PlainHandler = unsafe { std::mem::transmute(previous.sa_sigaction) };
                // SAFETY: the handler was installed for SIGSEGV.
                unsafe { handler(signum) };
            }
        }
        _ => restore_default(signum),
    }
}

/// Sets `signum`'s action back to `SIG_DFL` (async-signal-safe).
fn restore_default(signum: c_int) {
    // SAFETY: all-zero bytes are a valid `sigaction`: SIG_DFL, empty mask,
    // no flags.
    let action: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `action` is a valid `sigaction` and a null `oldact` is
    // allowed. It cannot fail for SIGSEGV, and there is nothing better to do
    // if it did: the fault re-raises either way.
    unsafe { libc::sigaction(signum, &raw const action, ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Read as _;
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Serializes the tests that use the process-wide handler.
    static LIVE: Mutex<()> = Mutex::new(());

    /// What the handler returns from every read: bits above each width are
    /// set, so the tests see that they are dropped.
    const READ_VALUE: u32 = 0xCAFE_BABE;

    /// `RAX` before each live instruction.
    const RAX_BEFORE: u64 = 0x1122_3344_5566_7788;

    /// `RCX` before each live instruction (a bystander that must survive).
    const RCX_BEFORE: u64 = 0x0123_4567_89AB_CDEF;

    /// Written by the instruction after the trapped one.
    const MARKER: u64 = 0x5A5A;

    /// One access the recording handler saw (`value` is 0 for reads).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Access {
        direction: Direction,
        port: u16,
        width: PortWidth,
        value: u32,
    }

    /// A handler that records every access.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<Access>>,
    }

    impl Recorder {
        fn push(&self, access: Access) {
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(access);
        }

        fn take(&self) -> Vec<Access> {
            std::mem::take(&mut *self.log.lock().unwrap_or_else(PoisonError::into_inner))
        }
    }

    impl PortIoHandler for Recorder {
        fn read(&self, port: u16, width: PortWidth) -> u32 {
            self.push(Access {
                direction: Direction::In,
                port,
                width,
                value: 0,
            });
            READ_VALUE
        }

        fn write(&self, port: u16, width: PortWidth, value: u32) {
            self.push(Access {
                direction: Direction::Out,
                port,
                width,
                value,
            });
        }
    }

    /// A handler that panics.
    struct Panicker;

    impl PortIoHandler for Panicker {
        fn read(&self, _port: u16, _width: PortWidth) -> u32 {
            panic!("test handler panics on read");
        }

        fn write(&self, _port: u16, _width: PortWidth, _value: u32) {
            panic!("test handler panics on write");
        }
    }

    /// Registers after a live instruction.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct After {
        rax: u64,
        rdx: u64,
        rcx: u64,
        marker: u64,
    }

    /// Runs one trapped instruction (an asm template literal) with `RAX` =
    /// [`RAX_BEFORE`], the given `RDX` and `RCX` = [`RCX_BEFORE`], followed by
    /// an instruction that sets the marker; returns the registers after.
    macro_rules! live {
        ($insn:literal, $rdx:expr) => {{
            let mut rax: u64 = RAX_BEFORE;
            let mut rdx: u64 = $rdx;
            let mut rcx: u64 = RCX_BEFORE;
            let marker: u64;
            // SAFETY: the caller holds `LIVE`, has installed the trap and set
            // a handler, so the instruction's fault is completed by the trap
            // and execution resumes at the `mov`, with only RAX (for `in`) and
            // RIP changed, as the operands declare. No memory of ours is
            // touched by the instruction itself.
            unsafe {
                core::arch::asm!(
                    $insn,
                    "mov {marker}, 0x5A5A",
                    marker = out(reg) marker,
                    inout("rax") rax,
                    inout("rdx") rdx,
                    inout("rcx") rcx,
                );
            }
            After {
                rax,
                rdx,
                rcx,
                marker,
            }
        }};
    }

    /// Runs `body` with the trap installed and a fresh [`Recorder`] set;
    /// returns its result, what the recorder saw and how many accesses the
    /// trap counted.
    fn with_recorder<R>(body: impl FnOnce() -> R) -> (R, Vec<Access>, u64) {
        let _live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        install().expect("install the trap");
        install().expect("install is idempotent");
        let recorder = Arc::new(Recorder::default());
        let previous = set_handler(Some(recorder.clone()));
        let before = trapped_accesses();
        let result = body();
        let counted = trapped_accesses() - before;
        set_handler(previous);
        (result, recorder.take(), counted)
    }

    fn access(direction: Direction, port: u16, width: PortWidth, value: u32) -> Access {
        Access {
            direction,
            port,
            width,
            value,
        }
    }

    const fn decoded(direction: Direction, width: PortWidth, port: PortSource, len: u8) -> Decoded {
        Decoded {
            direction,
            width,
            port,
            len,
        }
    }

    #[test]
    fn decodes_every_form() {
        use Direction::{In, Out};
        use PortSource::{Dx, Imm8};
        use PortWidth::{Byte, Dword, Word};
        let cases: &[(&[u8], Decoded)] = &[
            (&[0xE4, 0x40], decoded(In, Byte, Imm8(0x40), 2)),
            (&[0xE5, 0x41], decoded(In, Dword, Imm8(0x41), 2)),
            (&[0x66, 0xE5, 0x42], decoded(In, Word, Imm8(0x42), 3)),
            (&[0x66, 0xE4, 0x43], decoded(In, Byte, Imm8(0x43), 3)),
            (&[0xE6, 0x44], decoded(Out, Byte, Imm8(0x44), 2)),
            (&[0xE7, 0xFF], decoded(Out, Dword, Imm8(0xFF), 2)),
            (&[0x66, 0xE7, 0x00], decoded(Out, Word, Imm8(0x00), 3)),
            (&[0x66, 0xE6, 0x45], decoded(Out, Byte, Imm8(0x45), 3)),
            (&[0xEC], decoded(In, Byte, Dx, 1)),
            (&[0xED], decoded(In, Dword, Dx, 1)),
            (&[0x66, 0xED], decoded(In, Word, Dx, 2)),
            (&[0x66, 0xEC], decoded(In, Byte, Dx, 2)),
            (&[0xEE], decoded(Out, Byte, Dx, 1)),
            (&[0xEF], decoded(Out, Dword, Dx, 1)),
            (&[0x66, 0xEF], decoded(Out, Word, Dx, 2)),
            (&[0x66, 0xEE], decoded(Out, Byte, Dx, 2)),
            // Trailing bytes belong to the next instruction.
            (&[0xEC, 0x90, 0x90], decoded(In, Byte, Dx, 1)),
            (&[0xE4, 0x40, 0xEC], decoded(In, Byte, Imm8(0x40), 2)),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(bytes), Some(*expected), "{bytes:02X?}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let rejects: &[&[u8]] = &[
            &[],
            &[0x66],
            &[0xE4],
            &[0x66, 0xE5],
            &[0xE6],
            &[0xE7],
            // String I/O, bare and with rep.
            &[0x6C],
            &[0x6D],
            &[0x6E],
            &[0x6F],
            &[0x66, 0x6D],
            &[0xF3, 0x6C],
            &[0xF3, 0xEC],
            &[0xF2, 0xEE],
            // REX prefixes, before and after 66.
            &[0x48, 0xED],
            &[0x40, 0xEC],
            &[0x4F, 0xE5, 0x10],
            &[0x66, 0x48, 0xED],
            // Other prefixes.
            &[0x66, 0x66, 0xED],
            &[0xF0, 0xEE],
            &[0x2E, 0xEC],
            &[0x64, 0xEF],
            &[0x67, 0xEC],
            // Other privileged or neighbouring instructions.
            &[0xF4],
            &[0xFA],
            &[0xFB],
            &[0xE3, 0x00],
            &[0xE8, 0, 0, 0, 0],
            &[0xEB, 0xFE],
            &[0x0F, 0x01, 0xD0],
            &[0x90],
        ];
        for bytes in rejects {
            assert_eq!(decode(bytes), None, "{bytes:02X?}");
        }
    }

    #[test]
    fn decoder_reads_only_the_instruction() {
        // The signal handler's byte source must never be asked for a byte
        // past the instruction (it could be on an unmapped page).
        for bytes in [
            &[0xECu8][..],
            &[0x66, 0xEF],
            &[0xE4, 0x12],
            &[0x66, 0xE7, 0x34],
        ] {
            let mut highest = None;
            let result = decode_with(|index| {
                highest = Some(index);
                bytes.get(index).copied()
            });
            let len = usize::from(result.expect("decodes").len);
            assert_eq!(highest, Some(len - 1), "{bytes:02X?}");
        }
        // A reject stops at the first byte that is not in/out.
        let mut asked = Vec::new();
        let result = decode_with(|index| {
            asked.push(index);
            [0x66u8, 0x48, 0xED].get(index).copied()
        });
        assert_eq!((result, asked), (None, vec![0, 1]));
    }

    #[test]
    fn perform_follows_the_cpu_register_rules() {
        let recorder = Recorder::default();
        let rax = RAX_BEFORE;
        let rdx = 0xFFFF_FFFF_FFFF_0CF8;
        let byte_in = decode(&[0xEC]).expect("in al, dx");
        assert_eq!(byte_in.perform(rax, rdx, &recorder), 0x1122_3344_5566_77BE);
        let word_in = decode(&[0x66, 0xED]).expect("in ax, dx");
        assert_eq!(word_in.perform(rax, rdx, &recorder), 0x1122_3344_5566_BABE);
        let dword_in = decode(&[0xED]).expect("in eax, dx");
        assert_eq!(dword_in.perform(rax, rdx, &recorder), 0x0000_0000_CAFE_BABE);
        let byte_out = decode(&[0xE6, 0x80]).expect("out 0x80, al");
        assert_eq!(byte_out.perform(rax, rdx, &recorder), rax);
        let word_out = decode(&[0x66, 0xEF]).expect("out dx, ax");
        assert_eq!(word_out.perform(rax, rdx, &recorder), rax);
        let dword_out = decode(&[0xEF]).expect("out dx, eax");
        assert_eq!(dword_out.perform(rax, rdx, &recorder), rax);
        assert_eq!(
            recorder.take(),
            [
                access(Direction::In, 0x0CF8, PortWidth::Byte, 0),
                access(Direction::In, 0x0CF8, PortWidth::Word, 0),
                access(Direction::In, 0x0CF8, PortWidth::Dword, 0),
                access(Direction::Out, 0x0080, PortWidth::Byte, 0x88),
                access(Direction::Out, 0x0CF8, PortWidth::Word, 0x7788),
                access(Direction::Out, 0x0CF8, PortWidth::Dword, 0x5566_7788),
            ]
        );
    }

    #[test]
    fn width_helpers() {
        assert_eq!(
            [PortWidth::Byte, PortWidth::Word, PortWidth::Dword].map(PortWidth::bytes),
            [1, 2, 4]
        );
        assert_eq!(PortWidth::Word.mask(), 0xFFFF);
    }

    /// `RDX` for the `dx` forms: garbage above the low 16 bits, which the
    /// CPU ignores.
    const RDX_BEFORE: u64 = 0xFFFF_0000_DEAD_1234;

    #[test]
    fn live_dx_forms() {
        let (after, log, counted) = with_recorder(|| {
            [
                live!("in al, dx", RDX_BEFORE),
                live!("in ax, dx", RDX_BEFORE),
                live!("in eax, dx", RDX_BEFORE),
                live!("out dx, al", RDX_BEFORE),
                live!("out dx, ax", RDX_BEFORE),
                live!("out dx, eax", RDX_BEFORE),
                // 66 on a byte form: still a byte access, one byte longer.
                live!(".byte 0x66, 0xEC", RDX_BEFORE),
            ]
        });
        let expected_rax = [
            0x1122_3344_5566_77BE, // AL only
            0x1122_3344_5566_BABE, // AX only
            0x0000_0000_CAFE_BABE, // EAX, zero-extended
            RAX_BEFORE,
            RAX_BEFORE,
            RAX_BEFORE,
            0x1122_3344_5566_77BE,
        ];
        assert_registers(&after, &expected_rax);
        assert_eq!(
            log,
            [
                access(Direction::In, 0x1234, PortWidth::Byte, 0),
                access(Direction::In, 0x1234, PortWidth::Word, 0),
                access(Direction::In, 0x1234, PortWidth::Dword, 0),
                access(Direction::Out, 0x1234, PortWidth::Byte, 0x88),
                access(Direction::Out, 0x1234, PortWidth::Word, 0x7788),
                access(Direction::Out, 0x1234, PortWidth::Dword, 0x5566_7788),
                access(Direction::In, 0x1234, PortWidth::Byte, 0),
            ]
        );
        assert_eq!(counted, 7);
    }

    /// Each live instruction left RAX as expected and RDX, RCX and the
    /// marker (the instruction after it ran) as they were.
    fn assert_registers(after: &[After], expected_rax: &[u64]) {
        assert_eq!(after.len(), expected_rax.len());
        for (after, &rax) in after.iter().zip(expected_rax) {
            assert_eq!(
                *after,
                After {
                    rax,
                    rdx: RDX_BEFORE,
                    rcx: RCX_BEFORE,
                    marker: MARKER,
                }
            );
        }
    }

    #[test]
    fn live_imm8_forms() {
        let (after, log, counted) = with_recorder(|| {
            [
                live!("in al, 0x40", RDX_BEFORE),
                live!("in ax, 0x41", RDX_BEFORE),
                live!("in eax, 0x42", RDX_BEFORE),
                live!("out 0x43, al", RDX_BEFORE),
                live!("out 0x44, ax", RDX_BEFORE),
                live!("out 0xFF, eax", RDX_BEFORE),
            ]
        });
        let expected_rax = [
            0x1122_3344_5566_77BE,
            0x1122_3344_5566_BABE,
            0x0000_0000_CAFE_BABE,
            RAX_BEFORE,
            RAX_BEFORE,
            RAX_BEFORE,
        ];
        assert_registers(&after, &expected_rax);
        assert_eq!(
            log,
            [
                access(Direction::In, 0x40, PortWidth::Byte, 0),
                access(Direction::In, 0x41, PortWidth::Word, 0),
                access(Direction::In, 0x42, PortWidth::Dword, 0),
                access(Direction::Out, 0x43, PortWidth::Byte, 0x88),
                access(Direction::Out, 0x44, PortWidth::Word, 0x7788),
                access(Direction::Out, 0xFF, PortWidth::Dword, 0x5566_7788),
            ]
        );
        assert_eq!(counted, 6);
    }

    #[test]
    fn live_trap_from_another_thread() {
        // The trap is process-wide: a thread other than the installer's
        // (here a fresh one) is served too.
        let (after, log, _) = with_recorder(|| {
            std::thread::spawn(|| live!("in eax, dx", 0x0071))
                .join()
                .expect("thread")
        });
        assert_eq!(after.rax, 0x0000_0000_CAFE_BABE);
        assert_eq!(after.marker, MARKER);
        assert_eq!(log, [access(Direction::In, 0x71, PortWidth::Dword, 0)]);
    }

    // Faults the trap must not swallow. Each runs in a child process (this
    // test binary, re-run on `child_entry` only), which must die of SIGSEGV.

    /// Environment variable naming the child case.
    const CHILD_CASE: &str = "WAVERT_IO_TRAP_CHILD_CASE";

    /// Printed by the child just before it faults.
    const CHILD_READY: &str = "io_trap child ready";

    /// Exit code of the previous handler in the `chain` case.
    const CHAINED_EXIT: i32 = 42;

    extern "C" fn exit_from_signal(_signum: c_int) {
        // SAFETY: `_exit` is async-signal-safe and never returns.
        unsafe { libc::_exit(CHAINED_EXIT) };
    }

    /// The child side: does nothing unless [`CHILD_CASE`] is set.
    #[test]
    fn child_entry() {
        let Ok(case) = std::env::var(CHILD_CASE) else {
            return;
        };
        // No core files from the deliberate crashes.
        // SAFETY: PR_SET_DUMPABLE with 0 only changes this process's flag.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        if case == "chain" {
            // A previous plain handler, installed before the trap.
            // SAFETY: all-zero bytes are a valid `sigaction`.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = exit_from_signal as *const () as libc::sighandler_t;
            // SAFETY: `action` is valid; its handler has the plain signature.
            let rc = unsafe { libc::sigaction(libc::SIGSEGV, &raw const action, ptr::null_mut()) };
            assert_eq!(rc, 0);
        }
        if case == "default" {
            // A previous SIG_DFL instead of the Rust runtime's handler.
            restore_default(libc::SIGSEGV);
        }
        install().expect("install the trap");
        let handler: Option<Arc<dyn PortIoHandler>> = match case.as_str() {
            "no-handler" => None,
            "panic" => Some(Arc::new(Panicker)),
            _ => Some(Arc::new(Recorder::default())),
        };
        set_handler(handler);
        // A trapped access first, to show the trap is live in the child.
        if case != "no-handler" && case != "panic" {
            let after = live!("in al, dx", 0x10);
            assert_eq!(after.marker, MARKER);
        }
        eprintln!("{CHILD_READY}: {case}");
        match case.as_str() {
            "no-handler" | "panic" => {
                live!("in al, dx", 0x10);
            }
            "hlt" | "chain" | "default" => {
                // SAFETY: `hlt` faults in user mode; the trap must pass the
                // fault on and the process dies (or, for `chain`, the previous
                // handler exits).
                unsafe { core::arch::asm!("hlt") };
            }
            "insb" => {
                let mut buffer = [0u8; 4];
                // SAFETY: `insb` writes one byte at RDI, a valid buffer; in
                // user mode it faults before that, and the trap must pass the
                // fault on.
                unsafe {
                    core::arch::asm!(
                        "insb",
                        inout("rdi") buffer.as_mut_ptr() => _,
                        in("dx") 0x10u16,
                    );
                }
            }
            "null" => {
                let null = std::hint::black_box(ptr::null::<u8>());
                // SAFETY: deliberately not: a read through null, a page fault
                // (not SI_KERNEL) the trap must pass on.
                unsafe { std::hint::black_box(ptr::read_volatile(null)) };
            }
            other => panic!("unknown child case {other}"),
        }
        // Only reached if a fault was swallowed.
        std::process::exit(3);
    }

    /// Runs [`child_entry`] in a child process with `case`; returns its exit
    /// status and standard error. A child still running after 30 s (a fault
    /// swallowed in a loop) is killed and fails the test.
    fn run_child(case: &str) -> (std::process::ExitStatus, String) {
        let module = module_path!();
        let name = module.split_once("::").map_or(module, |(_, rest)| rest);
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                &format!("{name}::child_entry"),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_CASE, case)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the child");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{case}: child still running after 30 s (fault swallowed?)");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr)
                .expect("read the child's stderr");
        }
        (status, stderr)
    }

    fn assert_dies_of_sigsegv(case: &str) {
        let (status, stderr) = run_child(case);
        assert!(
            stderr.contains(&format!("{CHILD_READY}: {case}")),
            "{case}: child did not get to the fault: {status:?}\n{stderr}"
        );
        assert_eq!(
            status.signal(),
            Some(libc::SIGSEGV),
            "{case}: {status:?}\n{stderr}"
        );
    }

    #[test]
    fn io_without_handler_kills_the_process() {
        assert_dies_of_sigsegv("no-handler");
    }

    #[test]
    fn panicking_handler_kills_the_process() {
        assert_dies_of_sigsegv("panic");
    }

    #[test]
    fn other_privileged_instruction_kills_the_process() {
        assert_dies_of_sigsegv("hlt");
    }

    #[test]
    fn other_faults_with_a_default_previous_action_kill_the_process() {
        assert_dies_of_sigsegv("default");
    }

    #[test]
    fn string_io_kills_the_process() {
        assert_dies_of_sigsegv("insb");
    }

    #[test]
    fn page_fault_kills_the_process() {
        assert_dies_of_sigsegv("null");
    }

    #[test]
    fn other_faults_go_to_the_previous_handler() {
        let (status, stderr) = run_child("chain");
        assert!(
            stderr.contains(&format!("{CHILD_READY}: chain")),
            "{stderr}"
        );
        assert_eq!(status.code(), Some(CHAINED_EXIT), "{status:?}\n{stderr}");
    }
}
