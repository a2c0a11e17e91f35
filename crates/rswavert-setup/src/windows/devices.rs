//! The driver package and the devices: add the package, create the
//! root-enumerated cable device and install the driver on it as the WDK's
//! devcon/devgen do (`SetupAPI` `SetupDiCreateDeviceInfo` +
//! `DIF_REGISTERDEVICE`, then newdev `UpdateDriverForPlugAndPlayDevices`),
//! install on PCI models with `DiInstallDriver`, remove with
//! `DiUninstallDevice` and `SetupUninstallOEMInf`, and read each device's
//! problem code with `CfgMgr32` `CM_Get_DevNode_Status`.
//!
//! Unverified here (no Windows machine): every call below type-checks
//! against the `windows` crate's bindings for both Windows targets; none has
//! run. docs/windows-testing.md says how to try it.

use std::path::{Path, PathBuf};

use windows::core::{GUID, PCWSTR};
use windows::Win32::Devices::DeviceAndDriverInstallation::{
    CM_Get_DevNode_Status, DiInstallDriverW, DiUninstallDevice, SetupDiCallClassInstaller,
    SetupDiCreateDeviceInfoList, SetupDiCreateDeviceInfoW, SetupDiDestroyDeviceInfoList,
    SetupDiEnumDeviceInfo, SetupDiGetClassDevsW, SetupDiGetDeviceInstanceIdW,
    SetupDiGetDeviceRegistryPropertyW, SetupDiGetINFClassW, SetupDiSetDeviceRegistryPropertyW,
    SetupUninstallOEMInfW, UpdateDriverForPlugAndPlayDevicesW, CM_DEVNODE_STATUS_FLAGS, CM_PROB,
    CR_SUCCESS, DICD_GENERATE_ID, DIF_REGISTERDEVICE, DIGCF_ALLCLASSES, DIIRFLAG_FORCE_INF,
    HDEVINFO, INSTALLFLAG_FORCE, SPDRP_HARDWAREID, SP_DEVINFO_DATA, SUOI_FORCEDELETE,
};
use windows::Win32::Foundation::{CloseHandle, HANDLE, HWND};
use windows::Win32::Security::Cryptography::CertAddEncodedCertificateToSystemStoreW;
use windows::Win32::Security::{GetTokenInformation, TokenElevation, TOKEN_ELEVATION, TOKEN_QUERY};
use windows::Win32::System::Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ};
use windows::Win32::System::SystemInformation::IMAGE_FILE_MACHINE;
use windows::Win32::System::Threading::{GetCurrentProcess, IsWow64Process2, OpenProcessToken};

use super::{from_wide, wide};
use crate::cli::InstallOptions;
use crate::diagnose::{device_problem, install_blockers, problem_of_hresult, Problem};
use crate::package::{architecture_of_machine, discover, Package, DRIVER_NAME};

/// The folder the tool runs from: the package's, in the shipped layout.
fn tool_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|error| format!("own path: {error}"))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| "the tool's own folder is unknown".to_owned())
}

/// The machine's processor as the package names it.
fn native_architecture() -> Result<&'static str, String> {
    let mut process = IMAGE_FILE_MACHINE::default();
    let mut native = IMAGE_FILE_MACHINE::default();
    // SAFETY: no arguments; the pseudo handle needs no closing.
    let current = unsafe { GetCurrentProcess() };
    // SAFETY: the current-process pseudo handle and two writable outputs.
    unsafe { IsWow64Process2(current, &raw mut process, Some(&raw mut native)) }
        .map_err(|error| format!("IsWow64Process2: {error}"))?;
    architecture_of_machine(native.0)
        .ok_or_else(|| format!("processor {:#06x} has no package", native.0))
}

/// Whether the tool runs elevated (`TokenElevation`).
fn elevated() -> bool {
    let mut token = HANDLE::default();
    // SAFETY: no arguments; the pseudo handle needs no closing.
    let current = unsafe { GetCurrentProcess() };
    // SAFETY: the current-process pseudo handle; `token` receives a handle we close.
    if unsafe { OpenProcessToken(current, TOKEN_QUERY, &raw mut token) }.is_err() {
        return false;
    }
    let mut elevation = TOKEN_ELEVATION::default();
    let mut length = 0u32;
    // SAFETY: a TOKEN_ELEVATION-sized output for the TokenElevation class.
    let queried = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            Some((&raw mut elevation).cast()),
            u32::try_from(size_of::<TOKEN_ELEVATION>()).unwrap_or(0),
            &raw mut length,
        )
    };
    // SAFETY: the token handle opened above, closed once.
    let _ = unsafe { CloseHandle(token) };
    queried.is_ok() && elevation.TokenIsElevated != 0
}

/// `HKLM\SYSTEM\CurrentControlSet\Control\SystemStartOptions`: the boot
/// options in effect (empty if unreadable).
fn system_start_options() -> String {
    let subkey = wide("SYSTEM\\CurrentControlSet\\Control");
    let value = wide("SystemStartOptions");
    let mut buffer = vec![0u16; 1024];
    let mut bytes = u32::try_from(buffer.len() * 2).unwrap_or(0);
    // SAFETY: NUL-terminated names and a buffer of `bytes` bytes.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            PCWSTR(subkey.as_ptr()),
            PCWSTR(value.as_ptr()),
            RRF_RT_REG_SZ,
            None,
            Some(buffer.as_mut_ptr().cast()),
            Some(&raw mut bytes),
        )
    };
    if status.is_ok() {
        from_wide(&buffer)
    } else {
        String::new()
    }
}

/// Prints each problem's message; returns whether there were none.
fn report(problems: &[Problem]) -> bool {
    for problem in problems {
        println!("problem: {}", problem.message());
    }
    problems.is_empty()
}

/// The message of a failed call, with the usual failures recognised.
fn failed(call: &str, error: &windows::core::Error) -> String {
    #[allow(clippy::cast_sign_loss, reason = "an HRESULT's bits")]
    let code = error.code().0 as u32;
    problem_of_hresult(code, "").map_or_else(
        || format!("{call} failed: {error} ({code:#010x})"),
        |problem| format!("{call} failed: {}", problem.message()),
    )
}

/// `install`.
pub fn install(options: &InstallOptions) -> Result<bool, String> {
    let architecture = native_architecture()?;
    let dir = options.package.clone().map_or_else(tool_dir, Ok)?;
    let package = discover(&dir, architecture).map_err(|error| error.message())?;
    println!("package: {} ({architecture})", package.inf.display());
    if !report(&install_blockers(elevated(), &system_start_options())) {
        return Ok(false);
    }
    if options.trust_certificate {
        trust_certificate(&package)?;
    }
    let inf = wide(&package.inf.display().to_string());
    for hardware_id in &package.root_hardware_ids {
        if devices_with_id(hardware_id)?.is_empty() {
            create_root_device(&package, hardware_id)?;
            println!("created the device {hardware_id}");
        }
        let id = wide(hardware_id);
        let mut reboot = windows::core::BOOL::default();
        // SAFETY: NUL-terminated hardware ID and INF path; `reboot` is writable.
        unsafe {
            UpdateDriverForPlugAndPlayDevicesW(
                None,
                PCWSTR(id.as_ptr()),
                PCWSTR(inf.as_ptr()),
                INSTALLFLAG_FORCE,
                Some(&raw mut reboot),
            )
        }
        .map_err(|error| failed("UpdateDriverForPlugAndPlayDevices", &error))?;
        println!("installed the driver on {hardware_id}");
    }
    if !package.bus_hardware_ids.is_empty() {
        let mut reboot = windows::core::BOOL::default();
        // SAFETY: a NUL-terminated INF path; `reboot` is writable. Adds the
        // package to the driver store and installs it on matching devices
        // (the AC'97 on PCI, if the machine has one).
        unsafe {
            DiInstallDriverW(
                None,
                PCWSTR(inf.as_ptr()),
                DIIRFLAG_FORCE_INF,
                Some(&raw mut reboot),
            )
        }
        .map_err(|error| failed("DiInstallDriver", &error))?;
    }
    status()
}

/// Adds the package's test certificate to the machine's Root and
/// `TrustedPublisher` stores (what `certmgr /add` does for a test package).
fn trust_certificate(package: &Package) -> Result<(), String> {
    let path = package
        .certificate
        .as_ref()
        .ok_or_else(|| format!("--trust-certificate: no {DRIVER_NAME}.cer in the package"))?;
    let encoded = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
    for store in ["Root", "TrustedPublisher"] {
        let name = wide(store);
        // SAFETY: a NUL-terminated store name and the certificate's DER bytes.
        unsafe { CertAddEncodedCertificateToSystemStoreW(PCWSTR(name.as_ptr()), &encoded) }
            .map_err(|error| failed("CertAddEncodedCertificateToSystemStore", &error))?;
        println!("trusted {} in the {store} store", path.display());
    }
    Ok(())
}

/// Creates a root-enumerated device with one hardware ID, as devcon
/// `install` does: a device information element of the INF's class,
/// its hardware ID set, registered with the PnP manager.
fn create_root_device(package: &Package, hardware_id: &str) -> Result<(), String> {
    let inf = wide(&package.inf.display().to_string());
    let mut class = GUID::zeroed();
    let mut class_name = [0u16; 64];
    // SAFETY: a NUL-terminated INF path and writable outputs.
    unsafe { SetupDiGetINFClassW(PCWSTR(inf.as_ptr()), &raw mut class, &mut class_name, None) }
        .map_err(|error| failed("SetupDiGetINFClass", &error))?;
    // SAFETY: the class GUID read above.
    let set = unsafe { SetupDiCreateDeviceInfoList(Some(&raw const class), None) }
        .map_err(|error| failed("SetupDiCreateDeviceInfoList", &error))?;
    let result = register_device(set, &class, &class_name, hardware_id);
    // SAFETY: the set created above, destroyed once.
    let _ = unsafe { SetupDiDestroyDeviceInfoList(set) };
    result
}

fn register_device(
    set: HDEVINFO,
    class: &GUID,
    class_name: &[u16],
    hardware_id: &str,
) -> Result<(), String> {
    let mut data = SP_DEVINFO_DATA {
        cbSize: u32::try_from(size_of::<SP_DEVINFO_DATA>()).unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: a live set; the class name is NUL-terminated (SetupDiGetINFClass).
    unsafe {
        SetupDiCreateDeviceInfoW(
            set,
            PCWSTR(class_name.as_ptr()),
            class,
            PCWSTR::null(),
            None,
            DICD_GENERATE_ID,
            Some(&raw mut data),
        )
    }
    .map_err(|error| failed("SetupDiCreateDeviceInfo", &error))?;
    // REG_MULTI_SZ: the ID, its NUL, and the list's final NUL.
    let mut multi_sz = wide(hardware_id);
    multi_sz.push(0);
    let bytes: Vec<u8> = multi_sz
        .iter()
        .flat_map(|unit| unit.to_le_bytes())
        .collect();
    // SAFETY: the element created above; the property bytes are a REG_MULTI_SZ.
    unsafe {
        SetupDiSetDeviceRegistryPropertyW(set, &raw mut data, SPDRP_HARDWAREID, Some(&bytes))
    }
    .map_err(|error| failed("SetupDiSetDeviceRegistryProperty", &error))?;
    // SAFETY: the same element, now with its hardware ID.
    unsafe { SetupDiCallClassInstaller(DIF_REGISTERDEVICE, set, Some(&raw const data)) }
        .map_err(|error| failed("SetupDiCallClassInstaller(DIF_REGISTERDEVICE)", &error))
}

/// One device whose hardware IDs include one of the package's.
struct FoundDevice {
    /// The device instance ID.
    instance: String,
    /// The `CM_PROB_*` code, 0 if none (or the device is not present).
    problem: u32,
    /// Whether the device node is present (started or with a problem).
    present: bool,
}

/// Calls `visit` for every device of every class whose hardware IDs
/// contain `hardware_id` (case-insensitive).
fn for_each_device(
    hardware_id: &str,
    visit: &mut dyn FnMut(HDEVINFO, &SP_DEVINFO_DATA) -> Result<(), String>,
) -> Result<(), String> {
    // SAFETY: every class, present or not; the set is destroyed below.
    let set = unsafe { SetupDiGetClassDevsW(None, PCWSTR::null(), None, DIGCF_ALLCLASSES) }
        .map_err(|error| failed("SetupDiGetClassDevs", &error))?;
    let wanted = hardware_id.to_ascii_lowercase();
    let mut result = Ok(());
    for index in 0.. {
        let mut data = SP_DEVINFO_DATA {
            cbSize: u32::try_from(size_of::<SP_DEVINFO_DATA>()).unwrap_or(0),
            ..Default::default()
        };
        // SAFETY: the live set and a sized SP_DEVINFO_DATA.
        if unsafe { SetupDiEnumDeviceInfo(set, index, &raw mut data) }.is_err() {
            break;
        }
        let mut buffer = vec![0u8; 4096];
        // SAFETY: the element just enumerated; `buffer` receives the REG_MULTI_SZ.
        let read = unsafe {
            SetupDiGetDeviceRegistryPropertyW(
                set,
                &raw const data,
                SPDRP_HARDWAREID,
                None,
                Some(&mut buffer),
                None,
            )
        };
        if read.is_err() {
            continue;
        }
        let units: Vec<u16> = buffer
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        let matches = units
            .split(|&unit| unit == 0)
            .map(String::from_utf16_lossy)
            .any(|id| id.to_ascii_lowercase() == wanted);
        if matches {
            result = visit(set, &data);
            if result.is_err() {
                break;
            }
        }
    }
    // SAFETY: the set created above, destroyed once.
    let _ = unsafe { SetupDiDestroyDeviceInfoList(set) };
    result
}

/// The devices with one hardware ID, with their state.
fn devices_with_id(hardware_id: &str) -> Result<Vec<FoundDevice>, String> {
    let mut found = Vec::new();
    for_each_device(hardware_id, &mut |set, data| {
        let mut instance = vec![0u16; 512];
        // SAFETY: the element `for_each_device` passes; a writable buffer.
        unsafe { SetupDiGetDeviceInstanceIdW(set, data, Some(&mut instance), None) }
            .map_err(|error| failed("SetupDiGetDeviceInstanceId", &error))?;
        let mut status = CM_DEVNODE_STATUS_FLAGS::default();
        let mut problem = CM_PROB::default();
        // SAFETY: the element's device node and two writable outputs.
        let result =
            unsafe { CM_Get_DevNode_Status(&raw mut status, &raw mut problem, data.DevInst, 0) };
        found.push(FoundDevice {
            instance: from_wide(&instance),
            problem: problem.0,
            present: result == CR_SUCCESS,
        });
        Ok(())
    })?;
    Ok(found)
}

/// The package's hardware IDs, from the INF beside the tool (or the
/// architecture folder below it).
fn package_hardware_ids() -> Result<Vec<String>, String> {
    let package =
        discover(&tool_dir()?, native_architecture()?).map_err(|error| error.message())?;
    Ok(package
        .root_hardware_ids
        .into_iter()
        .chain(package.bus_hardware_ids)
        .collect())
}

/// `status`'s device half: each device, its state and problem.
pub fn status() -> Result<bool, String> {
    let mut problems = Vec::new();
    let mut any = false;
    for hardware_id in package_hardware_ids()? {
        for device in devices_with_id(&hardware_id)? {
            any = true;
            let state = if !device.present {
                "not present".to_owned()
            } else if device.problem == 0 {
                "started".to_owned()
            } else {
                format!("problem Code {}", device.problem)
            };
            println!(
                "device           : {} ({hardware_id}): {state}",
                device.instance
            );
            if device.present {
                problems.extend(device_problem(&device.instance, device.problem));
            }
        }
    }
    for (inf, version) in published_infs()? {
        println!("driver package   : {} ({version})", inf.display());
    }
    if !any {
        problems.push(Problem::NoDevice);
    }
    Ok(report(&problems))
}

/// The driver store's copies of our INF (`C:\Windows\INF\oem*.inf` whose
/// text names our catalog), with their `DriverVer`.
fn published_infs() -> Result<Vec<(PathBuf, String)>, String> {
    let windows =
        std::env::var_os("SystemRoot").map_or_else(|| PathBuf::from("C:\\Windows"), PathBuf::from);
    let inf_dir = windows.join("INF");
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(&inf_dir).map_err(|error| format!("{}: {error}", inf_dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_ascii_lowercase();
        let is_inf = path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("inf"));
        if !(name.starts_with("oem") && is_inf) {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        if text.contains(&format!("CatalogFile = {DRIVER_NAME}.cat")) {
            let version = text
                .lines()
                .find(|line| line.trim_start().starts_with("DriverVer"))
                .and_then(|line| line.split_once('='))
                .map_or_else(
                    || "no DriverVer".to_owned(),
                    |(_, value)| value.trim().to_owned(),
                );
            found.push((entry.path(), version));
        }
    }
    Ok(found)
}

/// `uninstall`: every device with one of the package's hardware IDs, then
/// every driver-store copy of the package.
pub fn uninstall() -> Result<bool, String> {
    if !elevated() {
        report(&[Problem::NotElevated]);
        return Ok(false);
    }
    for hardware_id in package_hardware_ids()? {
        for_each_device(&hardware_id, &mut |set, data| {
            // SAFETY: the element `for_each_device` passes.
            unsafe { DiUninstallDevice(HWND::default(), set, data, 0, None) }
                .map_err(|error| failed("DiUninstallDevice", &error))?;
            println!("removed a device with {hardware_id}");
            Ok(())
        })?;
    }
    for (inf, _) in published_infs()? {
        let name = wide(
            &inf.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        // SAFETY: a NUL-terminated oem*.inf name.
        let removed =
            unsafe { SetupUninstallOEMInfW(PCWSTR(name.as_ptr()), SUOI_FORCEDELETE, None) };
        if removed.as_bool() {
            println!("removed the driver package {}", inf.display());
        } else {
            println!(
                "problem: could not remove {} (pnputil /delete-driver {} /uninstall /force)",
                inf.display(),
                inf.display()
            );
        }
    }
    Ok(true)
}
