//! Signal-processing modes and packet-size constraints, read the way
//! Windows reads them.
//!
//! * [`get_modes`]: `IMiniportAudioSignalProcessing::GetModes` through the
//!   wave miniport's vtable, with the size protocol of Learn's `GetModes` page
//!   checked on the way (a NULL array gets the count and `STATUS_SUCCESS`,
//!   a short one `STATUS_BUFFER_TOO_SMALL` and the count).
//! * [`with_signal_processing_mode`]: a data format carrying a mode in its
//!   attribute list, as the audio engine opens a RAW stream (built by
//!   `wavert_miniport::fake`, the one builder of client attribute lists).
//! * [`check_packet_constraints`]: the wave filter's
//!   `DEVPKEY_KsAudio_PacketSize_Constraints2`, decoded
//!   (`KSAUDIO_PACKETSIZE_CONSTRAINTS2`, Learn) and held to its rules: set
//!   on the filter's interface before `PcRegisterSubdevice`, a size that is
//!   the head plus its constraints, `MaxPacketSizeInBytes` 0 or at least
//!   10 ms of the largest format the host pin advertises, one constraint per
//!   mode the host pin has and none for another, no mode packet shorter
//!   than the absolute minimum.

use std::mem::size_of;
use std::ptr;

use portcls_sys::{
    DEVPKEY_KsAudio_PacketSize_Constraints2, IMiniportAudioSignalProcessing, IMiniportWaveRT,
    AUDIO_SIGNALPROCESSINGMODE_COMMUNICATIONS, AUDIO_SIGNALPROCESSINGMODE_DEFAULT,
    AUDIO_SIGNALPROCESSINGMODE_RAW, GUID, KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER,
    KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT, KSDATAFORMAT, KSDATAFORMAT_TYPE_AUDIO,
    KSDATARANGE_AUDIO, STATUS_BUFFER_TOO_SMALL, STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
};
use wavert_com::ComPtr;
use wavert_miniport::fake::{mode_attribute_list, with_attribute_list};
use zerocopy::FromBytes;

use crate::cable::RegisteredWaveFilter;
use crate::engine::{data_ranges, pins, streaming_pin, EngineError};
use crate::machine::Registrations;

/// One `GetModes` call: its status, the count it wrote back, the array.
fn call_get_modes(
    sp: &ComPtr<IMiniportAudioSignalProcessing>,
    pin: u32,
    room: Option<u32>,
) -> (i32, u32, Vec<GUID>) {
    // A value GetModes never returns, to see which entries it wrote.
    let sentinel = GUID::from_u128(u128::MAX);
    let mut modes = vec![sentinel; room.unwrap_or(0) as usize];
    let mut count = room.unwrap_or(0);
    let array = if room.is_some() {
        modes.as_mut_ptr()
    } else {
        ptr::null_mut()
    };
    // SAFETY: a live interface; `array` is null or holds `count` GUIDs;
    // `count` is writable.
    let status = unsafe { (sp.vtbl().GetModes)(sp.this(), pin, array, &raw mut count) };
    (status, count, modes)
}

/// The signal-processing modes of `pin` (empty when the pin has none:
/// `STATUS_NOT_SUPPORTED`, as a bridge pin answers).
///
/// # Errors
///
/// A miniport without `IMiniportAudioSignalProcessing`, a failing call, or
/// a break of the size protocol: a count that changes between calls, a
/// short array not answered with `STATUS_BUFFER_TOO_SMALL` and the count,
/// an entry written beyond the count, no modes with `STATUS_SUCCESS`.
pub fn get_modes(wave: &ComPtr<IMiniportWaveRT>, pin: u32) -> Result<Vec<GUID>, EngineError> {
    let sp = wave
        .query::<IMiniportAudioSignalProcessing>()
        .map_err(|_| {
            EngineError::Protocol(
                "the wave miniport does not answer IMiniportAudioSignalProcessing".to_owned(),
            )
        })?;
    get_modes_of(&sp, pin)
}

/// [`get_modes`] on the interface itself.
///
/// # Errors
///
/// As [`get_modes`], but for the missing interface.
pub fn get_modes_of(
    sp: &ComPtr<IMiniportAudioSignalProcessing>,
    pin: u32,
) -> Result<Vec<GUID>, EngineError> {
    let protocol = |what: String| {
        Err(EngineError::Protocol(format!(
            "GetModes(pin {pin}): {what}"
        )))
    };
    let (status, needed, _) = call_get_modes(sp, pin, None);
    match status {
        STATUS_SUCCESS => {}
        STATUS_NOT_SUPPORTED => return Ok(Vec::new()),
        status => {
            return Err(EngineError::Call {
                call: "GetModes",
                status,
            })
        }
    }
    if needed == 0 {
        return protocol(
            "no modes with STATUS_SUCCESS (a pin without modes answers STATUS_NOT_SUPPORTED)"
                .to_owned(),
        );
    }
    let short = call_get_modes(sp, pin, Some(needed - 1));
    if (short.0, short.1) != (STATUS_BUFFER_TOO_SMALL, needed) {
        return protocol(format!(
            "{} GUIDs of room for {needed} modes gave status {:#010x} and count {} \
             (STATUS_BUFFER_TOO_SMALL and {needed} expected)",
            needed - 1,
            short.0,
            short.1
        ));
    }
    let (status, count, modes) = call_get_modes(sp, pin, Some(needed + 1));
    if status != STATUS_SUCCESS || count != needed {
        return protocol(format!(
            "room for {} gave status {status:#010x} and count {count} (success and {needed} expected)",
            needed + 1
        ));
    }
    let (modes, beyond) = modes.split_at(needed as usize);
    if beyond.iter().any(|g| *g != GUID::from_u128(u128::MAX)) {
        return protocol("wrote beyond the count it returned".to_owned());
    }
    Ok(modes.to_vec())
}

/// `format` (a `KSDATAFORMAT` and what follows, `FormatSize` bytes)
/// flagged `KSDATAFORMAT_ATTRIBUTES` and followed by an attribute list
/// naming `mode`: how a client opens a stream in a mode.
#[must_use]
pub fn with_signal_processing_mode(format: &[u8], mode: GUID) -> Vec<u8> {
    with_attribute_list(format, &mode_attribute_list(&[mode]))
}

/// A mode's name as Learn's "Audio Signal Processing Modes" page writes it
/// (`DEFAULT`, `RAW`, ...), or its GUID.
#[must_use]
pub fn mode_name(mode: &GUID) -> String {
    KNOWN_MODES
        .iter()
        .find(|(guid, _)| guid == mode)
        .map_or_else(|| format!("{mode:?}"), |(_, name)| (*name).to_owned())
}

/// The modes Learn's modes page defines that a test names, with their names.
pub const KNOWN_MODES: [(GUID, &str); 3] = [
    (AUDIO_SIGNALPROCESSINGMODE_DEFAULT, "DEFAULT"),
    (AUDIO_SIGNALPROCESSINGMODE_RAW, "RAW"),
    (AUDIO_SIGNALPROCESSINGMODE_COMMUNICATIONS, "COMMUNICATIONS"),
];

/// A wave filter's decoded packet-size constraints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketConstraints {
    /// `MinPacketPeriodInHns`.
    pub min_packet_period_hns: u32,
    /// `PacketSizeFileAlignment`.
    pub alignment: u32,
    /// `MaxPacketSizeInBytes`.
    pub max_packet_bytes: u32,
    /// The mode constraints: mode, samples per packet, packet duration.
    pub modes: Vec<(GUID, u32, u32)>,
    /// 10 ms of the largest format the host pin advertises, in bytes.
    pub ten_ms_of_largest_format: u64,
}

/// 10 ms of the largest format a range table admits: most channels × a
/// container for the most bits (24 bits may travel in 32) × the highest
/// rate, over every audio range of the pin (`KSDATARANGE_AUDIO`'s fields
/// read from each range's bytes; anything shorter is not an audio range).
fn ten_ms_of_largest(ranges: &[&[u8]]) -> u64 {
    let u32_at = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let major = std::mem::offset_of!(KSDATAFORMAT, MajorFormat);
    ranges
        .iter()
        .filter(|bytes| bytes.len() >= size_of::<KSDATARANGE_AUDIO>())
        .filter(|bytes| {
            bytes.get(major..major + 16) == Some(&KSDATAFORMAT_TYPE_AUDIO.to_bytes()[..])
        })
        .map(|bytes| {
            let channels = u32_at(
                bytes,
                std::mem::offset_of!(KSDATARANGE_AUDIO, MaximumChannels),
            );
            let bits = u32_at(
                bytes,
                std::mem::offset_of!(KSDATARANGE_AUDIO, MaximumBitsPerSample),
            );
            let rate = u32_at(
                bytes,
                std::mem::offset_of!(KSDATARANGE_AUDIO, MaximumSampleFrequency),
            );
            let container = u64::from(bits.div_ceil(8)).next_power_of_two();
            u64::from(channels) * container * u64::from(rate) / 100
        })
        .max()
        .unwrap_or(0)
}

/// Decodes and checks the packet-size constraints of `filter`, as its
/// registrations recorded them.
///
/// # Errors
///
/// Each broken rule, in words.
pub fn check_packet_constraints(
    registrations: &Registrations,
    filter: &RegisteredWaveFilter,
) -> Result<PacketConstraints, String> {
    let name = &filter.name;
    let property = registrations
        .interface_properties
        .iter()
        .find(|p| p.name == *name && p.key == DEVPKEY_KsAudio_PacketSize_Constraints2)
        .ok_or_else(|| {
            format!("{name}: no DEVPKEY_KsAudio_PacketSize_Constraints2 on its interface")
        })?;
    if !property.before_registration {
        return Err(format!(
            "{name}: packet-size constraints set after PcRegisterSubdevice (Learn: before it)"
        ));
    }
    let value = &property.value;
    let (head, rest) =
        KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER::read_from_prefix(value).map_err(|_| {
            format!(
                "{name}: {} bytes, shorter than the 16-byte head",
                value.len()
            )
        })?;
    let entry = size_of::<KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT>();
    if rest.len() != head.NumProcessingModeConstraints as usize * entry {
        return Err(format!(
            "{name}: {} bytes for {} mode constraints (16 + 24 each expected)",
            value.len(),
            head.NumProcessingModeConstraints
        ));
    }
    let modes: Vec<(GUID, u32, u32)> = rest
        .chunks_exact(entry)
        .filter_map(|c| KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT::read_from_bytes(c).ok())
        .map(|c| {
            (
                c.ProcessingMode,
                c.SamplesPerProcessingPacket,
                c.ProcessingPacketDurationInHns,
            )
        })
        .collect();
    let host = streaming_pin(filter.description, false)
        .or_else(|| streaming_pin(filter.description, true))
        .ok_or_else(|| format!("{name}: no host pin"))?;
    let ranges = pins(filter.description)
        .get(host as usize)
        .map(data_ranges)
        .unwrap_or_default();
    let ten_ms = ten_ms_of_largest(&ranges);
    if head.MaxPacketSizeInBytes != 0 && u64::from(head.MaxPacketSizeInBytes) < ten_ms {
        return Err(format!(
            "{name}: MaxPacketSizeInBytes {} holds less than 10 ms of the largest format ({ten_ms} bytes)",
            head.MaxPacketSizeInBytes
        ));
    }
    let pin_modes = get_modes(&filter.miniport, host).map_err(|e| format!("{name}: {e}"))?;
    for (mode, _, hns) in &modes {
        if !pin_modes.contains(mode) {
            return Err(format!(
                "{name}: a constraint for mode {mode:?}, which the host pin lacks"
            ));
        }
        if *hns != 0 && *hns < head.MinPacketPeriodInHns {
            return Err(format!(
                "{name}: mode {mode:?} packets of {hns} hns, under the minimum period {}",
                head.MinPacketPeriodInHns
            ));
        }
    }
    for mode in &pin_modes {
        if modes.iter().filter(|(m, _, _)| m == mode).count() != 1 {
            return Err(format!(
                "{name}: mode {mode:?} needs exactly one packet constraint"
            ));
        }
    }
    Ok(PacketConstraints {
        min_packet_period_hns: head.MinPacketPeriodInHns,
        alignment: head.PacketSizeFileAlignment,
        max_packet_bytes: head.MaxPacketSizeInBytes,
        modes,
        ten_ms_of_largest_format: ten_ms,
    })
}
