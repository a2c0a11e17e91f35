//! MMIO trap: runs a driver image's register accesses to a memory BAR in a
//! Linux user-mode process, beside [`super::io_trap`]'s port trap.
//!
//! The HD Audio glue of the driver (`src/mmio.rs`) reaches its BAR with six
//! fixed instructions, always with the address in `RCX` and the value in
//! the accumulator:
//!
//! | bytes | instruction |
//! |---|---|
//! | `8A 01` | `mov al, byte ptr [rcx]` |
//! | `66 8B 01` | `mov ax, word ptr [rcx]` |
//! | `8B 01` | `mov eax, dword ptr [rcx]` |
//! | `88 01` | `mov byte ptr [rcx], al` |
//! | `66 89 01` | `mov word ptr [rcx], ax` |
//! | `89 01` | `mov dword ptr [rcx], eax` |
//!
//! The image's `MmMapIoSpaceEx` (the kernel stand-in,
//! [`super::kernel`]) returns an inaccessible (`PROT_NONE`) reservation of
//! the BAR's length and registers it here as a window ([`register_window`]).
//! An access to it raises `SIGSEGV` with `si_code == SEGV_ACCERR` at the
//! accessed address; the process's handler (installed by
//! [`super::io_trap::install`], which calls [`emulate`] after the memory
//! model's stale-view check and the port trap)
//!
//! 1. checks that the faulting address lies in a registered window and the
//!    instruction pointer does not (a jump into the window is no access),
//! 2. [`decode`]s the instruction at `RIP` (one byte at a time, never past
//!    the instruction), accepting only the six forms above,
//! 3. checks that `RCX` is the faulting address and the access lies wholly
//!    in the window,
//! 4. forwards it to the current [`MmioHandler`] (see [`set_handler`]) as
//!    an offset from the window's BAR base, a width and (for a store) the
//!    value,
//! 5. writes the result into the saved registers as the CPU would (`mov
//!    eax` zero-extends into `RAX`; `mov ax` and `mov al` replace only their
//!    part; stores leave `RAX` alone) and advances `RIP`.
//!
//! Anything else (another fault kind or address, another instruction, no
//! handler, a panicking handler) is not handled here: the port trap's
//! handler passes it on exactly as before (see [`super::io_trap`], "Faults
//! that are not port I/O"), so the memory model's quarantined views keep
//! working and the process dies of an unexpected fault as it would have.
//! What the port trap's documentation says about calling a handler from
//! the signal handler applies here unchanged.

#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use super::io_trap::PortWidth as MmioWidth;

/// Direction of a register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MmioDirection {
    /// A load into the accumulator.
    Read,
    /// A store of the accumulator.
    Write,
}

/// A decoded register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MmioAccess {
    /// Load or store.
    pub direction: MmioDirection,
    /// Width of the access and of the accumulator part involved.
    pub width: MmioWidth,
    /// Length of the instruction in bytes, prefix included (2 or 3).
    pub len: u8,
}

impl MmioAccess {
    /// Performs the access at `offset` on `handler` with `RAX` as it was at
    /// the instruction, and returns `RAX` as the CPU leaves it.
    pub fn perform(&self, rax: u64, offset: u64, handler: &dyn MmioHandler) -> u64 {
        match self.direction {
            MmioDirection::Write => {
                let [b0, b1, b2, b3, ..] = rax.to_le_bytes();
                let value = u32::from_le_bytes([b0, b1, b2, b3]) & self.width.mask();
                handler.write(offset, self.width, value);
                rax
            }
            MmioDirection::Read => {
                super::io_trap::merge_in(rax, self.width, handler.read(offset, self.width))
            }
        }
    }
}

/// Decodes `bytes` (starting at the instruction) as one of the six forms
/// the trap emulates, or returns `None`. Bytes after the instruction are
/// ignored.
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<MmioAccess> {
    decode_with(|index| bytes.get(index).copied())
}

/// The `ModRM` byte of `[rcx]` with `al`/`ax`/`eax` as the register operand: mod 00,
/// reg 000 (accumulator), r/m 001 (`rcx`).
const MODRM_ACC_RCX: u8 = 0x01;

/// [`decode`] over a byte source asked for each byte only once the bytes
/// before it have made it part of an accepted instruction.
fn decode_with(mut fetch: impl FnMut(usize) -> Option<u8>) -> Option<MmioAccess> {
    let mut at = 0;
    let mut opcode = fetch(at)?;
    let word = opcode == 0x66;
    if word {
        at += 1;
        opcode = fetch(at)?;
    }
    let (direction, width) = match (word, opcode) {
        (false, 0x8A) => (MmioDirection::Read, MmioWidth::Byte),
        (true, 0x8B) => (MmioDirection::Read, MmioWidth::Word),
        (false, 0x8B) => (MmioDirection::Read, MmioWidth::Dword),
        (false, 0x88) => (MmioDirection::Write, MmioWidth::Byte),
        (true, 0x89) => (MmioDirection::Write, MmioWidth::Word),
        (false, 0x89) => (MmioDirection::Write, MmioWidth::Dword),
        _ => return None,
    };
    at += 1;
    if fetch(at)? != MODRM_ACC_RCX {
        return None;
    }
    at += 1;
    Some(MmioAccess {
        direction,
        width,
        len: u8::try_from(at).ok()?,
    })
}

/// The device side of trapped register accesses: the BAR's registers at
/// offsets from its base.
///
/// Called from the `SIGSEGV` handler on the thread that executed the
/// access (see [`super::io_trap`] for what that allows). Implementations
/// must not panic.
pub trait MmioHandler: Send + Sync {
    /// Reads `width` at `offset`; only the low `width` bits are used.
    fn read(&self, offset: u64, width: MmioWidth) -> u32;

    /// Writes `value` (already masked to `width`) at `offset`.
    fn write(&self, offset: u64, width: MmioWidth, value: u32);

    /// The 32-bit register at `offset` as a user-mode mapping of the BAR
    /// shows it ([`read_user_mapping`]: the audio engine reading a clock
    /// register the driver offered), which is no access the driver made:
    /// by default an ordinary read.
    fn peek32(&self, offset: u64) -> u32 {
        self.read(offset, MmioWidth::Dword)
    }
}

/// One registered window: `len` bytes at `start` stand for the BAR from
/// `bar_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: usize,
    len: usize,
    bar_offset: u64,
}

/// The registered windows.
static WINDOWS: Mutex<Vec<Window>> = Mutex::new(Vec::new());

/// The handler trapped accesses go to.
static HANDLER: Mutex<Option<Arc<dyn MmioHandler>>> = Mutex::new(None);

/// Accesses completed by the trap.
static TRAPPED: AtomicU64 = AtomicU64::new(0);

/// Registers `len` bytes at `start` (an inaccessible reservation of the
/// caller's) as the BAR's registers from `bar_offset` on.
pub fn register_window(start: usize, len: usize, bar_offset: u64) {
    WINDOWS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Window {
            start,
            len,
            bar_offset,
        });
}

/// Forgets the window at `start`; returns its length, `None` if there was
/// none.
pub fn unregister_window(start: usize) -> Option<usize> {
    let mut windows = WINDOWS.lock().unwrap_or_else(PoisonError::into_inner);
    let index = windows.iter().position(|w| w.start == start)?;
    Some(windows.swap_remove(index).len)
}

/// Sets the process-wide handler (`None`: accesses are not emulated) and
/// returns the previous one.
pub fn set_handler(handler: Option<Arc<dyn MmioHandler>>) -> Option<Arc<dyn MmioHandler>> {
    let mut slot = HANDLER.lock().unwrap_or_else(PoisonError::into_inner);
    std::mem::replace(&mut *slot, handler)
}

/// The 32-bit register at kernel address `address`, when it lies in a
/// registered window.
///
/// What the port's user-mode mapping of that BAR page would read (PortCls maps a register `GetClockRegister` or
/// `GetPositionRegister` names into the audio engine's process). `None`
/// outside every window, or without a handler, or for an access that does
/// not fit in its window.
#[must_use]
pub fn read_user_mapping(address: usize) -> Option<u32> {
    let window = window_of(
        &WINDOWS.lock().unwrap_or_else(PoisonError::into_inner),
        address,
    )?;
    if address - window.start + 4 > window.len {
        return None;
    }
    let handler = HANDLER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()?;
    let offset = window.bar_offset + u64::try_from(address - window.start).ok()?;
    Some(handler.peek32(offset))
}

/// Register accesses the trap has completed since the process started.
#[must_use]
pub fn trapped_accesses() -> u64 {
    TRAPPED.load(Ordering::Relaxed)
}

/// `si_code` of a `SIGSEGV` for an access the page's protection forbids.
const SEGV_ACCERR: libc::c_int = 2;

/// Highest address (exclusive) whose faults are decoded.
const USER_SPACE_END: u64 = 1 << 47;

/// The window `address` lies in.
fn window_of(windows: &[Window], address: usize) -> Option<Window> {
    windows
        .iter()
        .copied()
        .find(|w| address >= w.start && address - w.start < w.len)
}

/// Emulates the faulting instruction if it is a register access to a
/// registered window and a handler is set, updating the saved registers;
/// returns whether it did.
///
/// # Safety
///
/// `info` and `context` must be null or the `siginfo_t` and `ucontext_t`
/// the kernel passed to an `SA_SIGINFO` handler for a `SIGSEGV` on this
/// thread.
pub(crate) unsafe fn emulate(info: *mut libc::siginfo_t, context: *mut c_void) -> bool {
    if info.is_null() || context.is_null() {
        return false;
    }
    // SAFETY: the kernel's valid `siginfo_t` (caller's contract).
    let info = unsafe { &*info };
    if info.si_code != SEGV_ACCERR {
        return false;
    }
    // SAFETY: for SIGSEGV the kernel fills in `si_addr`.
    let address = unsafe { info.si_addr() }.addr();
    let windows = WINDOWS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(window) = window_of(&windows, address) else {
        return false;
    };
    let Some(handler) = HANDLER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    else {
        return false;
    };
    let context = context.cast::<libc::ucontext_t>();
    // SAFETY: the kernel's valid `ucontext_t`; nothing else refers to its
    // registers while this handler runs.
    let gregs = unsafe { &mut (*context).uc_mcontext.gregs };
    let rip = reg_to_u64(gregs[greg(libc::REG_RIP)]);
    let Ok(rip_address) = usize::try_from(rip) else {
        return false;
    };
    if rip >= USER_SPACE_END || window_of(&windows, rip_address).is_some() {
        return false;
    }
    let Some(access) = decode_with(|index| {
        let byte = ptr::with_exposed_provenance::<u8>(rip_address.checked_add(index)?);
        // SAFETY: the fault is a data access (its address lies in a window,
        // RIP does not), so the CPU fetched the whole instruction at RIP
        // from mapped code; the decoder asks for a byte only once the bytes
        // before it belong to an accepted instruction, so every byte read
        // lies within it.
        Some(unsafe { byte.read_volatile() })
    }) else {
        return false;
    };
    let rcx = reg_to_u64(gregs[greg(libc::REG_RCX)]);
    let width = usize::from(access.width.bytes());
    if usize::try_from(rcx).ok() != Some(address) || address - window.start + width > window.len {
        return false;
    }
    let offset = window.bar_offset + (address - window.start) as u64;
    let rax = reg_to_u64(gregs[greg(libc::REG_RAX)]);
    let Ok(new_rax) = panic::catch_unwind(AssertUnwindSafe(|| {
        access.perform(rax, offset, handler.as_ref())
    })) else {
        return false;
    };
    gregs[greg(libc::REG_RAX)] = u64_to_reg(new_rax);
    gregs[greg(libc::REG_RIP)] = u64_to_reg(rip + u64::from(access.len));
    TRAPPED.fetch_add(1, Ordering::Relaxed);
    true
}

/// The index of a register in `mcontext_t::gregs`.
#[allow(clippy::cast_sign_loss, reason = "small non-negative indices")]
const fn greg(register: libc::c_int) -> usize {
    register as usize
}

/// Reinterprets a saved register as unsigned.
const fn reg_to_u64(reg: libc::greg_t) -> u64 {
    u64::from_ne_bytes(reg.to_ne_bytes())
}

/// Reinterprets a register value as a saved register.
const fn u64_to_reg(value: u64) -> libc::greg_t {
    libc::greg_t::from_ne_bytes(value.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    use MmioDirection::{Read, Write};
    use MmioWidth::{Byte, Dword, Word};

    const fn access(direction: MmioDirection, width: MmioWidth, len: u8) -> MmioAccess {
        MmioAccess {
            direction,
            width,
            len,
        }
    }

    #[test]
    fn decodes_the_six_forms() {
        let cases: &[(&[u8], MmioAccess)] = &[
            (&[0x8A, 0x01], access(Read, Byte, 2)),
            (&[0x66, 0x8B, 0x01], access(Read, Word, 3)),
            (&[0x8B, 0x01], access(Read, Dword, 2)),
            (&[0x88, 0x01], access(Write, Byte, 2)),
            (&[0x66, 0x89, 0x01], access(Write, Word, 3)),
            (&[0x89, 0x01], access(Write, Dword, 2)),
            // Trailing bytes belong to the next instruction.
            (&[0x8B, 0x01, 0x90], access(Read, Dword, 2)),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(bytes), Some(*expected), "{bytes:02X?}");
        }
    }

    #[test]
    fn refuses_every_other_form() {
        let rejects: &[&[u8]] = &[
            &[],
            &[0x8B],
            &[0x66, 0x8B],
            // mov rax, [rcx] / mov [rcx], rax: REX.W, a 64-bit access.
            &[0x48, 0x8B, 0x01],
            &[0x48, 0x89, 0x01],
            // Another register: mov edx, [rcx]; mov eax, [rdx].
            &[0x8B, 0x11],
            &[0x8B, 0x02],
            // A displacement: mov eax, [rcx+0x10].
            &[0x8B, 0x41, 0x10],
            // An operand-size prefix on a byte form, a repeated prefix.
            &[0x66, 0x8A, 0x01],
            &[0x66, 0x88, 0x01],
            &[0x66, 0x66, 0x8B, 0x01],
            // movzx eax, byte ptr [rcx]; a lock or segment prefix.
            &[0x0F, 0xB6, 0x01],
            &[0xF0, 0x89, 0x01],
            &[0x64, 0x8B, 0x01],
            // Port I/O is the other trap's.
            &[0xED],
            &[0x90],
        ];
        for bytes in rejects {
            assert_eq!(decode(bytes), None, "{bytes:02X?}");
        }
    }

    #[test]
    fn decoder_reads_only_the_instruction() {
        for bytes in [&[0x8Bu8, 0x01][..], &[0x66, 0x89, 0x01]] {
            let mut highest = None;
            let result = decode_with(|index| {
                highest = Some(index);
                bytes.get(index).copied()
            });
            let len = usize::from(result.expect("decodes").len);
            assert_eq!(highest, Some(len - 1), "{bytes:02X?}");
        }
        let mut asked = Vec::new();
        let result = decode_with(|index| {
            asked.push(index);
            [0x48u8, 0x8B, 0x01].get(index).copied()
        });
        assert_eq!((result, asked), (None, vec![0]));
    }

    /// A handler that records every access and reads `0xCAFE_BABE`.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<(MmioDirection, u64, MmioWidth, u32)>>,
    }

    impl Recorder {
        fn take(&self) -> Vec<(MmioDirection, u64, MmioWidth, u32)> {
            std::mem::take(&mut *self.log.lock().unwrap_or_else(PoisonError::into_inner))
        }
    }

    impl MmioHandler for Recorder {
        fn read(&self, offset: u64, width: MmioWidth) -> u32 {
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((Read, offset, width, 0));
            0xCAFE_BABE
        }

        fn write(&self, offset: u64, width: MmioWidth, value: u32) {
            self.log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((Write, offset, width, value));
        }
    }

    const RAX_BEFORE: u64 = 0x1122_3344_5566_7788;

    #[test]
    fn perform_writes_back_as_the_cpu_does() {
        let recorder = Recorder::default();
        let load = |bytes: &[u8]| decode(bytes).expect("decodes");
        assert_eq!(
            load(&[0x8A, 0x01]).perform(RAX_BEFORE, 0x08, &recorder),
            0x1122_3344_5566_77BE,
            "mov al replaces AL only"
        );
        assert_eq!(
            load(&[0x66, 0x8B, 0x01]).perform(RAX_BEFORE, 0x0E, &recorder),
            0x1122_3344_5566_BABE,
            "mov ax replaces AX only"
        );
        assert_eq!(
            load(&[0x8B, 0x01]).perform(RAX_BEFORE, 0x30, &recorder),
            0x0000_0000_CAFE_BABE,
            "mov eax zero-extends"
        );
        for bytes in [&[0x88u8, 0x01][..], &[0x66, 0x89, 0x01], &[0x89, 0x01]] {
            assert_eq!(load(bytes).perform(RAX_BEFORE, 0x40, &recorder), RAX_BEFORE);
        }
        assert_eq!(
            recorder.take(),
            [
                (Read, 0x08, Byte, 0),
                (Read, 0x0E, Word, 0),
                (Read, 0x30, Dword, 0),
                (Write, 0x40, Byte, 0x88),
                (Write, 0x40, Word, 0x7788),
                (Write, 0x40, Dword, 0x5566_7788),
            ]
        );
    }

    /// Serializes the tests that use the process-wide windows and handler.
    static LIVE: Mutex<()> = Mutex::new(());

    /// A `PROT_NONE` reservation of one page, registered as a window from
    /// BAR offset `0x1000`, with a recorder set; runs `body` with its base.
    fn with_window<R>(
        body: impl FnOnce(usize) -> R,
    ) -> (R, Vec<(MmioDirection, u64, MmioWidth, u32)>) {
        let _live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        super::super::io_trap::install().expect("install the trap");
        // SAFETY: a fresh anonymous inaccessible reservation of our own.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                4096,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let start = base.addr();
        register_window(start, 4096, 0x1000);
        let recorder = Arc::new(Recorder::default());
        let previous = set_handler(Some(recorder.clone()));
        let result = body(start);
        set_handler(previous);
        assert_eq!(unregister_window(start), Some(4096));
        // SAFETY: the reservation made above, no longer registered.
        unsafe { libc::munmap(base, 4096) };
        (result, recorder.take())
    }

    /// Runs one trapped access (the driver's exact template) at `address`
    /// with `RAX` = [`RAX_BEFORE`]; returns RAX after it and the marker the
    /// next instruction sets.
    macro_rules! live {
        ($insn:literal, $address:expr) => {{
            let mut rax: u64 = RAX_BEFORE;
            let marker: u64;
            // SAFETY: the caller holds `LIVE` with the window registered and
            // a handler set: the access faults, the trap completes it and
            // execution resumes at the `mov`, with only RAX (for a load)
            // and RIP changed.
            unsafe {
                core::arch::asm!(
                    $insn,
                    "mov {marker}, 0x5A5A",
                    marker = out(reg) marker,
                    in("rcx") $address,
                    inout("rax") rax,
                );
            }
            (rax, marker)
        }};
    }

    #[test]
    fn the_user_mode_view_reads_a_window_without_a_fault() {
        let ((reads, trapped), log) = with_window(|base| {
            let before = trapped_accesses();
            let reads = [
                read_user_mapping(base + 0x30),
                // The last whole dword, and one that would run past the end.
                read_user_mapping(base + 0xFFC),
                read_user_mapping(base + 0xFFE),
                // Outside every window.
                read_user_mapping(base + 0x1000),
                read_user_mapping(base - 4),
            ];
            (reads, trapped_accesses() - before)
        });
        assert_eq!(
            reads,
            [Some(0xCAFE_BABE), Some(0xCAFE_BABE), None, None, None]
        );
        // Through the handler at the BAR offsets (the default `peek32` is a
        // dword read), and no instruction was trapped for them.
        assert_eq!(log, [(Read, 0x1030, Dword, 0), (Read, 0x1FFC, Dword, 0)]);
        assert_eq!(trapped, 0);
    }

    #[test]
    fn live_accesses_are_trapped_and_resumed() {
        let before = trapped_accesses();
        let (after, log) = with_window(|base| {
            [
                live!("mov al, byte ptr [rcx]", base + 0x08),
                live!("mov ax, word ptr [rcx]", base + 0x0E),
                live!("mov eax, dword ptr [rcx]", base + 0x30),
                live!("mov byte ptr [rcx], al", base + 0x40),
                live!("mov word ptr [rcx], ax", base + 0x42),
                live!("mov dword ptr [rcx], eax", base + 0xFFC),
            ]
        });
        assert_eq!(
            after.map(|(rax, _)| rax),
            [
                0x1122_3344_5566_77BE,
                0x1122_3344_5566_BABE,
                0x0000_0000_CAFE_BABE,
                RAX_BEFORE,
                RAX_BEFORE,
                RAX_BEFORE,
            ]
        );
        assert!(after.iter().all(|&(_, marker)| marker == 0x5A5A));
        assert_eq!(
            log,
            [
                (Read, 0x1008, Byte, 0),
                (Read, 0x100E, Word, 0),
                (Read, 0x1030, Dword, 0),
                (Write, 0x1040, Byte, 0x88),
                (Write, 0x1042, Word, 0x7788),
                (Write, 0x1FFC, Dword, 0x5566_7788),
            ]
        );
        assert!(trapped_accesses() - before >= 6);
    }

    // A refused form in a window must not be swallowed: it runs in a child
    // process (this test binary, re-run on `child_entry` only), which must
    // die of SIGSEGV.

    /// Environment variable naming the child case.
    const CHILD_CASE: &str = "WAVERT_MMIO_TRAP_CHILD_CASE";

    /// Printed by the child just before it faults.
    const CHILD_READY: &str = "mmio_trap child ready";

    /// The child side: does nothing unless [`CHILD_CASE`] is set.
    #[test]
    fn child_entry() {
        let Ok(case) = std::env::var(CHILD_CASE) else {
            return;
        };
        // SAFETY: PR_SET_DUMPABLE with 0 only changes this process's flag.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        let ((), _) = with_window(|base| {
            // A trapped access first, to show the trap is live in the child.
            let (rax, marker) = live!("mov eax, dword ptr [rcx]", base);
            assert_eq!((rax, marker), (0xCAFE_BABE, 0x5A5A));
            eprintln!("{CHILD_READY}: {case}");
            match case.as_str() {
                // A 64-bit load (REX.W): not a form the driver emits.
                "rex-w" => {
                    let _ = live!("mov rax, qword ptr [rcx]", base);
                }
                // The right form through another register.
                "other-register" => {
                    let value: u32;
                    // SAFETY: deliberately not: a load from the window the
                    // trap must refuse (the address is in RDX).
                    unsafe {
                        core::arch::asm!("mov eax, dword ptr [rdx]", in("rdx") base, out("eax") value);
                    }
                    std::hint::black_box(value);
                }
                other => panic!("unknown child case {other}"),
            }
        });
        // Only reached if a fault was swallowed.
        std::process::exit(3);
    }

    fn assert_child_dies_of_sigsegv(case: &str) {
        use std::io::Read as _;
        use std::os::unix::process::ExitStatusExt as _;
        let module = module_path!();
        let name = module.split_once("::").map_or(module, |(_, rest)| rest);
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                &format!("{name}::child_entry"),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_CASE, case)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the child");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{case}: child still running after 30 s (fault swallowed?)");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr)
                .expect("read the child's stderr");
        }
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
    fn a_64_bit_access_to_a_window_kills_the_process() {
        assert_child_dies_of_sigsegv("rex-w");
    }

    #[test]
    fn an_access_through_another_register_kills_the_process() {
        assert_child_dies_of_sigsegv("other-register");
    }
}
