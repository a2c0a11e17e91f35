//! Audio types and constants from `ksmedia.h` and `mmreg.h`.

use crate::ks::{KSDATAFORMAT, KSDATARANGE, KSPROPERTY};
use crate::types::{BOOL, COLORREF, DWORD, DWORDLONG, GUID, LONG, ULONG, WORD};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `WAVEFORMATEX`. `mmreg.h` declares it under `#pragma pack(1)`: 18 bytes,
/// byte aligned.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct WAVEFORMATEX {
    pub wFormatTag: WORD,
    pub nChannels: WORD,
    pub nSamplesPerSec: DWORD,
    pub nAvgBytesPerSec: DWORD,
    pub nBlockAlign: WORD,
    pub wBitsPerSample: WORD,
    pub cbSize: WORD,
}

/// `WAVEFORMATEXTENSIBLE` (packed like `WAVEFORMATEX`). The C `Samples` is a
/// union of three `WORD` views (`wValidBitsPerSample`, `wSamplesPerBlock`,
/// `wReserved`); it is one `WORD` here.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct WAVEFORMATEXTENSIBLE {
    pub Format: WAVEFORMATEX,
    pub Samples: WORD,
    pub dwChannelMask: DWORD,
    pub SubFormat: GUID,
}

pub const WAVE_FORMAT_PCM: WORD = 0x0001;
pub const WAVE_FORMAT_IEEE_FLOAT: WORD = 0x0003;
pub const WAVE_FORMAT_EXTENSIBLE: WORD = 0xFFFE;

/// `KSDATAFORMAT_WAVEFORMATEX`; declared in the packed part of `ksmedia.h`,
/// so 82 bytes, byte aligned.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct KSDATAFORMAT_WAVEFORMATEX {
    pub DataFormat: KSDATAFORMAT,
    pub WaveFormatEx: WAVEFORMATEX,
}

/// `KSDATARANGE_AUDIO`: an audio data range of a pin.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KSDATARANGE_AUDIO {
    pub DataRange: KSDATARANGE,
    pub MaximumChannels: ULONG,
    pub MinimumBitsPerSample: ULONG,
    pub MaximumBitsPerSample: ULONG,
    pub MinimumSampleFrequency: ULONG,
    pub MaximumSampleFrequency: ULONG,
}
pub type PKSDATARANGE_AUDIO = *mut KSDATARANGE_AUDIO;

/// `KSAUDIO_POSITION`: play and write offsets in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KSAUDIO_POSITION {
    pub PlayOffset: DWORDLONG,
    pub WriteOffset: DWORDLONG,
}
pub type PKSAUDIO_POSITION = *mut KSAUDIO_POSITION;

/// `KSNODEPROPERTY`: a property addressed to a topology node.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSNODEPROPERTY {
    pub Property: KSPROPERTY,
    pub NodeId: ULONG,
    pub Reserved: ULONG,
}

/// `KSNODEPROPERTY_AUDIO_CHANNEL`: a node property on one channel.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSNODEPROPERTY_AUDIO_CHANNEL {
    pub NodeProperty: KSNODEPROPERTY,
    pub Channel: LONG,
    pub Reserved: ULONG,
}

/// `KSJACK_DESCRIPTION`: answer to `KSPROPERTY_JACK_DESCRIPTION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSJACK_DESCRIPTION {
    pub ChannelMapping: DWORD,
    pub Color: COLORREF,
    pub ConnectionType: EPcxConnectionType,
    pub GeoLocation: EPcxGeoLocation,
    pub GenLocation: EPcxGenLocation,
    pub PortConnection: EPxcPortConnection,
    pub IsConnected: BOOL,
}

/// `KSJACK_DESCRIPTION2`: answer to `KSPROPERTY_JACK_DESCRIPTION2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSJACK_DESCRIPTION2 {
    pub DeviceStateInfo: DWORD,
    pub JackCapabilities: DWORD,
}

pub type EPcxConnectionType = i32;
pub const eConnTypeUnknown: EPcxConnectionType = 0;
pub const eConnType3Point5mm: EPcxConnectionType = 1;
pub const eConnTypeQuarter: EPcxConnectionType = 2;
pub const eConnTypeAtapiInternal: EPcxConnectionType = 3;
pub const eConnTypeRCA: EPcxConnectionType = 4;
pub const eConnTypeOptical: EPcxConnectionType = 5;
pub const eConnTypeOtherDigital: EPcxConnectionType = 6;
pub const eConnTypeOtherAnalog: EPcxConnectionType = 7;
pub const eConnTypeMultichannelAnalogDIN: EPcxConnectionType = 8;
pub const eConnTypeXlrProfessional: EPcxConnectionType = 9;
pub const eConnTypeRJ11Modem: EPcxConnectionType = 10;
pub const eConnTypeCombination: EPcxConnectionType = 11;

pub type EPcxGeoLocation = i32;
pub const eGeoLocRear: EPcxGeoLocation = 1;
pub const eGeoLocFront: EPcxGeoLocation = 2;
pub const eGeoLocLeft: EPcxGeoLocation = 3;
pub const eGeoLocRight: EPcxGeoLocation = 4;
pub const eGeoLocTop: EPcxGeoLocation = 5;
pub const eGeoLocBottom: EPcxGeoLocation = 6;
pub const eGeoLocRearPanel: EPcxGeoLocation = 7;
pub const eGeoLocRiser: EPcxGeoLocation = 8;
pub const eGeoLocInsideMobileLid: EPcxGeoLocation = 9;
pub const eGeoLocDrivebay: EPcxGeoLocation = 10;
pub const eGeoLocHDMI: EPcxGeoLocation = 11;
pub const eGeoLocOutsideMobileLid: EPcxGeoLocation = 12;
pub const eGeoLocATAPI: EPcxGeoLocation = 13;

pub type EPcxGenLocation = i32;
pub const eGenLocPrimaryBox: EPcxGenLocation = 0;
pub const eGenLocInternal: EPcxGenLocation = 1;
pub const eGenLocSeparate: EPcxGenLocation = 2;
pub const eGenLocOther: EPcxGenLocation = 3;

pub type EPxcPortConnection = i32;
pub const ePortConnJack: EPxcPortConnection = 0;
pub const ePortConnIntegratedDevice: EPxcPortConnection = 1;
pub const ePortConnBothIntegratedAndJack: EPxcPortConnection = 2;
pub const ePortConnUnknown: EPxcPortConnection = 3;

pub const SPEAKER_FRONT_LEFT: DWORD = 0x1;
pub const SPEAKER_FRONT_RIGHT: DWORD = 0x2;
pub const SPEAKER_FRONT_CENTER: DWORD = 0x4;
pub const SPEAKER_LOW_FREQUENCY: DWORD = 0x8;
pub const SPEAKER_BACK_LEFT: DWORD = 0x10;
pub const SPEAKER_BACK_RIGHT: DWORD = 0x20;
pub const SPEAKER_FRONT_LEFT_OF_CENTER: DWORD = 0x40;
pub const SPEAKER_FRONT_RIGHT_OF_CENTER: DWORD = 0x80;
pub const SPEAKER_BACK_CENTER: DWORD = 0x100;
pub const SPEAKER_SIDE_LEFT: DWORD = 0x200;
pub const SPEAKER_SIDE_RIGHT: DWORD = 0x400;
pub const KSAUDIO_SPEAKER_MONO: DWORD = SPEAKER_FRONT_CENTER;
pub const KSAUDIO_SPEAKER_STEREO: DWORD = SPEAKER_FRONT_LEFT | SPEAKER_FRONT_RIGHT;
pub const KSAUDIO_SPEAKER_QUAD: DWORD =
    SPEAKER_FRONT_LEFT | SPEAKER_FRONT_RIGHT | SPEAKER_BACK_LEFT | SPEAKER_BACK_RIGHT;
pub const KSAUDIO_SPEAKER_SURROUND: DWORD =
    SPEAKER_FRONT_LEFT | SPEAKER_FRONT_RIGHT | SPEAKER_FRONT_CENTER | SPEAKER_BACK_CENTER;
pub const KSAUDIO_SPEAKER_5POINT1: DWORD = SPEAKER_FRONT_LEFT
    | SPEAKER_FRONT_RIGHT
    | SPEAKER_FRONT_CENTER
    | SPEAKER_LOW_FREQUENCY
    | SPEAKER_BACK_LEFT
    | SPEAKER_BACK_RIGHT;
pub const KSAUDIO_SPEAKER_7POINT1: DWORD =
    KSAUDIO_SPEAKER_5POINT1 | SPEAKER_FRONT_LEFT_OF_CENTER | SPEAKER_FRONT_RIGHT_OF_CENTER;
pub const KSAUDIO_SPEAKER_5POINT1_SURROUND: DWORD = SPEAKER_FRONT_LEFT
    | SPEAKER_FRONT_RIGHT
    | SPEAKER_FRONT_CENTER
    | SPEAKER_LOW_FREQUENCY
    | SPEAKER_SIDE_LEFT
    | SPEAKER_SIDE_RIGHT;
pub const KSAUDIO_SPEAKER_7POINT1_SURROUND: DWORD =
    KSAUDIO_SPEAKER_5POINT1 | SPEAKER_SIDE_LEFT | SPEAKER_SIDE_RIGHT;

/// `KSPROPERTY_AUDIO` item ids of `KSPROPSETID_Audio`.
pub type KSPROPERTY_AUDIO = ULONG;
pub const KSPROPERTY_AUDIO_LATENCY: KSPROPERTY_AUDIO = 1;
pub const KSPROPERTY_AUDIO_COPY_PROTECTION: KSPROPERTY_AUDIO = 2;
pub const KSPROPERTY_AUDIO_CHANNEL_CONFIG: KSPROPERTY_AUDIO = 3;
pub const KSPROPERTY_AUDIO_VOLUMELEVEL: KSPROPERTY_AUDIO = 4;
pub const KSPROPERTY_AUDIO_POSITION: KSPROPERTY_AUDIO = 5;
pub const KSPROPERTY_AUDIO_DYNAMIC_RANGE: KSPROPERTY_AUDIO = 6;
pub const KSPROPERTY_AUDIO_QUALITY: KSPROPERTY_AUDIO = 7;
pub const KSPROPERTY_AUDIO_SAMPLING_RATE: KSPROPERTY_AUDIO = 8;
pub const KSPROPERTY_AUDIO_DYNAMIC_SAMPLING_RATE: KSPROPERTY_AUDIO = 9;
pub const KSPROPERTY_AUDIO_MIX_LEVEL_TABLE: KSPROPERTY_AUDIO = 10;
pub const KSPROPERTY_AUDIO_MIX_LEVEL_CAPS: KSPROPERTY_AUDIO = 11;
pub const KSPROPERTY_AUDIO_MUX_SOURCE: KSPROPERTY_AUDIO = 12;
pub const KSPROPERTY_AUDIO_MUTE: KSPROPERTY_AUDIO = 13;
pub const KSPROPERTY_AUDIO_DEV_SPECIFIC: KSPROPERTY_AUDIO = 28;
pub const KSPROPERTY_AUDIO_PEAKMETER: KSPROPERTY_AUDIO = 37;
pub const KSPROPERTY_AUDIO_CPU_RESOURCES: KSPROPERTY_AUDIO = 33;

// Pin numbers of a topology node in a `KSTOPOLOGY_CONNECTION`.
pub const KSNODEPIN_STANDARD_IN: ULONG = 1;
pub const KSNODEPIN_STANDARD_OUT: ULONG = 0;
pub const KSNODEPIN_SUM_MUX_IN: ULONG = 1;
pub const KSNODEPIN_SUM_MUX_OUT: ULONG = 0;

/// `KSPROPERTY_RTAUDIO` item ids of `KSPROPSETID_RtAudio`. MinGW's
/// `ksmedia.h` only has the first; the others are in
/// [`crate::documented_only`].
pub type KSPROPERTY_RTAUDIO = ULONG;
pub const KSPROPERTY_RTAUDIO_GETPOSITIONFUNCTION: KSPROPERTY_RTAUDIO = 0;
