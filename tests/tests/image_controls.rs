//! Negative controls for the image run: patched copies of the real
//! `rswavert.sys` that the loader and the life cycle must refuse, and one
//! that must not pass the bit-exact check.
//!
//! They need the cross-built image (`RSWAVERT_IMAGE`), so they are ignored
//! in a plain `cargo test` and run by `cargo xtask test`'s image stage
//! (`--include-ignored`), which fails if the image is missing.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc, reason = "test code")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcls_sys::STATUS_UNSUCCESSFUL;
use wavert_emulator::cable::CableAdapter;
use wavert_emulator::image::pe::{
    entry_file_offset, entry_rva, import_name_offset, import_slot_rva, ImageError,
};
use wavert_emulator::image::{start_image_adapter, ImageDevice, ImageRunError};
use wavert_emulator::machine::{ClockMode, Machine};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::session::LoopbackConfig;
use wavert_emulator::signal;

const NEEDS_IMAGE: &str = "RSWAVERT_IMAGE";

fn image_bytes() -> Vec<u8> {
    let path = std::env::var_os(NEEDS_IMAGE)
        .map(PathBuf::from)
        .expect("RSWAVERT_IMAGE must name the cross-built rswavert.sys (cargo xtask cross)");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn machine() -> Arc<Machine> {
    Machine::new(
        PhysicalMemory::anonymous(MemoryConfig::default()).unwrap(),
        ClockMode::Virtual,
    )
}

/// Writes a patched copy next to the test's other temporary files.
fn patched(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rswavert-controls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn start(path: &Path) -> Result<CableAdapter, ImageRunError> {
    start_image_adapter(&machine(), path, ImageDevice::default())
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn the_unpatched_image_starts() {
    let path = patched("rswavert.sys", &image_bytes());
    let adapter = start(&path).unwrap();
    assert!(adapter.wave_filter("WaveRender").is_some());
    adapter.remove();
}

/// The COFF machine field of the image (PE/COFF specification: the file
/// header follows the 4-byte signature at `e_lfanew`, machine first).
fn machine_offset(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[0x3c..0x40].try_into().unwrap()) as usize + 4
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn an_arm64_image_is_refused_by_name_before_anything_runs() {
    let mut bytes = image_bytes();
    let at = machine_offset(&bytes);
    assert_eq!(
        bytes[at..at + 2],
        0x8664_u16.to_le_bytes(),
        "the control's own image is x64"
    );
    bytes[at..at + 2].copy_from_slice(&0xaa64_u16.to_le_bytes());
    match start(&patched("arm64.sys", &bytes)) {
        Err(ImageRunError::Load(error)) => {
            let text = error.to_string();
            assert!(
                text.contains("is ARM64") && text.contains("amd64/rswavert.sys"),
                "{text}"
            );
        }
        Err(other) => panic!("expected the loader to refuse it, got {other}"),
        Ok(_) => panic!("an ARM64 image was run"),
    }
    // Another foreign machine gets the plain message.
    bytes[at..at + 2].copy_from_slice(&0x014c_u16.to_le_bytes());
    match start(&patched("i386.sys", &bytes)) {
        Err(ImageRunError::Load(error)) => {
            assert!(error.to_string().contains("is not AMD64"), "{error}");
        }
        Err(other) => panic!("expected the loader to refuse it, got {other}"),
        Ok(_) => panic!("an i386 image was run"),
    }
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn an_import_nothing_exports_is_refused_before_driver_entry() {
    let mut bytes = image_bytes();
    let at = import_name_offset(&bytes, "KeSetEvent").unwrap();
    bytes[at..at + 10].copy_from_slice(b"KeSetEvenX");
    let machine = machine();
    let error = start_image_adapter(
        &machine,
        &patched("renamed.sys", &bytes),
        ImageDevice::default(),
    )
    .unwrap_err();
    match error {
        ImageRunError::Load(ImageError::MissingImports(names)) => {
            assert_eq!(names, ["ntoskrnl.exe!KeSetEvenX"]);
        }
        other => panic!("expected a missing import, got {other}"),
    }
    // Nothing ran: no PortCls call, no debug print.
    assert!(machine.registrations().subdevices.is_empty());
    assert!(machine.log_lines().is_empty(), "{:?}", machine.log_lines());
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn a_driver_entry_that_fails_ends_the_run_with_its_status() {
    let mut bytes = image_bytes();
    let at = entry_file_offset(&bytes).unwrap();
    // mov eax, STATUS_UNSUCCESSFUL; ret
    let mut stub = vec![0xB8];
    stub.extend_from_slice(&STATUS_UNSUCCESSFUL.to_le_bytes());
    stub.push(0xC3);
    bytes[at..at + stub.len()].copy_from_slice(&stub);
    match start(&patched("entry-fails.sys", &bytes)) {
        Err(ImageRunError::Status { step, status }) => {
            assert_eq!((step, status), ("DriverEntry", STATUS_UNSUCCESSFUL));
        }
        Err(other) => panic!("expected DriverEntry's status, got {other}"),
        Ok(_) => panic!("a failing DriverEntry started the device"),
    }
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn a_violation_names_its_call_site_in_the_image() {
    // DriverEntry patched to call ExFreePool(NULL) through the image's own
    // import slot, then fail: the verifier must report the call at the
    // return address right after that `call`.
    let mut bytes = image_bytes();
    let at = entry_file_offset(&bytes).unwrap();
    let entry = entry_rva(&bytes).unwrap();
    let slot = import_slot_rva(&bytes, "ExFreePool").unwrap();
    let mut code = vec![0x48, 0x83, 0xEC, 0x28, 0x31, 0xC9, 0xFF, 0x15]; // sub rsp,40; xor ecx,ecx; call [rip+d]
    let after_call = entry + 12;
    let displacement = i32::try_from(i64::from(slot) - i64::from(after_call)).unwrap();
    code.extend_from_slice(&displacement.to_le_bytes());
    code.extend_from_slice(&[0x48, 0x83, 0xC4, 0x28, 0xB8]); // add rsp,40; mov eax, imm32
    code.extend_from_slice(&STATUS_UNSUCCESSFUL.to_le_bytes());
    code.push(0xC3); // ret
    bytes[at..at + code.len()].copy_from_slice(&code);
    let machine = machine();
    let error = start_image_adapter(
        &machine,
        &patched("frees-null.sys", &bytes),
        ImageDevice::default(),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(
            error,
            ImageRunError::Status {
                step: "DriverEntry",
                ..
            }
        ),
        "{error}"
    );
    let expected = format!("ExFreePool(NULL) (at frees-null.sys+{after_call:#x})");
    let violations = machine.violations();
    assert!(
        violations.iter().any(|v| v.contains(&expected)),
        "expected {expected:?} in {violations:?}"
    );
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn malformed_images_are_errors_not_crashes() {
    let bytes = image_bytes();
    for (what, broken) in [
        ("truncated", bytes[..bytes.len() / 3].to_vec()),
        ("no MZ", {
            let mut b = bytes.clone();
            b[0] = b'X';
            b
        }),
    ] {
        match start(&patched(
            &format!("{}.sys", what.replace(' ', "-")),
            &broken,
        )) {
            Err(ImageRunError::Load(ImageError::Malformed(_))) => {}
            Err(other) => panic!("{what}: expected a malformed image, got {other}"),
            Ok(_) => panic!("{what}: a broken image started"),
        }
    }
}

/// Set in the child process of the swapped-imports control.
const SWAPPED_CHILD: &str = "RSWAVERT_SWAPPED_CHILD";

/// The child: streams through an image whose memcpy and memset imports
/// trade names, and exits 0 only if the capture is bit-exact.
fn swapped_child(path: &Path) -> ! {
    let machine = machine();
    let adapter = start_image_adapter(&machine, path, ImageDevice::default()).unwrap();
    let (result, rendered) = adapter.loopback_test_signal(&LoopbackConfig::default(), 0.2);
    let exact = match result {
        Ok(r) => {
            let block = r.format.block_align() as usize;
            let lag = signal::find_alignment(&rendered, &r.captured, block, 48_000);
            let differing =
                lag.map(|lag| signal::mismatched_frames(&rendered, &r.captured, block, lag).0);
            eprintln!("child: lag {lag:?}, {differing:?} frames differ");
            differing == Some(0)
        }
        Err(e) => {
            eprintln!("child: the session failed: {e}");
            false
        }
    };
    std::process::exit(i32::from(!exact));
}

#[test]
#[ignore = "needs RSWAVERT_IMAGE: run by cargo xtask test's image stage"]
fn swapped_memcpy_and_memset_never_pass() {
    if let Some(path) = std::env::var_os(SWAPPED_CHILD) {
        swapped_child(Path::new(&path));
    }
    let mut bytes = image_bytes();
    let copy = import_name_offset(&bytes, "memcpy").unwrap();
    let set = import_name_offset(&bytes, "memset").unwrap();
    bytes[copy..copy + 6].copy_from_slice(b"memset");
    bytes[set..set + 6].copy_from_slice(b"memcpy");
    let run_child = |path: &Path| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "swapped_memcpy_and_memset_never_pass",
                "--include-ignored",
                "--nocapture",
            ])
            .env(SWAPPED_CHILD, path)
            .output()
            .unwrap()
    };
    // The same child on the unpatched image passes, so a failure below is
    // the swap's doing.
    let control = run_child(&patched("unswapped.sys", &image_bytes()));
    assert!(
        control.status.success(),
        "the unpatched image failed the child's check: {}",
        String::from_utf8_lossy(&control.stderr)
    );
    let child = run_child(&patched("swapped.sys", &bytes));
    assert!(
        !child.status.success(),
        "an image with memcpy and memset swapped streamed bit-exact: {}",
        String::from_utf8_lossy(&child.stderr)
    );
    eprintln!("swapped imports: the child ended with {}", child.status);
}
