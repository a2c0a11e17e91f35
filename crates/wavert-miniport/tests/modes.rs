//! Signal-processing modes through the wave miniports' vtables: `GetModes`
//! answers as Learn's `IMiniportAudioSignalProcessing::GetModes` page says,
//! and `NewStream` opens a stream only in a mode the host pin has, reading
//! the client's attribute list as hostile input.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)] // Test code.

mod common;

use std::ptr;

use common::{ks_format, FakePortStream, Rig};
use portcls_sys::{
    IMiniportAudioSignalProcessing, IMiniportWaveRT, AUDIO_SIGNALPROCESSINGMODE_COMMUNICATIONS,
    AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW, GUID, NTSTATUS,
    STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
};
use wavert_com::ComPtr;
use wavert_miniport::ac97::{MIN_PACKET_PERIOD_HNS as AC97_MIN, PACKET_SIZE_CONSTRAINTS as AC97};
use wavert_miniport::cable::{
    MIN_PACKET_PERIOD_HNS as CABLE_MIN, PACKET_SIZE_CONSTRAINTS as CABLE,
};
use wavert_miniport::fake::{mode_attribute_list as mode_list, with_attribute_list};
use wavert_miniport::filters::{WAVE_BRIDGE_PIN, WAVE_HOST_PIN};
use wavert_miniport::modes::DEFAULT_AND_RAW;
use wavert_miniport::{Direction, DmaMode};

/// A mode neither back-end offers.
const COMMUNICATIONS: GUID = AUDIO_SIGNALPROCESSINGMODE_COMMUNICATIONS;

fn get_modes(
    miniport: &ComPtr<IMiniportWaveRT>,
    pin: u32,
    room: Option<u32>,
) -> (NTSTATUS, u32, Vec<GUID>) {
    let sp = miniport.query::<IMiniportAudioSignalProcessing>().unwrap();
    let mut modes = vec![GUID::from_u128(0); room.unwrap_or(0) as usize];
    let mut count = room.unwrap_or(0);
    let array = if room.is_some() {
        modes.as_mut_ptr()
    } else {
        ptr::null_mut()
    };
    // SAFETY: a live interface; `array` holds `count` GUIDs (or is null).
    let status = unsafe { (sp.vtbl().GetModes)(sp.this(), pin, array, &raw mut count) };
    (status, count, modes)
}

#[test]
fn get_modes_lists_default_and_raw_on_the_host_pins_only() {
    let rig = Rig::new(DmaMode::Looping);
    for miniport in [&rig.render, &rig.capture] {
        assert_eq!(
            get_modes(miniport, WAVE_HOST_PIN, None),
            (STATUS_SUCCESS, 2, vec![])
        );
        let (status, count, modes) = get_modes(miniport, WAVE_HOST_PIN, Some(2));
        assert_eq!((status, count), (STATUS_SUCCESS, 2));
        assert_eq!(modes, DEFAULT_AND_RAW);
        // One GUID of room: STATUS_BUFFER_TOO_SMALL and the count needed.
        let (status, count, _) = get_modes(miniport, WAVE_HOST_PIN, Some(1));
        assert_eq!((status, count), (STATUS_BUFFER_TOO_SMALL, 2));
        // The bridge pin carries analog audio: no modes. Pin 2 does not exist.
        assert_eq!(
            get_modes(miniport, WAVE_BRIDGE_PIN, None).0,
            STATUS_NOT_SUPPORTED
        );
        assert_eq!(get_modes(miniport, 2, None).0, STATUS_INVALID_PARAMETER);
        assert_eq!(
            get_modes(miniport, u32::MAX, None).0,
            STATUS_INVALID_PARAMETER
        );
    }
}

/// A stereo 48 kHz 16-bit format, flagged and followed (8-byte aligned) by
/// `list`.
fn format_with(list: &[u8]) -> Vec<u8> {
    with_attribute_list(&ks_format(false, 2, 48_000, 16, 16), list)
}

fn open(rig: &Rig, direction: Direction, format: &[u8]) -> NTSTATUS {
    let port = FakePortStream::new();
    match rig.new_stream(direction, &port, WAVE_HOST_PIN, format) {
        Ok(stream) => {
            drop(stream);
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

#[test]
fn a_stream_opens_only_in_a_mode_of_the_pin() {
    let rig = Rig::new(DmaMode::Looping);
    for direction in [Direction::Render, Direction::Capture] {
        // No attribute list: DEFAULT.
        assert_eq!(
            open(&rig, direction, &ks_format(false, 2, 48_000, 16, 16)),
            STATUS_SUCCESS
        );
        for mode in [
            AUDIO_SIGNALPROCESSINGMODE_DEFAULT,
            AUDIO_SIGNALPROCESSINGMODE_RAW,
        ] {
            assert_eq!(
                open(&rig, direction, &format_with(&mode_list(&[mode]))),
                STATUS_SUCCESS
            );
        }
        // An empty list is DEFAULT too.
        assert_eq!(
            open(&rig, direction, &format_with(&mode_list(&[]))),
            STATUS_SUCCESS
        );
        // A mode the pin lacks: refused like a format it lacks.
        assert_eq!(
            open(&rig, direction, &format_with(&mode_list(&[COMMUNICATIONS]))),
            STATUS_NOT_SUPPORTED
        );
        // Hostile lists: refused, and the pin stays free for a good one.
        let good = mode_list(&[AUDIO_SIGNALPROCESSINGMODE_RAW]);
        let mut overcounted = good.clone();
        overcounted[4] = 0xFF;
        let mut oversized = good.clone();
        oversized[8] = 0xF0;
        let two = mode_list(&[
            AUDIO_SIGNALPROCESSINGMODE_RAW,
            AUDIO_SIGNALPROCESSINGMODE_RAW,
        ]);
        for (what, list) in [
            ("count", overcounted),
            ("attribute size", oversized),
            ("two modes", two),
        ] {
            assert_eq!(
                open(&rig, direction, &format_with(&list)),
                STATUS_INVALID_PARAMETER,
                "{what}"
            );
        }
        assert_eq!(open(&rig, direction, &format_with(&good)), STATUS_SUCCESS);
    }
}

#[test]
fn packet_size_constraints_state_the_measured_minimum_and_ten_ms_at_least() {
    // The cable: 2 ms (the real-time search's figure); the AC'97: QEMU's
    // 10 ms tick.
    assert_eq!(CABLE_MIN, 20_000);
    assert_eq!(CABLE.min_packet_period_hns, 20_000);
    assert_eq!(AC97_MIN, 100_000);
    assert_eq!(AC97.min_packet_period_hns, AC97_MIN);
    // 10 ms of the largest format (ksmedia's rule for MaxPacketSizeInBytes)
    // is a `const` assertion beside each figure, and the emulator checks it
    // against the advertised ranges (`wavert_emulator::modes`).
    // One constraint per mode of the host pins, none for another mode.
    for constraints in [CABLE, AC97] {
        let modes: Vec<GUID> = constraints.mode_packet_hns.iter().map(|m| m.0).collect();
        assert_eq!(modes, DEFAULT_AND_RAW);
    }
}
