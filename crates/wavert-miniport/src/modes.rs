//! Signal-processing modes and packet-size constraints: what a wave filter
//! tells Windows about the streams its host pin can run.
//!
//! * Modes (Learn: "Audio Signal Processing Modes",
//!   `IMiniportAudioSignalProcessing::GetModes`): a back-end lists the modes
//!   of each direction's host pin ([`crate::Backend::signal_processing_modes`]);
//!   the wave miniport answers `GetModes` with them and refuses, in
//!   `NewStream`, a format whose attribute list names another mode.
//!   [`mode_of`] reads that list (its layout: `ks.h`'s `KSMULTIPLE_ITEM` and
//!   `KSATTRIBUTE`; the reading rules SYSVAD's
//!   `GetAttributesFromAttributeList` applies, in `EndpointsCommon/minwavert.cpp`).
//! * Packet-size constraints (Learn: `KSAUDIO_PACKETSIZE_CONSTRAINTS2`): a
//!   back-end states its minimum packet period and largest packet
//!   ([`crate::Backend::packet_size_constraints`]); the adapter sets them as
//!   `DEVPKEY_KsAudio_PacketSize_Constraints2` on each wave filter's
//!   interface before registering the filter ([`constraints_value`]).
//!
//! IRQL: `PASSIVE_LEVEL` (pin creation, `StartDevice`).

use alloc::vec::Vec;

use portcls_sys::{
    AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW, GUID, KSATTRIBUTE,
    KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE, KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE,
    KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER, KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT,
    KSMULTIPLE_ITEM,
};
use wavert_com::{NtResult, NtStatus};
use zerocopy::{FromBytes, IntoBytes};

/// DEFAULT and RAW, the two modes both back-ends offer on their host pins.
///
/// RAW means no signal processing is applied to the stream (Learn, "Audio
/// Signal Processing Modes"): true of the cable (it copies bytes) and of the
/// AC'97 (the driver installs no effects; the codec's PCM path runs at unity
/// with its optional 3D and tone stages left at their reset state, bypassed;
/// master volume and mute are the endpoint's level controls, which Windows
/// applies to RAW streams too). DEFAULT is the same path: the device has no
/// processing to leave out.
pub static DEFAULT_AND_RAW: [GUID; 2] = [
    AUDIO_SIGNALPROCESSINGMODE_DEFAULT,
    AUDIO_SIGNALPROCESSINGMODE_RAW,
];

/// `ks.h`: each attribute, and the list itself, starts at an 8-byte boundary.
const ATTRIBUTE_ALIGNMENT: usize = 8;

/// The signal-processing mode an attribute list names: DEFAULT without a
/// list (a format without `KSDATAFORMAT_ATTRIBUTES`) or without a mode
/// attribute in it.
///
/// `list` is the `KSMULTIPLE_ITEM` and what follows: the `Size` bytes it
/// announces (`NewStream`'s list, cut to `Size` by the trampoline) or more
/// (the rest of a `KSPROPERTY_PIN_PROPOSEDATAFORMAT2` instance, which
/// SYSVAD's `PropertyHandlerProposedFormat2` reads the same way); only
/// the first `Size` bytes are read. Every count, size and offset in it is
/// the client's, so each is checked against the bytes there really are.
///
/// # Errors
///
/// * `STATUS_INVALID_PARAMETER`: a list whose `Size` exceeds its bytes (or
///   cannot hold its own header), an
///   attribute that does not fit (or is shorter than its header), a mode
///   attribute that is not exactly `KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE`,
///   two mode attributes;
/// * `STATUS_NOT_SUPPORTED`: an attribute this driver does not know (it
///   cannot honour what it does not understand, as SYSVAD refuses it).
pub fn mode_of(list: Option<&[u8]>) -> NtResult<GUID> {
    let Some(list) = list else {
        return Ok(AUDIO_SIGNALPROCESSINGMODE_DEFAULT);
    };
    let (header, _) =
        KSMULTIPLE_ITEM::read_from_prefix(list).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let list = usize::try_from(header.Size)
        .ok()
        .filter(|&size| size >= core::mem::size_of::<KSMULTIPLE_ITEM>())
        .and_then(|size| list.get(..size))
        .ok_or(NtStatus::INVALID_PARAMETER)?;
    let mut mode = None;
    let mut offset = core::mem::size_of::<KSMULTIPLE_ITEM>();
    for _ in 0..header.Count {
        let rest = list.get(offset..).ok_or(NtStatus::INVALID_PARAMETER)?;
        let (attribute, _) =
            KSATTRIBUTE::read_from_prefix(rest).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let size = usize::try_from(attribute.Size).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if size < core::mem::size_of::<KSATTRIBUTE>() || size > rest.len() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        if attribute.Attribute != KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE {
            return Err(NtStatus::NOT_SUPPORTED);
        }
        if size != core::mem::size_of::<KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE>() || mode.is_some()
        {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let (named, _) = KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE::read_from_prefix(rest)
            .map_err(|_| NtStatus::INVALID_PARAMETER)?;
        mode = Some(named.SignalProcessingMode);
        // The next attribute starts at the next 8-byte boundary (the last
        // one needs no padding after it; a next one that does not fit is
        // refused when it is read).
        offset = size
            .checked_next_multiple_of(ATTRIBUTE_ALIGNMENT)
            .and_then(|step| offset.checked_add(step))
            .ok_or(NtStatus::INVALID_PARAMETER)?;
    }
    Ok(mode.unwrap_or(AUDIO_SIGNALPROCESSINGMODE_DEFAULT))
}

/// One back-end's packet-size constraints for one direction's wave filter
/// (the fields of `KSAUDIO_PACKETSIZE_CONSTRAINTS2`, Learn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSizeConstraints {
    /// The shortest packet period the device sustains, in 100 ns units.
    pub min_packet_period_hns: u32,
    /// A `FILE_*_ALIGNMENT` mask every packet size must honour.
    pub packet_size_alignment: u32,
    /// The largest packet in bytes (0: no limit). ksmedia: at least 10 ms
    /// of any format the pin supports.
    pub max_packet_bytes: u32,
    /// The packet duration of each mode, in 100 ns units (one entry per
    /// mode of the host pin).
    pub mode_packet_hns: &'static [(GUID, u32)],
}

/// The value of `DEVPKEY_KsAudio_PacketSize_Constraints2` for `constraints`.
///
/// The 16-byte `KSAUDIO_PACKETSIZE_CONSTRAINTS2` head, then
/// one `KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT` per mode (duration
/// in 100 ns units, no sample count).
///
/// # Errors
///
/// `STATUS_INSUFFICIENT_RESOURCES` when the bytes cannot be allocated;
/// `STATUS_INVALID_PARAMETER` for more modes than a `ULONG` counts.
pub fn constraints_value(constraints: &PacketSizeConstraints) -> NtResult<Vec<u8>> {
    let modes = constraints.mode_packet_hns;
    let header = KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER {
        MinPacketPeriodInHns: constraints.min_packet_period_hns,
        PacketSizeFileAlignment: constraints.packet_size_alignment,
        MaxPacketSizeInBytes: constraints.max_packet_bytes,
        NumProcessingModeConstraints: u32::try_from(modes.len())
            .map_err(|_| NtStatus::INVALID_PARAMETER)?,
    };
    let entry = core::mem::size_of::<KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT>();
    let length = modes
        .len()
        .checked_mul(entry)
        .and_then(|all| all.checked_add(core::mem::size_of_val(&header)))
        .ok_or(NtStatus::INVALID_PARAMETER)?;
    let mut value = Vec::new();
    value
        .try_reserve_exact(length)
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    value.extend_from_slice(header.as_bytes());
    for &(mode, hns) in modes {
        let constraint = KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT {
            ProcessingMode: mode,
            SamplesPerProcessingPacket: 0,
            ProcessingPacketDurationInHns: hns,
        };
        value.extend_from_slice(constraint.as_bytes());
    }
    Ok(value)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    reason = "test code over lists it built itself"
)]
mod tests {
    use super::*;

    use crate::fake::{attribute_list as list, mode_attribute};

    #[test]
    fn no_list_or_an_empty_one_is_default() {
        assert_eq!(mode_of(None), Ok(AUDIO_SIGNALPROCESSINGMODE_DEFAULT));
        assert_eq!(
            mode_of(Some(&list(&[], 0))),
            Ok(AUDIO_SIGNALPROCESSINGMODE_DEFAULT)
        );
    }

    #[test]
    fn a_mode_attribute_names_the_mode() {
        let raw = mode_attribute(AUDIO_SIGNALPROCESSINGMODE_RAW, 40);
        assert_eq!(
            mode_of(Some(&list(&[&raw], 1))),
            Ok(AUDIO_SIGNALPROCESSINGMODE_RAW)
        );
    }

    #[test]
    fn hostile_lists_are_refused() {
        let raw = mode_attribute(AUDIO_SIGNALPROCESSINGMODE_RAW, 40);
        // A Size beyond the list's bytes, or under its own header.
        let mut l = list(&[&raw], 1);
        for size in [200, 49, 7, 0] {
            l[0] = size;
            assert_eq!(
                mode_of(Some(&l)),
                Err(NtStatus::INVALID_PARAMETER),
                "Size {size}"
            );
        }
        // A Size shorter than the attribute it counts: the attribute is
        // read within Size only.
        l[0] = 40;
        assert_eq!(mode_of(Some(&l)), Err(NtStatus::INVALID_PARAMETER));
        // Bytes after Size (the rest of a property instance) are not read.
        let mut padded = list(&[&raw], 1);
        padded.extend_from_slice(&[0xFF; 16]);
        assert_eq!(mode_of(Some(&padded)), Ok(AUDIO_SIGNALPROCESSINGMODE_RAW));
        // More attributes counted than there are.
        assert_eq!(
            mode_of(Some(&list(&[&raw], 2))),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(
            mode_of(Some(&list(&[&raw], u32::MAX))),
            Err(NtStatus::INVALID_PARAMETER)
        );
        // An attribute claiming more bytes than follow, or fewer than its header.
        for size in [41, 4096, u32::MAX, 23, 0] {
            let bad = mode_attribute(AUDIO_SIGNALPROCESSINGMODE_RAW, size);
            assert_eq!(
                mode_of(Some(&list(&[&bad], 1))),
                Err(NtStatus::INVALID_PARAMETER),
                "size {size}"
            );
        }
        // A mode attribute of another size that fits.
        let mut long = mode_attribute(AUDIO_SIGNALPROCESSINGMODE_RAW, 48);
        long.extend_from_slice(&[0; 8]);
        assert_eq!(
            mode_of(Some(&list(&[&long], 1))),
            Err(NtStatus::INVALID_PARAMETER)
        );
        // Two modes.
        assert_eq!(
            mode_of(Some(&list(&[&raw, &raw], 2))),
            Err(NtStatus::INVALID_PARAMETER)
        );
        // An attribute nobody here knows.
        let mut unknown = raw.clone();
        unknown[8] ^= 0xFF;
        assert_eq!(
            mode_of(Some(&list(&[&unknown], 1))),
            Err(NtStatus::NOT_SUPPORTED)
        );
        // Truncated lists, every length.
        let whole = list(&[&raw], 1);
        for n in 0..whole.len() {
            assert!(mode_of(Some(&whole[..n])).is_err(), "{n} bytes");
        }
    }

    #[test]
    fn constraints_are_laid_out_as_ksmedia_says() {
        static MODES: [(GUID, u32); 2] = [
            (AUDIO_SIGNALPROCESSINGMODE_DEFAULT, 20_000),
            (AUDIO_SIGNALPROCESSINGMODE_RAW, 30_000),
        ];
        let value = constraints_value(&PacketSizeConstraints {
            min_packet_period_hns: 20_000,
            packet_size_alignment: 1,
            max_packet_bytes: 0x20_0000,
            mode_packet_hns: &MODES,
        })
        .unwrap();
        assert_eq!(value.len(), 16 + 2 * 24);
        let u32_at = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().unwrap());
        assert_eq!(
            [u32_at(0), u32_at(4), u32_at(8), u32_at(12)],
            [20_000, 1, 0x20_0000, 2]
        );
        assert_eq!(
            &value[16..32],
            AUDIO_SIGNALPROCESSINGMODE_DEFAULT.to_bytes()
        );
        assert_eq!([u32_at(32), u32_at(36)], [0, 20_000]);
        assert_eq!(&value[40..56], AUDIO_SIGNALPROCESSINGMODE_RAW.to_bytes());
        assert_eq!([u32_at(56), u32_at(60)], [0, 30_000]);
    }
}
