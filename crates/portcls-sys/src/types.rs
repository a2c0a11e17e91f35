//! Basic Windows C types, `GUID`, `LARGE_INTEGER` and the opaque kernel objects.

use core::ffi::c_void;

pub type UCHAR = u8;
pub type BOOLEAN = u8;
pub type USHORT = u16;
pub type WORD = u16;
pub type WCHAR = u16;
pub type ULONG = u32;
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
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
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
    /// Opaque `CM_RESOURCE_LIST`.
    CM_RESOURCE_LIST,
    /// Opaque `CM_PARTIAL_RESOURCE_DESCRIPTOR`.
    CM_PARTIAL_RESOURCE_DESCRIPTOR,
    /// Opaque `DEVICE_CAPABILITIES`.
    DEVICE_CAPABILITIES,
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
pub type PCM_RESOURCE_LIST = *mut CM_RESOURCE_LIST;
pub type PCM_PARTIAL_RESOURCE_DESCRIPTOR = *mut CM_PARTIAL_RESOURCE_DESCRIPTOR;
pub type PDEVICE_CAPABILITIES = *mut DEVICE_CAPABILITIES;
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;
pub type PKSEVENT_ENTRY = *mut KSEVENT_ENTRY;

/// `CM_RESOURCE_TYPE` (`UCHAR`), e.g. [`CmResourceTypeInterrupt`].
pub type CM_RESOURCE_TYPE = UCHAR;
pub const CmResourceTypeNull: CM_RESOURCE_TYPE = 0;
pub const CmResourceTypePort: CM_RESOURCE_TYPE = 1;
pub const CmResourceTypeInterrupt: CM_RESOURCE_TYPE = 2;
pub const CmResourceTypeMemory: CM_RESOURCE_TYPE = 3;
pub const CmResourceTypeDma: CM_RESOURCE_TYPE = 4;

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
pub const PowerSystemWorking: SYSTEM_POWER_STATE = 1;
pub const PowerSystemHibernate: SYSTEM_POWER_STATE = 5;
pub type DEVICE_POWER_STATE = i32;
pub const PowerDeviceUnspecified: DEVICE_POWER_STATE = 0;
pub const PowerDeviceD0: DEVICE_POWER_STATE = 1;
pub const PowerDeviceD1: DEVICE_POWER_STATE = 2;
pub const PowerDeviceD2: DEVICE_POWER_STATE = 3;
pub const PowerDeviceD3: DEVICE_POWER_STATE = 4;

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
