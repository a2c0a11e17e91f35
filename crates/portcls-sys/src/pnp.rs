//! Plug and Play: IRP codes, PortCls's device extension, kernel-object offsets.
//!
//! The codes an adapter's own `IRP_MJ_PNP` dispatch looks at, the size of
//! PortCls's device extension and the adapter's slot in it, and the few
//! kernel-object offsets the emulator needs to build a `PnP` IRP the way the
//! I/O manager does.
//!
//! Values as in `wdm.h` and `portcls.h`; the ABI check compares each with
//! the MinGW-w64 headers (`IRP_MJ_*`, `IRP_MN_*`,
//! `PORT_CLASS_DEVICE_EXTENSION_SIZE` as constants, the offsets as
//! `offsetof` of the named member). The driver itself reads these objects
//! through `wdk-sys`'s bindings; the offsets are for code that has no such
//! bindings (the emulator's stand-in for the I/O manager), x64 only.

use crate::types::{UCHAR, ULONG_PTR};

/// `IRP_MJ_PNP`: the major function of every Plug and Play IRP.
pub const IRP_MJ_PNP: UCHAR = 0x1B;
/// `IRP_MJ_MAXIMUM_FUNCTION`: the last index of `DRIVER_OBJECT::MajorFunction`.
pub const IRP_MJ_MAXIMUM_FUNCTION: UCHAR = 0x1B;
/// `IRP_MN_START_DEVICE`.
pub const IRP_MN_START_DEVICE: UCHAR = 0x00;
/// `IRP_MN_REMOVE_DEVICE`.
pub const IRP_MN_REMOVE_DEVICE: UCHAR = 0x02;
/// `IRP_MN_STOP_DEVICE`.
pub const IRP_MN_STOP_DEVICE: UCHAR = 0x04;
/// `IRP_MN_SURPRISE_REMOVAL`.
pub const IRP_MN_SURPRISE_REMOVAL: UCHAR = 0x17;

/// `PORT_CLASS_DEVICE_EXTENSION_SIZE` (`64 * sizeof(ULONG_PTR)`): the device
/// extension PortCls gives a functional device object when `PcAddAdapterDevice`
/// is called with `DeviceExtensionSize` 0.
pub const PORT_CLASS_DEVICE_EXTENSION_SIZE: usize = 64 * core::mem::size_of::<ULONG_PTR>();

/// The `ULONG_PTR` slot of PortCls's device extension where the adapter keeps
/// its own state.
///
/// Microsoft Learn's `PcAddAdapterDevice` page leaves elements
/// 4 to 7 of the extension (seen as a `ULONG_PTR` array) to the adapter
/// driver; SYSVAD and simpleaudiosample (`PortClassDeviceContext::m_pCommon`,
/// byte offset 40 on x64) use element 5, and so do we.
pub const PORT_CLASS_ADAPTER_SLOT: usize = 5;

/// Byte offset of `DEVICE_OBJECT::DeviceExtension` (x64).
pub const DEVICE_OBJECT_DeviceExtension_OFFSET: usize = 0x40;
/// Byte offset of `DRIVER_OBJECT::MajorFunction` (x64): the dispatch table,
/// `IRP_MJ_MAXIMUM_FUNCTION + 1` pointers.
pub const DRIVER_OBJECT_MajorFunction_OFFSET: usize = 0x70;
/// Byte offset of `IRP::Tail.Overlay.CurrentStackLocation` (x64): what
/// `IoGetCurrentIrpStackLocation` reads.
pub const IRP_CurrentStackLocation_OFFSET: usize = 0xB8;
/// Byte offset of `IO_STACK_LOCATION::MajorFunction`.
pub const IO_STACK_LOCATION_MajorFunction_OFFSET: usize = 0;
/// Byte offset of `IO_STACK_LOCATION::MinorFunction`.
pub const IO_STACK_LOCATION_MinorFunction_OFFSET: usize = 1;
/// `sizeof(IRP)` (x64): the IRP header; its stack locations follow it.
pub const IRP_SIZE: usize = 0xD0;
/// `sizeof(IO_STACK_LOCATION)` (x64).
pub const IO_STACK_LOCATION_SIZE: usize = 0x48;
