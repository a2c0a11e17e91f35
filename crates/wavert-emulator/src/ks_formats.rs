//! The format rules of the HLK audio tests, applied through [`crate::ks`]
//! to a wave filter's `KSPROPERTY_PIN_PROPOSEDATAFORMAT` and
//! `_PROPOSEDATAFORMAT2` and its intersection.
//!
//! Written from the documented contracts (Learn:
//! "`KSPROPERTY_PIN_PROPOSEDATAFORMAT`", "`KSPROPERTY_PIN_PROPOSEDATAFORMAT2`",
//! "`PKEY_AudioEngine_OEMFormat`"; the HLK's `IsFormatSupported` helper,
//! Windows-driver-samples `audio/tests/PinResourceHelpers/PropertyHelper.cpp`,
//! which asks `IKsFormatSupport`, i.e. this property, and caches the answers
//! as the pin's supported formats):
//!
//! * **proposal <=> stream**: over a matrix of formats on both sides of the
//!   advertised ranges ([`proposal_matrix`]), a SET of
//!   `KSPROPERTY_PIN_PROPOSEDATAFORMAT` answers `STATUS_SUCCESS` exactly
//!   when `NewStream` opens a stream with the same bytes, and
//!   `STATUS_NO_MATCH` otherwise.
//! * **advertised formats accepted**: every format the pin's ranges admit
//!   ([`crate::hlk::advertised_formats`], 24 bits in both containers) at
//!   each range's channel count is (a range names the most channels, not
//!   the fewest).
//! * **proposal while busy**: with the pin's one instance open, proposals
//!   still answer (the endpoint builder asks while a stream runs).
//! * **default format per mode**: `KSPROPERTY_PIN_PROPOSEDATAFORMAT2`
//!   answers, for DEFAULT, RAW and no mode attribute, one format flagged
//!   `KSDATAFORMAT_ATTRIBUTES` and followed by the request's attribute
//!   list; the format is the expected default (the INF's `OEMFormat`) and is
//!   itself accepted; an unknown mode is `STATUS_NOT_SUPPORTED`.
//! * **wildcard intersection**: a bare `KSDATARANGE` and a
//!   `KSDATARANGE_AUDIO` allowing everything both intersect to that default
//!   format, not the corner of the ranges.
//! * **modes in the ranges**: the host pin's ranges are flagged
//!   `KSDATARANGE_ATTRIBUTES` and followed by the mode attribute list, no
//!   other pin's are ([`crate::range_table::check_range_attributes`]).

use std::sync::Arc;

use portcls_sys::{
    IMiniportWaveRT, KSPROPSETID_Pin, GUID, KSDATAFORMAT_ATTRIBUTES,
    KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATAFORMAT_TYPE_AUDIO, KSPROPERTY_PIN_PROPOSEDATAFORMAT,
    KSPROPERTY_PIN_PROPOSEDATAFORMAT2, KSPROPERTY_TYPE_BASICSUPPORT, KSPROPERTY_TYPE_GET,
    KSPROPERTY_TYPE_SET, NTSTATUS, PCFILTER_DESCRIPTOR, STATUS_BUFFER_OVERFLOW,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED, STATUS_NO_MATCH, STATUS_SUCCESS,
};
use wavert_com::ComPtr;
use wavert_core::format::{AudioFormat, SampleType, MAX_CHANNELS};
use wavert_core::range::{KSDATAFORMAT_SIZE, KSDATARANGE_AUDIO_PADDED_SIZE};
use wavert_miniport::fake::mode_attribute_list;

use crate::engine::{
    data_ranges, intersect_client_range, ks_data_format_bytes, pins, EngineError, FormatRequest,
    Stream,
};
use crate::hlk::{advertised_formats, Finding};
use crate::ks::{pin_instance, KsFilter, Property, Target};
use crate::machine::Machine;
use crate::modes::{get_modes, mode_name, KNOWN_MODES};
use crate::range_table::check_range_attributes;

const fn finding(rule: String, outcome: Result<(), String>) -> Finding {
    Finding { rule, outcome }
}

const fn pin_property(id: u32, verb: u32) -> Property {
    Property {
        set: KSPROPSETID_Pin,
        id,
        verb,
        target: Target::Filter,
    }
}

/// `KSPROPERTY_PIN_PROPOSEDATAFORMAT` (SET) of `format_bytes` (a
/// `KSDATAFORMAT` + WAVEFORMATEX(TENSIBLE)) on `pin`: the status.
#[must_use]
pub fn propose_format(filter: &KsFilter, pin: u32, format_bytes: &[u8]) -> NTSTATUS {
    let mut value = format_bytes.to_vec();
    filter
        .request(
            &pin_property(KSPROPERTY_PIN_PROPOSEDATAFORMAT, KSPROPERTY_TYPE_SET),
            &pin_instance(pin),
            &mut value,
        )
        .status
}

/// `KSPROPERTY_PIN_PROPOSEDATAFORMAT2` (GET) on `pin` with `list` after
/// the `KSP_PIN`: first the size query, then the answer.
///
/// # Errors
///
/// The status of whichever step failed.
pub fn proposed_format_for(filter: &KsFilter, pin: u32, list: &[u8]) -> Result<Vec<u8>, NTSTATUS> {
    let property = pin_property(KSPROPERTY_PIN_PROPOSEDATAFORMAT2, KSPROPERTY_TYPE_GET);
    let mut instance = pin_instance(pin);
    instance.extend_from_slice(list);
    let size = filter.request(&property, &instance, &mut []);
    if size.status != STATUS_BUFFER_OVERFLOW {
        return Err(size.status);
    }
    let mut value = vec![0u8; size.value_size as usize];
    let reply = filter.request(&property, &instance, &mut value);
    if reply.status != STATUS_SUCCESS {
        return Err(reply.status);
    }
    value.truncate(reply.value_size as usize);
    Ok(value)
}

/// The standard rates a sweep uses.
const RATES: [u32; 11] = [
    8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000, 176_400, 192_000,
];

/// The formats a proposal sweep tries on `pin`.
///
/// Every PCM layout (8, 16, 24 packed, 24 in 32, 32 bits) and 32-bit
/// float, at 1, 2, the pin's most and one more channel (up to 8), at every
/// standard rate: what the pin advertises and what lies just beyond it.
#[must_use]
pub fn proposal_matrix(description: &'static PCFILTER_DESCRIPTOR, pin: u32) -> Vec<AudioFormat> {
    let most = pins(description).get(pin as usize).map_or(2, |p| {
        data_ranges(p)
            .iter()
            .filter_map(|r| r.get(64..68))
            .filter_map(|b| b.try_into().ok().map(u32::from_le_bytes))
            .max()
            .unwrap_or(2)
    });
    let most = u16::try_from(most)
        .unwrap_or(MAX_CHANNELS)
        .min(MAX_CHANNELS);
    let mut channels = vec![1, 2, most, (most + 1).min(MAX_CHANNELS)];
    channels.sort_unstable();
    channels.dedup();
    let layouts = [
        (SampleType::Pcm, 8, 8),
        (SampleType::Pcm, 16, 16),
        (SampleType::Pcm, 24, 24),
        (SampleType::Pcm, 32, 24),
        (SampleType::Pcm, 32, 32),
        (SampleType::Float, 32, 32),
    ];
    let mut out = Vec::new();
    for &(sample_type, container, valid) in &layouts {
        for &ch in &channels {
            for rate in RATES {
                if let Ok(f) = AudioFormat::extensible(sample_type, ch, rate, container, valid) {
                    out.push(f);
                }
            }
        }
    }
    out
}

/// `format` for a rule's message.
fn describe(format: &AudioFormat) -> String {
    format!(
        "{} Hz {}{}{} x{}",
        format.sample_rate(),
        format.valid_bits(),
        if format.container_bits() == format.valid_bits() {
            String::new()
        } else {
            format!(" in {}", format.container_bits())
        },
        if format.sample_type() == SampleType::Float {
            " float"
        } else {
            "-bit"
        },
        format.channels()
    )
}

/// Whether `NewStream` opens a stream with `bytes` (closed again at once).
fn opens(
    machine: &Arc<Machine>,
    wave: &ComPtr<IMiniportWaveRT>,
    pin: u32,
    capture: bool,
    bytes: &[u8],
) -> Result<bool, String> {
    match Stream::open(machine, wave, pin, capture, bytes) {
        Ok(stream) => {
            stream.close().map_err(|e| e.to_string())?;
            Ok(true)
        }
        Err(EngineError::Call { .. }) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Joins the first few of `problems` into one line.
fn summary(problems: &[String]) -> Result<(), String> {
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = problems.iter().take(6).map(String::as_str).collect();
    Err(format!(
        "{} of them: {}{}",
        problems.len(),
        shown.join("; "),
        if problems.len() > shown.len() {
            "; ..."
        } else {
            ""
        }
    ))
}

/// The proposal rules: proposal <=> stream, advertised formats accepted,
/// proposals while the pin is busy.
fn proposal_rules(
    machine: &Arc<Machine>,
    wave: &ComPtr<IMiniportWaveRT>,
    filter: &KsFilter,
    pin: u32,
    capture: bool,
) -> Vec<Finding> {
    let matrix = proposal_matrix(filter.description(), pin);
    let mut mismatches = Vec::new();
    let mut accepted_any = None;
    for format in &matrix {
        let bytes = ks_data_format_bytes(format);
        let status = propose_format(filter, pin, &bytes);
        let opened = match opens(machine, wave, pin, capture, &bytes) {
            Ok(opened) => opened,
            Err(e) => {
                mismatches.push(format!("{}: {e}", describe(format)));
                continue;
            }
        };
        match (status, opened) {
            (STATUS_SUCCESS, true) => accepted_any = accepted_any.or(Some(bytes)),
            (STATUS_NO_MATCH, false) => {}
            (status, opened) => mismatches.push(format!(
                "{}: proposal {status:#010x}, stream {}",
                describe(format),
                if opened { "opens" } else { "refused" }
            )),
        }
    }
    let mut findings = vec![finding(
        format!(
            "PROPOSEDATAFORMAT accepts exactly what NewStream opens ({} formats)",
            matrix.len()
        ),
        summary(&mismatches),
    )];

    // A KSDATARANGE_AUDIO names the most channels, not the fewest: a pin
    // may refuse fewer (SYSVAD's host pins advertise up to 2 and open
    // stereo only; so does the AC'97). What a range surely admits is its
    // depths and rates at its channel count; the proposal rule above holds
    // the rest to NewStream.
    let advertised: Vec<FormatRequest> = advertised_formats(filter.description(), pin)
        .into_iter()
        .filter(|request| {
            range_channels(filter.description(), pin, request) == Some(request.channels)
        })
        .collect();
    let refused: Vec<String> = advertised
        .iter()
        .filter_map(|request| {
            let Some(format) = request.specific_format() else {
                return Some(format!("{request:?}: no such format"));
            };
            let status = propose_format(filter, pin, &ks_data_format_bytes(&format));
            (status != STATUS_SUCCESS).then(|| format!("{}: {status:#010x}", describe(&format)))
        })
        .collect();
    findings.push(finding(
        format!(
            "every advertised format is accepted ({} formats)",
            advertised.len()
        ),
        if advertised.is_empty() {
            Err("no advertised format".to_owned())
        } else {
            summary(&refused)
        },
    ));

    let busy = accepted_any
        .ok_or_else(|| "no format is accepted".to_owned())
        .and_then(|bytes| {
            let stream = Stream::open(machine, wave, pin, capture, &bytes)
                .map_err(|e| format!("open: {e}"))?;
            let second = Stream::open(machine, wave, pin, capture, &bytes);
            let outcome = match second {
                Err(EngineError::Call {
                    status: STATUS_INSUFFICIENT_RESOURCES,
                    ..
                }) => {
                    let status = propose_format(filter, pin, &bytes);
                    if status == STATUS_SUCCESS {
                        Ok(())
                    } else {
                        Err(format!("proposal while busy: {status:#010x}"))
                    }
                }
                Err(e) => Err(format!("a second NewStream: {e}, not busy")),
                Ok(second) => {
                    let _ = second.close();
                    Err("a second stream opened on a one-instance pin".to_owned())
                }
            };
            stream.close().map_err(|e| format!("close: {e}"))?;
            outcome
        });
    findings.push(finding(
        "PROPOSEDATAFORMAT answers while the pin's instance is open".to_owned(),
        busy,
    ));
    findings
}

/// The most channels of the ranges of `pin` that admit `request`'s sample
/// type, depth and rate.
fn range_channels(
    description: &'static PCFILTER_DESCRIPTOR,
    pin: u32,
    request: &FormatRequest,
) -> Option<u16> {
    let float_guid = KSDATAFORMAT_SUBTYPE_IEEE_FLOAT.to_bytes();
    pins(description)
        .get(pin as usize)
        .map(|p| data_ranges(p))
        .unwrap_or_default()
        .iter()
        .filter_map(|range| {
            let field = |at: usize| {
                range
                    .get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes)
            };
            let float = range.get(32..48) == Some(&float_guid[..]);
            let bits = u32::from(request.bits);
            let admits = float == request.float
                && (field(68)?..=field(72)?).contains(&bits)
                && (field(76)?..=field(80)?).contains(&request.rate);
            admits.then(|| field(64)).flatten()
        })
        .max()
        .and_then(|most| u16::try_from(most).ok())
}

/// `n` rounded up to a multiple of 8.
const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Checks one `PROPOSEDATAFORMAT2` answer against the request's `list`:
/// the format it holds.
fn parse_proposed(answer: &[u8], list: &[u8]) -> Result<AudioFormat, String> {
    let field = |at: usize| {
        answer
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| format!("answer of {} bytes", answer.len()))
    };
    let size = field(0)? as usize;
    if field(4)? & KSDATAFORMAT_ATTRIBUTES == 0 {
        return Err("KSDATAFORMAT_ATTRIBUTES not set".to_owned());
    }
    let format = answer
        .get(KSDATAFORMAT_SIZE..size)
        .ok_or_else(|| format!("FormatSize {size} beyond the answer"))
        .and_then(|wfx| AudioFormat::parse(wfx).map_err(|e| format!("{e:?}")))?;
    if answer.get(align8(size)..) != Some(list) {
        return Err("the attribute list is not echoed after the format".to_owned());
    }
    Ok(format)
}

/// The default-format rules: `PROPOSEDATAFORMAT2` per mode and the wildcard
/// intersection, against `expected` when given (the INF's `OEMFormat`).
fn default_format_rules(
    wave: &ComPtr<IMiniportWaveRT>,
    filter: &KsFilter,
    pin: u32,
    expected: Option<&AudioFormat>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut answered = Vec::new();
    let mut problems = Vec::new();
    // The modes the engine asks about are the pin's own (GetModes), and an
    // empty list; every other mode is one the pin lacks.
    let modes = get_modes(wave, pin).unwrap_or_else(|e| {
        problems.push(e.to_string());
        Vec::new()
    });
    let asked = std::iter::once(("no mode".to_owned(), None))
        .chain(modes.iter().map(|mode| (mode_name(mode), Some(*mode))));
    for (name, mode) in asked {
        let list = mode_attribute_list(mode.as_slice());
        match proposed_format_for(filter, pin, &list) {
            Ok(answer) => match parse_proposed(&answer, &list) {
                Ok(format) => answered.push((name, format)),
                Err(e) => problems.push(format!("{name}: {e}")),
            },
            Err(status) => problems.push(format!("{name}: {status:#010x}")),
        }
    }
    let default = answered.first().map(|(_, f)| *f);
    if let Some(first) = default {
        for (name, format) in &answered {
            if format != &first {
                problems.push(format!("{name}: {} differs", describe(format)));
            }
        }
        if let Some(expected) = expected {
            if &first != expected {
                problems.push(format!(
                    "{} instead of {}",
                    describe(&first),
                    describe(expected)
                ));
            }
        }
        let status = propose_format(filter, pin, &ks_data_format_bytes(&first));
        if status != STATUS_SUCCESS {
            problems.push(format!("its own proposal: {status:#010x}"));
        }
    }
    // A mode the pin lacks (GetModes does not list it: a well-known one, or
    // one nobody defines) is refused as NewStream refuses it.
    let unknown = GUID::from_u128(0x0123_4567_89AB_CDEF_0123_4567_89AB_CDEF);
    let lacking = KNOWN_MODES
        .iter()
        .map(|&(mode, _)| mode)
        .chain(std::iter::once(unknown))
        .filter(|mode| !modes.contains(mode));
    for mode in lacking {
        match proposed_format_for(filter, pin, &mode_attribute_list(&[mode])) {
            Err(STATUS_NOT_SUPPORTED) => {}
            other => problems.push(format!(
                "{}, which GetModes does not list: {other:?}",
                mode_name(&mode)
            )),
        }
    }
    let basic = filter.request(
        &pin_property(
            KSPROPERTY_PIN_PROPOSEDATAFORMAT2,
            KSPROPERTY_TYPE_BASICSUPPORT,
        ),
        &pin_instance(pin),
        &mut [0u8; 4],
    );
    if basic.status != STATUS_SUCCESS {
        problems.push(format!("basic support: {:#010x}", basic.status));
    }
    findings.push(finding(
        "PROPOSEDATAFORMAT2 answers the default format for every mode".to_owned(),
        summary(&problems),
    ));

    let target = expected.copied().or(default);
    let wildcard = target
        .ok_or_else(|| "no default format to compare with".to_owned())
        .and_then(|target| {
            let mut problems = Vec::new();
            for (name, client) in [
                ("bare KSDATARANGE", wildcard_data_range()),
                (
                    "KSDATARANGE_AUDIO allowing everything",
                    everything_data_range(),
                ),
            ] {
                match intersect_client_range(wave, filter.description(), pin, &client) {
                    Ok((format, _)) if format == target => {}
                    Ok((format, _)) => problems.push(format!("{name}: {}", describe(&format))),
                    Err(e) => problems.push(format!("{name}: {e}")),
                }
            }
            summary(&problems)
        });
    findings.push(finding(
        "a wildcard intersection gives the default format".to_owned(),
        wildcard,
    ));
    findings
}

/// A bare `KSDATARANGE` (64 bytes): audio, any sub-format, any specifier.
#[must_use]
pub fn wildcard_data_range() -> Vec<u8> {
    let mut bytes = vec![0u8; KSDATAFORMAT_SIZE];
    bytes[0..4].copy_from_slice(&64u32.to_le_bytes());
    bytes[16..32].copy_from_slice(&KSDATAFORMAT_TYPE_AUDIO.to_bytes());
    bytes
}

/// A `KSDATARANGE_AUDIO` that allows every channel count, depth and rate.
#[must_use]
pub fn everything_data_range() -> Vec<u8> {
    let mut bytes = wildcard_data_range();
    bytes.resize(KSDATARANGE_AUDIO_PADDED_SIZE, 0);
    let size = u32::try_from(KSDATARANGE_AUDIO_PADDED_SIZE).unwrap_or(0);
    bytes[0..4].copy_from_slice(&size.to_le_bytes());
    for (at, value) in [
        (64, u32::MAX),
        (68, 0),
        (72, u32::MAX),
        (76, 0),
        (80, u32::MAX),
    ] {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    bytes
}

/// Every format rule on the wave filter `filter` (whose miniport is
/// `wave`) and its host `pin`; `expected` is the default format the INF
/// declares, when known.
#[must_use]
pub fn check_wave_filter_formats(
    machine: &Arc<Machine>,
    wave: &ComPtr<IMiniportWaveRT>,
    filter: &KsFilter,
    pin: u32,
    capture: bool,
    expected: Option<&AudioFormat>,
) -> Vec<Finding> {
    let mut findings = vec![finding(
        "the host pin's ranges name the signal-processing mode attribute, no other pin's do"
            .to_owned(),
        check_range_attributes(filter.description(), pin),
    )];
    findings.extend(proposal_rules(machine, wave, filter, pin, capture));
    findings.extend(default_format_rules(wave, filter, pin, expected));
    findings
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;
    use crate::cable::{start_cable_adapter, CableAdapter, CableOptions, EmuPlatform};
    use crate::faulty::{start_faulty_cable, Fault};
    use crate::machine::{ClockMode, Machine};
    use crate::memory::{MemoryConfig, PhysicalMemory};
    use portcls_sys::{
        windows_abi, AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW,
        PCAUTOMATION_TABLE, PCPROPERTY_ITEM, PCPROPERTY_REQUEST, STATUS_INVALID_PARAMETER,
    };
    use wavert_core::range::ks_data_format_len;
    use wavert_miniport::cable::filters::DEFAULT_FORMAT;
    use wavert_miniport::wave::format_property_handler;
    use wavert_miniport::VirtualCable;

    fn machine() -> Arc<Machine> {
        let memory = PhysicalMemory::anonymous(MemoryConfig::default()).unwrap();
        Machine::new(memory, ClockMode::Virtual)
    }

    fn failures(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .filter_map(|f| f.outcome.as_ref().err().map(|e| format!("{}: {e}", f.rule)))
            .collect()
    }

    fn failed_rules(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .filter(|f| f.outcome.is_err())
            .map(|f| f.rule.clone())
            .collect()
    }

    /// The rules on `name` of `adapter`, through `description` (the
    /// registered one, or a broken copy).
    fn run(
        machine: &Arc<Machine>,
        adapter: &CableAdapter,
        name: &str,
        edit: Option<&'static PCFILTER_DESCRIPTOR>,
        expected: Option<&AudioFormat>,
    ) -> Vec<Finding> {
        let registered = adapter.wave_filter(name).unwrap();
        let description = edit.unwrap_or(registered.description);
        let filter = KsFilter::new(&registered.miniport, description).unwrap();
        let capture = name == "WaveCapture";
        let pin = crate::engine::streaming_pin(description, capture).unwrap();
        check_wave_filter_formats(
            machine,
            &registered.miniport,
            &filter,
            pin,
            capture,
            expected,
        )
    }

    #[test]
    fn the_cable_passes_every_format_rule_on_both_wave_filters() {
        let machine = machine();
        let adapter = start_cable_adapter(&machine, CableOptions::default()).unwrap();
        for name in ["WaveRender", "WaveCapture"] {
            let findings = run(&machine, &adapter, name, None, Some(&DEFAULT_FORMAT));
            assert_eq!(findings.len(), 6, "{name}");
            assert!(
                failures(&findings).is_empty(),
                "{name}: {:?}",
                failures(&findings)
            );
        }
    }

    type Real = VirtualCable<EmuPlatform>;

    /// The item id and the value of a request.
    ///
    /// # Safety
    ///
    /// `request` is the router's live request, its value (if any) valid
    /// and unaliased for `ValueSize` bytes while the slice is used.
    unsafe fn id_and_value<'a>(request: *mut PCPROPERTY_REQUEST) -> (u32, &'a mut [u8]) {
        // SAFETY: a live request (caller).
        let request = unsafe { &mut *request };
        // SAFETY: a live request's item (the router's table).
        let id = unsafe { (*request.PropertyItem).Id };
        let value: &mut [u8] = if request.Value.is_null() {
            &mut []
        } else {
            // SAFETY: `ValueSize` writable bytes, unaliased (caller).
            unsafe {
                std::slice::from_raw_parts_mut(
                    request.Value.cast::<u8>(),
                    request.ValueSize as usize,
                )
            }
        };
        (id, value)
    }

    /// Refuses 24 bits in 32, whatever the stream would do.
    #[windows_abi]
    unsafe extern "system" fn refuses_24_in_32(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the router's live request; the slice ends before the
        // product's handler runs.
        let (_, value) = unsafe { id_and_value(request) };
        let container = value.get(64 + 14..64 + 16) == Some(&32u16.to_le_bytes()[..]);
        let valid = value.get(64 + 18..64 + 20) == Some(&24u16.to_le_bytes()[..]);
        if container && valid {
            return STATUS_NO_MATCH;
        }
        // SAFETY: as above, for the product's own handler.
        unsafe { format_property_handler::<Real>(request) }
    }

    /// Answers `PROPOSEDATAFORMAT2` with the corner of the ranges.
    #[windows_abi]
    unsafe extern "system" fn proposes_the_corner(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the product's own handler on the router's live request.
        let status = unsafe { format_property_handler::<Real>(request) };
        // SAFETY: the same request, after the handler returned.
        let (id, value) = unsafe { id_and_value(request) };
        if status == STATUS_SUCCESS && id == KSPROPERTY_PIN_PROPOSEDATAFORMAT2 {
            let corner = AudioFormat::extensible(SampleType::Pcm, 8, 192_000, 32, 32).unwrap();
            if let Some(format) = value.get_mut(..104) {
                format.copy_from_slice(&ks_data_format_bytes(&corner));
                format[4..8].copy_from_slice(&KSDATAFORMAT_ATTRIBUTES.to_le_bytes());
            }
        }
        status
    }

    type Handler = portcls_sys::PCPFNPROPERTY_HANDLER;
    /// A broken filter: what it breaks, its handler (`None`: no table), the
    /// default expected, the rules that must fail.
    type Case<'a> = (
        &'a str,
        Option<Handler>,
        Option<&'a AudioFormat>,
        &'a [&'a str],
    );

    /// The registered render descriptor with both items served by
    /// `handler`, or with no filter table at all.
    fn broken(adapter: &CableAdapter, handler: Option<Handler>) -> &'static PCFILTER_DESCRIPTOR {
        let registered = adapter.wave_filter("WaveRender").unwrap();
        let mut copy = *registered.description;
        copy.AutomationTable = handler.map_or(std::ptr::null(), |handler| {
            // SAFETY: the product's static table of this filter.
            let mut table = unsafe { *copy.AutomationTable };
            // SAFETY: its items, static data.
            let items = unsafe {
                std::slice::from_raw_parts(table.Properties, table.PropertyCount as usize)
            };
            let items: Vec<PCPROPERTY_ITEM> = items
                .iter()
                .map(|item| PCPROPERTY_ITEM {
                    Handler: handler,
                    ..*item
                })
                .collect();
            table.Properties = items.leak().as_ptr();
            let table: &'static PCAUTOMATION_TABLE = Box::leak(Box::new(table));
            table
        });
        Box::leak(Box::new(copy))
    }

    #[test]
    fn each_rule_fails_on_a_filter_that_breaks_it() {
        let machine = machine();
        let adapter = start_cable_adapter(&machine, CableOptions::default()).unwrap();
        let expected = Some(&DEFAULT_FORMAT);
        let proposal = "PROPOSEDATAFORMAT accepts exactly what NewStream opens";
        let advertised = "every advertised format is accepted";
        let busy = "PROPOSEDATAFORMAT answers while the pin's instance is open";
        let per_mode = "PROPOSEDATAFORMAT2 answers the default format for every mode";
        let wildcard = "a wildcard intersection gives the default format";
        let cases: [Case<'_>; 4] = [
            (
                "refuses 24 in 32, which opens (and is the default)",
                Some(Some(refuses_24_in_32)),
                expected,
                &[proposal, advertised, per_mode],
            ),
            (
                "proposes the corner, against the INF",
                Some(Some(proposes_the_corner)),
                expected,
                &[per_mode],
            ),
            (
                "proposes the corner, against the intersection",
                Some(Some(proposes_the_corner)),
                None,
                &[wildcard],
            ),
            (
                "no filter automation table",
                None,
                expected,
                &[proposal, advertised, busy, per_mode],
            ),
        ];
        for (what, handler, expected, rules) in cases {
            let failed = failed_rules(&run(
                &machine,
                &adapter,
                "WaveRender",
                Some(broken(&adapter, handler)),
                expected,
            ));
            let failed: Vec<&str> = failed
                .iter()
                .map(|r| r.split(" (").next().unwrap_or(r))
                .collect();
            assert_eq!(failed, rules, "{what}");
        }
        // A proposal accepted that NewStream refuses. The cable takes every
        // format of the matrix (8 to 384 kHz, 1 to 16 channels, every
        // depth), so a handler accepting everything would change nothing
        // there; a cable whose engine will not open 44.1 kHz, which its
        // ranges and proposal handler take, is that mismatch.
        let machine = super::tests::machine();
        let refusing = start_faulty_cable(
            &machine,
            Fault::RefuseRate {
                rate: 44_100,
                capture_only: false,
            },
        )
        .unwrap();
        let findings = run(&machine, &refusing, "WaveRender", None, expected);
        let failed = failed_rules(&findings);
        let failed: Vec<&str> = failed
            .iter()
            .map(|r| r.split(" (").next().unwrap_or(r))
            .collect();
        assert_eq!(failed, [proposal], "accepts what NewStream refuses");
    }

    #[test]
    fn a_wildcard_that_picks_the_corner_fails_against_the_inf_default() {
        let machine = machine();
        let adapter = start_faulty_cable(&machine, Fault::MaxCornerDefault).unwrap();
        let failed = failed_rules(&run(
            &machine,
            &adapter,
            "WaveRender",
            None,
            Some(&DEFAULT_FORMAT),
        ));
        assert_eq!(
            failed,
            [
                "PROPOSEDATAFORMAT2 answers the default format for every mode",
                "a wildcard intersection gives the default format"
            ]
        );
        let machine = super::tests::machine();
        let control = start_faulty_cable(&machine, Fault::None).unwrap();
        let findings = run(
            &machine,
            &control,
            "WaveRender",
            None,
            Some(&DEFAULT_FORMAT),
        );
        assert!(
            failed_rules(&findings).is_empty(),
            "{:?}",
            failures(&findings)
        );
    }

    type Faulty = crate::faulty::FaultyCable;

    /// Where a one-mode list puts the mode's GUID: after the `KSP_PIN`'s
    /// tail in the instance, or after the format in the answer, then the
    /// `KSMULTIPLE_ITEM` and the `KSATTRIBUTE` header.
    const MODE_IN_LIST: usize = 8 + 24;

    /// Writes `mode` at `at` of the request's instance (`value == false`)
    /// or value, if the buffer is long enough.
    ///
    /// # Safety
    ///
    /// `request` is the router's live request; no reference to the buffer
    /// is held across the call.
    unsafe fn put_mode(request: *mut PCPROPERTY_REQUEST, value: bool, at: usize, mode: GUID) {
        // SAFETY: a live request (caller).
        let request = unsafe { &*request };
        let (buffer, size) = if value {
            (request.Value, request.ValueSize)
        } else {
            (request.Instance, request.InstanceSize)
        };
        if !buffer.is_null() && at + 16 <= size as usize {
            // SAFETY: `size` writable bytes at `buffer`, `at + 16` within them.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    mode.to_bytes().as_ptr(),
                    buffer.cast::<u8>().wrapping_add(at),
                    16,
                );
            }
        }
    }

    /// Answers `PROPOSEDATAFORMAT2` for RAW as for DEFAULT, whatever
    /// `GetModes` says: a filter property keeping a mode list of its own.
    #[windows_abi]
    unsafe extern "system" fn answers_raw_anyway(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
        // SAFETY: the router's live request; the slice is not kept.
        let (id, _) = unsafe { id_and_value(request) };
        // SAFETY: as above.
        let instance = unsafe { &*request };
        let at = 8 + MODE_IN_LIST;
        let names_raw = id == KSPROPERTY_PIN_PROPOSEDATAFORMAT2
            && !instance.Instance.is_null()
            && instance.InstanceSize as usize >= at + 16
            // SAFETY: `InstanceSize` readable bytes, `at + 16` within them.
            && unsafe {
                std::slice::from_raw_parts(instance.Instance.cast::<u8>().wrapping_add(at), 16)
            }
                == AUDIO_SIGNALPROCESSINGMODE_RAW.to_bytes();
        if !names_raw {
            // SAFETY: the product's own handler on the router's live request.
            return unsafe { format_property_handler::<Faulty>(request) };
        }
        // SAFETY: the live request; asked as DEFAULT, then RAW put back in
        // the instance and in the list the answer echoes after the format.
        unsafe {
            put_mode(request, false, at, AUDIO_SIGNALPROCESSINGMODE_DEFAULT);
        }
        // SAFETY: the product's own handler on the router's live request.
        let status = unsafe { format_property_handler::<Faulty>(request) };
        // SAFETY: as above.
        unsafe {
            put_mode(request, false, at, AUDIO_SIGNALPROCESSINGMODE_RAW);
        }
        if status == STATUS_SUCCESS {
            let echoed = ks_data_format_len(&DEFAULT_FORMAT).next_multiple_of(8) + MODE_IN_LIST;
            // SAFETY: as above.
            unsafe { put_mode(request, true, echoed, AUDIO_SIGNALPROCESSINGMODE_RAW) };
        }
        status
    }

    #[test]
    fn a_default_format_for_a_mode_get_modes_lacks_fails_the_per_mode_rule() {
        // The control: a pin without RAW, whose property refuses RAW.
        let machine = machine();
        let adapter = start_faulty_cable(&machine, Fault::NoRawMode).unwrap();
        let findings = run(
            &machine,
            &adapter,
            "WaveRender",
            None,
            Some(&DEFAULT_FORMAT),
        );
        assert!(failures(&findings).is_empty(), "{:?}", failures(&findings));
        // The same pin answering RAW anyway.
        let broken = broken(&adapter, Some(Some(answers_raw_anyway)));
        let findings = run(
            &machine,
            &adapter,
            "WaveRender",
            Some(broken),
            Some(&DEFAULT_FORMAT),
        );
        assert_eq!(
            failed_rules(&findings),
            ["PROPOSEDATAFORMAT2 answers the default format for every mode"]
        );
        assert!(
            failures(&findings)[0].contains("RAW, which GetModes does not list"),
            "{:?}",
            failures(&findings)
        );
    }

    #[test]
    fn proposals_and_default_requests_answer_the_documented_statuses() {
        let adapter = start_cable_adapter(&machine(), CableOptions::default()).unwrap();
        let filter = adapter.ks_filter("WaveRender").unwrap();
        let format = ks_data_format_bytes(&DEFAULT_FORMAT);
        // Bridge pin; a pin that does not exist; a short instance.
        assert_eq!(propose_format(&filter, 1, &format), STATUS_NOT_SUPPORTED);
        assert_eq!(
            propose_format(&filter, 7, &format),
            STATUS_INVALID_PARAMETER
        );
        let set = pin_property(KSPROPERTY_PIN_PROPOSEDATAFORMAT, KSPROPERTY_TYPE_SET);
        let mut value = format.clone();
        assert_eq!(
            filter.request(&set, &[0, 0], &mut value).status,
            STATUS_INVALID_PARAMETER
        );
        // A malformed format (nBlockAlign broken) is no format at all.
        let mut bad = format;
        bad[64 + 12] = 5;
        assert_eq!(propose_format(&filter, 0, &bad), STATUS_INVALID_PARAMETER);
        // Size query, short value.
        let size = filter.request(&set, &pin_instance(0), &mut []);
        assert_eq!(
            (size.status, size.value_size),
            (STATUS_BUFFER_OVERFLOW, 104)
        );
        assert_eq!(
            filter.request(&set, &pin_instance(0), &mut [0; 20]).status,
            portcls_sys::STATUS_BUFFER_TOO_SMALL
        );
        // Basic support: the access flags, or a description.
        let basic = pin_property(
            KSPROPERTY_PIN_PROPOSEDATAFORMAT,
            KSPROPERTY_TYPE_BASICSUPPORT,
        );
        let mut flags = [0u8; 4];
        let reply = filter.request(&basic, &pin_instance(0), &mut flags);
        assert_eq!((reply.status, reply.value_size), (STATUS_SUCCESS, 4));
        assert_eq!(
            u32::from_le_bytes(flags),
            KSPROPERTY_TYPE_SET | KSPROPERTY_TYPE_BASICSUPPORT
        );
        let mut description = [0u8; 40];
        let reply = filter.request(&basic, &pin_instance(0), &mut description);
        assert_eq!((reply.status, reply.value_size), (STATUS_SUCCESS, 40));
        assert_eq!(&description[4..8], &40u32.to_le_bytes());
        // PROPOSEDATAFORMAT2: the answer is the format, then the list.
        let list = mode_attribute_list(&[AUDIO_SIGNALPROCESSINGMODE_RAW]);
        let answer = proposed_format_for(&filter, 0, &list).unwrap();
        assert_eq!(answer.len(), 104 + list.len());
        assert_eq!(parse_proposed(&answer, &list), Ok(DEFAULT_FORMAT));
        // No attribute list at all; an attribute other than the mode.
        assert_eq!(
            proposed_format_for(&filter, 0, &[]),
            Err(STATUS_INVALID_PARAMETER)
        );
        let mut other = mode_attribute_list(&[AUDIO_SIGNALPROCESSINGMODE_RAW]);
        other[8 + 8] ^= 0xFF; // The attribute's GUID.
        assert_eq!(
            proposed_format_for(&filter, 0, &other),
            Err(STATUS_NOT_SUPPORTED)
        );
        assert_eq!(
            proposed_format_for(&filter, 1, &list),
            Err(STATUS_NOT_SUPPORTED),
            "bridge pin"
        );
        // A list longer than the handler reads (two attributes and more).
        let mut long = mode_attribute_list(&[AUDIO_SIGNALPROCESSINGMODE_RAW]);
        long.resize(100, 0);
        assert_eq!(
            proposed_format_for(&filter, 0, &long),
            Err(STATUS_INVALID_PARAMETER)
        );
        // A plain WAVEFORMATEX proposal (82 bytes, not EXTENSIBLE) is read
        // as NewStream reads it: 16-bit stereo opens, so it is accepted.
        let plain = AudioFormat::new(
            SampleType::Pcm,
            2,
            48_000,
            16,
            16,
            wavert_core::format::KSAUDIO_SPEAKER_STEREO,
            false,
        )
        .unwrap();
        let plain = ks_data_format_bytes(&plain);
        assert_eq!(plain.len(), 82);
        assert_eq!(propose_format(&filter, 0, &plain), STATUS_SUCCESS);
    }
}
