//! The virtual cable device's installer parameters (how many cables, each
//! cable's name), read from its registry key at `StartDevice` and
//! validated.
//!
//! # Where they live
//!
//! The INF's `[Cable.NT.HW]` `AddReg` writes the defaults into the device's
//! hardware key, which the driver opens with `IoOpenDeviceRegistryKey(pdo,
//! PLUGPLAY_REGKEY_DEVICE, KEY_READ, ..)` (Learn: `IoOpenDeviceRegistryKey`;
//! "Opening a device's hardware key": `HKR` in a `DDInstall.HW` section is
//! that key): `HKLM\SYSTEM\CurrentControlSet\Enum\<device instance
//! path>\Device Parameters`. Values:
//!
//! | value | type | meaning | default |
//! |---|---|---|---|
//! | `CableCount` | `REG_DWORD` | cables, 1 to [`MAX_CABLES`] | 1 |
//! | `Cable1Name` .. `Cable8Name` | `REG_SZ` | the cable's endpoint name, 1 to [`MAX_NAME_UNITS`] UTF-16 units | `rswavert cable N` |
//!
//! They are read once per start: after a change, restart the device
//! (Device Manager: disable and enable it, or `pnputil /restart-device`).
//!
//! # Bad values
//!
//! A value that is missing takes its default silently; one that is
//! present but wrong (the wrong type, 0 or 99 cables, an empty name or one
//! too long) is refused with a logged reason and takes its default, so a
//! bad edit never fails the start. The glue's [`ParameterSource`] runs at
//! `PASSIVE_LEVEL`; nothing here allocates.

use core::fmt;

use crate::adapter::MAX_CABLES;
use crate::platform::LogLevel;

/// The longest cable name in UTF-16 units.
///
/// `WinMM` keeps device names in
/// `szPname[MAXPNAMELEN]` with `MAXPNAMELEN` 32, the NUL included
/// (MinGW-w64 `mmsystem.h`), so a longer name would be cut short there.
pub const MAX_NAME_UNITS: usize = 31;

/// The cable count when the registry has none (or a bad one).
pub const DEFAULT_CABLE_COUNT: usize = 1;

/// The registry value holding the cable count.
pub const CABLE_COUNT_VALUE: &str = "CableCount";

/// `REG_SZ` (MinGW-w64 `ddk/wdm.h`; `portcls_sys::REG_SZ`).
const REG_SZ: u32 = 1;
/// `REG_DWORD` (as above).
const REG_DWORD: u32 = 4;

/// What a [`ParameterSource`] found under a value name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryValue {
    /// No such value.
    Missing,
    /// A `REG_DWORD`.
    Dword(u32),
    /// A `REG_SZ` of this many UTF-16 units (its terminating NUL, if any,
    /// not counted), copied into the caller's buffer.
    String(usize),
    /// A `REG_SZ` longer than the caller's buffer (not copied).
    StringTooLong,
    /// A value of another registry type (`REG_*`).
    OtherType(u32),
}

/// Where the parameters come from: the driver's registry key, or a map in
/// tests and the emulator.
pub trait ParameterSource {
    /// The value `name` (ASCII). A `REG_SZ` is copied into `text` (UTF-16,
    /// without its NUL).
    fn query(&self, name: &str, text: &mut [u16]) -> RegistryValue;
}

/// A source with no values (no registry key): every parameter defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoParameters;

impl ParameterSource for NoParameters {
    fn query(&self, _name: &str, _text: &mut [u16]) -> RegistryValue {
        RegistryValue::Missing
    }
}

/// A cable's name: 1 to [`MAX_NAME_UNITS`] UTF-16 units.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CableName {
    units: [u16; MAX_NAME_UNITS + 1],
    len: usize,
}

impl CableName {
    /// `rswavert cable N`, the default name of cable `number` (1-based).
    #[must_use]
    pub fn default_for(number: usize) -> Self {
        let mut name = Self {
            units: [0; MAX_NAME_UNITS + 1],
            len: 0,
        };
        let mut writer = UnitWriter(&mut name);
        // Fits: 15 units plus at most 20 digits would not, but `number`
        // is at most MAX_CABLES; a failed write leaves the prefix.
        let _ = fmt::write(&mut writer, format_args!("rswavert cable {number}"));
        name
    }

    /// The name's units, without a NUL.
    #[must_use]
    pub fn units(&self) -> &[u16] {
        self.units.get(..self.len).unwrap_or(&[])
    }

    /// The name's units with a terminating NUL (what the kernel's
    /// `DEVPROP_TYPE_STRING` takes).
    #[must_use]
    pub fn units_with_nul(&self) -> &[u16] {
        self.units.get(..=self.len).unwrap_or(&[])
    }
}

impl fmt::Debug for CableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl fmt::Display for CableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in char::decode_utf16(self.units().iter().copied()) {
            fmt::Write::write_char(f, c.unwrap_or(char::REPLACEMENT_CHARACTER))?;
        }
        Ok(())
    }
}

/// Writes text into a [`CableName`], refusing what does not fit.
struct UnitWriter<'a>(&'a mut CableName);

impl fmt::Write for UnitWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for unit in s.encode_utf16() {
            let slot = self.0.units.get_mut(self.0.len).ok_or(fmt::Error)?;
            if self.0.len >= MAX_NAME_UNITS {
                return Err(fmt::Error);
            }
            *slot = unit;
            self.0.len += 1;
        }
        Ok(())
    }
}

/// One cable's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CableParameters {
    /// Its endpoint name (the topology filters' interface friendly name).
    pub name: CableName,
}

/// The device's parameters, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceParameters {
    count: usize,
    cables: [CableParameters; MAX_CABLES],
}

impl Default for DeviceParameters {
    fn default() -> Self {
        Self::read(&NoParameters, &|_, _| {})
    }
}

impl DeviceParameters {
    /// Reads and validates the parameters from `source`; every refused
    /// value is logged (`LogLevel::Error`, with the reason) and replaced
    /// by its default.
    pub fn read(source: &dyn ParameterSource, log: &dyn Fn(LogLevel, fmt::Arguments<'_>)) -> Self {
        let count = read_count(source, log);
        let mut cables = [CableParameters {
            name: CableName::default_for(1),
        }; MAX_CABLES];
        for (index, cable) in cables.iter_mut().enumerate() {
            cable.name = read_name(source, index + 1, log);
        }
        Self { count, cables }
    }

    /// The configured cables (1 to [`MAX_CABLES`]), cable 1 first.
    #[must_use]
    pub fn cables(&self) -> &[CableParameters] {
        self.cables.get(..self.count).unwrap_or(&[])
    }
}

/// `CableCount`: a `REG_DWORD` of 1 to [`MAX_CABLES`].
fn read_count(source: &dyn ParameterSource, log: &dyn Fn(LogLevel, fmt::Arguments<'_>)) -> usize {
    let refuse = |why: fmt::Arguments<'_>| {
        log(
            LogLevel::Error,
            format_args!(
                "parameter {CABLE_COUNT_VALUE} refused ({why}); using {DEFAULT_CABLE_COUNT} cable"
            ),
        );
        DEFAULT_CABLE_COUNT
    };
    match source.query(CABLE_COUNT_VALUE, &mut []) {
        RegistryValue::Missing => DEFAULT_CABLE_COUNT,
        RegistryValue::Dword(count) => match usize::try_from(count) {
            Ok(count @ 1..=MAX_CABLES) => count,
            _ => refuse(format_args!("{count} is not 1 to {MAX_CABLES}")),
        },
        RegistryValue::String(_) | RegistryValue::StringTooLong => {
            refuse(format_args!("a REG_SZ, not a REG_DWORD"))
        }
        RegistryValue::OtherType(kind) => refuse(format_args!(
            "registry type {kind}, not REG_DWORD ({REG_DWORD})"
        )),
    }
}

/// `Cable<number>Name`: a `REG_SZ` of 1 to [`MAX_NAME_UNITS`] units
/// without NULs.
fn read_name(
    source: &dyn ParameterSource,
    number: usize,
    log: &dyn Fn(LogLevel, fmt::Arguments<'_>),
) -> CableName {
    let default = CableName::default_for(number);
    let mut value_name = [0u8; 16];
    let Some(value_name) = cable_value_name(&mut value_name, number, "Name") else {
        return default;
    };
    let refuse = |why: fmt::Arguments<'_>| {
        log(
            LogLevel::Error,
            format_args!("parameter {value_name} refused ({why}); using \"{default}\""),
        );
        default
    };
    // One unit more than allowed, to tell "too long" from "just fits".
    let mut text = [0u16; MAX_NAME_UNITS + 1];
    match source.query(value_name, &mut text) {
        RegistryValue::Missing => default,
        RegistryValue::String(0) => refuse(format_args!("empty")),
        RegistryValue::String(len) if len > MAX_NAME_UNITS => {
            refuse(format_args!("longer than {MAX_NAME_UNITS} UTF-16 units"))
        }
        RegistryValue::StringTooLong => {
            refuse(format_args!("longer than {MAX_NAME_UNITS} UTF-16 units"))
        }
        RegistryValue::String(len) => {
            let units = text.get(..len).unwrap_or(&[]);
            if units.contains(&0) {
                return refuse(format_args!("holds a NUL"));
            }
            let mut name = CableName {
                units: [0; MAX_NAME_UNITS + 1],
                len,
            };
            if let Some(head) = name.units.get_mut(..len) {
                head.copy_from_slice(units);
            }
            name
        }
        RegistryValue::Dword(_) => refuse(format_args!("a REG_DWORD, not a REG_SZ")),
        RegistryValue::OtherType(kind) => {
            refuse(format_args!("registry type {kind}, not REG_SZ ({REG_SZ})"))
        }
    }
}

/// `Cable<number><suffix>` in `buffer`, as text.
fn cable_value_name<'a>(buffer: &'a mut [u8; 16], number: usize, suffix: &str) -> Option<&'a str> {
    struct Cursor<'b>(&'b mut [u8], usize);
    impl fmt::Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for byte in s.bytes() {
                *self.0.get_mut(self.1).ok_or(fmt::Error)? = byte;
                self.1 += 1;
            }
            Ok(())
        }
    }
    let mut cursor = Cursor(buffer, 0);
    fmt::write(&mut cursor, format_args!("Cable{number}{suffix}")).ok()?;
    let len = cursor.1;
    core::str::from_utf8(buffer.get(..len)?).ok()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, reason = "test assertions")]
mod tests {
    extern crate std;

    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::string::{String, ToString};
    use std::vec::Vec;

    use super::*;

    /// A registry key in memory.
    #[derive(Default)]
    struct Map(HashMap<&'static str, Stored>);

    enum Stored {
        Dword(u32),
        Text(String),
        Binary,
    }

    impl ParameterSource for Map {
        fn query(&self, name: &str, text: &mut [u16]) -> RegistryValue {
            match self.0.get(name) {
                None => RegistryValue::Missing,
                Some(Stored::Dword(v)) => RegistryValue::Dword(*v),
                Some(Stored::Binary) => RegistryValue::OtherType(3),
                Some(Stored::Text(s)) => {
                    let units: Vec<u16> = s.encode_utf16().collect();
                    text.get_mut(..units.len())
                        .map_or(RegistryValue::StringTooLong, |out| {
                            out.copy_from_slice(&units);
                            RegistryValue::String(units.len())
                        })
                }
            }
        }
    }

    fn read(map: &Map) -> (DeviceParameters, Vec<String>) {
        let logged = RefCell::new(Vec::new());
        let parameters = DeviceParameters::read(map, &|level, message| {
            assert_eq!(level, LogLevel::Error);
            logged.borrow_mut().push(message.to_string());
        });
        (parameters, logged.into_inner())
    }

    fn names(parameters: &DeviceParameters) -> Vec<String> {
        parameters
            .cables()
            .iter()
            .map(|c| c.name.to_string())
            .collect()
    }

    #[test]
    fn no_key_gives_one_default_cable_and_no_complaint() {
        let (parameters, logged) = read(&Map::default());
        assert_eq!(names(&parameters), ["rswavert cable 1"]);
        assert!(logged.is_empty(), "{logged:?}");
        assert_eq!(parameters, DeviceParameters::default());
    }

    #[test]
    fn count_and_names_are_taken() {
        let mut map = Map::default();
        map.0.insert("CableCount", Stored::Dword(4));
        map.0.insert("Cable2Name", Stored::Text("Game chat".into()));
        map.0
            .insert("Cable4Name", Stored::Text("Ä".repeat(MAX_NAME_UNITS)));
        let (parameters, logged) = read(&map);
        assert!(logged.is_empty(), "{logged:?}");
        assert_eq!(
            names(&parameters),
            [
                "rswavert cable 1".to_string(),
                "Game chat".to_string(),
                "rswavert cable 3".to_string(),
                "Ä".repeat(MAX_NAME_UNITS),
            ]
        );
        let eight = {
            map.0.insert("CableCount", Stored::Dword(8));
            read(&map).0
        };
        assert_eq!(eight.cables().len(), MAX_CABLES);
        assert_eq!(eight.cables()[7].name.to_string(), "rswavert cable 8");
        assert_eq!(
            eight.cables()[1].name.units_with_nul().last(),
            Some(&0),
            "the kernel's string carries its NUL"
        );
    }

    #[test]
    fn bad_counts_are_refused_with_a_reason() {
        for (stored, reason) in [
            (Stored::Dword(0), "0 is not 1 to 8"),
            (Stored::Dword(99), "99 is not 1 to 8"),
            (Stored::Dword(u32::MAX), "4294967295 is not 1 to 8"),
            (Stored::Text("4".into()), "a REG_SZ, not a REG_DWORD"),
            (Stored::Binary, "registry type 3"),
        ] {
            let mut map = Map::default();
            map.0.insert("CableCount", stored);
            let (parameters, logged) = read(&map);
            assert_eq!(parameters.cables().len(), 1);
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert!(logged[0].contains("CableCount refused"), "{logged:?}");
            assert!(logged[0].contains(reason), "{logged:?} lacks {reason}");
        }
        // The control: a good count is not refused.
        let mut map = Map::default();
        map.0.insert("CableCount", Stored::Dword(8));
        assert!(read(&map).1.is_empty());
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for (stored, reason) in [
            (
                Stored::Text("x".repeat(MAX_NAME_UNITS + 1)),
                "longer than 31",
            ),
            (Stored::Text("x".repeat(200)), "longer than 31"),
            (Stored::Text(String::new()), "empty"),
            (Stored::Text("a\0b".into()), "holds a NUL"),
            (Stored::Dword(7), "a REG_DWORD"),
            (Stored::Binary, "registry type 3"),
        ] {
            let mut map = Map::default();
            map.0.insert("CableCount", Stored::Dword(2));
            map.0.insert("Cable2Name", stored);
            let (parameters, logged) = read(&map);
            assert_eq!(names(&parameters), ["rswavert cable 1", "rswavert cable 2"]);
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert!(logged[0].contains("Cable2Name refused"), "{logged:?}");
            assert!(logged[0].contains(reason), "{logged:?} lacks {reason}");
        }
    }

    #[test]
    fn names_beyond_the_count_are_read_but_not_configured() {
        let mut map = Map::default();
        map.0.insert("Cable3Name", Stored::Text("third".into()));
        let (parameters, _) = read(&map);
        assert_eq!(parameters.cables().len(), 1);
        assert_eq!(parameters.cables[2].name.to_string(), "third");
    }
}
