//! Items the MinGW-w64 headers lack, taken from Microsoft's documentation.
//!
//! The ABI check cannot compare these with an independent header, so each
//! one is listed in [`DOCUMENTED_ONLY`] with the page its layout or value
//! comes from, and its layout is pinned by the `const` assertions at the end
//! of this module (a wrong edit fails the build).

use core::mem::{align_of, offset_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::interfaces::{
    IAdapterPowerManagement2Vtbl, IMiniportAudioSignalProcessingVtbl,
    IMiniportWaveRTInputStreamVtbl, IMiniportWaveRTOutputStreamVtbl,
};
use crate::ks::{KSATTRIBUTE, KSDATAFORMAT};
use crate::ksmedia::WAVEFORMATEXTENSIBLE;
use crate::types::{DEVPROPKEY, GUID, PVOID, UINT64, ULONG, ULONGLONG};

/// `KSRTAUDIO_HWLATENCY`: what `GetHWLatency` reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KSRTAUDIO_HWLATENCY {
    pub FifoSize: ULONG,
    pub ChipsetDelay: ULONG,
    pub CodecDelay: ULONG,
}

/// `KSRTAUDIO_HWREGISTER`: a hardware register mapped for the client.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KSRTAUDIO_HWREGISTER {
    pub Register: PVOID,
    pub Width: ULONG,
    pub Numerator: ULONGLONG,
    pub Denominator: ULONGLONG,
    pub Accuracy: ULONG,
}

/// `KSAUDIO_PRESENTATION_POSITION`: position in blocks and its QPC time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KSAUDIO_PRESENTATION_POSITION {
    pub u64PositionInBlocks: UINT64,
    pub u64QPCPosition: UINT64,
}

/// `KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT`: the packet size of one
/// signal-processing mode, in samples or in 100 ns units (0: none).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT {
    pub ProcessingMode: GUID,
    pub SamplesPerProcessingPacket: ULONG,
    pub ProcessingPacketDurationInHns: ULONG,
}

/// `KSAUDIO_PACKETSIZE_CONSTRAINTS` with its first (C: `[1]`) constraint.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KSAUDIO_PACKETSIZE_CONSTRAINTS {
    pub MinPacketPeriodInHns: ULONG,
    pub PacketSizeFileAlignment: ULONG,
    pub Reserved: ULONG,
    pub NumProcessingModeConstraints: ULONG,
    pub ProcessingModeConstraints: [KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT; 1],
}

/// `KSAUDIO_PACKETSIZE_CONSTRAINTS2` with its first (C: `[1]`) constraint;
/// `NumProcessingModeConstraints` of them follow one another, so the value
/// of the property is 16 + 24 × that count bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSAUDIO_PACKETSIZE_CONSTRAINTS2 {
    pub MinPacketPeriodInHns: ULONG,
    pub PacketSizeFileAlignment: ULONG,
    pub MaxPacketSizeInBytes: ULONG,
    pub NumProcessingModeConstraints: ULONG,
    pub ProcessingModeConstraints: [KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT; 1],
}

/// The fixed head of [`KSAUDIO_PACKETSIZE_CONSTRAINTS2`], before its
/// array of constraints (the C structure's first 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER {
    pub MinPacketPeriodInHns: ULONG,
    pub PacketSizeFileAlignment: ULONG,
    pub MaxPacketSizeInBytes: ULONG,
    pub NumProcessingModeConstraints: ULONG,
}

/// `DEVPKEY_KsAudio_PacketSize_Constraints2` {9404F781-7191-409B-8B0B-80BF6EC229AE},2.
///
/// `ksmedia.h`; the value as Microsoft's Win32 metadata gives it (the
/// `windows-sys` crate), and the same in the Python `ctypes` port of
/// `ksmedia.h`, whose comment reads `{9404F781-7191-409B-8B0B-80BF6EC229AE},2
/// DEVPROP_TYPE_BINARY`. Set on the wave filter's `KSCATEGORY_AUDIO` device
/// interface, as binary data, before the interface is enabled (Learn: the
/// `KSAUDIO_PACKETSIZE_CONSTRAINTS2` page).
pub const DEVPKEY_KsAudio_PacketSize_Constraints2: DEVPROPKEY = DEVPROPKEY {
    fmtid: GUID::from_u128(0x9404F781_7191_409B_8B0B_80BF6EC229AE),
    pid: 2,
};

/// `DEVPKEY_DeviceInterface_FriendlyName` {026E516E-B814-414B-83CD-856D6FEF4822},2.
///
/// A device interface's friendly name, `DEVPROP_TYPE_STRING` (Learn's
/// `DEVPKEY_DeviceInterface_FriendlyName` page; the value from MinGW-w64's
/// user-mode `devpkey.h`, which the kernel headers the ABI check compiles
/// do not include, and which `tests/tests/inf_matches_subdevices.rs` reads
/// back). SYSVAD sets it on a topology filter's interface before the
/// interface is enabled to name that endpoint pair at run time
/// (`CAdapterCommon`'s dynamic endpoint creation).
pub const DEVPKEY_DeviceInterface_FriendlyName: DEVPROPKEY = DEVPROPKEY {
    fmtid: GUID::from_u128(0x026E516E_B814_414B_83CD_856D6FEF4822),
    pid: 2,
};

/// `KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE` {E1F89EB5-5F46-419B-967B-FF6770B98401}.
///
/// The attribute naming a stream's signal-processing mode (Learn's
/// `KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE` page lists the `STATIC_`
/// define; the same value in Microsoft's Win32 metadata).
pub const KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE: GUID =
    GUID::from_u128(0xE1F89EB5_5F46_419B_967B_FF6770B98401);

/// `KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE`: the mode attribute of a data
/// format (`AttributeHeader.Size` = 40, its whole size).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE {
    pub AttributeHeader: KSATTRIBUTE,
    pub SignalProcessingMode: GUID,
}

/// `IID_IMiniportAudioSignalProcessing` {B532678C-BE50-472D-9973-8A6F16594989}.
///
/// WDK `portcls.h`; the same value in two independent public drivers'
/// sources (one C `DEFINE_GUID`, one Rust constant citing `portcls.h`).
pub const IID_IMiniportAudioSignalProcessing: GUID =
    GUID::from_u128(0xB532678C_BE50_472D_9973_8A6F16594989);

/// `KSDATAFORMAT_WAVEFORMATEXTENSIBLE`, packed like its sibling
/// `KSDATAFORMAT_WAVEFORMATEX` (104 bytes either way).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct KSDATAFORMAT_WAVEFORMATEXTENSIBLE {
    pub DataFormat: KSDATAFORMAT,
    pub WaveFormatExt: WAVEFORMATEXTENSIBLE,
}

// `KSPROPERTY_RTAUDIO` items after GETPOSITIONFUNCTION (= 0, in MinGW), in the
// order the enumeration's documentation lists them.
pub const KSPROPERTY_RTAUDIO_BUFFER: ULONG = 1;
pub const KSPROPERTY_RTAUDIO_HWLATENCY: ULONG = 2;
pub const KSPROPERTY_RTAUDIO_POSITIONREGISTER: ULONG = 3;
pub const KSPROPERTY_RTAUDIO_CLOCKREGISTER: ULONG = 4;
pub const KSPROPERTY_RTAUDIO_BUFFER_WITH_NOTIFICATION: ULONG = 5;
pub const KSPROPERTY_RTAUDIO_REGISTER_NOTIFICATION_EVENT: ULONG = 6;
pub const KSPROPERTY_RTAUDIO_UNREGISTER_NOTIFICATION_EVENT: ULONG = 7;
pub const KSPROPERTY_RTAUDIO_QUERY_NOTIFICATION_SUPPORT: ULONG = 8;
pub const KSPROPERTY_RTAUDIO_PACKETCOUNT: ULONG = 9;
pub const KSPROPERTY_RTAUDIO_PRESENTATION_POSITION: ULONG = 10;
pub const KSPROPERTY_RTAUDIO_GETREADPACKET: ULONG = 11;
pub const KSPROPERTY_RTAUDIO_SETWRITEPACKET: ULONG = 12;
pub const KSPROPERTY_RTAUDIO_PACKETVREGISTER: ULONG = 13;

/// `KSPROPERTY_AUDIO_PEAKMETER2` (Windows 8 on) of `KSPROPSETID_Audio`.
///
/// The `KSPROPERTY_AUDIO` enumeration past MinGW's last item
/// (`KSPROPERTY_AUDIO_PREFERRED_STATUS` = 40) goes on with the five PEQ
/// items, two chorus, two reverb, `POSITIONEX`, `MIC_ARRAY_GEOMETRY`,
/// `PRESENTATION_POSITION`, `WAVERT_CURRENT_WRITE_POSITION` and
/// `LINEAR_BUFFER_POSITION`, which puts `PEAKMETER2` at 55; the Windows
/// SDK's metadata as the `windows` crate (0.62,
/// `Win32::Media::KernelStreaming`) and `windows-sys` publish it says 55
/// too.
pub const KSPROPERTY_AUDIO_PEAKMETER2: ULONG = 55;

/// `KSPROPSETID_Jack` {4509F757-2D46-4637-8E62-CE7DB944F57B}.
pub const KSPROPSETID_Jack: GUID = GUID::from_u128(0x4509F757_2D46_4637_8E62_CE7DB944F57B);
pub const KSPROPERTY_JACK_DESCRIPTION: ULONG = 1;
pub const KSPROPERTY_JACK_DESCRIPTION2: ULONG = 2;
pub const KSPROPERTY_JACK_SINK_INFO: ULONG = 3;
pub const KSPROPERTY_JACK_CONTAINERID: ULONG = 4;

/// `IID_IMiniportWaveRTInputStream` {CD8E756A-5FC7-4624-984B-2AF02925B91F}.
pub const IID_IMiniportWaveRTInputStream: GUID =
    GUID::from_u128(0xCD8E756A_5FC7_4624_984B_2AF02925B91F);
/// `IID_IMiniportWaveRTOutputStream` {831FC7BC-6347-44BC-B47B-C0C657B5BF73}.
pub const IID_IMiniportWaveRTOutputStream: GUID =
    GUID::from_u128(0x831FC7BC_6347_44BC_B47B_C0C657B5BF73);

/// One item of [`DOCUMENTED_ONLY`].
#[derive(Clone, Copy, Debug)]
pub struct DocumentedItem {
    /// The C name.
    pub name: &'static str,
    /// Where its layout or value comes from.
    pub source: &'static str,
}

const LEARN: &str = "https://learn.microsoft.com/windows-hardware/drivers/";

const fn item(name: &'static str, source: &'static str) -> DocumentedItem {
    DocumentedItem { name, source }
}

/// Every item defined here, with its source (paths below
/// `https://learn.microsoft.com/windows-hardware/drivers/`).
pub const DOCUMENTED_ONLY: &[DocumentedItem] = &[
    item(
        "KSPROPERTY_PIN_PROPOSEDATAFORMAT2",
        "stream/ksproperty-pin-proposedataformat2 (value: WDK ks.h, Win32 metadata)",
    ),
    item(
        "KSRTAUDIO_HWLATENCY",
        "ddi/ksmedia/ns-ksmedia-ksrtaudio_hwlatency",
    ),
    item(
        "KSRTAUDIO_HWREGISTER",
        "ddi/ksmedia/ns-ksmedia-ksrtaudio_hwregister",
    ),
    item(
        "KSAUDIO_PRESENTATION_POSITION",
        "ddi/ksmedia/ns-ksmedia-ksaudio_presentation_position",
    ),
    item(
        "KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT",
        "ddi/ksmedia/ns-ksmedia-ksaudio_packetsize_processingmode_constraint",
    ),
    item(
        "KSAUDIO_PACKETSIZE_CONSTRAINTS",
        "ddi/ksmedia/ns-ksmedia-ksaudio_packetsize_constraints",
    ),
    item(
        "KSAUDIO_PACKETSIZE_CONSTRAINTS2",
        "ddi/ksmedia/ns-ksmedia-ksaudio_packetsize_constraints2",
    ),
    item(
        "KSDATAFORMAT_WAVEFORMATEXTENSIBLE",
        "ddi/ksmedia/ns-ksmedia-ksdataformat_waveformatextensible",
    ),
    item(
        "KSPROPERTY_RTAUDIO_* (1..=13)",
        "ddi/ksmedia/ne-ksmedia-ksproperty_rtaudio",
    ),
    item("KSPROPSETID_Jack", "audio/kspropsetid-jack"),
    item("KSPROPERTY_JACK_* (1..=4)", "audio/kspropsetid-jack"),
    item(
        "IMiniportWaveRTInputStreamVtbl",
        "ddi/portcls/nn-portcls-iminiportwavertinputstream",
    ),
    item(
        "IMiniportWaveRTOutputStreamVtbl",
        "ddi/portcls/nn-portcls-iminiportwavertoutputstream",
    ),
    item(
        "IID_IMiniportWaveRTInputStream",
        "ddi/portcls/nn-portcls-iminiportwavertinputstream (value: WDK portcls.h)",
    ),
    item(
        "IID_IMiniportWaveRTOutputStream",
        "ddi/portcls/nn-portcls-iminiportwavertoutputstream (value: WDK portcls.h)",
    ),
    item(
        "IMiniportAudioSignalProcessingVtbl",
        "ddi/portcls/nn-portcls-iminiportaudiosignalprocessing (GetModes: ddi/portcls/nf-portcls-iminiportaudiosignalprocessing-getmodes)",
    ),
    item(
        "IID_IMiniportAudioSignalProcessing",
        "ddi/portcls/nn-portcls-iminiportaudiosignalprocessing (value: WDK portcls.h)",
    ),
    item(
        "AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW, AUDIO_SIGNALPROCESSINGMODE_COMMUNICATIONS",
        "audio/audio-signal-processing-modes",
    ),
    item(
        "KSATTRIBUTEID_AUDIOSIGNALPROCESSING_MODE",
        "audio/ksattributeid-audiosignalprocessing-mode",
    ),
    item(
        "KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE",
        "ddi/ksmedia/ns-ksmedia-tagksattribute_audiosignalprocessing_mode",
    ),
    item(
        "KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER",
        "ddi/ksmedia/ns-ksmedia-_ksaudio_packetsize_constraints2 (its first four members)",
    ),
    item(
        "IAdapterPowerManagement2Vtbl",
        "ddi/portcls/nn-portcls-iadapterpowermanagement2 (slot order: WDK portcls.h, IAdapterPowerManagement's slots then PowerChangeState2)",
    ),
    item(
        "IID_IAdapterPowerManagement2",
        "ddi/portcls/nn-portcls-iadapterpowermanagement2 (value: WDK portcls.h)",
    ),
    item(
        "IID_IAdapterPowerManagement3",
        "ddi/portcls/nn-portcls-iadapterpowermanagement3 (value: WDK portcls.h)",
    ),
    item(
        "DEVPKEY_DeviceInterface_FriendlyName",
        "install/devpkey-deviceinterface-friendlyname (value: MinGW-w64 devpkey.h, user mode)",
    ),
    item(
        "DEVPKEY_KsAudio_PacketSize_Constraints2",
        "ddi/ksmedia/ns-ksmedia-_ksaudio_packetsize_constraints2 (value: Win32 metadata)",
    ),
];

/// The documentation root the `source` paths of [`DOCUMENTED_ONLY`] hang from.
pub const DOCUMENTATION_ROOT: &str = LEARN;

const P: usize = size_of::<usize>();

// Layouts on the 64-bit targets the driver and the emulator run on.
const _: () = assert!(P == 8, "portcls-sys describes the x64 ABI");
const _: () =
    assert!(size_of::<KSRTAUDIO_HWLATENCY>() == 12 && align_of::<KSRTAUDIO_HWLATENCY>() == 4);
const _: () = assert!(offset_of!(KSRTAUDIO_HWLATENCY, ChipsetDelay) == 4);
const _: () = assert!(offset_of!(KSRTAUDIO_HWLATENCY, CodecDelay) == 8);
const _: () =
    assert!(size_of::<KSRTAUDIO_HWREGISTER>() == 40 && align_of::<KSRTAUDIO_HWREGISTER>() == 8);
const _: () = assert!(offset_of!(KSRTAUDIO_HWREGISTER, Width) == 8);
const _: () = assert!(offset_of!(KSRTAUDIO_HWREGISTER, Numerator) == 16);
const _: () = assert!(offset_of!(KSRTAUDIO_HWREGISTER, Denominator) == 24);
const _: () = assert!(offset_of!(KSRTAUDIO_HWREGISTER, Accuracy) == 32);
const _: () = assert!(size_of::<KSAUDIO_PRESENTATION_POSITION>() == 16);
const _: () = assert!(offset_of!(KSAUDIO_PRESENTATION_POSITION, u64QPCPosition) == 8);
const _: () = assert!(size_of::<KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT>() == 24);
const _: () = assert!(
    offset_of!(
        KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT,
        ProcessingPacketDurationInHns
    ) == 20
);
const _: () = assert!(size_of::<KSAUDIO_PACKETSIZE_CONSTRAINTS>() == 40);
const _: () = assert!(offset_of!(KSAUDIO_PACKETSIZE_CONSTRAINTS, ProcessingModeConstraints) == 16);
const _: () = assert!(size_of::<KSAUDIO_PACKETSIZE_CONSTRAINTS2>() == 40);
const _: () = assert!(offset_of!(KSAUDIO_PACKETSIZE_CONSTRAINTS2, MaxPacketSizeInBytes) == 8);
const _: () = assert!(size_of::<KSDATAFORMAT_WAVEFORMATEXTENSIBLE>() == 104);
const _: () = assert!(offset_of!(KSDATAFORMAT_WAVEFORMATEXTENSIBLE, WaveFormatExt) == 64);
// Packet interfaces: IUnknown's three slots, then the methods in the order
// of the interface's documentation.
const _: () = assert!(size_of::<IMiniportWaveRTInputStreamVtbl>() == 4 * P);
const _: () = assert!(offset_of!(IMiniportWaveRTInputStreamVtbl, GetReadPacket) == 3 * P);
const _: () = assert!(size_of::<IMiniportWaveRTOutputStreamVtbl>() == 6 * P);
const _: () = assert!(offset_of!(IMiniportWaveRTOutputStreamVtbl, SetWritePacket) == 3 * P);
const _: () = assert!(
    offset_of!(
        IMiniportWaveRTOutputStreamVtbl,
        GetOutputStreamPresentationPosition
    ) == 4 * P
);
const _: () = assert!(offset_of!(IMiniportWaveRTOutputStreamVtbl, GetPacketCount) == 5 * P);
// IAdapterPowerManagement2: IUnknown's three slots, IAdapterPowerManagement's
// three, then PowerChangeState2.
const _: () = assert!(size_of::<IAdapterPowerManagement2Vtbl>() == 7 * P);
const _: () = assert!(offset_of!(IAdapterPowerManagement2Vtbl, PowerChangeState2) == 6 * P);
const _: () = assert!(size_of::<KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER>() == 16);
const _: () = assert!(
    offset_of!(KSAUDIO_PACKETSIZE_CONSTRAINTS2, ProcessingModeConstraints)
        == size_of::<KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER>()
);
const _: () = assert!(
    offset_of!(
        KSAUDIO_PACKETSIZE_CONSTRAINTS2_HEADER,
        NumProcessingModeConstraints
    ) == offset_of!(
        KSAUDIO_PACKETSIZE_CONSTRAINTS2,
        NumProcessingModeConstraints
    )
);
const _: () = assert!(
    offset_of!(
        KSAUDIO_PACKETSIZE_PROCESSINGMODE_CONSTRAINT,
        SamplesPerProcessingPacket
    ) == 16
);
// KSATTRIBUTE (24 bytes, checked against MinGW) then the mode GUID.
const _: () = assert!(size_of::<KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE>() == 40);
const _: () = assert!(align_of::<KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE>() == 4);
const _: () =
    assert!(offset_of!(KSATTRIBUTE_AUDIOSIGNALPROCESSING_MODE, SignalProcessingMode) == 24);
// IUnknown's three slots, then GetModes.
const _: () = assert!(size_of::<IMiniportAudioSignalProcessingVtbl>() == 4 * P);
const _: () = assert!(offset_of!(IMiniportAudioSignalProcessingVtbl, GetModes) == 3 * P);
const _: () = assert!(size_of::<DEVPROPKEY>() == 20);
