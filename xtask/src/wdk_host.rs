//! Makes windows-drivers-rs build on a Linux host.
//!
//! Two pieces, both generated under `target/cross/` and never committed:
//!
//! * **A patched `wdk-build`.** The registry's `wdk-build` refuses non-Windows
//!   hosts on purpose (`compile_error!` in its non-Windows `set_var` /
//!   `remove_var`, an unconditional `windows` dependency, registry look-ups,
//!   `symlink_file`). We copy the registry source and apply a handful of exact
//!   textual edits; each edit must match exactly as many times as expected, so
//!   a new `wdk-build` release fails loudly here instead of building wrongly.
//! * **A WDK stand-in root** laid out as the WDK is
//!   (`Include/<ver>/{km,km/crt,shared}`, `Lib/<ver>/km/{x64,ARM64}`): headers from
//!   MinGW-w64 plus a small shim for newer kernel APIs, and import libraries
//!   generated with `llvm-dlltool` from the `.def` files in
//!   `xtask/kernel-exports/`.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    exports::ModuleExports,
    prereq::{WindowsTarget, WINDOWS_TARGETS},
    util::{output, run, target_dir},
};

/// The `wdk-build` release the patch is written against.
pub const WDK_BUILD_VERSION: &str = "0.6.0";
/// The SDK version the stand-in root pretends to be.
pub const SDK_VERSION: &str = "10.0.22621.0";

const MINGW_INCLUDE: &str = "/usr/share/mingw-w64/include";

/// One exact textual edit of the `wdk-build` sources.
struct Edit {
    file: &'static str,
    find: &'static str,
    replace: &'static str,
    expected_matches: usize,
}

const WDK_BUILD_EDITS: &[Edit] = &[
    // The `windows` crate only serves registry look-ups; keep it off Linux.
    Edit {
        file: "Cargo.toml",
        find: "[dependencies.windows]",
        replace: "[target.'cfg(windows)'.dependencies.windows]",
        expected_matches: 1,
    },
    Edit {
        file: "Cargo.toml",
        find: "[dev-dependencies.windows]",
        replace: "[target.'cfg(windows)'.dev-dependencies.windows]",
        expected_matches: 1,
    },
    // `CStr` only serves the registry look-ups compiled out below.
    Edit {
        file: "src/utils.rs",
        find: "ffi::{CStr, OsStr},",
        replace: "ffi::OsStr,",
        expected_matches: 1,
    },
    Edit {
        file: "src/utils.rs",
        find: "use windows::{",
        replace: "#[cfg(windows)]\nuse windows::{",
        expected_matches: 1,
    },
    Edit {
        file: "src/utils.rs",
        find: "    if let Some(path) = read_registry_key_string_value(",
        replace: "    #[cfg(windows)]\n    if let Some(path) = read_registry_key_string_value(",
        expected_matches: 2,
    },
    Edit {
        file: "src/utils.rs",
        find: "\nfn read_registry_key_string_value(",
        replace: "\n#[cfg(windows)]\nfn read_registry_key_string_value(",
        expected_matches: 1,
    },
    // `set_var` / `remove_var`: the non-Windows versions are `compile_error!`
    // on purpose; compile the plain ones everywhere instead.
    Edit {
        file: "src/utils.rs",
        find: "#[cfg(not(target_os = \"windows\"))]\npub fn",
        replace: "#[cfg(any())]\npub fn",
        expected_matches: 2,
    },
    Edit {
        file: "src/utils.rs",
        find: "#[cfg(target_os = \"windows\")]\npub fn",
        replace: "#[cfg(all())]\npub fn",
        expected_matches: 2,
    },
    Edit {
        file: "src/cargo_make.rs",
        find: "std::os::windows::fs::symlink_file(",
        replace: "std::os::unix::fs::symlink(",
        expected_matches: 2,
    },
];

/// Where the patched `wdk-build` lives.
pub fn patched_wdk_build_dir() -> PathBuf {
    target_dir()
        .join("cross")
        .join(format!("wdk-build-{WDK_BUILD_VERSION}"))
}

/// Where the WDK stand-in root lives.
pub fn wdk_root_dir() -> PathBuf {
    target_dir().join("cross").join("wdk-root")
}

/// Finds the registry copy of `wdk-build`, fetching it if needed.
fn registry_wdk_build_source() -> Result<PathBuf, String> {
    let find = || -> Option<PathBuf> {
        let cargo_home = env::var_os("CARGO_HOME").map_or_else(
            || PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"),
            PathBuf::from,
        );
        let registry = cargo_home.join("registry").join("src");
        fs::read_dir(registry).ok()?.flatten().find_map(|index| {
            let candidate = index.path().join(format!("wdk-build-{WDK_BUILD_VERSION}"));
            candidate.join("Cargo.toml").is_file().then_some(candidate)
        })
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    run(crate::util::cargo()
        .args(["fetch", "--manifest-path"])
        .arg(crate::util::workspace_root().join("Cargo.toml")))?;
    find().ok_or_else(|| {
        format!(
            "wdk-build {WDK_BUILD_VERSION} is not in the cargo registry cache after `cargo fetch`"
        )
    })
}

/// Writes a file only when its content changes, so Cargo's fingerprints (and
/// the long bindgen run of wdk-sys behind them) survive repeated runs.
fn write_if_changed(path: &Path, content: &[u8]) -> Result<(), String> {
    if fs::read(path).is_ok_and(|existing| existing == content) {
        return Ok(());
    }
    fs::write(path, content).map_err(|error| format!("write {}: {error}", path.display()))
}

/// Copies a directory tree, leaving out the files `skip` names (by source path).
fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|error| format!("create {}: {error}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|error| format!("read {}: {error}", from.display()))? {
        let entry = entry.map_err(|error| format!("read {}: {error}", from.display()))?;
        let destination = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &destination, skip)?;
        } else if !skip(&entry.path()) {
            let content = fs::read(entry.path())
                .map_err(|error| format!("read {}: {error}", entry.path().display()))?;
            write_if_changed(&destination, &content)?;
        }
    }
    Ok(())
}

/// Copies the registry `wdk-build` under `target/` and applies the edits.
pub fn prepare_patched_wdk_build() -> Result<PathBuf, String> {
    let source = registry_wdk_build_source()?;
    let destination = patched_wdk_build_dir();
    // Edited files are written below, once, in their patched form.
    let edited = |path: &Path| {
        WDK_BUILD_EDITS
            .iter()
            .any(|edit| source.join(edit.file) == path)
    };
    copy_tree(&source, &destination, &edited)?;
    let mut patched: Vec<(&str, String)> = Vec::new();
    for edit in WDK_BUILD_EDITS {
        // The published sources use CRLF line endings; edits are written with LF.
        let text = if let Some(index) = patched.iter().position(|(file, _)| *file == edit.file) {
            patched.swap_remove(index).1
        } else {
            let path = source.join(edit.file);
            fs::read_to_string(&path)
                .map_err(|error| format!("read {}: {error}", path.display()))?
                .replace("\r\n", "\n")
        };
        let matches = text.matches(edit.find).count();
        if matches != edit.expected_matches {
            return Err(format!(
                "wdk-build patch: expected {} match(es) of {:?} in {}, found {matches}; \
                 has wdk-build changed from {WDK_BUILD_VERSION}?",
                edit.expected_matches, edit.find, edit.file
            ));
        }
        patched.push((edit.file, text.replace(edit.find, edit.replace)));
    }
    for (file, text) in patched {
        write_if_changed(&destination.join(file), text.as_bytes())?;
    }
    Ok(destination)
}

/// Declarations MinGW-w64's headers lack but `wdk-sys`/`wdk-alloc` use.
/// Values from Microsoft Learn, `POOL_FLAGS` (wdm.h, Windows 10 2004).
const POOL2_SHIM: &str = "\
/* rswavert: kernel APIs newer than the MinGW-w64 headers. Generated by xtask. */
#include_next <ntstrsafe.h>
#ifndef RSWAVERT_POOL2_SHIM
#define RSWAVERT_POOL2_SHIM
typedef ULONG64 POOL_FLAGS;
#define POOL_FLAG_REQUIRED_START     0x0000000000000001ULL
#define POOL_FLAG_USE_QUOTA          0x0000000000000001ULL
#define POOL_FLAG_UNINITIALIZED      0x0000000000000002ULL
#define POOL_FLAG_SESSION            0x0000000000000004ULL
#define POOL_FLAG_CACHE_ALIGNED      0x0000000000000008ULL
#define POOL_FLAG_RAISE_ON_FAILURE   0x0000000000000020ULL
#define POOL_FLAG_NON_PAGED          0x0000000000000040ULL
#define POOL_FLAG_NON_PAGED_EXECUTE  0x0000000000000080ULL
#define POOL_FLAG_PAGED              0x0000000000000100ULL
NTKERNELAPI PVOID NTAPI ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);
#endif
";

/// Why the ARM64 driver cannot be built against MinGW-w64's DDK headers, or
/// `None` once they can serve it.
///
/// Measured here (2026-12-02): `wdm.h` and `ntddk.h` of MinGW-w64 10.0
/// (Debian) and of upstream master (2026-08-20) end their per-processor
/// chains in `#error Unknown Architecture` for `_M_ARM64`. Routing
/// `_M_ARM64` to a small shim of our own (IRQLs, `PAGE_SIZE`) gets bindgen
/// through, and then wdk-sys's layout assertions fail on ten structures
/// (`IO_STACK_LOCATION`'s parameter unions among them): MinGW packs them to
/// 4 bytes on every processor but AMD64 and IA64 (`wdm.h`: `#if
/// !defined(_AMD64_) && !defined(_IA64_)` around `pshpack4.h`, five places)
/// and leaves `XSTATE_SAVE` and other processor-specific types empty for
/// ARM64. Correct ARM64 layouts need Microsoft's ARM64 headers (the WDK),
/// which no registry reachable here carries.
pub fn arm64_header_blocker(wdm_h: &str, ntddk_h: &str) -> Option<String> {
    let serves_arm64 = |text: &str| text.contains("_M_ARM64") || text.contains("_ARM64_");
    let missing: Vec<&str> = [("wdm.h", wdm_h), ("ntddk.h", ntddk_h)]
        .into_iter()
        .filter(|(_, text)| !serves_arm64(text))
        .map(|(name, _)| name)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the MinGW-w64 DDK headers ({MINGW_INCLUDE}/ddk: {}) have no ARM64 kernel \
             definitions (their processor chains end in `#error Unknown Architecture`), \
             so wdk-sys cannot generate ARM64 bindings here; the ARM64 driver builds \
             with the WDK on Windows (`cargo make` for aarch64-pc-windows-msvc, \
             docs/windows-testing.md)",
            missing.join(", ")
        )
    })
}

/// [`arm64_header_blocker`] on the installed headers.
pub fn installed_arm64_header_blocker() -> Result<Option<String>, String> {
    let read = |name: &str| {
        let path = Path::new(MINGW_INCLUDE).join("ddk").join(name);
        fs::read_to_string(&path).map_err(|error| format!("read {}: {error}", path.display()))
    };
    Ok(arm64_header_blocker(&read("wdm.h")?, &read("ntddk.h")?))
}

#[cfg(unix)]
fn symlink(from: &Path, to: &Path) -> Result<(), String> {
    if fs::read_link(to).is_ok_and(|existing| existing == from) {
        return Ok(());
    }
    let _ = fs::remove_file(to);
    std::os::unix::fs::symlink(from, to)
        .map_err(|error| format!("symlink {} -> {}: {error}", to.display(), from.display()))
}

#[cfg(not(unix))]
fn symlink(_from: &Path, _to: &Path) -> Result<(), String> {
    Err("the WDK stand-in root is only built on Unix hosts; on Windows use the real WDK and `cargo make`".to_owned())
}

/// Builds the WDK stand-in root and its import libraries.
pub fn prepare_wdk_root(modules: &[ModuleExports]) -> Result<PathBuf, String> {
    let root = wdk_root_dir();
    let include = root.join("Include").join(SDK_VERSION);
    let km = include.join("km");
    let crt = km.join("crt");
    fs::create_dir_all(&crt).map_err(|error| format!("create {}: {error}", crt.display()))?;
    let mingw_include = Path::new(MINGW_INCLUDE);
    if !mingw_include.join("ddk").join("wdm.h").is_file() {
        return Err(format!(
            "MinGW-w64 DDK headers not found under {MINGW_INCLUDE}"
        ));
    }
    // km: the DDK headers; shared: the general Windows headers; crt (searched
    // first): our shim, which includes the real header and adds to it.
    let ddk = mingw_include.join("ddk");
    for entry in fs::read_dir(&ddk).map_err(|error| format!("read {}: {error}", ddk.display()))? {
        let entry = entry.map_err(|error| format!("read {}: {error}", ddk.display()))?;
        symlink(&entry.path(), &km.join(entry.file_name()))?;
    }
    symlink(mingw_include, &include.join("shared"))?;
    write_if_changed(&crt.join("ntstrsafe.h"), POOL2_SHIM.as_bytes())?;

    for target in WINDOWS_TARGETS {
        prepare_import_libraries(&root, target, modules)?;
    }
    Ok(root)
}

/// The kernel import libraries of one architecture, `Lib/<ver>/km/<arch>`.
fn prepare_import_libraries(
    root: &Path,
    target: &WindowsTarget,
    modules: &[ModuleExports],
) -> Result<(), String> {
    let lib = root
        .join("Lib")
        .join(SDK_VERSION)
        .join("km")
        .join(target.wdk_library_folder);
    fs::create_dir_all(&lib).map_err(|error| format!("create {}: {error}", lib.display()))?;
    for module in modules {
        let def_path = lib.join(format!("{}.def", module.library_stem()));
        let library_path = lib.join(format!("{}.lib", module.library_stem()));
        if fs::read_to_string(&def_path).is_ok_and(|existing| existing == module.to_def_text())
            && library_path.is_file()
        {
            continue;
        }
        write_if_changed(&def_path, module.to_def_text().as_bytes())?;
        run(Command::new("llvm-dlltool")
            .args(["-m", target.dlltool_machine, "-d"])
            .arg(&def_path)
            .arg("-l")
            .arg(&library_path))?;
    }
    // Libraries wdk-build links for every WDM driver that contribute nothing
    // here: the /GS fast-fail helper (our Rust code has no /GS cookies), the
    // WMI helper library (we register no WMI blocks) and, on ARM64, `arm64rt`
    // (WindowsDriver.arm64.props via wdk-build's `base_wdm_arm64_appends_arm64rt`;
    // the compiler-runtime helpers MSVC-compiled C calls, which Rust code
    // takes from its own compiler-builtins). Empty archives satisfy the
    // linker without adding code: a symbol nobody defines still fails the link.
    for empty in ["BufferOverflowFastFailK", "wmilib", "arm64rt"] {
        run(Command::new("llvm-ar")
            .arg("rcs")
            .arg(lib.join(format!("{empty}.lib"))))?;
    }
    Ok(())
}

/// Environment for cargo when it builds the driver against the stand-in root.
pub fn cross_environment() -> Result<Vec<(String, String)>, String> {
    let resource_dir = output(Command::new("clang").arg("-print-resource-dir"))?;
    let libclang_dir = output(Command::new("llvm-config").arg("--libdir"))?;
    Ok(vec![
        (
            "WDKContentRoot".to_owned(),
            wdk_root_dir().display().to_string(),
        ),
        ("Version_Number".to_owned(), SDK_VERSION.to_owned()),
        ("LIBCLANG_PATH".to_owned(), libclang_dir.trim().to_owned()),
        (
            // MinGW-w64's headers take their GNU code paths only when the
            // compiler claims to be GCC-compatible.
            "BINDGEN_EXTRA_CLANG_ARGS".to_owned(),
            format!("-fgnuc-version=4.2.1 -resource-dir={}", resource_dir.trim()),
        ),
    ])
}

/// Cargo `--config` arguments for the cross build of one target.
pub fn cross_cargo_config(target: &WindowsTarget) -> Vec<String> {
    vec![
        "--config".to_owned(),
        format!(
            "patch.crates-io.wdk-build.path=\"{}\"",
            patched_wdk_build_dir().display()
        ),
        "--config".to_owned(),
        // Debian's lld-link 14 rejects /KERNEL; the toolchain's rust-lld accepts it.
        format!("target.{}.linker=\"rust-lld\"", target.triple),
    ]
}

#[cfg(test)]
mod tests {
    use super::arm64_header_blocker;

    #[test]
    fn headers_without_an_arm64_branch_block_the_arm64_build() {
        let chain =
            "#elif defined(_M_AMD64)\n#elif defined(_M_ARM)\n#else\n#error Unknown Architecture\n";
        let blocker = arm64_header_blocker(chain, chain).expect("blocked");
        assert!(blocker.contains("wdm.h, ntddk.h"), "{blocker}");
        let with_arm64 = chain.replace(
            "#elif defined(_M_ARM)",
            "#elif defined(_M_ARM64)\n#elif defined(_M_ARM)",
        );
        let only_ntddk = arm64_header_blocker(&with_arm64, chain).expect("still blocked");
        assert!(only_ntddk.contains("ddk: ntddk.h)"), "{only_ntddk}");
        assert_eq!(arm64_header_blocker(&with_arm64, &with_arm64), None);
    }
}
