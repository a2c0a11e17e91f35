//! The cable device's parameters from its hardware registry key, for
//! `StartDevice`: a `wavert_miniport::parameters::ParameterSource` over
//! `IoOpenDeviceRegistryKey` and `ZwQueryValueKey`.
//!
//! The key is the one the INF's `[Cable.HW.AddReg]` fills:
//! `IoOpenDeviceRegistryKey(pdo, PLUGPLAY_REGKEY_DEVICE, KEY_READ, ..)`
//! opens `Enum\<instance>\Device Parameters` (Learn:
//! `IoOpenDeviceRegistryKey`). Each value is read with
//! `ZwQueryValueKey(.., KeyValuePartialInformation, ..)` into a buffer on
//! the stack (Learn: `ZwQueryValueKey`; `STATUS_BUFFER_OVERFLOW` still
//! fills the fixed part, so a string too long is told from a missing
//! value). IRQL: `PASSIVE_LEVEL` for all three routines (their Learn
//! pages), as `StartDevice` runs.

use core::mem::{offset_of, size_of};
use core::ptr;

use portcls_sys::{
    KeyValuePartialInformation, PcGetPhysicalDeviceObject, ACCESS_MASK, DEVICE_OBJECT, HANDLE,
    KEY_READ, KEY_VALUE_INFORMATION_CLASS, KEY_VALUE_PARTIAL_INFORMATION, NTSTATUS,
    PLUGPLAY_REGKEY_DEVICE, REG_DWORD, REG_SZ, STATUS_BUFFER_OVERFLOW,
    STATUS_OBJECT_NAME_NOT_FOUND, ULONG,
};
use wavert_miniport::parameters::{ParameterSource, RegistryValue};
use wavert_miniport::LogLevel;
use wdk_sys::UNICODE_STRING;

use crate::platform::kernel_log;

// `wdm.h` prototypes (MinGW-w64's `ddk/wdm.h` has all three), declared
// over the ABI crate's types rather than the bindings' so that the value
// class and the result structure are the ones `portcls-sys` checks
// against those headers. They link from `ntoskrnl.lib`.
unsafe extern "system" {
    fn IoOpenDeviceRegistryKey(
        DeviceObject: *mut DEVICE_OBJECT,
        DevInstKeyType: ULONG,
        DesiredAccess: ACCESS_MASK,
        DevInstRegKey: *mut HANDLE,
    ) -> NTSTATUS;
    fn ZwQueryValueKey(
        KeyHandle: HANDLE,
        ValueName: *mut UNICODE_STRING,
        KeyValueInformationClass: KEY_VALUE_INFORMATION_CLASS,
        KeyValueInformation: *mut core::ffi::c_void,
        Length: ULONG,
        ResultLength: *mut ULONG,
    ) -> NTSTATUS;
    fn ZwClose(Handle: HANDLE) -> NTSTATUS;
}

/// The longest value name asked for (`CableCount`, `Cable8Name`).
const MAX_VALUE_NAME: usize = 16;

/// Room for the fixed part of the answer and a string of the longest name
/// the parameters take, its NUL and one unit more (so that "just too
/// long" is seen as such); `u32`s for the structure's alignment.
const ANSWER_WORDS: usize = 32;

/// The device's hardware key, open for reading; closed on drop.
pub struct DeviceRegistry {
    key: HANDLE,
}

impl DeviceRegistry {
    /// Opens the hardware key of the device whose FDO is `device`. A key
    /// that cannot be opened is logged; the caller then uses the defaults.
    pub fn open(device: *mut DEVICE_OBJECT) -> Option<Self> {
        let mut pdo = ptr::null_mut();
        // SAFETY: PortCls's FDO (StartDevice's); `pdo` is writable.
        let status = unsafe { PcGetPhysicalDeviceObject(device, &raw mut pdo) };
        if status < 0 || pdo.is_null() {
            kernel_log(
                LogLevel::Error,
                format_args!("parameters: no PDO ({status:#x}); using the defaults"),
            );
            return None;
        }
        let mut key: HANDLE = ptr::null_mut();
        // SAFETY: the device's PDO; `key` is writable.
        let status = unsafe {
            IoOpenDeviceRegistryKey(pdo.cast(), PLUGPLAY_REGKEY_DEVICE, KEY_READ, &raw mut key)
        };
        if status < 0 || key.is_null() {
            kernel_log(
                LogLevel::Error,
                format_args!(
                    "parameters: IoOpenDeviceRegistryKey failed ({status:#x}); using the defaults"
                ),
            );
            return None;
        }
        Some(Self { key })
    }
}

impl Drop for DeviceRegistry {
    fn drop(&mut self) {
        // SAFETY: the handle IoOpenDeviceRegistryKey gave, closed once.
        let _ = unsafe { ZwClose(self.key) };
    }
}

impl ParameterSource for DeviceRegistry {
    fn query(&self, name: &str, text: &mut [u16]) -> RegistryValue {
        let mut units = [0u16; MAX_VALUE_NAME];
        let mut len = 0;
        for (slot, byte) in units.iter_mut().zip(name.bytes()) {
            *slot = u16::from(byte);
            len += 1;
        }
        if len != name.len() {
            return RegistryValue::Missing;
        }
        // At most 16 units: 32 bytes.
        #[allow(clippy::cast_possible_truncation, reason = "at most 32 bytes")]
        let bytes = (2 * len) as u16;
        let mut value_name = UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: units.as_mut_ptr(),
        };
        let mut answer = [0u32; ANSWER_WORDS];
        let mut returned: ULONG = 0;
        // At most 128 bytes.
        #[allow(clippy::cast_possible_truncation, reason = "128 bytes")]
        let size = size_of::<[u32; ANSWER_WORDS]>() as ULONG;
        // SAFETY: an open key; the name and the answer buffer (aligned for
        // KEY_VALUE_PARTIAL_INFORMATION, `size` bytes) outlive the call.
        let status = unsafe {
            ZwQueryValueKey(
                self.key,
                &raw mut value_name,
                KeyValuePartialInformation,
                answer.as_mut_ptr().cast(),
                size,
                &raw mut returned,
            )
        };
        let header_words = offset_of!(KEY_VALUE_PARTIAL_INFORMATION, Data) / 4;
        let (Some(&kind), Some(&data_length)) = (answer.get(1), answer.get(2)) else {
            return RegistryValue::Missing;
        };
        match status {
            STATUS_OBJECT_NAME_NOT_FOUND => RegistryValue::Missing,
            STATUS_BUFFER_OVERFLOW if kind == REG_SZ => RegistryValue::StringTooLong,
            STATUS_BUFFER_OVERFLOW => RegistryValue::OtherType(kind),
            status if status < 0 => {
                kernel_log(
                    LogLevel::Error,
                    format_args!("parameters: reading {name} failed ({status:#x})"),
                );
                RegistryValue::Missing
            }
            _ => {
                let data = answer.get(header_words..).unwrap_or(&[]);
                decode(kind, data_length, data, text)
            }
        }
    }
}

/// A value of registry type `kind` and `length` bytes at `data` (the
/// answer's words after its fixed part, little-endian), for the parser.
fn decode(kind: ULONG, length: ULONG, data: &[u32], text: &mut [u16]) -> RegistryValue {
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    match kind {
        REG_DWORD if length == 4 => data
            .first()
            .map_or(RegistryValue::Missing, |&v| RegistryValue::Dword(v)),
        REG_SZ => {
            let unit_at = |index: usize| {
                let word = data.get(index / 2)?.to_le_bytes();
                let pair = if index % 2 == 0 {
                    [word[0], word[1]]
                } else {
                    [word[2], word[3]]
                };
                Some(u16::from_le_bytes(pair))
            };
            // REG_SZ data normally ends with the string's NUL, which is no
            // part of the name.
            let mut units = length / 2;
            if units > 0 && unit_at(units - 1) == Some(0) {
                units -= 1;
            }
            let Some(out) = text.get_mut(..units) else {
                return RegistryValue::StringTooLong;
            };
            for (index, slot) in out.iter_mut().enumerate() {
                let Some(unit) = unit_at(index) else {
                    return RegistryValue::StringTooLong;
                };
                *slot = unit;
            }
            RegistryValue::String(units)
        }
        other => RegistryValue::OtherType(other),
    }
}
