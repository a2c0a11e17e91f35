//! The registry stand-ins the driver image imports from `ntoskrnl.exe`.
//!
//! `IoOpenDeviceRegistryKey`, `ZwQueryValueKey` and `ZwClose`, over the
//! device's hardware key, which the emulator fills as the INF's
//! `[Cable.HW.AddReg]` (or a user) would ([`RegistryState::set`]).
//!
//! Rules, from Learn's page for each routine: all three at
//! `PASSIVE_LEVEL`; `IoOpenDeviceRegistryKey` takes the device's PDO (not
//! the FDO) and one of `PLUGPLAY_REGKEY_DEVICE` / `PLUGPLAY_REGKEY_DRIVER`
//! (only the hardware key is modelled); every handle is closed once with
//! `ZwClose`, and none is left at unload. `ZwQueryValueKey` with
//! `KeyValuePartialInformation` answers `STATUS_OBJECT_NAME_NOT_FOUND` for
//! a missing value, `STATUS_BUFFER_TOO_SMALL` when not even the fixed part
//! fits, and `STATUS_BUFFER_OVERFLOW` (the fixed part filled) when the data
//! does not.
#![allow(non_snake_case, reason = "the kernel's export names")]
#![allow(
    clippy::must_use_candidate,
    reason = "the stand-ins are called by the image through its import table, where attributes mean nothing"
)]

use std::collections::{BTreeMap, HashMap};
use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use portcls_sys::{
    windows_abi, KeyValuePartialInformation, ACCESS_MASK, HANDLE, KEY_VALUE_INFORMATION_CLASS,
    KEY_VALUE_PARTIAL_INFORMATION, NTSTATUS, PDEVICE_OBJECT, PLUGPLAY_REGKEY_DEVICE, REG_DWORD,
    REG_SZ, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS,
    STATUS_UNSUCCESSFUL,
};

use wavert_miniport::parameters::{ParameterSource, RegistryValue};

use super::device_interfaces::{passive, UnicodeString};
use crate::machine::{lock, Machine};

/// A value of the device's hardware key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryData {
    /// `REG_DWORD`.
    Dword(u32),
    /// `REG_SZ` (stored as UTF-16 with its NUL).
    String(String),
    /// Another registry type, with its bytes (`REG_BINARY` is 3).
    Other(u32, Vec<u8>),
}

impl RegistryData {
    const fn kind(&self) -> u32 {
        match self {
            Self::Dword(_) => REG_DWORD,
            Self::String(_) => REG_SZ,
            Self::Other(kind, _) => *kind,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Dword(v) => v.to_le_bytes().to_vec(),
            Self::String(s) => s
                .encode_utf16()
                .chain(std::iter::once(0))
                .flat_map(u16::to_le_bytes)
                .collect(),
            Self::Other(_, bytes) => bytes.clone(),
        }
    }
}

/// A key's values as the host build's parameter reader sees them.
///
/// The same `wavert_miniport::parameters` parser the image runs over
/// `ZwQueryValueKey`, here straight over the values (names compared
/// without case).
#[derive(Clone, Copy, Debug)]
pub struct HostKey<'a>(pub &'a [(String, RegistryData)]);

impl ParameterSource for HostKey<'_> {
    fn query(&self, name: &str, text: &mut [u16]) -> RegistryValue {
        let Some((_, data)) = self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
            return RegistryValue::Missing;
        };
        match data {
            RegistryData::Dword(value) => RegistryValue::Dword(*value),
            RegistryData::String(value) => {
                let units: Vec<u16> = value.encode_utf16().collect();
                text.get_mut(..units.len())
                    .map_or(RegistryValue::StringTooLong, |out| {
                        out.copy_from_slice(&units);
                        RegistryValue::String(units.len())
                    })
            }
            RegistryData::Other(kind, _) => RegistryValue::OtherType(*kind),
        }
    }
}

/// The device's hardware key and the handles open on it.
#[derive(Default)]
pub struct RegistryState {
    /// By value name, compared without case as the registry does.
    values: Mutex<BTreeMap<String, RegistryData>>,
    /// Open handles -> where the image opened them.
    open: Mutex<HashMap<usize, String>>,
    next_handle: AtomicUsize,
}

impl std::fmt::Debug for RegistryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryState")
            .field("values", &*lock(&self.values))
            .field("open", &lock(&self.open).len())
            .finish_non_exhaustive()
    }
}

impl RegistryState {
    /// Sets a value of the device's hardware key (what the INF's `AddReg`
    /// or a user's edit leaves there before the start).
    pub fn set(&self, name: &str, data: RegistryData) {
        lock(&self.values).insert(name.to_ascii_lowercase(), data);
    }

    /// Handles never closed, each reported on `machine`; returns how many.
    pub fn check_unload(&self, machine: &Machine) -> usize {
        let open = std::mem::take(&mut *lock(&self.open));
        for call_site in open.values() {
            machine.violation(format!(
                "driver verifier: registry key handle from IoOpenDeviceRegistryKey at {call_site} never closed with ZwClose"
            ));
        }
        open.len()
    }
}

/// `IoOpenDeviceRegistryKey(pdo, PLUGPLAY_REGKEY_DEVICE, access, &handle)`:
/// a handle on the device's hardware key.
///
/// # Safety
///
/// Called by the image as the kernel routine: `handle` writable.
#[windows_abi]
pub unsafe extern "system" fn IoOpenDeviceRegistryKey(
    pdo: PDEVICE_OBJECT,
    key_type: u32,
    _access: ACCESS_MASK,
    handle: *mut HANDLE,
) -> NTSTATUS {
    let Some(kernel) = passive("IoOpenDeviceRegistryKey") else {
        return STATUS_UNSUCCESSFUL;
    };
    if handle.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    if pdo.is_null() || pdo.addr() != kernel.portcls.physical_device() {
        kernel.violation(
            "registry",
            &format!("IoOpenDeviceRegistryKey({pdo:p}): not the device's PDO (PcGetPhysicalDeviceObject gives it)"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    if key_type != PLUGPLAY_REGKEY_DEVICE {
        // The driver key (PLUGPLAY_REGKEY_DRIVER) is not modelled.
        return STATUS_NOT_SUPPORTED;
    }
    // Handles are odd numbers, never a valid pointer.
    let value = 0x8000_0001 + 4 * kernel.registry.next_handle.fetch_add(1, Ordering::Relaxed);
    lock(&kernel.registry.open).insert(value, kernel.call_site());
    // SAFETY: the image's writable HANDLE.
    unsafe { handle.write(std::ptr::without_provenance_mut(value)) };
    STATUS_SUCCESS
}

/// `ZwQueryValueKey(handle, name, KeyValuePartialInformation, buffer,
/// length, &result)`.
///
/// # Safety
///
/// Called by the image as the kernel routine: `name` a `UNICODE_STRING`,
/// `buffer` `length` writable bytes, `result` writable.
#[windows_abi]
pub unsafe extern "system" fn ZwQueryValueKey(
    handle: HANDLE,
    name: *const UnicodeString,
    class: KEY_VALUE_INFORMATION_CLASS,
    buffer: *mut u8,
    length: u32,
    result: *mut u32,
) -> NTSTATUS {
    let Some(kernel) = passive("ZwQueryValueKey") else {
        return STATUS_UNSUCCESSFUL;
    };
    if !lock(&kernel.registry.open).contains_key(&handle.addr()) {
        kernel.violation(
            "registry",
            &format!("ZwQueryValueKey({handle:p}): not an open key handle"),
        );
        return STATUS_INVALID_HANDLE;
    }
    if class != KeyValuePartialInformation {
        return STATUS_NOT_SUPPORTED;
    }
    if name.is_null() || result.is_null() || (buffer.is_null() && length != 0) {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the image's UNICODE_STRING and its `Length` bytes.
    let name = unsafe { &*name };
    if name.Buffer.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: `Length` readable bytes at `Buffer` (the caller's contract).
    let name = unsafe { std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) };
    let name = String::from_utf16_lossy(name).to_ascii_lowercase();
    let Some(data) = lock(&kernel.registry.values).get(&name).cloned() else {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    };
    let bytes = data.bytes();
    let fixed = offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data);
    let needed = fixed + bytes.len();
    let Ok(needed_u32) = u32::try_from(needed) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: the image's writable ULONG.
    unsafe { result.write(needed_u32) };
    let length = length as usize;
    if length < fixed.min(size_of::<KEY_VALUE_PARTIAL_INFORMATION>()) {
        return STATUS_BUFFER_TOO_SMALL;
    }
    let mut header = Vec::with_capacity(fixed);
    for word in [
        0,
        data.kind(),
        u32::try_from(bytes.len()).unwrap_or(u32::MAX),
    ] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    // SAFETY: `length` (>= the fixed part) writable bytes at `buffer`.
    unsafe { std::ptr::copy_nonoverlapping(header.as_ptr(), buffer, fixed) };
    if length < needed {
        return STATUS_BUFFER_OVERFLOW;
    }
    // SAFETY: `fixed` < `length` bytes into the image's buffer.
    let data = unsafe { buffer.add(fixed) };
    // SAFETY: the data fits in the `length - fixed` bytes after the fixed part.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len()) };
    STATUS_SUCCESS
}

/// `ZwClose` of a handle `IoOpenDeviceRegistryKey` gave.
///
/// # Safety
///
/// Called by the image as the kernel routine.
#[windows_abi]
pub unsafe extern "system" fn ZwClose(handle: HANDLE) -> NTSTATUS {
    let Some(kernel) = passive("ZwClose") else {
        return STATUS_UNSUCCESSFUL;
    };
    if lock(&kernel.registry.open).remove(&handle.addr()).is_none() {
        kernel.violation(
            "registry",
            &format!("ZwClose({handle:p}): not an open handle (or closed twice)"),
        );
        return STATUS_INVALID_HANDLE;
    }
    STATUS_SUCCESS
}

/// The exports of this module, by module and name.
#[must_use]
pub fn exports() -> Vec<(&'static str, &'static str, usize)> {
    exports! {
        "ntoskrnl.exe": [
            IoOpenDeviceRegistryKey,
            ZwQueryValueKey,
            ZwClose,
        ],
    }
}

#[cfg(test)]
mod tests {
    //! Each rule, broken on purpose as a faulty driver would, is reported;
    //! the well-behaved sequence is not.

    use std::sync::Arc;

    use super::*;
    use crate::cable::EmuPortCls;
    use crate::image::kernel::Kernel;
    use crate::image::portcls::PortClsState;
    use crate::machine::ClockMode;
    use crate::memory::{MemoryConfig, PhysicalMemory};

    const PDO: usize = 0x5000;

    fn with_kernel(test: impl FnOnce(&Arc<Kernel>)) -> Vec<String> {
        let memory = PhysicalMemory::anonymous(MemoryConfig::default()).expect("memory");
        let machine = Machine::new(memory, ClockMode::Virtual);
        let services = Arc::new(EmuPortCls::new(Arc::clone(&machine), None));
        let installed = Kernel::install(&machine, "registry.sys", PortClsState::new(services));
        installed.kernel().portcls.set_physical_device(PDO);
        test(installed.kernel());
        let _ = installed.kernel().check_unload();
        drop(installed);
        machine.violations()
    }

    fn open() -> (NTSTATUS, HANDLE) {
        let mut handle: HANDLE = std::ptr::null_mut();
        // SAFETY: a writable handle.
        let status = unsafe {
            IoOpenDeviceRegistryKey(
                std::ptr::without_provenance_mut(PDO),
                PLUGPLAY_REGKEY_DEVICE,
                portcls_sys::KEY_READ,
                &raw mut handle,
            )
        };
        (status, handle)
    }

    fn query(handle: HANDLE, name: &str, buffer: &mut [u32]) -> (NTSTATUS, u32) {
        let mut units: Vec<u16> = name.encode_utf16().collect();
        let string = UnicodeString {
            Length: u16::try_from(units.len() * 2).unwrap(),
            MaximumLength: u16::try_from(units.len() * 2).unwrap(),
            Buffer: units.as_mut_ptr(),
        };
        let mut result = 0;
        // SAFETY: a readable name, a writable buffer of its length.
        let status = unsafe {
            ZwQueryValueKey(
                handle,
                &raw const string,
                KeyValuePartialInformation,
                buffer.as_mut_ptr().cast(),
                u32::try_from(buffer.len() * 4).unwrap(),
                &raw mut result,
            )
        };
        (status, result)
    }

    #[test]
    fn values_come_back_as_the_partial_information_the_kernel_gives() {
        let violations = with_kernel(|k| {
            k.registry.set("CableCount", RegistryData::Dword(4));
            k.registry
                .set("Cable1Name", RegistryData::String("Chat".into()));
            let (status, handle) = open();
            assert_eq!(status, STATUS_SUCCESS);
            let mut buffer = [0u32; 8];
            assert_eq!(
                query(handle, "cablecount", &mut buffer),
                (STATUS_SUCCESS, 16)
            );
            assert_eq!(&buffer[..4], &[0, REG_DWORD, 4, 4]);
            assert_eq!(
                query(handle, "Cable1Name", &mut buffer),
                (STATUS_SUCCESS, 22)
            );
            assert_eq!(&buffer[1..3], &[REG_SZ, 10]);
            let text: Vec<u8> = buffer[3..].iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(&text[..10], b"C\0h\0a\0t\0\0\0");
            // Too small for the data: the fixed part only.
            let mut small = [0u32; 4];
            assert_eq!(
                query(handle, "Cable1Name", &mut small),
                (STATUS_BUFFER_OVERFLOW, 22)
            );
            assert_eq!(&small[1..3], &[REG_SZ, 10]);
            let mut tiny = [0u32; 2];
            assert_eq!(
                query(handle, "Cable1Name", &mut tiny).0,
                STATUS_BUFFER_TOO_SMALL
            );
            assert_eq!(
                query(handle, "Cable2Name", &mut buffer).0,
                STATUS_OBJECT_NAME_NOT_FOUND
            );
            // SAFETY: the handle just opened.
            assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
        });
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn misuse_is_reported() {
        let violations = with_kernel(|_| {
            let mut handle: HANDLE = std::ptr::null_mut();
            // The FDO (or anything but the PDO).
            // SAFETY: a writable handle.
            let status = unsafe {
                IoOpenDeviceRegistryKey(
                    std::ptr::without_provenance_mut(PDO + 8),
                    PLUGPLAY_REGKEY_DEVICE,
                    0,
                    &raw mut handle,
                )
            };
            assert_eq!(status, STATUS_INVALID_PARAMETER);
            let (_, handle) = open();
            // SAFETY: the handle just opened.
            assert_eq!(unsafe { ZwClose(handle) }, STATUS_SUCCESS);
            // SAFETY: the same handle again, closed twice on purpose.
            assert_eq!(unsafe { ZwClose(handle) }, STATUS_INVALID_HANDLE);
            let mut buffer = [0u32; 8];
            assert_eq!(
                query(handle, "CableCount", &mut buffer).0,
                STATUS_INVALID_HANDLE
            );
            // One left open for the unload check.
            let _ = open();
        });
        let has = |needle: &str| violations.iter().any(|v| v.contains(needle));
        assert!(has("not the device's PDO"), "{violations:?}");
        assert!(has("closed twice"), "{violations:?}");
        assert!(has("ZwQueryValueKey"), "{violations:?}");
        assert!(has("never closed with ZwClose"), "{violations:?}");
    }
}
