//! The INF's `PKEY_AudioEngine_OEMFormat` of every endpoint must be the
//! bytes of the back-end's default format, the one `PROPOSEDATAFORMAT2`
//! answers and a wildcard intersection resolves toward: if either side
//! changes alone, this fails.
//!
//! Encoding (Learn, "`PKEY_AudioEngine_OEMFormat`", its `Sysfx.inf`
//! example): a `REG_BINARY` value (`AddReg` flag 0x00000001) holding
//! `VT_BLOB` (0x41) and the blob's size as two little-endian DWORDs, then
//! the `WAVEFORMATEXTENSIBLE`; the key is {E4870E26-3CC5-4CD2-BA46-CA0A9A70ED04},3
//! on the endpoint's `EP\0` subkey of its topology filter's interface.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc, reason = "test code")]

use std::collections::BTreeMap;
use std::sync::Arc;

use wavert_core::format::{AudioFormat, SampleType, WAVEFORMATEXTENSIBLE_SIZE};
use wavert_miniport::fake::FakePlatform;
use wavert_miniport::{ac97, cable, hda, Backend, Direction, DmaMode, VirtualCable};

const INX: &str = include_str!("../../inf/rswavert.inx");

/// `PKEY_AudioEngine_OEMFormat` (Learn, and `mmdeviceapi.h`).
const OEM_FORMAT_KEY: &str = "{E4870E26-3CC5-4CD2-BA46-CA0A9A70ED04},3";
/// `FLG_ADDREG_BINVALUETYPE`: the value is `REG_BINARY`.
const REG_BINARY: &str = "0x00000001";
/// `VT_BLOB`.
const VT_BLOB: u32 = 0x41;

/// Section name (lower case) -> its lines, comments and blanks removed.
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

/// The blob the INF writes for `model`'s `direction` endpoint.
fn oem_format_blob(inx: &str, model: &str, direction: Direction) -> Result<Vec<u8>, String> {
    let sections = sections(inx);
    let strings: BTreeMap<String, String> = sections
        .get("strings")
        .ok_or("no [Strings]")?
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )
        })
        .collect();
    let side = match direction {
        Direction::Render => "render",
        Direction::Capture => "capture",
    };
    let name = format!("{model}.i.topology{side}.addreg").to_ascii_lowercase();
    let section = sections.get(&name).ok_or_else(|| format!("no [{name}]"))?;
    let mut found = Vec::new();
    for line in section {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [root, subkey, key, flags, data @ ..] = fields.as_slice() else {
            continue;
        };
        let key = key
            .strip_prefix('%')
            .and_then(|k| k.strip_suffix('%'))
            .map_or_else(
                || Some(key.to_string()),
                |k| strings.get(&k.to_ascii_lowercase()).cloned(),
            );
        if (*root, *subkey, key.as_deref()) != ("HKR", "EP\\0", Some(OEM_FORMAT_KEY)) {
            continue;
        }
        if *flags != REG_BINARY {
            return Err(format!("[{name}]: flags {flags}, not REG_BINARY"));
        }
        let bytes: Result<Vec<u8>, _> = data.iter().map(|b| u8::from_str_radix(b, 16)).collect();
        found.push(bytes.map_err(|e| format!("[{name}]: {e}"))?);
    }
    match found.as_slice() {
        [blob] => Ok(blob.clone()),
        [] => Err(format!("[{name}]: no PKEY_AudioEngine_OEMFormat")),
        _ => Err(format!(
            "[{name}]: more than one PKEY_AudioEngine_OEMFormat"
        )),
    }
}

/// The bytes the INF must hold for `format`.
fn blob_of(format: &AudioFormat) -> Vec<u8> {
    let mut wfx = [0u8; WAVEFORMATEXTENSIBLE_SIZE];
    let len = format.write_waveformat(&mut wfx).unwrap();
    let mut blob = VT_BLOB.to_le_bytes().to_vec();
    blob.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
    blob.extend_from_slice(&wfx[..len]);
    blob
}

/// The default format of each model's endpoint, from the back-ends.
fn defaults() -> Vec<(&'static str, Direction, AudioFormat)> {
    let cable = VirtualCable::new(FakePlatform(Arc::default()), DmaMode::Looping);
    let mut out = Vec::new();
    for direction in [Direction::Render, Direction::Capture] {
        out.push(("Cable", direction, cable.default_format(direction)));
        // The AC'97's `Backend::default_format` answers this constant for
        // both directions (constructing the device needs its hardware).
        out.push(("Ac97", direction, ac97::filters::DEFAULT_FORMAT));
        // So does the HD Audio controller's (`hda::filters::DEFAULT_FORMAT`).
        out.push(("Hda", direction, hda::filters::DEFAULT_FORMAT));
    }
    out
}

/// Every endpoint whose INF blob is not `expected`'s bytes.
fn mismatches(inx: &str, expected: &[(&'static str, Direction, AudioFormat)]) -> Vec<String> {
    expected
        .iter()
        .filter_map(
            |(model, direction, format)| match oem_format_blob(inx, model, *direction) {
                Ok(blob) if blob == blob_of(format) => None,
                Ok(blob) => Some(format!("{model} {direction:?}: {blob:02X?}")),
                Err(e) => Some(format!("{model} {direction:?}: {e}")),
            },
        )
        .collect()
}

#[test]
fn every_endpoint_declares_its_back_ends_default_format() {
    let expected = defaults();
    assert_eq!(expected.len(), 6);
    assert_eq!(mismatches(INX, &expected), Vec::<String>::new());
    for (model, direction, format) in &expected {
        let blob = oem_format_blob(INX, model, *direction).unwrap();
        // The blob is a WAVEFORMATEXTENSIBLE the format parser reads back.
        assert_eq!(AudioFormat::parse(&blob[8..]), Ok(*format));
    }
}

#[test]
fn the_defaults_are_48_khz_stereo_24_in_32_and_16_bit() {
    let cable = VirtualCable::new(FakePlatform(Arc::default()), DmaMode::Looping);
    for direction in [Direction::Render, Direction::Capture] {
        let f = cable.default_format(direction);
        assert_eq!(
            (
                f.sample_rate(),
                f.channels(),
                f.container_bits(),
                f.valid_bits()
            ),
            (48_000, 2, 32, 24)
        );
        assert!(cable.accepts(direction, &f));
    }
    let f = ac97::filters::DEFAULT_FORMAT;
    assert_eq!(
        (
            f.sample_rate(),
            f.channels(),
            f.container_bits(),
            f.valid_bits()
        ),
        (48_000, 2, 16, 16)
    );
    assert!(ac97::filters::AC97_RANGE.contains(&f));
    assert_eq!(f.sample_type(), SampleType::Pcm);
    assert!(cable::filters::PCM24_RANGE.contains(&cable.default_format(Direction::Render)));
}

#[test]
fn the_check_fails_when_either_side_changes() {
    let expected = defaults();
    // The INF changed: 24 valid bits become 20 in the cable's blobs.
    let edited = INX.replace("08,00,20,00,16,00,18,00", "08,00,20,00,16,00,14,00");
    assert_ne!(edited, INX);
    let failed = mismatches(&edited, &expected);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|f| f.starts_with("Cable")), "{failed:?}");
    // One endpoint lost its line.
    let dropped: String = {
        let mut seen = false;
        INX.lines()
            .filter(|l| {
                let drop = !seen && l.contains("%PKEY_AudioEngine_OEMFormat%");
                seen |= drop;
                !drop
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let failed = mismatches(&dropped, &expected);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("no PKEY_AudioEngine_OEMFormat"),
        "{failed:?}"
    );
    // The back-end changed: a 16-bit cable default no longer matches.
    let sixteen = AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 16, 16).unwrap();
    let changed: Vec<_> = expected
        .iter()
        .map(|&(model, direction, format)| {
            (
                model,
                direction,
                if model == "Cable" { sixteen } else { format },
            )
        })
        .collect();
    assert_eq!(mismatches(INX, &changed).len(), 2);
    // A DWORD instead of REG_BINARY.
    let dword = INX.replace(
        "%PKEY_AudioEngine_OEMFormat%,0x00000001,",
        "%PKEY_AudioEngine_OEMFormat%,0x00010001,",
    );
    assert_eq!(mismatches(&dword, &expected).len(), 6);
}

/// The `PKEY_AudioEngine_OEMFormat` line of one topology interface section.
fn oem_line(inx: &str, section: &str) -> Option<String> {
    sections(inx)
        .get(section)?
        .iter()
        .find(|l| l.contains("%PKEY_AudioEngine_OEMFormat%"))
        .cloned()
}

#[test]
fn every_cable_declares_the_same_default_format_as_cable_one() {
    // Cable 1's blob is held to the back-end's default above; every other
    // cable (same back-end) must carry the same bytes.
    let differing = |inx: &str| -> Vec<String> {
        let mut out = Vec::new();
        for side in ["render", "capture"] {
            let first = oem_line(inx, &format!("cable.i.topology{side}.addreg"));
            assert!(first.is_some(), "cable 1 {side} has no OEM format");
            for n in 2..=wavert_miniport::adapter::MAX_CABLES {
                let section = format!("cable.i.topology{side}{n}.addreg");
                if oem_line(inx, &section) != first {
                    out.push(section);
                }
            }
        }
        out
    };
    assert_eq!(differing(INX), Vec::<String>::new());
    // The fault variant: cable 6's capture blob declaring 44.1 kHz.
    let at = INX.find("[Cable.I.TopologyCapture6.AddReg]").unwrap();
    let (head, tail) = INX.split_at(at);
    let tampered = format!("{head}{}", tail.replacen("80,BB,00,00", "44,AC,00,00", 1));
    assert_eq!(differing(&tampered), ["cable.i.topologycapture6.addreg"]);
}
