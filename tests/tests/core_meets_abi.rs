//! The core crate reads and writes KS structures as bytes (user mode sends
//! them; the kernel must not trust their layout), while the ABI crate declares
//! the same structures as `#[repr(C)]` types verified against MinGW-w64's
//! headers. These tests hold the two to one truth: every offset the core uses
//! is the ABI crate's offset, and every GUID the core compares is the ABI
//! crate's GUID.

use std::mem::{offset_of, size_of};

use portcls_sys::{WAVEFORMATEX, WAVEFORMATEXTENSIBLE};
use wavert_core::format::{
    AudioFormat, SampleType, WAVEFORMATEXTENSIBLE_SIZE, WAVEFORMATEX_SIZE, WAVE_FORMAT_EXTENSIBLE,
    WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_PCM,
};
use wavert_core::guid::{self, Guid};

const fn core_guid(abi: portcls_sys::GUID) -> Guid {
    Guid::new(abi.Data1, abi.Data2, abi.Data3, abi.Data4)
}

#[test]
fn guids_the_core_compares_are_the_abi_crates() {
    let pairs = [
        (
            guid::KSDATAFORMAT_TYPE_AUDIO,
            portcls_sys::KSDATAFORMAT_TYPE_AUDIO,
        ),
        (
            guid::KSDATAFORMAT_SUBTYPE_PCM,
            portcls_sys::KSDATAFORMAT_SUBTYPE_PCM,
        ),
        (
            guid::KSDATAFORMAT_SUBTYPE_IEEE_FLOAT,
            portcls_sys::KSDATAFORMAT_SUBTYPE_IEEE_FLOAT,
        ),
        (
            guid::KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
            portcls_sys::KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
        ),
        (
            guid::KSDATAFORMAT_SPECIFIER_NONE,
            portcls_sys::KSDATAFORMAT_SPECIFIER_NONE,
        ),
    ];
    for (core, abi) in pairs {
        assert_eq!(core, core_guid(abi));
    }
}

#[test]
fn structure_sizes_and_tags_agree() {
    assert_eq!(WAVEFORMATEX_SIZE, size_of::<WAVEFORMATEX>());
    assert_eq!(WAVEFORMATEXTENSIBLE_SIZE, size_of::<WAVEFORMATEXTENSIBLE>());
    assert_eq!(WAVE_FORMAT_PCM, portcls_sys::WAVE_FORMAT_PCM);
    assert_eq!(WAVE_FORMAT_IEEE_FLOAT, portcls_sys::WAVE_FORMAT_IEEE_FLOAT);
    assert_eq!(WAVE_FORMAT_EXTENSIBLE, portcls_sys::WAVE_FORMAT_EXTENSIBLE);
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

/// Writes a format with the core's codec and reads every field back at the
/// ABI crate's offsets.
#[test]
fn the_cores_waveformatextensible_bytes_sit_at_the_abi_offsets() {
    let format = AudioFormat::extensible(SampleType::Pcm, 6, 48_000, 32, 24).unwrap();
    let mut bytes = [0_u8; 64];
    let written = format.write_waveformat(&mut bytes).unwrap();
    assert_eq!(written, size_of::<WAVEFORMATEXTENSIBLE>());

    let ex = offset_of!(WAVEFORMATEXTENSIBLE, Format);
    assert_eq!(
        u16_at(&bytes, ex + offset_of!(WAVEFORMATEX, wFormatTag)),
        WAVE_FORMAT_EXTENSIBLE
    );
    assert_eq!(u16_at(&bytes, ex + offset_of!(WAVEFORMATEX, nChannels)), 6);
    assert_eq!(
        u32_at(&bytes, ex + offset_of!(WAVEFORMATEX, nSamplesPerSec)),
        48_000
    );
    assert_eq!(
        u32_at(&bytes, ex + offset_of!(WAVEFORMATEX, nAvgBytesPerSec)),
        48_000 * 6 * 4
    );
    assert_eq!(
        u16_at(&bytes, ex + offset_of!(WAVEFORMATEX, nBlockAlign)),
        24
    );
    assert_eq!(
        u16_at(&bytes, ex + offset_of!(WAVEFORMATEX, wBitsPerSample)),
        32
    );
    assert_eq!(
        usize::from(u16_at(&bytes, ex + offset_of!(WAVEFORMATEX, cbSize))),
        size_of::<WAVEFORMATEXTENSIBLE>() - size_of::<WAVEFORMATEX>()
    );
    // `Samples` is the union wValidBitsPerSample / wSamplesPerBlock.
    assert_eq!(
        u16_at(&bytes, offset_of!(WAVEFORMATEXTENSIBLE, Samples)),
        24
    );
    assert_eq!(
        u32_at(&bytes, offset_of!(WAVEFORMATEXTENSIBLE, dwChannelMask)),
        portcls_sys::KSAUDIO_SPEAKER_5POINT1
    );
    let sub_format = offset_of!(WAVEFORMATEXTENSIBLE, SubFormat);
    let guid_bytes: [u8; 16] = bytes[sub_format..sub_format + 16].try_into().unwrap();
    assert_eq!(
        Guid::from_le_bytes(guid_bytes),
        core_guid(portcls_sys::KSDATAFORMAT_SUBTYPE_PCM)
    );

    // And the core parses its own bytes back to the same format.
    assert_eq!(AudioFormat::parse(&bytes[..written]).unwrap(), format);
}

/// The core validates channel masks with its own copies of the speaker
/// layouts; they must be the header values.
#[test]
fn speaker_layouts_agree() {
    use wavert_core::format as core;
    let pairs = [
        (
            core::KSAUDIO_SPEAKER_MONO,
            portcls_sys::KSAUDIO_SPEAKER_MONO,
        ),
        (
            core::KSAUDIO_SPEAKER_STEREO,
            portcls_sys::KSAUDIO_SPEAKER_STEREO,
        ),
        (
            core::KSAUDIO_SPEAKER_QUAD,
            portcls_sys::KSAUDIO_SPEAKER_QUAD,
        ),
        (
            core::KSAUDIO_SPEAKER_SURROUND,
            portcls_sys::KSAUDIO_SPEAKER_SURROUND,
        ),
        (
            core::KSAUDIO_SPEAKER_5POINT1,
            portcls_sys::KSAUDIO_SPEAKER_5POINT1,
        ),
        (
            core::KSAUDIO_SPEAKER_7POINT1,
            portcls_sys::KSAUDIO_SPEAKER_7POINT1,
        ),
        (
            core::KSAUDIO_SPEAKER_5POINT1_SURROUND,
            portcls_sys::KSAUDIO_SPEAKER_5POINT1_SURROUND,
        ),
        (
            core::KSAUDIO_SPEAKER_7POINT1_SURROUND,
            portcls_sys::KSAUDIO_SPEAKER_7POINT1_SURROUND,
        ),
    ];
    for (core, abi) in pairs {
        assert_eq!(core, abi);
    }
}

#[test]
fn the_end_of_stream_flag_the_core_checks_is_the_abi_crates() {
    assert_eq!(
        wavert_core::packet::END_OF_STREAM_FLAG,
        portcls_sys::KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM
    );
}
