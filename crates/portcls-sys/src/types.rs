//! Basic Windows C types, `GUID`, `LARGE_INTEGER` and the opaque kernel objects.

use core::ffi::c_void;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub type UCHAR = u8;
pub type BOOLEAN = u8;
pub type USHORT = u16;
pub type WORD = u16;
pub type WCHAR = u16;
pub type ULONG = u32;
pub type INT = i32;
pub type LONG = i32;
pub type DWORD = u32;
/// Win32 `BOOL` (`int`), not the kernel's one-byte `BOOLEAN`.
pub type BOOL = i32;
pub type COLORREF = u32;
pub type ULONG64 = u64;
pub type ULONGLONG = u64;
pub type DWORDLONG = u64;
pub type LONGLONG = i64;
pub type SIZE_T = usize;
pub type ULONG_PTR = usize;
pub type PVOID = *mut c_void;
pub type HANDLE = *mut c_void;
pub type ACCESS_MASK = u32;
/// A kernel status code: negative is an error, see [`crate::status`].
pub type NTSTATUS = i32;
pub type PCWSTR = *const WCHAR;

/// A 128-bit globally unique identifier, laid out as in `guiddef.h`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct GUID {
    pub Data1: u32,
    pub Data2: u16,
    pub Data3: u16,
    pub Data4: [u8; 8],
}

impl GUID {
    /// Builds a GUID from its registry-format value written as one number,
    /// `{6994AD04-93EF-11D0-A3CC-00A0C9223196}` being
    /// `0x6994AD04_93EF_11D0_A3CC_00A0C9223196`.
    #[must_use]
    #[allow(clippy::cast_possible_truncation)] // Each field takes its own bits of the value.
    pub const fn from_u128(v: u128) -> Self {
        Self {
            Data1: (v >> 96) as u32,
            Data2: (v >> 80) as u16,
            Data3: (v >> 64) as u16,
            Data4: (v as u64).to_be_bytes(),
        }
    }

    /// The 16 bytes of the GUID as they lie in memory (little-endian fields).
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; 16] {
        let a = self.Data1.to_le_bytes();
        let b = self.Data2.to_le_bytes();
        let c = self.Data3.to_le_bytes();
        let d = self.Data4;
        [
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ]
    }
}

pub type IID = GUID;
pub type CLSID = GUID;
pub type REFIID = *const GUID;
pub type REFCLSID = *const GUID;
pub type REFGUID = *const GUID;

/// `LARGE_INTEGER`: a signed 64-bit value, 8-byte aligned.
///
/// The C type is a union of `QuadPart` and a `{ LowPart, HighPart }` pair;
/// both views share the same eight bytes, so only `QuadPart` is kept. By
/// value it travels in one integer register, exactly like the C union.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LARGE_INTEGER {
    pub QuadPart: LONGLONG,
}

/// `PHYSICAL_ADDRESS` is `LARGE_INTEGER` in `wdm.h`.
pub type PHYSICAL_ADDRESS = LARGE_INTEGER;

macro_rules! opaque {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        #[repr(C)]
        pub struct $name {
            _opaque: [u8; 0],
            _not_send_sync: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
        }
    )*};
}

opaque!(
    /// Opaque kernel `DEVICE_OBJECT`; the driver casts its `wdk-sys` pointer.
    DEVICE_OBJECT,
    /// Opaque kernel `DRIVER_OBJECT`.
    DRIVER_OBJECT,
    /// Opaque kernel `IRP`.
    IRP,
    /// Opaque memory descriptor list.
    MDL,
    /// Opaque kernel event object.
    KEVENT,
    /// Opaque interrupt object.
    KINTERRUPT,
    /// Opaque counted UTF-16 string (`UNICODE_STRING`).
    UNICODE_STRING,
    /// Opaque `OBJECT_ATTRIBUTES`.
    OBJECT_ATTRIBUTES,
    /// Opaque `KSEVENT_ENTRY`.
    KSEVENT_ENTRY,
);

pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;
pub type PIRP = *mut IRP;
pub type PMDL = *mut MDL;
pub type PKEVENT = *mut KEVENT;
pub type PKINTERRUPT = *mut KINTERRUPT;
pub type PUNICODE_STRING = *mut UNICODE_STRING;
pub type PDEVICE_CAPABILITIES = *mut DEVICE_CAPABILITIES;
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;
pub type PKSEVENT_ENTRY = *mut KSEVENT_ENTRY;

/// `CM_RESOURCE_TYPE`: `int` in `wdm.h`, the type the `IResourceList`
/// slots take; a descriptor stores it in its one-byte `Type`.
pub type CM_RESOURCE_TYPE = INT;
pub const CmResourceTypeNull: CM_RESOURCE_TYPE = 0;
pub const CmResourceTypePort: CM_RESOURCE_TYPE = 1;
pub const CmResourceTypeInterrupt: CM_RESOURCE_TYPE = 2;
pub const CmResourceTypeMemory: CM_RESOURCE_TYPE = 3;
pub const CmResourceTypeDma: CM_RESOURCE_TYPE = 4;
pub const CmResourceTypeDeviceSpecific: CM_RESOURCE_TYPE = 5;
pub const CmResourceTypeBusNumber: CM_RESOURCE_TYPE = 6;
pub const CmResourceTypeMemoryLarge: CM_RESOURCE_TYPE = 7;
pub const CmResourceTypeNonArbitrated: CM_RESOURCE_TYPE = 128;
pub const CmResourceTypeConfigData: CM_RESOURCE_TYPE = 128;
pub const CmResourceTypeDevicePrivate: CM_RESOURCE_TYPE = 129;
pub const CmResourceTypePcCardConfig: CM_RESOURCE_TYPE = 130;
pub const CmResourceTypeMfCardConfig: CM_RESOURCE_TYPE = 131;

/// `CM_SHARE_DISPOSITION` (a C enumeration); a descriptor stores it in its
/// one-byte `ShareDisposition`.
pub type CM_SHARE_DISPOSITION = INT;
pub const CmResourceShareUndetermined: CM_SHARE_DISPOSITION = 0;
pub const CmResourceShareDeviceExclusive: CM_SHARE_DISPOSITION = 1;
pub const CmResourceShareDriverExclusive: CM_SHARE_DISPOSITION = 2;
pub const CmResourceShareShared: CM_SHARE_DISPOSITION = 3;

// `CM_PARTIAL_RESOURCE_DESCRIPTOR.Flags` for a `CmResourceTypePort`.
pub const CM_RESOURCE_PORT_MEMORY: USHORT = 0x0000;
pub const CM_RESOURCE_PORT_IO: USHORT = 0x0001;
pub const CM_RESOURCE_PORT_10_BIT_DECODE: USHORT = 0x0004;
pub const CM_RESOURCE_PORT_12_BIT_DECODE: USHORT = 0x0008;
pub const CM_RESOURCE_PORT_16_BIT_DECODE: USHORT = 0x0010;
pub const CM_RESOURCE_PORT_POSITIVE_DECODE: USHORT = 0x0020;
pub const CM_RESOURCE_PORT_PASSIVE_DECODE: USHORT = 0x0040;
pub const CM_RESOURCE_PORT_WINDOW_DECODE: USHORT = 0x0080;
pub const CM_RESOURCE_PORT_BAR: USHORT = 0x0100;

// `CM_PARTIAL_RESOURCE_DESCRIPTOR.Flags` for a `CmResourceTypeInterrupt`.
pub const CM_RESOURCE_INTERRUPT_LEVEL_SENSITIVE: USHORT = 0x0000;
pub const CM_RESOURCE_INTERRUPT_LATCHED: USHORT = 0x0001;
pub const CM_RESOURCE_INTERRUPT_MESSAGE: USHORT = 0x0002;
pub const CM_RESOURCE_INTERRUPT_POLICY_INCLUDED: USHORT = 0x0004;

// `CM_PARTIAL_RESOURCE_DESCRIPTOR.Flags` for a `CmResourceTypeMemory`.
pub const CM_RESOURCE_MEMORY_READ_WRITE: USHORT = 0x0000;
pub const CM_RESOURCE_MEMORY_READ_ONLY: USHORT = 0x0001;
pub const CM_RESOURCE_MEMORY_WRITE_ONLY: USHORT = 0x0002;
pub const CM_RESOURCE_MEMORY_PREFETCHABLE: USHORT = 0x0004;
pub const CM_RESOURCE_MEMORY_COMBINEDWRITE: USHORT = 0x0008;
pub const CM_RESOURCE_MEMORY_24: USHORT = 0x0010;
pub const CM_RESOURCE_MEMORY_CACHEABLE: USHORT = 0x0020;
pub const CM_RESOURCE_MEMORY_BAR: USHORT = 0x0080;

/// `KAFFINITY`: a processor set, one bit per processor (`ULONG_PTR`).
pub type KAFFINITY = ULONG_PTR;

// `wdm.h` declares `CM_PARTIAL_RESOURCE_DESCRIPTOR` under `#pragma pack(4)`:
// every structure inside it is packed to 4 as well, so a `PHYSICAL_ADDRESS`
// or `KAFFINITY` in it sits at a 4-byte (not 8-byte) boundary. The C members
// of the union are unnamed structures; here each one gets the name
// `CM_PARTIAL_RESOURCE_DESCRIPTOR_u_<member>`.

/// `u.Generic`, `u.Port` and `u.Memory`: a range of port or memory space.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Port {
    pub Start: PHYSICAL_ADDRESS,
    pub Length: ULONG,
}
pub type CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Generic = CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Port;
pub type CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Memory = CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Port;

/// `u.Interrupt`. `Level` is MinGW-w64's `ULONG Level` (the headers without
/// `NT_PROCESSOR_GROUPS`); with `NT_PROCESSOR_GROUPS` the same four bytes are
/// `USHORT Level` then `USHORT Group`.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Interrupt {
    pub Level: ULONG,
    pub Vector: ULONG,
    pub Affinity: KAFFINITY,
}

/// `u.Dma`.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Dma {
    pub Channel: ULONG,
    pub Port: ULONG,
    pub Reserved1: ULONG,
}

/// `u.DevicePrivate`.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_DevicePrivate {
    pub Data: [ULONG; 3],
}

/// `u.BusNumber`.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_BusNumber {
    pub Start: ULONG,
    pub Length: ULONG,
    pub Reserved: ULONG,
}

/// `u.DeviceSpecificData`: the data follows the descriptor.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_DeviceSpecificData {
    pub DataSize: ULONG,
    pub Reserved1: ULONG,
    pub Reserved2: ULONG,
}

/// `u.Memory40`.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Memory40 {
    pub Start: PHYSICAL_ADDRESS,
    pub Length40: ULONG,
}

/// `u.Memory48`.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Memory48 {
    pub Start: PHYSICAL_ADDRESS,
    pub Length48: ULONG,
}

/// `u.Memory64`.
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Memory64 {
    pub Start: PHYSICAL_ADDRESS,
    pub Length64: ULONG,
}

/// The union `u` of a `CM_PARTIAL_RESOURCE_DESCRIPTOR`, chosen by its `Type`.
///
/// The C `MessageInterrupt` member (a union of a `Raw` and a
/// `Translated` view, 16 bytes, its `Translated` laid out as `Interrupt`) is
/// left out: it does not change the size, and nothing here reads it.
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub union CM_PARTIAL_RESOURCE_DESCRIPTOR_u {
    pub Generic: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Generic,
    pub Port: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Port,
    pub Interrupt: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Interrupt,
    pub Memory: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Memory,
    pub Dma: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Dma,
    pub DevicePrivate: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_DevicePrivate,
    pub BusNumber: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_BusNumber,
    pub DeviceSpecificData: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_DeviceSpecificData,
    pub Memory40: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Memory40,
    pub Memory48: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Memory48,
    pub Memory64: CM_PARTIAL_RESOURCE_DESCRIPTOR_u_Memory64,
}

/// `CM_PARTIAL_RESOURCE_DESCRIPTOR`: one resource of a device (20 bytes,
/// 4-byte aligned on x64).
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub struct CM_PARTIAL_RESOURCE_DESCRIPTOR {
    /// A `CmResourceType*` value.
    pub Type: UCHAR,
    /// A `CmResourceShare*` value.
    pub ShareDisposition: UCHAR,
    /// `CM_RESOURCE_*` flags of the type.
    pub Flags: USHORT,
    pub u: CM_PARTIAL_RESOURCE_DESCRIPTOR_u,
}
pub type PCM_PARTIAL_RESOURCE_DESCRIPTOR = *mut CM_PARTIAL_RESOURCE_DESCRIPTOR;

/// `CM_PARTIAL_RESOURCE_LIST` with its first (C: `[1]`) descriptor; `Count`
/// descriptors follow one another.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CM_PARTIAL_RESOURCE_LIST {
    pub Version: USHORT,
    pub Revision: USHORT,
    pub Count: ULONG,
    pub PartialDescriptors: [CM_PARTIAL_RESOURCE_DESCRIPTOR; 1],
}
pub type PCM_PARTIAL_RESOURCE_LIST = *mut CM_PARTIAL_RESOURCE_LIST;

/// `CM_FULL_RESOURCE_DESCRIPTOR`: the resources of a device on one bus.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CM_FULL_RESOURCE_DESCRIPTOR {
    pub InterfaceType: INTERFACE_TYPE,
    pub BusNumber: ULONG,
    pub PartialResourceList: CM_PARTIAL_RESOURCE_LIST,
}
pub type PCM_FULL_RESOURCE_DESCRIPTOR = *mut CM_FULL_RESOURCE_DESCRIPTOR;

/// `CM_RESOURCE_LIST` with its first (C: `[1]`) full descriptor.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CM_RESOURCE_LIST {
    pub Count: ULONG,
    pub List: [CM_FULL_RESOURCE_DESCRIPTOR; 1],
}
pub type PCM_RESOURCE_LIST = *mut CM_RESOURCE_LIST;

/// `VARENUM` (`wtypes.h`, a user-mode header): the `VARTYPE` of a property
/// value, as `KSPROPERTY_DESCRIPTION.PropTypeSet.Id` carries it.
pub type VARENUM = ULONG;
pub const VT_EMPTY: VARENUM = 0;
pub const VT_I4: VARENUM = 3;
pub const VT_BOOL: VARENUM = 11;
pub const VT_UI4: VARENUM = 19;
pub const VT_ILLEGAL: VARENUM = 0xFFFF;

// C enumerations are plain integers here: a value coming from the other side
// of the ABI is then never an invalid Rust enum.

pub type POOL_TYPE = i32;
pub const NonPagedPool: POOL_TYPE = 0;
pub const PagedPool: POOL_TYPE = 1;
pub const NonPagedPoolNx: POOL_TYPE = 512;

pub type MEMORY_CACHING_TYPE = i32;
pub const MmNonCached: MEMORY_CACHING_TYPE = 0;
pub const MmCached: MEMORY_CACHING_TYPE = 1;
pub const MmWriteCombined: MEMORY_CACHING_TYPE = 2;

pub type INTERFACE_TYPE = i32;
pub const InterfaceTypeUndefined: INTERFACE_TYPE = -1;
pub const Internal: INTERFACE_TYPE = 0;
pub const Isa: INTERFACE_TYPE = 1;
pub const PCIBus: INTERFACE_TYPE = 5;
pub const PNPBus: INTERFACE_TYPE = 15;

pub type DMA_WIDTH = i32;
pub const Width8Bits: DMA_WIDTH = 0;
pub const Width16Bits: DMA_WIDTH = 1;
pub const Width32Bits: DMA_WIDTH = 2;
pub const Width64Bits: DMA_WIDTH = 3;
pub const WidthNoWrap: DMA_WIDTH = 4;
pub const MaximumDmaWidth: DMA_WIDTH = 5;

pub type DMA_SPEED = i32;
pub const Compatible: DMA_SPEED = 0;
pub const TypeA: DMA_SPEED = 1;
pub const TypeB: DMA_SPEED = 2;
pub const TypeC: DMA_SPEED = 3;
pub const TypeF: DMA_SPEED = 4;
pub const MaximumDmaSpeed: DMA_SPEED = 5;

pub type DEVICE_REGISTRY_PROPERTY = i32;

pub type SYSTEM_POWER_STATE = i32;
pub const PowerSystemUnspecified: SYSTEM_POWER_STATE = 0;
pub const PowerSystemWorking: SYSTEM_POWER_STATE = 1;
pub const PowerSystemSleeping1: SYSTEM_POWER_STATE = 2;
pub const PowerSystemSleeping2: SYSTEM_POWER_STATE = 3;
pub const PowerSystemSleeping3: SYSTEM_POWER_STATE = 4;
pub const PowerSystemHibernate: SYSTEM_POWER_STATE = 5;
pub const PowerSystemShutdown: SYSTEM_POWER_STATE = 6;
pub const PowerSystemMaximum: SYSTEM_POWER_STATE = 7;
pub type DEVICE_POWER_STATE = i32;
pub const PowerDeviceUnspecified: DEVICE_POWER_STATE = 0;
pub const PowerDeviceD0: DEVICE_POWER_STATE = 1;
pub const PowerDeviceD1: DEVICE_POWER_STATE = 2;
pub const PowerDeviceD2: DEVICE_POWER_STATE = 3;
pub const PowerDeviceD3: DEVICE_POWER_STATE = 4;
pub const PowerDeviceMaximum: DEVICE_POWER_STATE = 5;

/// `DEVICE_CAPABILITIES` (`wdm.h`): what `IRP_MN_QUERY_CAPABILITIES`
/// fills, and what PortCls hands `IAdapterPowerManagement::
/// QueryDeviceCapabilities` to adjust.
///
/// The C struct's one-bit fields `DeviceD1` .. `NoDisplayInUI` share the
/// `ULONG` after `Version`; here that word is [`DEVICE_CAPABILITIES::Flags`]
/// and its bits are the `DEVICE_CAPABILITIES_*` masks below (bit order as
/// declared in MinGW-w64's `wdm.h`: first declared, lowest bit, which is
/// how MSVC and clang allocate bit-fields on x64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DEVICE_CAPABILITIES {
    pub Size: USHORT,
    pub Version: USHORT,
    /// The bit-field word (`DeviceD1:1`, `DeviceD2:1`, ...).
    pub Flags: ULONG,
    pub Address: ULONG,
    pub UINumber: ULONG,
    /// The device state for each system state, indexed by `SYSTEM_POWER_STATE`.
    pub DeviceState: [DEVICE_POWER_STATE; 7],
    pub SystemWake: SYSTEM_POWER_STATE,
    pub DeviceWake: DEVICE_POWER_STATE,
    pub D1Latency: ULONG,
    pub D2Latency: ULONG,
    pub D3Latency: ULONG,
}

/// `DEVICE_CAPABILITIES.DeviceD1` (bit 0 of the bit-field word).
pub const DEVICE_CAPABILITIES_DeviceD1: ULONG = 1 << 0;
/// `DEVICE_CAPABILITIES.DeviceD2` (bit 1).
pub const DEVICE_CAPABILITIES_DeviceD2: ULONG = 1 << 1;
/// `DEVICE_CAPABILITIES.WakeFromD0` (bit 10).
pub const DEVICE_CAPABILITIES_WakeFromD0: ULONG = 1 << 10;
/// `DEVICE_CAPABILITIES.WakeFromD1` (bit 11).
pub const DEVICE_CAPABILITIES_WakeFromD1: ULONG = 1 << 11;
/// `DEVICE_CAPABILITIES.WakeFromD2` (bit 12).
pub const DEVICE_CAPABILITIES_WakeFromD2: ULONG = 1 << 12;
/// `DEVICE_CAPABILITIES.WakeFromD3` (bit 13).
pub const DEVICE_CAPABILITIES_WakeFromD3: ULONG = 1 << 13;

/// `POWER_STATE`: a system or a device power state, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub union POWER_STATE {
    pub SystemState: SYSTEM_POWER_STATE,
    pub DeviceState: DEVICE_POWER_STATE,
}

pub const DEVICE_DESCRIPTION_VERSION: ULONG = 0;
pub const DEVICE_DESCRIPTION_VERSION1: ULONG = 1;
pub const DEVICE_DESCRIPTION_VERSION2: ULONG = 2;

/// `DEVICE_DESCRIPTION` up to version 2 (the fields every Windows version
/// has); `IMiniportWaveRT::GetDeviceDescription` fills it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DEVICE_DESCRIPTION {
    pub Version: ULONG,
    pub Master: BOOLEAN,
    pub ScatterGather: BOOLEAN,
    pub DemandMode: BOOLEAN,
    pub AutoInitialize: BOOLEAN,
    pub Dma32BitAddresses: BOOLEAN,
    pub IgnoreCount: BOOLEAN,
    pub Reserved1: BOOLEAN,
    pub Dma64BitAddresses: BOOLEAN,
    pub BusNumber: ULONG,
    pub DmaChannel: ULONG,
    pub InterfaceType: INTERFACE_TYPE,
    pub DmaWidth: DMA_WIDTH,
    pub DmaSpeed: DMA_SPEED,
    pub MaximumLength: ULONG,
    pub DmaPort: ULONG,
}
pub type PDEVICE_DESCRIPTION = *mut DEVICE_DESCRIPTION;

/// `DRIVER_ADD_DEVICE` routine pointer (`NULL` allowed).
pub type PDRIVER_ADD_DEVICE = Option<
    windows_fn!(
        unsafe fn(DriverObject: PDRIVER_OBJECT, PhysicalDeviceObject: PDEVICE_OBJECT) -> NTSTATUS
    ),
>;
pub type UINT64 = u64;

/// `DEVPROPKEY` (`devpropdef.h`): a device property, by property set and id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DEVPROPKEY {
    pub fmtid: GUID,
    pub pid: ULONG,
}

/// `DEVPROPTYPE`: the type of a device property value.
pub type DEVPROPTYPE = ULONG;
pub const DEVPROP_TYPEMOD_ARRAY: DEVPROPTYPE = 0x0000_1000;
pub const DEVPROP_TYPE_BYTE: DEVPROPTYPE = 0x0000_0003;
/// `DEVPROP_TYPE_BINARY` = `DEVPROP_TYPE_BYTE | DEVPROP_TYPEMOD_ARRAY`.
pub const DEVPROP_TYPE_BINARY: DEVPROPTYPE = DEVPROP_TYPE_BYTE | DEVPROP_TYPEMOD_ARRAY;
/// `DEVPROP_TYPE_STRING` (`devpropdef.h`): a NUL-terminated UTF-16 string.
pub const DEVPROP_TYPE_STRING: DEVPROPTYPE = 0x0000_0012;
/// `PLUGPLAY_PROPERTY_PERSISTENT` (`wdm.h`): the property survives a reboot.
pub const PLUGPLAY_PROPERTY_PERSISTENT: ULONG = 0x0000_0001;
/// `LCID`, a locale id.
pub type LCID = ULONG;
/// `LOCALE_NEUTRAL` (`winnt.h`: `MAKELCID(MAKELANGID(LANG_NEUTRAL,
/// SUBLANG_NEUTRAL), SORT_DEFAULT)`), the locale of a property that has none.
pub const LOCALE_NEUTRAL: LCID = 0;

// `FILE_*_ALIGNMENT` (`wdm.h`): alignment masks, e.g. a packet size
// alignment in `KSAUDIO_PACKETSIZE_CONSTRAINTS2`.
pub const FILE_BYTE_ALIGNMENT: ULONG = 0x0000_0000;
pub const FILE_WORD_ALIGNMENT: ULONG = 0x0000_0001;
pub const FILE_LONG_ALIGNMENT: ULONG = 0x0000_0003;
pub const FILE_QUAD_ALIGNMENT: ULONG = 0x0000_0007;
pub const FILE_128_BYTE_ALIGNMENT: ULONG = 0x0000_007F;

// ---- the registry (`wdm.h`) --------------------------------------------------

/// `REG_SZ`: a NUL-terminated UTF-16 string value.
pub const REG_SZ: ULONG = 1;
/// `REG_DWORD`: a 32-bit value.
pub const REG_DWORD: ULONG = 4;
/// `PLUGPLAY_REGKEY_DEVICE`: `IoOpenDeviceRegistryKey` opens the device's
/// hardware key (`Device Parameters` under its `Enum` instance key).
pub const PLUGPLAY_REGKEY_DEVICE: ULONG = 1;
/// `KEY_READ` (`STANDARD_RIGHTS_READ | KEY_QUERY_VALUE |
/// KEY_ENUMERATE_SUB_KEYS | KEY_NOTIFY`, without `SYNCHRONIZE`).
pub const KEY_READ: ACCESS_MASK = 0x0002_0019;
/// `KEY_VALUE_INFORMATION_CLASS`: what `ZwQueryValueKey` returns.
pub type KEY_VALUE_INFORMATION_CLASS = i32;
/// `KeyValuePartialInformation`: a [`KEY_VALUE_PARTIAL_INFORMATION`].
pub const KeyValuePartialInformation: KEY_VALUE_INFORMATION_CLASS = 2;

/// `KEY_VALUE_PARTIAL_INFORMATION`: a value's type and data, as
/// `ZwQueryValueKey(.., KeyValuePartialInformation, ..)` fills it. `Data`
/// is the first of `DataLength` bytes (the C structure's `Data[1]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KEY_VALUE_PARTIAL_INFORMATION {
    pub TitleIndex: ULONG,
    pub Type: ULONG,
    pub DataLength: ULONG,
    pub Data: [UCHAR; 1],
}
