//! The device-interface stand-ins the driver image imports from `ntoskrnl.exe`.
//!
//! `IoRegisterDeviceInterface`, `IoSetDeviceInterfacePropertyData` and
//! `RtlFreeUnicodeString` (of the symbolic link the first one allocates).
//! `PcGetPhysicalDeviceObject`, which gives the PDO they take, is in
//! [`super::portcls`].
//!
//! A property set on a filter's interface goes to the same
//! [`Machine::set_interface_property`](crate::machine::Machine::set_interface_property)
//! the host build's `EmuPortCls` uses, so both builds meet one model, with
//! its order against `PcRegisterSubdevice` checked. Rules: all three at
//! `PASSIVE_LEVEL` (Learn's pages for each); the PDO must be the device's;
//! a link is freed once, with `RtlFreeUnicodeString`, and none is left at
//! unload.
#![allow(non_snake_case, reason = "the kernel's export names")]
#![allow(
    clippy::must_use_candidate,
    reason = "the stand-ins are called by the image through its import table, where attributes mean nothing"
)]

use std::collections::HashMap;
use std::sync::Mutex;

use portcls_sys::{
    windows_abi, DEVPROPKEY, DEVPROPTYPE, DEVPROP_TYPE_BINARY, DEVPROP_TYPE_STRING, GUID, NTSTATUS,
    PDEVICE_OBJECT, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED,
    STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
};

use super::kernel::{current, Kernel};
use crate::irql::{self, PASSIVE_LEVEL};
use crate::machine::{lock, Machine};

/// `UNICODE_STRING` as `wdm.h` lays it out on x64 (the ABI crate keeps it
/// opaque: the miniport never reads one).
#[repr(C)]
pub struct UnicodeString {
    /// Bytes in use, without a terminating NUL.
    pub Length: u16,
    /// Bytes the buffer holds.
    pub MaximumLength: u16,
    /// The UTF-16 text.
    pub Buffer: *mut u16,
}

/// A symbolic link `IoRegisterDeviceInterface` handed out.
struct Link {
    /// Its text: the buffer the image's `UNICODE_STRING` points to, kept
    /// alive here (never read back) until `RtlFreeUnicodeString`.
    _text: Box<[u16]>,
    /// The reference string it was registered with: the subdevice name.
    name: String,
    /// Where the image asked for it.
    call_site: String,
}

/// The links handed out and not yet freed, by buffer address.
#[derive(Default)]
pub struct InterfaceState {
    links: Mutex<HashMap<usize, Link>>,
}

impl std::fmt::Debug for InterfaceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterfaceState")
            .field("links", &lock(&self.links).len())
            .finish()
    }
}

impl InterfaceState {
    /// Links never freed, each reported on `machine`; returns how many.
    pub fn check_unload(&self, machine: &Machine) -> usize {
        let links = std::mem::take(&mut *lock(&self.links));
        for link in links.values() {
            machine.violation(format!(
                "driver verifier: symbolic link of {} (from IoRegisterDeviceInterface at {}) never freed with RtlFreeUnicodeString",
                link.name, link.call_site
            ));
        }
        links.len()
    }
}

/// The kernel, with the `PASSIVE_LEVEL` rule of `routine` checked.
pub(super) fn passive(routine: &str) -> Option<std::sync::Arc<Kernel>> {
    let kernel = current()?;
    if let Some(what) = irql::above(routine, PASSIVE_LEVEL) {
        kernel.violation("IRQL", &what);
    }
    Some(kernel)
}

/// The text of a `UNICODE_STRING` the image passed.
///
/// # Safety
///
/// `string` is null or a readable `UNICODE_STRING` whose buffer holds
/// `Length` bytes.
unsafe fn text_of(string: *const UnicodeString) -> Option<String> {
    if string.is_null() {
        return None;
    }
    // SAFETY: a readable UNICODE_STRING (the caller's contract).
    let string = unsafe { &*string };
    if string.Buffer.is_null() || string.Length % 2 != 0 {
        return None;
    }
    // SAFETY: `Length` readable bytes at `Buffer` (the caller's contract).
    let units =
        unsafe { std::slice::from_raw_parts(string.Buffer, usize::from(string.Length) / 2) };
    String::from_utf16(units).ok()
}

fn guid_text(g: &GUID) -> String {
    let d = g.Data4;
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        g.Data1, g.Data2, g.Data3, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
    )
}

/// `IoRegisterDeviceInterface`: a symbolic link for the interface of class
/// `class` and reference string `reference` on `pdo`.
///
/// # Safety
///
/// Called by the image as the kernel routine: `class` a GUID, `reference`
/// null or a `UNICODE_STRING`, `link` a writable `UNICODE_STRING`.
#[windows_abi]
pub unsafe extern "system" fn IoRegisterDeviceInterface(
    pdo: PDEVICE_OBJECT,
    class: *const GUID,
    reference: *const UnicodeString,
    link: *mut UnicodeString,
) -> NTSTATUS {
    let Some(kernel) = passive("IoRegisterDeviceInterface") else {
        return STATUS_UNSUCCESSFUL;
    };
    if pdo.is_null() || pdo.addr() != kernel.portcls.physical_device() {
        kernel.violation(
            "device interfaces",
            &format!("IoRegisterDeviceInterface({pdo:p}): not the device's PDO (PcGetPhysicalDeviceObject gives it)"),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if class.is_null() || link.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the image's reference string, if any.
    let name = unsafe { text_of(reference) }.unwrap_or_default();
    // SAFETY: the image's interface class GUID.
    let class = unsafe { &*class };
    let text: Box<[u16]> = format!("\\??\\ROOT#MEDIA#0000#{{{}}}\\{name}", guid_text(class))
        .encode_utf16()
        .chain(std::iter::once(0))
        .collect();
    let Ok(maximum) = u16::try_from(text.len() * 2) else {
        return STATUS_INVALID_PARAMETER;
    };
    let buffer = text.as_ptr().cast_mut();
    lock(&kernel.interfaces.links).insert(
        buffer.addr(),
        Link {
            _text: text,
            name,
            call_site: kernel.call_site(),
        },
    );
    // SAFETY: the image's writable UNICODE_STRING; the buffer stays ours
    // (and alive) until RtlFreeUnicodeString.
    unsafe {
        link.write(UnicodeString {
            Length: maximum - 2,
            MaximumLength: maximum,
            Buffer: buffer,
        });
    };
    STATUS_SUCCESS
}

/// `IoSetDeviceInterfacePropertyData` on a link `IoRegisterDeviceInterface`
/// gave: the value goes to the machine under the link's subdevice name.
///
/// # Safety
///
/// Called by the image as the kernel routine: `link` a `UNICODE_STRING`,
/// `key` a `DEVPROPKEY`, `data` `size` readable bytes.
#[windows_abi]
pub unsafe extern "system" fn IoSetDeviceInterfacePropertyData(
    link: *const UnicodeString,
    key: *const DEVPROPKEY,
    _lcid: u32,
    _flags: u32,
    kind: DEVPROPTYPE,
    size: u32,
    data: *const u8,
) -> NTSTATUS {
    let Some(kernel) = passive("IoSetDeviceInterfacePropertyData") else {
        return STATUS_UNSUCCESSFUL;
    };
    if link.is_null() || key.is_null() || (data.is_null() && size != 0) {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the image's UNICODE_STRING.
    let buffer = unsafe { (*link).Buffer };
    let Some(name) = lock(&kernel.interfaces.links)
        .get(&buffer.addr())
        .map(|l| l.name.clone())
    else {
        kernel.violation(
            "device interfaces",
            "IoSetDeviceInterfacePropertyData on a link IoRegisterDeviceInterface never gave (or already freed)",
        );
        return STATUS_INVALID_PARAMETER;
    };
    if kind != DEVPROP_TYPE_BINARY && kind != DEVPROP_TYPE_STRING {
        // The model keeps binary values and strings (all the driver sets).
        return STATUS_NOT_SUPPORTED;
    }
    let value = if size == 0 {
        &[][..]
    } else {
        // SAFETY: `size` readable bytes at `data` (the caller's contract).
        unsafe { std::slice::from_raw_parts(data, size as usize) }
    };
    // A DEVPROP_TYPE_STRING is UTF-16 with its NUL, the size in bytes
    // counting it (Learn: DEVPROP_TYPE_STRING).
    if kind == DEVPROP_TYPE_STRING
        && !(value.len() >= 2 && value.len() % 2 == 0 && value.ends_with(&[0, 0]))
    {
        kernel.violation(
            "device interfaces",
            &format!("IoSetDeviceInterfacePropertyData on {name}: a DEVPROP_TYPE_STRING of {size} bytes that is not NUL-terminated UTF-16"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the image's DEVPROPKEY.
    let key = unsafe { &*key };
    kernel
        .machine()
        .set_typed_interface_property(&name, key, kind, value);
    STATUS_SUCCESS
}

/// `RtlFreeUnicodeString` of a link `IoRegisterDeviceInterface` gave.
///
/// # Safety
///
/// Called by the image as the kernel routine: `string` a writable
/// `UNICODE_STRING`.
#[windows_abi]
pub unsafe extern "system" fn RtlFreeUnicodeString(string: *mut UnicodeString) {
    let Some(kernel) = passive("RtlFreeUnicodeString") else {
        return;
    };
    if string.is_null() {
        kernel.violation("strings", "RtlFreeUnicodeString(NULL)");
        return;
    }
    // SAFETY: the image's UNICODE_STRING.
    let buffer = unsafe { (*string).Buffer };
    if lock(&kernel.interfaces.links)
        .remove(&buffer.addr())
        .is_none()
    {
        kernel.violation(
            "strings",
            &format!("RtlFreeUnicodeString of {buffer:p}: not a string the kernel allocated (or freed twice)"),
        );
        return;
    }
    // SAFETY: as above, writable; the kernel empties a string it frees.
    unsafe {
        string.write(UnicodeString {
            Length: 0,
            MaximumLength: 0,
            Buffer: std::ptr::null_mut(),
        });
    };
}

/// The exports of this module, by module and name.
#[must_use]
pub fn exports() -> Vec<(&'static str, &'static str, usize)> {
    exports! {
        "ntoskrnl.exe": [
            IoRegisterDeviceInterface,
            IoSetDeviceInterfacePropertyData,
            RtlFreeUnicodeString,
        ],
    }
}

#[cfg(test)]
mod tests {
    //! Each rule, broken on purpose as a faulty driver would, is reported.

    use std::sync::Arc;

    use portcls_sys::{DEVPKEY_KsAudio_PacketSize_Constraints2, KSCATEGORY_AUDIO};

    use super::*;
    use crate::cable::EmuPortCls;
    use crate::image::kernel::Kernel;
    use crate::image::portcls::PortClsState;
    use crate::machine::ClockMode;
    use crate::memory::{MemoryConfig, PhysicalMemory};

    fn with_kernel(pdo: usize, test: impl FnOnce(&Arc<Kernel>)) -> (Vec<String>, Arc<Machine>) {
        let memory = PhysicalMemory::anonymous(MemoryConfig::default()).expect("memory");
        let machine = Machine::new(memory, ClockMode::Virtual);
        let services = Arc::new(EmuPortCls::new(Arc::clone(&machine), None));
        let installed = Kernel::install(&machine, "broken.sys", PortClsState::new(services));
        installed.kernel().portcls.set_physical_device(pdo);
        test(installed.kernel());
        let _ = installed.kernel().check_unload();
        drop(installed);
        (machine.violations(), machine)
    }

    fn name(text: &[u16]) -> UnicodeString {
        UnicodeString {
            Length: u16::try_from(text.len() * 2).expect("short"),
            MaximumLength: u16::try_from(text.len() * 2).expect("short"),
            Buffer: text.as_ptr().cast_mut(),
        }
    }

    #[test]
    fn a_clean_sequence_records_the_property_and_reports_nothing() {
        let pdo = 0x1000;
        let wave: Vec<u16> = "WaveRender".encode_utf16().collect();
        let (violations, machine) = with_kernel(pdo, |_| {
            let mut link = name(&[]);
            let reference = name(&wave);
            // SAFETY: the stand-ins called as a correct driver calls them.
            let status = unsafe {
                IoRegisterDeviceInterface(
                    std::ptr::without_provenance_mut(pdo),
                    &KSCATEGORY_AUDIO,
                    &raw const reference,
                    &raw mut link,
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
            let value = [1u8, 2, 3];
            // SAFETY: as above.
            let status = unsafe {
                IoSetDeviceInterfacePropertyData(
                    &raw const link,
                    &DEVPKEY_KsAudio_PacketSize_Constraints2,
                    0,
                    1,
                    DEVPROP_TYPE_BINARY,
                    3,
                    value.as_ptr(),
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
            // SAFETY: as above.
            unsafe { RtlFreeUnicodeString(&raw mut link) };
            assert!(link.Buffer.is_null());
        });
        assert!(violations.is_empty(), "{violations:?}");
        let properties = machine.registrations().interface_properties;
        assert_eq!(properties.len(), 1);
        assert_eq!(
            (properties[0].name.as_str(), properties[0].value.as_slice()),
            ("WaveRender", &[1u8, 2, 3][..])
        );
        assert!(properties[0].before_registration);
    }

    #[test]
    fn a_wrong_pdo_a_leaked_link_and_a_foreign_free_are_reported() {
        let pdo = 0x1000;
        let (violations, _) = with_kernel(pdo, |_| {
            let mut link = name(&[]);
            // SAFETY: deliberately wrong: an FDO instead of the PDO.
            let status = unsafe {
                IoRegisterDeviceInterface(
                    std::ptr::without_provenance_mut(0x2000),
                    &KSCATEGORY_AUDIO,
                    std::ptr::null(),
                    &raw mut link,
                )
            };
            assert_eq!(status, STATUS_INVALID_DEVICE_REQUEST);
            // SAFETY: correct, but the link is never freed.
            let status = unsafe {
                IoRegisterDeviceInterface(
                    std::ptr::without_provenance_mut(pdo),
                    &KSCATEGORY_AUDIO,
                    std::ptr::null(),
                    &raw mut link,
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
            let mut foreign = name(&[0x41]);
            // SAFETY: deliberately wrong: a string the kernel never allocated.
            unsafe { RtlFreeUnicodeString(&raw mut foreign) };
        });
        for what in [
            "not the device's PDO",
            "never freed",
            "not a string the kernel allocated",
        ] {
            assert!(
                violations.iter().any(|v| v.contains(what)),
                "{what}: {violations:?}"
            );
        }
    }
}
