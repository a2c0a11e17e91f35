//! The INF's `AddInterface` lines must name exactly the subdevices the
//! driver registers, each with exactly the interface categories its filter
//! descriptor lists: a mismatch means an endpoint that never appears.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc, reason = "test code")]

use std::collections::{BTreeMap, BTreeSet};

use portcls_sys::GUID;
use wavert_miniport::adapter::{
    Subdevice, SubdeviceKind, AC97_SUBDEVICES, CABLE_SUBDEVICES, HDA_SUBDEVICES, MAX_CABLES,
};
use wavert_miniport::parameters::{DeviceParameters, ParameterSource, RegistryValue};
use wavert_miniport::Direction;
use wavert_miniport::{cable, filters};

const INX: &str = include_str!("../../inf/rswavert.inx");

/// `%NAME%` -> value from `[Strings]` (quotes removed); plain text stays.
fn resolve(strings: &BTreeMap<String, String>, token: &str) -> String {
    let token = token.trim();
    token
        .strip_prefix('%')
        .and_then(|t| t.strip_suffix('%'))
        .map_or_else(
            || token.trim_matches('"').to_string(),
            |key| {
                strings
                    .get(&key.to_ascii_lowercase())
                    .unwrap_or_else(|| panic!("no string {key}"))
                    .clone()
            },
        )
}

fn sections(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_ascii_lowercase();
            out.entry(current.clone()).or_default();
        } else {
            out.entry(current.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    out
}

fn guid_text(g: &GUID) -> String {
    format!(
        "{{{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}}}",
        g.Data1,
        g.Data2,
        g.Data3,
        g.Data4[0],
        g.Data4[1],
        g.Data4[2],
        g.Data4[3],
        g.Data4[4],
        g.Data4[5],
        g.Data4[6],
        g.Data4[7]
    )
}

/// reference string -> set of category GUID texts, from the INF's
/// `[<model>.NT.Interfaces]` section (`model` lower case).
fn inf_interfaces(model: &str) -> BTreeMap<String, BTreeSet<String>> {
    let sections = sections(INX);
    let strings: BTreeMap<String, String> = sections["strings"]
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )
        })
        .collect();
    let interfaces = sections
        .get(&format!("{model}.nt.interfaces"))
        .unwrap_or_else(|| panic!("[{model}.NT.Interfaces] section"));
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in interfaces {
        let (key, value) = line.split_once('=').unwrap();
        assert_eq!(key.trim().to_ascii_lowercase(), "addinterface", "{line}");
        let fields: Vec<&str> = value.split(',').collect();
        assert!(fields.len() >= 3, "{line}");
        let category = resolve(&strings, fields[0]).to_ascii_uppercase();
        let reference = resolve(&strings, fields[1]);
        let install = fields[2].trim().to_ascii_lowercase();
        // The install section exists and sets the proxy CLSID and a name.
        let add_reg = sections
            .get(&install)
            .unwrap_or_else(|| panic!("no section [{install}]"))
            .iter()
            .find_map(|l| {
                l.strip_prefix("AddReg")
                    .map(|r| r.trim_start_matches([' ', '=']).trim().to_ascii_lowercase())
            })
            .unwrap_or_else(|| panic!("[{install}] has no AddReg"));
        let reg = &sections[&add_reg];
        assert!(
            reg.iter().any(|l| l.contains(",CLSID,,%Proxy.CLSID%")),
            "[{add_reg}]"
        );
        assert!(
            reg.iter().any(|l| l.contains(",FriendlyName,,")),
            "[{add_reg}]"
        );
        out.entry(reference).or_default().insert(category);
    }
    assert_eq!(
        strings["proxy.clsid"],
        "{17CCA71B-ECD7-11D0-B908-00A0C9223196}"
    );
    out
}

fn table(subdevices: &[Subdevice]) -> BTreeMap<String, BTreeSet<String>> {
    subdevices
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.categories.iter().map(guid_text).collect(),
            )
        })
        .collect()
}

/// Every cable's subdevices, cable 1 first.
fn all_cable_subdevices() -> Vec<Subdevice> {
    CABLE_SUBDEVICES.iter().flatten().copied().collect()
}

#[test]
fn every_subdevice_has_its_interfaces_and_nothing_else() {
    // All eight cables: the INF cannot know how many the parameters ask for.
    assert_eq!(inf_interfaces("cable"), table(&all_cable_subdevices()));
    assert_eq!(all_cable_subdevices().len(), 4 * MAX_CABLES);
}

/// The `FriendlyName` an interface install section of `model` gives each
/// reference string, resolved.
fn friendly_names(model: &str) -> BTreeMap<String, String> {
    let sections = sections(INX);
    let strings = strings(&sections);
    let mut out = BTreeMap::new();
    for line in &sections[&format!("{model}.nt.interfaces")] {
        let fields: Vec<&str> = line.split_once('=').unwrap().1.split(',').collect();
        let reference = resolve(&strings, fields[1]);
        let install = fields[2].trim().to_ascii_lowercase();
        let add_reg = format!("{install}.addreg");
        let name = sections[&add_reg]
            .iter()
            .find_map(|l| l.strip_prefix("HKR,,FriendlyName,,"))
            .unwrap_or_else(|| panic!("[{add_reg}] has no FriendlyName"));
        out.insert(reference, resolve(&strings, name));
    }
    out
}

fn strings(sections: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, String> {
    sections["strings"]
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )
        })
        .collect()
}

/// Two interfaces of one cable may share a name (render and capture
/// topology: Windows tells the endpoints apart by direction), but no two
/// cables' interfaces of one kind do, so every endpoint's name tells its
/// cable.
fn names_tell_cables_apart(names: &BTreeMap<String, String>) -> Result<(), String> {
    for kind in 0..4 {
        let mut seen = BTreeMap::new();
        for (cable, table) in CABLE_SUBDEVICES.iter().enumerate() {
            let name = names
                .get(table[kind].name)
                .ok_or_else(|| format!("{} has no friendly name", table[kind].name))?;
            if let Some(other) = seen.insert(name.clone(), cable + 1) {
                return Err(format!(
                    "cables {other} and {} share the name {name:?}",
                    cable + 1
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_cable_has_friendly_names_of_its_own() {
    let names = friendly_names("cable");
    names_tell_cables_apart(&names).unwrap();
    assert_eq!(names["TopologyRender3"], "rswavert cable 3");
    assert_eq!(names["WaveCapture8"], "rswavert cable 8 input");
    // The fault variant: one cable named like another is caught.
    let mut tampered = names.clone();
    tampered.insert("TopologyRender5".into(), names["TopologyRender2"].clone());
    assert!(names_tell_cables_apart(&tampered)
        .unwrap_err()
        .contains("cables 2 and 5"));
}

/// `[Cable.HW.AddReg]` as the registry key the installer writes, for the
/// driver's own parameter reader.
struct HwKey(BTreeMap<String, (u32, String)>);

impl HwKey {
    fn of(inx: &str) -> Self {
        let sections = sections(inx);
        let strings = strings(&sections);
        let hw = &sections["cable.nt.hw"];
        assert!(
            hw.iter()
                .any(|l| l.replace(' ', "") == "AddReg=Rswavert.HW.AddReg,Cable.HW.AddReg"),
            "{hw:?}"
        );
        let mut values = BTreeMap::new();
        for line in &sections["cable.hw.addreg"] {
            let fields: Vec<&str> = line.splitn(5, ',').collect();
            assert_eq!((fields[0], fields[1]), ("HKR", ""), "{line}");
            let flags = u32::from_str_radix(fields[3].trim_start_matches("0x"), 16).unwrap();
            // FLG_ADDREG_NOCLOBBER (0x2): a reinstall keeps what the user set.
            assert_eq!(flags & 0x2, 0x2, "{line} would overwrite the user's value");
            values.insert(
                fields[2].to_string(),
                (flags & !0x2, resolve(&strings, fields[4])),
            );
        }
        Self(values)
    }
}

impl ParameterSource for HwKey {
    fn query(&self, name: &str, text: &mut [u16]) -> RegistryValue {
        match self.0.get(name) {
            None => RegistryValue::Missing,
            // FLG_ADDREG_TYPE_DWORD (0x00010001 without NOCLOBBER).
            Some((0x0001_0001, value)) => RegistryValue::Dword(value.parse().unwrap()),
            // FLG_ADDREG_TYPE_SZ (0).
            Some((0, value)) => {
                let units: Vec<u16> = value.encode_utf16().collect();
                text.get_mut(..units.len())
                    .map_or(RegistryValue::StringTooLong, |out| {
                        out.copy_from_slice(&units);
                        RegistryValue::String(units.len())
                    })
            }
            Some((flags, _)) => RegistryValue::OtherType(*flags),
        }
    }
}

fn read_parameters(inx: &str) -> (DeviceParameters, Vec<String>) {
    let logged = std::cell::RefCell::new(Vec::new());
    let parameters = DeviceParameters::read(&HwKey::of(inx), &|_, message| {
        logged.borrow_mut().push(message.to_string());
    });
    (parameters, logged.into_inner())
}

#[test]
fn the_installers_default_parameters_are_ones_the_driver_takes() {
    let (parameters, refused) = read_parameters(INX);
    assert!(
        refused.is_empty(),
        "the INF's defaults are refused: {refused:?}"
    );
    assert_eq!(parameters.cables().len(), 1);
    let key = HwKey::of(INX);
    for n in 1..=MAX_CABLES {
        let name = &key.0[&format!("Cable{n}Name")].1;
        assert_eq!(name, &format!("rswavert cable {n}"));
        // The topology interfaces' name in the INF is the default the
        // driver puts in their place at start.
        assert_eq!(
            &friendly_names("cable")[CABLE_SUBDEVICES[n - 1][1].name],
            name
        );
    }
    // The fault variant: an INF writing 99 cables is refused by the driver.
    let tampered = INX.replace(
        "HKR,,CableCount,0x00010003,1",
        "HKR,,CableCount,0x00010003,99",
    );
    assert_ne!(tampered, INX);
    let (parameters, refused) = read_parameters(&tampered);
    assert_eq!(parameters.cables().len(), 1);
    assert!(
        refused.iter().any(|r| r.contains("99 is not 1 to 8")),
        "{refused:?}"
    );
}

#[test]
fn every_ac97_subdevice_has_its_interfaces_and_nothing_else() {
    assert_eq!(inf_interfaces("ac97"), table(&AC97_SUBDEVICES));
    let sections = sections(INX);
    let models = sections
        .iter()
        .find(|(k, _)| k.starts_with("models.nt"))
        .map(|(_, v)| v)
        .expect("[Models...] section");
    assert!(models
        .iter()
        .any(|l| l.ends_with("= Ac97, PCI\\VEN_8086&DEV_2415")));
    assert!(sections["ac97.nt.services"]
        .iter()
        .any(|l| l.starts_with("AddService = rswavert,")));
}

#[test]
fn every_hda_subdevice_has_its_interfaces_and_nothing_else() {
    assert_eq!(inf_interfaces("hda"), table(&HDA_SUBDEVICES));
    let sections = sections(INX);
    let models = sections
        .iter()
        .find(|(k, _)| k.starts_with("models.nt"))
        .map(|(_, v)| v)
        .expect("[Models...] section");
    // QEMU's intel-hda (ICH6) and ich9-intel-hda, each with its own
    // description, one install section.
    for (description, id) in [
        ("%HdaIch6.DeviceDesc%", "PCI\\VEN_8086&DEV_2668"),
        ("%HdaIch9.DeviceDesc%", "PCI\\VEN_8086&DEV_293E"),
    ] {
        assert!(
            models
                .iter()
                .any(|l| l.starts_with(description) && l.ends_with(&format!("= Hda, {id}"))),
            "{id}: {models:?}"
        );
    }
    let strings = strings(&sections);
    assert_ne!(strings["hdaich6.devicedesc"], strings["hdaich9.devicedesc"]);
    assert!(sections["hda.nt.services"]
        .iter()
        .any(|l| l.starts_with("AddService = rswavert,")));
}

#[test]
fn hda_subdevice_categories_are_the_filter_descriptors_categories() {
    use wavert_miniport::hda::filters as hda;
    for s in &HDA_SUBDEVICES {
        let descriptor = match s.kind {
            SubdeviceKind::Wave(Direction::Render) => &hda::HDA_WAVE_RENDER_FILTER,
            SubdeviceKind::Wave(Direction::Capture) => &hda::HDA_WAVE_CAPTURE_FILTER,
            SubdeviceKind::Topology(Direction::Render) => &filters::TOPOLOGY_RENDER_FILTER,
            SubdeviceKind::Topology(Direction::Capture) => &filters::TOPOLOGY_CAPTURE_FILTER,
        };
        // SAFETY: the descriptor's category table has CategoryCount entries.
        let categories = unsafe {
            std::slice::from_raw_parts(descriptor.Categories, descriptor.CategoryCount as usize)
        };
        assert_eq!(categories, s.categories, "{}", s.name);
        let utf16: Vec<u16> = s.name.encode_utf16().chain([0]).collect();
        assert_eq!(utf16, s.name_utf16, "{}", s.name);
    }
}

#[test]
fn ac97_subdevice_categories_are_the_filter_descriptors_categories() {
    use wavert_miniport::ac97::filters as ac97;
    for s in &AC97_SUBDEVICES {
        let descriptor = match s.kind {
            SubdeviceKind::Wave(Direction::Render) => &ac97::AC97_WAVE_RENDER_FILTER,
            SubdeviceKind::Wave(Direction::Capture) => &ac97::AC97_WAVE_CAPTURE_FILTER,
            SubdeviceKind::Topology(Direction::Render) => &filters::TOPOLOGY_RENDER_FILTER,
            SubdeviceKind::Topology(Direction::Capture) => &filters::TOPOLOGY_CAPTURE_FILTER,
        };
        // SAFETY: the descriptor's category table has CategoryCount entries.
        let categories = unsafe {
            std::slice::from_raw_parts(descriptor.Categories, descriptor.CategoryCount as usize)
        };
        assert_eq!(categories, s.categories, "{}", s.name);
        let utf16: Vec<u16> = s.name.encode_utf16().chain([0]).collect();
        assert_eq!(utf16, s.name_utf16, "{}", s.name);
    }
}

#[test]
fn subdevice_categories_are_the_filter_descriptors_categories() {
    for s in &all_cable_subdevices() {
        let descriptor = match s.kind {
            SubdeviceKind::Wave(Direction::Render) => &cable::filters::WAVE_RENDER_FILTER,
            SubdeviceKind::Wave(Direction::Capture) => &cable::filters::WAVE_CAPTURE_FILTER,
            SubdeviceKind::Topology(Direction::Render) => &filters::TOPOLOGY_RENDER_FILTER,
            SubdeviceKind::Topology(Direction::Capture) => &filters::TOPOLOGY_CAPTURE_FILTER,
        };
        // SAFETY: the descriptor's category table has CategoryCount entries.
        let categories = unsafe {
            std::slice::from_raw_parts(descriptor.Categories, descriptor.CategoryCount as usize)
        };
        assert_eq!(categories, s.categories, "{}", s.name);
        let utf16: Vec<u16> = s.name.encode_utf16().chain([0]).collect();
        assert_eq!(utf16, s.name_utf16, "{}", s.name);
    }
}

#[test]
fn topology_interfaces_carry_the_endpoint_properties() {
    let sections = sections(INX);
    let cables = CABLE_SUBDEVICES
        .iter()
        .flatten()
        .filter(|s| matches!(s.kind, SubdeviceKind::Topology(_)))
        .map(|s| format!("cable.i.{}.addreg", s.name.to_ascii_lowercase()));
    let pci = [
        "ac97.i.topologyrender.addreg".to_owned(),
        "ac97.i.topologycapture.addreg".to_owned(),
        "hda.i.topologyrender.addreg".to_owned(),
        "hda.i.topologycapture.addreg".to_owned(),
    ];
    let names: Vec<String> = cables.chain(pci).collect();
    assert_eq!(names.len(), 2 * MAX_CABLES + 4);
    for name in &names {
        let reg = &sections[name];
        assert!(reg
            .iter()
            .any(|l| l.starts_with("HKR,EP\\0,%PKEY_AudioEndpoint_Association%")));
        assert!(reg.iter().any(|l| l.starts_with(
            "HKR,EP\\0,%PKEY_AudioEndpoint_Supports_EventDriven_Mode%,0x00010001,0x1"
        )));
    }
}

/// `DEFINE_DEVPROPKEY(name, l, w1, w2, b1..b8, pid)` of `name` in `header`.
fn devpropkey_in(header: &str, name: &str) -> Option<portcls_sys::DEVPROPKEY> {
    let line = header
        .lines()
        .find(|l| l.contains(&format!("DEFINE_DEVPROPKEY({name},")))?;
    let args = line.split_once('(')?.1.split_once(')')?.0;
    let numbers: Vec<u64> = args
        .split(',')
        .skip(1)
        .map(|n| {
            let n = n.trim();
            n.strip_prefix("0x")
                .map_or_else(|| n.parse().ok(), |hex| u64::from_str_radix(hex, 16).ok())
        })
        .collect::<Option<_>>()?;
    let [l, w1, w2, b @ .., pid] = numbers.as_slice() else {
        return None;
    };
    let b: Vec<u8> = b
        .iter()
        .map(|&x| u8::try_from(x).ok())
        .collect::<Option<_>>()?;
    Some(portcls_sys::DEVPROPKEY {
        fmtid: GUID {
            Data1: u32::try_from(*l).ok()?,
            Data2: u16::try_from(*w1).ok()?,
            Data3: u16::try_from(*w2).ok()?,
            Data4: b.try_into().ok()?,
        },
        pid: u32::try_from(*pid).ok()?,
    })
}

#[test]
fn the_interface_friendly_name_key_is_mingws() {
    // The kernel headers the ABI check compiles lack devpkey.h (a user-mode
    // header), so the key the driver sets is held to it here.
    let path = "/usr/share/mingw-w64/include/devpkey.h";
    let header = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (apt-get install mingw-w64-common)"));
    let name = "DEVPKEY_DeviceInterface_FriendlyName";
    assert_eq!(
        devpropkey_in(&header, name),
        Some(portcls_sys::DEVPKEY_DeviceInterface_FriendlyName)
    );
    // The fault variant: another pid is told apart.
    let tampered = header.replace("0x6f,0xef,0x48,0x22, 2);", "0x6f,0xef,0x48,0x22, 3);");
    assert_ne!(tampered, header, "the header's line changed shape");
    assert_ne!(
        devpropkey_in(&tampered, name),
        Some(portcls_sys::DEVPKEY_DeviceInterface_FriendlyName)
    );
}
