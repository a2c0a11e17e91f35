//! ABI conformance of `portcls-sys` against the MinGW-w64 headers.
//!
//! 1. `cargo run -p portcls-sys --example abi_manifest` prints, from the Rust
//!    definitions (`size_of`, `align_of`, `offset_of!`), every struct,
//!    vtable slot, GUID and constant the crate defines.
//! 2. Layouts and constants become `_Static_assert`s in one C translation
//!    unit compiled with `clang --target=x86_64-pc-windows-gnu -fsyntax-only`
//!    against `ddk/portcls.h`, `ks.h`, `ksmedia.h` (vtables by member name:
//!    MinGW's C-mode `XxxVtbl` structs list the slots in order).
//! 3. GUIDs are compiled into a COFF object (`INITGUID`, or the headers'
//!    `STATIC_` macros) and their bytes read back and compared.
//! 4. The hidden return pointer of `IPortWaveRTStream::GetPhysicalPageAddress`:
//!    clang's code for a call of the C++ member function and rustc's code for a
//!    call through our vtable slot, both for `x86_64-pc-windows-msvc`, must
//!    put the result pointer in RDX, the MDL in R8 and the index in R9.
//!
//! Scalar typedefs (`type` lines) get their size and alignment asserted like
//! a structure; nested members (`u.Port.Start`) are C member designators.
//! Constants marked `user` come from the user-mode headers (`wtypes.h`),
//! which cannot share a translation unit with the kernel ones: they are
//! asserted in a second one over `windows.h`.
//!
//! Items MinGW lacks are `doc` lines of the manifest: counted, not compiled
//! (`portcls_sys::documented_only` pins them with `const` assertions).
//!
//! Environment: `CLANG` (default `clang`), `MINGW_INCLUDE` (default
//! `/usr/share/mingw-w64/include`), `RSWAVERT_WORKSPACE` (default: the parent
//! of the xtask package).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::workspace_root;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs the whole check; on success a one-line summary.
///
/// # Errors
///
/// Every mismatch, or a tool that could not run, with its reason.
pub fn run() -> Result<String, String> {
    let manifest = manifest_from_cargo()?;
    let summary = check_manifest(&manifest)?;
    check_hidden_return()?;
    Ok(format!(
        "ABI check passed: {} structs, {} vtables ({} slots), {} fields, {} typedefs, {} GUIDs, \
         {} constants verified against MinGW-w64; hidden return pointer of GetPhysicalPageAddress verified \
         (clang C++ and rustc, x86_64-pc-windows-msvc); {} items pinned from documentation only",
        summary.structs,
        summary.vtables,
        summary.slots,
        summary.fields,
        summary.types,
        summary.guids,
        summary.consts,
        summary.documented
    ))
}

/// What a successful manifest check verified.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Structures (interfaces included), excluding vtables.
    pub structs: usize,
    /// Vtable structures.
    pub vtables: usize,
    /// Vtable slots.
    pub slots: usize,
    /// Structure fields.
    pub fields: usize,
    /// Scalar typedefs (size and alignment).
    pub types: usize,
    /// GUID values.
    pub guids: usize,
    /// Constants and enumerators.
    pub consts: usize,
    /// Items taken from documentation only.
    pub documented: usize,
}

#[derive(Debug)]
enum Item {
    Struct {
        name: String,
        size: u64,
        align: u64,
    },
    Type {
        name: String,
        size: u64,
        align: u64,
    },
    Field {
        owner: String,
        member: String,
        offset: u64,
    },
    Guid {
        name: String,
        bytes: [u8; 16],
    },
    Const {
        name: String,
        value: i64,
        /// From the user-mode headers (`wtypes.h`), not the kernel ones.
        user: bool,
    },
    Doc,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn clang() -> String {
    std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned())
}

fn mingw_include() -> PathBuf {
    std::env::var_os("MINGW_INCLUDE").map_or_else(
        || PathBuf::from("/usr/share/mingw-w64/include"),
        PathBuf::from,
    )
}

fn manifest_from_cargo() -> Result<String, String> {
    let out = Command::new(cargo())
        .current_dir(workspace_root())
        .args([
            "run",
            "-q",
            "-p",
            "portcls-sys",
            "--example",
            "abi_manifest",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "abi_manifest failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("abi_manifest output is not UTF-8: {e}"))
}

fn parse(manifest: &str) -> Result<Vec<Item>, String> {
    let num = |s: Option<&str>, line: &str| -> Result<u64, String> {
        s.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad manifest line: {line}"))
    };
    let mut items = Vec::new();
    for line in manifest.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut w = line.split_whitespace();
        let kind = w.next().unwrap_or_default();
        let name = w
            .next()
            .ok_or_else(|| format!("bad manifest line: {line}"))?
            .to_owned();
        let item = match kind {
            "struct" => Item::Struct {
                name,
                size: num(w.next(), line)?,
                align: num(w.next(), line)?,
            },
            "type" => Item::Type {
                name,
                size: num(w.next(), line)?,
                align: num(w.next(), line)?,
            },
            "field" => {
                let member = w
                    .next()
                    .ok_or_else(|| format!("bad manifest line: {line}"))?
                    .to_owned();
                Item::Field {
                    owner: name,
                    member,
                    offset: num(w.next(), line)?,
                }
            }
            "guid" => {
                let hex = w.next().unwrap_or_default();
                let mut bytes = [0u8; 16];
                if hex.len() != 32 {
                    return Err(format!("bad GUID in manifest line: {line}"));
                }
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = hex
                        .get(2 * i..2 * i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| format!("bad GUID in manifest line: {line}"))?;
                }
                Item::Guid { name, bytes }
            }
            "const" => Item::Const {
                name,
                value: w
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("bad manifest line: {line}"))?,
                user: match w.next() {
                    None => false,
                    Some("user") => true,
                    Some(_) => return Err(format!("bad manifest line: {line}")),
                },
            },
            "doc" => Item::Doc,
            _ => return Err(format!("unknown manifest line: {line}")),
        };
        items.push(item);
    }
    Ok(items)
}

const PRELUDE: &str = "\
#include <ntddk.h>
/* User-mode names mmreg.h and ksmedia.h use, absent from the kernel headers. */
typedef WCHAR TCHAR;
typedef unsigned char BYTE;
typedef unsigned short WORD;
typedef unsigned long DWORD;
typedef int WINBOOL;
typedef DWORD COLORREF;
typedef float FLOAT;
#define MAX_PATH 260
#define NOBITMAP
#include <windef.h>
#include <winerror.h>
#include <mmreg.h>
#include <ks.h>
#include <ksmedia.h>
/* MinGW's portcls.h uses these two without defining them (documented-only items). */
typedef struct abi_fwd_hwlatency KSRTAUDIO_HWLATENCY;
typedef struct abi_fwd_hwregister KSRTAUDIO_HWREGISTER;
#include <portcls.h>
#include <stddef.h>
";

/// The user-mode headers, for the constants `wtypes.h` defines.
const USER_PRELUDE: &str = "\
#include <windows.h>
#include <wtypes.h>
";

fn scratch_dir() -> Result<PathBuf, String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rswavert-abi-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn clang_windows_gnu(dir: &Path, file: &str, source: &str, extra: &[&str]) -> Result<(), String> {
    let path = dir.join(file);
    std::fs::write(&path, source).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let inc = mingw_include();
    let out = Command::new(clang())
        .current_dir(dir)
        .arg("--target=x86_64-pc-windows-gnu")
        .args(["-w", "-ferror-limit=0", "-I"])
        .arg(&inc)
        .arg("-I")
        .arg(inc.join("ddk"))
        .args(extra)
        .arg(&path)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", clang()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reasons: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    Err(format!(
        "{} mismatch(es) or errors against MinGW-w64:\n{}",
        reasons.len(),
        reasons.join("\n")
    ))
}

/// Checks a manifest (as printed by `abi_manifest`) against the headers.
///
/// # Errors
///
/// Every layout, constant or GUID that differs, or a header that lacks it.
pub fn check_manifest(manifest: &str) -> Result<Summary, String> {
    let items = parse(manifest)?;
    let dir = scratch_dir()?;
    let result = check_items(&items, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn check_items(items: &[Item], dir: &Path) -> Result<Summary, String> {
    let mut s = Summary::default();
    let mut layout = String::from(PRELUDE);
    let mut user = String::from(USER_PRELUDE);
    for item in items {
        match item {
            Item::Struct { name, size, align } | Item::Type { name, size, align } => {
                if matches!(item, Item::Type { .. }) {
                    s.types += 1;
                } else if name.ends_with("Vtbl") {
                    s.vtables += 1;
                } else {
                    s.structs += 1;
                }
                let _ = writeln!(
                    layout,
                    "_Static_assert(sizeof({name}) == {size}, \"abi: sizeof({name}) is not {size}\");\n\
                     _Static_assert(_Alignof({name}) == {align}, \"abi: alignof({name}) is not {align}\");"
                );
            }
            Item::Field {
                owner,
                member,
                offset,
            } => {
                if owner.ends_with("Vtbl") {
                    s.slots += 1;
                } else {
                    s.fields += 1;
                }
                let _ = writeln!(
                    layout,
                    "_Static_assert(offsetof({owner}, {member}) == {offset}, \
                     \"abi: offsetof({owner}, {member}) is not {offset}\");"
                );
            }
            Item::Const {
                name,
                value,
                user: u,
            } => {
                s.consts += 1;
                let _ = writeln!(
                    if *u { &mut user } else { &mut layout },
                    "_Static_assert((long long)({name}) == {value}LL, \"abi: {name} is not {value}\");"
                );
            }
            Item::Guid { .. } => s.guids += 1,
            Item::Doc => s.documented += 1,
        }
    }
    let mut errors = Vec::new();
    if let Err(e) = clang_windows_gnu(dir, "layout.c", &layout, &["-fsyntax-only"]) {
        errors.push(format!("layouts and constants: {e}"));
    }
    if user.len() > USER_PRELUDE.len() {
        if let Err(e) = clang_windows_gnu(dir, "user.c", &user, &["-fsyntax-only"]) {
            errors.push(format!("user-mode constants: {e}"));
        }
    }
    if let Err(e) = check_guids(items, dir) {
        errors.push(format!("GUIDs: {e}"));
    }
    if errors.is_empty() {
        Ok(s)
    } else {
        Err(errors.join("\n"))
    }
}

/// GUIDs MinGW's kernel headers get wrong, checked against its user-mode
/// headers instead: `ddk/punknown.h` writes `IID_IUnknown`'s last eight bytes
/// as `00 00 C0 00 00 00 00 46` where `unknwn.h` (and COM) has
/// `C0 00 00 00 00 00 00 46`.
const KERNEL_HEADER_ERRATA: &[&str] = &["IID_IUnknown"];

fn check_guids(items: &[Item], dir: &Path) -> Result<(), String> {
    let (user, kernel): (Vec<(&str, &[u8; 16])>, Vec<_>) = items
        .iter()
        .filter_map(|i| match i {
            Item::Guid { name, bytes } => Some((name.as_str(), bytes)),
            _ => None,
        })
        .partition(|(n, _)| KERNEL_HEADER_ERRATA.contains(n));
    let mut c = String::from("#define INITGUID\n");
    c.push_str(PRELUDE);
    for (name, _) in &kernel {
        // ks.h/ksmedia.h give values as STATIC_ macros; portcls.h through
        // DEFINE_GUID, which INITGUID turns into a definition named `name`.
        let _ = writeln!(
            c,
            "#ifdef STATIC_{name}\nconst GUID abi_guid_{name} = {{ STATIC_{name} }};\n#else\n\
             const GUID *const abi_ref_{name} = &{name};\n#endif"
        );
    }
    let mut errors = Vec::new();
    compare_guids(dir, "guids", &c, &kernel, &mut errors)?;
    if !user.is_empty() {
        let mut c = String::from("#define INITGUID\n#include <windows.h>\n#include <unknwn.h>\n");
        for (name, _) in &user {
            let _ = writeln!(c, "const GUID *const abi_ref_{name} = &{name};");
        }
        compare_guids(dir, "guids-user", &c, &user, &mut errors)?;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} mismatch(es):\n{}",
            errors.len(),
            errors.join("\n")
        ))
    }
}

fn compare_guids(
    dir: &Path,
    stem: &str,
    source: &str,
    guids: &[(&str, &[u8; 16])],
    errors: &mut Vec<String>,
) -> Result<(), String> {
    let obj_name = format!("{stem}.o");
    clang_windows_gnu(dir, &format!("{stem}.c"), source, &["-c", "-o", &obj_name])?;
    let obj =
        std::fs::read(dir.join(&obj_name)).map_err(|e| format!("cannot read {obj_name}: {e}"))?;
    let coff = Coff::parse(&obj)?;
    for &(name, want) in guids {
        let got = coff
            .symbol_bytes(&format!("abi_guid_{name}"), 16)
            .or_else(|| coff.symbol_bytes(name, 16));
        match got {
            Some(got) if got == want => {}
            Some(got) => errors.push(format!(
                "{name}: Rust {} but MinGW {}",
                guid_text(want),
                guid_text(got)
            )),
            None => errors.push(format!("{name}: not found in the object file")),
        }
    }
    Ok(())
}

fn guid_text(b: &[u8]) -> String {
    let le = |r: std::ops::Range<usize>| {
        b.get(r)
            .unwrap_or_default()
            .iter()
            .rev()
            .fold(String::new(), |mut s, x| {
                let _ = write!(s, "{x:02X}");
                s
            })
    };
    let be = |r: std::ops::Range<usize>| {
        b.get(r)
            .unwrap_or_default()
            .iter()
            .fold(String::new(), |mut s, x| {
                let _ = write!(s, "{x:02X}");
                s
            })
    };
    format!(
        "{{{}-{}-{}-{}-{}}}",
        le(0..4),
        le(4..6),
        le(6..8),
        be(8..10),
        be(10..16)
    )
}

/// The little of PE/COFF object files the GUID check needs.
struct Coff<'a> {
    data: &'a [u8],
    sections: usize,
    symtab: usize,
    nsyms: usize,
}

impl<'a> Coff<'a> {
    fn u16_at(data: &[u8], at: usize) -> Option<u16> {
        data.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32_at(data: &[u8], at: usize) -> Option<u32> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn parse(data: &'a [u8]) -> Result<Self, String> {
        let bad = || "not an x86-64 COFF object".to_owned();
        if Self::u16_at(data, 0) != Some(0x8664) {
            return Err(bad());
        }
        let opt = usize::from(Self::u16_at(data, 16).ok_or_else(bad)?);
        let symtab = Self::u32_at(data, 8).ok_or_else(bad)? as usize;
        let nsyms = Self::u32_at(data, 12).ok_or_else(bad)? as usize;
        Ok(Self {
            data,
            sections: 20 + opt,
            symtab,
            nsyms,
        })
    }

    fn symbol_name(&self, at: usize) -> Option<String> {
        let raw = self.data.get(at..at + 8)?;
        if raw.get(..4)? == [0, 0, 0, 0] {
            let strtab = self.symtab + 18 * self.nsyms;
            let off = strtab + Self::u32_at(raw, 4)? as usize;
            let rest = self.data.get(off..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            return Some(String::from_utf8_lossy(rest.get(..end)?).into_owned());
        }
        let end = raw.iter().position(|&b| b == 0).unwrap_or(8);
        Some(String::from_utf8_lossy(raw.get(..end)?).into_owned())
    }

    /// The `len` bytes at a defined symbol, from its section's raw data.
    fn symbol_bytes(&self, name: &str, len: usize) -> Option<&'a [u8]> {
        let mut i = 0;
        while i < self.nsyms {
            let at = self.symtab + 18 * i;
            let aux = usize::from(*self.data.get(at + 17)?);
            let section = i16::from_le_bytes([*self.data.get(at + 12)?, *self.data.get(at + 13)?]);
            if section > 0 && self.symbol_name(at).as_deref() == Some(name) {
                let value = Self::u32_at(self.data, at + 8)? as usize;
                let header = self.sections + 40 * (usize::try_from(section).ok()? - 1);
                let raw = Self::u32_at(self.data, header + 20)? as usize;
                return self.data.get(raw + value..raw + value + len);
            }
            i += 1 + aux;
        }
        None
    }
}

/// A C++ declaration of `IPortWaveRTStream` (slot order of `portcls.h`) and
/// one call of the method returning `PHYSICAL_ADDRESS`.
const HIDDEN_RETURN_CPP: &str = "\
union PA { struct { unsigned long LowPart; long HighPart; } u; long long QuadPart; };
struct IPortWaveRTStream {
  virtual long __stdcall QueryInterface(const void*, void**) = 0;
  virtual unsigned long __stdcall AddRef() = 0;
  virtual unsigned long __stdcall Release() = 0;
  virtual void* __stdcall AllocatePagesForMdl(PA, unsigned long long) = 0;
  virtual void* __stdcall AllocateContiguousPagesForMdl(PA, PA, unsigned long long) = 0;
  virtual void* __stdcall MapAllocatedPages(void*, int) = 0;
  virtual void __stdcall UnmapAllocatedPages(void*, void*) = 0;
  virtual void __stdcall FreePagesFromMdl(void*) = 0;
  virtual unsigned long __stdcall GetPhysicalPagesCount(void*) = 0;
  virtual PA __stdcall GetPhysicalPageAddress(void*, unsigned long) = 0;
};
extern \"C\" long long abi_probe(IPortWaveRTStream* s, void* mdl) {
  return s->GetPhysicalPageAddress(mdl, 7).QuadPart;
}
";

fn check_hidden_return() -> Result<(), String> {
    let dir = scratch_dir()?;
    let result = hidden_return_in(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn hidden_return_in(dir: &Path) -> Result<(), String> {
    let cpp = dir.join("probe.cpp");
    std::fs::write(&cpp, HIDDEN_RETURN_CPP)
        .map_err(|e| format!("cannot write {}: {e}", cpp.display()))?;
    let out = Command::new(clang())
        .args([
            "--target=x86_64-pc-windows-msvc",
            "-x",
            "c++",
            "-O2",
            "-S",
            "-o",
            "-",
        ])
        .arg(&cpp)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", clang()))?;
    if !out.status.success() {
        return Err(format!(
            "clang C++ probe failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    check_hidden_return_asm("clang C++", &String::from_utf8_lossy(&out.stdout))?;

    let asm = dir.join("probe-rust.s");
    let mut emit = std::ffi::OsString::from("asm=");
    emit.push(&asm);
    let out = Command::new(cargo())
        .current_dir(workspace_root())
        .args([
            "rustc",
            "-q",
            "-p",
            "portcls-sys",
            "--example",
            "hidden_return_probe",
        ])
        .args([
            "--target",
            "x86_64-pc-windows-msvc",
            "--",
            "-C",
            "opt-level=2",
            "--emit",
        ])
        .arg(emit)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustc probe for x86_64-pc-windows-msvc failed (rustup target add x86_64-pc-windows-msvc?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text =
        std::fs::read_to_string(&asm).map_err(|e| format!("cannot read {}: {e}", asm.display()))?;
    check_hidden_return_asm("rustc portcls-sys", &text)
}

/// Checks the assembly of `abi_probe(stream, mdl)`, which calls
/// `GetPhysicalPageAddress(mdl, 7)`: slot 9 (offset 72), result pointer in
/// RDX (a stack address), MDL moved from RDX to R8, index 7 in R9.
///
/// # Errors
///
/// What the call does differently.
pub fn check_hidden_return_asm(who: &str, asm: &str) -> Result<(), String> {
    let body: Vec<&str> = asm
        .lines()
        .skip_while(|l| !l.starts_with("abi_probe:"))
        .take_while(|l| !l.contains(".seh_endproc"))
        .map(str::trim)
        .collect();
    if body.is_empty() {
        return Err(format!("{who}: no abi_probe function in the assembly"));
    }
    let has = |pred: &dyn Fn(&str) -> bool| body.iter().any(|l| pred(l));
    let mut missing = Vec::new();
    if !has(&|l| l.starts_with("call") && l.contains("*72(%")) {
        missing.push("call through slot 9 (offset 72)");
    }
    if !has(&|l| l.starts_with("lea") && l.ends_with("(%rsp), %rdx")) {
        missing.push("hidden result pointer (a stack address) in RDX");
    }
    if !has(&|l| l.starts_with("mov") && l.ends_with("%rdx, %r8")) {
        missing.push("MDL (second argument) moved to R8");
    }
    if !has(&|l| l.starts_with("mov") && l.ends_with("$7, %r9d")) {
        missing.push("index 7 in R9");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{who}: GetPhysicalPageAddress call lacks: {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
struct KSDATAFORMAT 64 8
field KSDATAFORMAT FormatSize 0
field KSDATAFORMAT Specifier 48
struct IMiniportWaveRTVtbl 64 8
field IMiniportWaveRTVtbl NewStream 48
guid KSCATEGORY_AUDIO 04ad9469ef93d011a3cc00a0c9223196
guid IID_IMiniportWaveRT d6c49f0f6160 3c4fb1fc075e35f7960a
const KSSTATE_RUN 3
type CM_RESOURCE_TYPE 4 4
struct CM_PARTIAL_RESOURCE_DESCRIPTOR 20 4
field CM_PARTIAL_RESOURCE_DESCRIPTOR u.Interrupt.Affinity 12
const VT_BOOL 11 user
doc KSRTAUDIO_HWLATENCY https://learn.microsoft.com/
";

    fn good() -> String {
        GOOD.replace("d6c49f0f6160 3c4f", "d6c49f0f61603c4f")
    }

    #[test]
    fn a_correct_manifest_passes() {
        let s = check_manifest(&good()).expect("the correct items pass");
        assert_eq!(
            s,
            Summary {
                structs: 2,
                vtables: 1,
                slots: 1,
                fields: 3,
                types: 1,
                guids: 2,
                consts: 2,
                documented: 1
            }
        );
    }

    #[test]
    fn wrong_layout_slot_constant_and_guid_fail() {
        let wrong = good()
            .replace("Specifier 48", "Specifier 44")
            .replace("NewStream 48", "NewStream 40")
            .replace("KSSTATE_RUN 3", "KSSTATE_RUN 2")
            .replace("CM_RESOURCE_TYPE 4 4", "CM_RESOURCE_TYPE 1 1")
            .replace("Affinity 12", "Affinity 16")
            .replace("VT_BOOL 11", "VT_BOOL 12")
            .replace("04ad9469", "05ad9469");
        let err = check_manifest(&wrong).expect_err("wrong items must fail");
        for needle in [
            "offsetof(KSDATAFORMAT, Specifier) is not 44",
            "offsetof(IMiniportWaveRTVtbl, NewStream) is not 40",
            "KSSTATE_RUN is not 2",
            "sizeof(CM_RESOURCE_TYPE) is not 1",
            "offsetof(CM_PARTIAL_RESOURCE_DESCRIPTOR, u.Interrupt.Affinity) is not 16",
            "VT_BOOL is not 12",
            "KSCATEGORY_AUDIO: Rust {6994AD05",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn an_item_missing_from_the_headers_fails() {
        let err = check_manifest("guid KSPROPSETID_NoSuchSet 00000000000000000000000000000000\n")
            .expect_err("unknown GUID must fail");
        assert!(err.contains("KSPROPSETID_NoSuchSet"), "{err}");
    }

    #[test]
    fn the_c_view_of_get_physical_page_address_fails_the_hidden_return_check() {
        // What a C compiler does with MinGW's C view (result in RAX, MDL in RDX).
        let c_view = "abi_probe:\n\tmovq\t(%rcx), %rax\n\tmovl\t$7, %r8d\n\tcallq\t*72(%rax)\n\tretq\n\t.seh_endproc\n";
        let err = check_hidden_return_asm("C view", c_view).expect_err("C view must fail");
        assert!(err.contains("RDX") && err.contains("R9"), "{err}");
    }
}
