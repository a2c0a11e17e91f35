//! The INF's `AddInterface` lines must name exactly the subdevices the
//! driver registers, each with exactly the interface categories its filter
//! descriptor lists: a mismatch means an endpoint that never appears.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc, reason = "test code")]

use std::collections::{BTreeMap, BTreeSet};

use portcls_sys::GUID;
use wavert_miniport::adapter::{Subdevice, SubdeviceKind, AC97_SUBDEVICES, SUBDEVICES};
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

#[test]
fn every_subdevice_has_its_interfaces_and_nothing_else() {
    assert_eq!(inf_interfaces("cable"), table(&SUBDEVICES));
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
    for s in &SUBDEVICES {
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
    for name in [
        "cable.i.topologyrender.addreg",
        "cable.i.topologycapture.addreg",
        "ac97.i.topologyrender.addreg",
        "ac97.i.topologycapture.addreg",
    ] {
        let reg = &sections[name];
        assert!(reg
            .iter()
            .any(|l| l.starts_with("HKR,EP\\0,%PKEY_AudioEndpoint_Association%")));
        assert!(reg.iter().any(|l| l.starts_with(
            "HKR,EP\\0,%PKEY_AudioEndpoint_Supports_EventDriven_Mode%,0x00010001,0x1"
        )));
    }
}
