//! Wave and topology miniports.

use core::ffi::c_void;
use core::ptr;
use portcls_sys::windows_abi;

use portcls_sys::{
    IID_IMiniport, IID_IMiniportAudioSignalProcessing, IID_IMiniportTopology, IID_IMiniportWaveRT,
    IID_IUnknown, IMiniportAudioSignalProcessingVtbl, IMiniportTopology, IMiniportTopologyVtbl,
    IMiniportVtbl, IMiniportWaveRT, IMiniportWaveRTVtbl, IPortTopology, IPortWaveRT,
    IPortWaveRTStream, IResourceList, IUnknown, DEVICE_DESCRIPTION, GUID, KSDATAFORMAT,
    KSDATAFORMAT_ATTRIBUTES, KSMULTIPLE_ITEM, NTSTATUS, PCFILTER_DESCRIPTOR, PDEVICE_DESCRIPTION,
    PKSDATAFORMAT, PKSDATARANGE, PMINIPORTWAVERTSTREAM, PPCFILTER_DESCRIPTOR, PPORTTOPOLOGY,
    PPORTWAVERT, PPORTWAVERTSTREAM, PRESOURCELIST, PUNKNOWN, PVOID, STATUS_BUFFER_TOO_SMALL,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS, ULONG,
};

use crate::object::{unknown_vtbl, ComClass, ComObject};
use crate::stream::{new_stream_raw, MiniportWaveRtStream};
use crate::{status_of, ComPtr, NtResult};

/// What every miniport answers (`IMiniport`).
pub trait Miniport: Send + Sync + 'static {
    /// The filter descriptor the port reads for the filter's life: static
    /// data, or data the miniport owns (valid while it lives; the port
    /// holds the miniport for as long as it uses the descriptor).
    fn description(&self) -> &PCFILTER_DESCRIPTOR;
    /// Picks a format inside both ranges and writes it to `result`.
    ///
    /// `data_range` and `matching_range` are the ranges' bytes
    /// (`FormatSize` long); `result` is the output buffer (empty when the
    /// port only asks for the size). Set `*result_len` to the bytes written,
    /// or to the size needed together with `Err(NtStatus::BUFFER_OVERFLOW)`.
    ///
    /// # Errors
    ///
    /// `NO_MATCH`, `BUFFER_OVERFLOW`, `BUFFER_TOO_SMALL`, or
    /// `NOT_IMPLEMENTED` to let the port use its default intersection.
    fn data_range_intersection(
        &self,
        pin_id: u32,
        data_range: &[u8],
        matching_range: &[u8],
        result: &mut [u8],
        result_len: &mut u32,
    ) -> NtResult<()>;
}

/// A WaveRT miniport (`IMiniportWaveRT`).
pub trait MiniportWaveRt: Miniport {
    /// The stream type `new_stream` creates.
    type Stream: MiniportWaveRtStream;
    /// Called once, before anything else; may keep the references.
    ///
    /// # Errors
    ///
    /// Any failure status aborts the port's initialisation.
    fn init(
        &self,
        adapter: Option<ComPtr<IUnknown>>,
        resources: Option<ComPtr<IResourceList>>,
        port: ComPtr<IPortWaveRT>,
    ) -> NtResult<()>;
    /// Creates a stream on `pin`; `format` is the `KSDATAFORMAT` and what
    /// follows it (`FormatSize` bytes); `attributes` the attribute list
    /// after it (the `KSMULTIPLE_ITEM` and its attributes, `Size` bytes)
    /// when the format's `Flags` has `KSDATAFORMAT_ATTRIBUTES`, e.g. the
    /// stream's signal-processing mode. Its content is the client's: hostile
    /// until checked.
    ///
    /// # Errors
    ///
    /// E.g. `INSUFFICIENT_RESOURCES` when no more streams can run.
    fn new_stream(
        &self,
        port_stream: ComPtr<IPortWaveRTStream>,
        pin: u32,
        capture: bool,
        format: &[u8],
        attributes: Option<&[u8]>,
    ) -> NtResult<Self::Stream>;
    /// Describes the DMA capabilities of the device.
    ///
    /// # Errors
    ///
    /// Any failure status.
    fn device_description(&self, description: &mut DEVICE_DESCRIPTION) -> NtResult<()>;
    /// Whether the object answers `IMiniportAudioSignalProcessing` (its
    /// pins have signal-processing modes). `false` by default.
    fn has_signal_processing_modes(&self) -> bool {
        false
    }
    /// `IMiniportAudioSignalProcessing::GetModes`: the modes of `pin`. The
    /// trampoline applies the size protocol (a NULL array asks for the
    /// count; a short one gets `STATUS_BUFFER_TOO_SMALL` and the count).
    ///
    /// # Errors
    ///
    /// `INVALID_PARAMETER` for a pin the filter does not have,
    /// `NOT_SUPPORTED` (the default) for a pin without modes (a bridge pin).
    fn signal_processing_modes(&self, pin: u32) -> NtResult<&'static [GUID]> {
        let _ = pin;
        Err(crate::NtStatus::NOT_SUPPORTED)
    }
}

/// A topology miniport (`IMiniportTopology`).
pub trait MiniportTopology: Miniport {
    /// Called once, before anything else; may keep the references.
    ///
    /// # Errors
    ///
    /// Any failure status aborts the port's initialisation.
    fn init(
        &self,
        adapter: Option<ComPtr<IUnknown>>,
        resources: Option<ComPtr<IResourceList>>,
        port: ComPtr<IPortTopology>,
    ) -> NtResult<()>;
}

/// Reads a variable-size KS structure whose first `ULONG` is its size.
///
/// # Safety
///
/// `p` must be null or point to a readable `KSDATAFORMAT` followed by
/// `FormatSize` bytes in all, valid for `'a`.
const unsafe fn ks_bytes<'a>(p: *const KSDATAFORMAT) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` points to a readable KSDATAFORMAT (caller).
    let size = unsafe { (*p).FormatSize } as usize;
    if size < core::mem::size_of::<KSDATAFORMAT>() {
        return None;
    }
    // SAFETY: the caller guarantees `size` readable bytes at `p`.
    Some(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), size) })
}

#[windows_abi]
unsafe extern "system" fn get_description<C: ComClass + AsMiniport, const OFF: usize>(
    this: *mut c_void,
    out: *mut PPCFILTER_DESCRIPTOR,
) -> NTSTATUS {
    if out.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: this vtable is only installed at offset OFF of a `ComObject<C>`.
    let obj = unsafe { ComObject::<C>::from_this::<OFF>(this) };
    let desc = obj.value().miniport().description();
    // SAFETY: `out` is non-null and writable (port's contract).
    unsafe { out.write(ptr::from_ref(desc).cast_mut()) };
    portcls_sys::STATUS_SUCCESS
}

#[windows_abi]
unsafe extern "system" fn data_range_intersection<C: ComClass + AsMiniport, const OFF: usize>(
    this: *mut c_void,
    pin_id: ULONG,
    data_range: PKSDATARANGE,
    matching: PKSDATARANGE,
    out_len: ULONG,
    result: PVOID,
    result_len: *mut ULONG,
) -> NTSTATUS {
    // SAFETY: the port passes whole data ranges (FormatSize bytes each).
    let (Some(range), Some(matching)) = (unsafe { ks_bytes(data_range) }, unsafe {
        ks_bytes(matching)
    }) else {
        return STATUS_INVALID_PARAMETER;
    };
    if result_len.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let out: &mut [u8] = if result.is_null() || out_len == 0 {
        &mut []
    } else {
        // SAFETY: the port's output buffer is `out_len` writable bytes.
        unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), out_len as usize) }
    };
    let mut len = 0;
    // SAFETY: this vtable is only installed at offset OFF of a `ComObject<C>`.
    let obj = unsafe { ComObject::<C>::from_this::<OFF>(this) };
    let r = obj
        .value()
        .miniport()
        .data_range_intersection(pin_id, range, matching, out, &mut len);
    // SAFETY: `result_len` is non-null and writable.
    unsafe { result_len.write(len) };
    status_of(r)
}

/// Access to the `Miniport` part of a class, for the shared trampolines.
pub trait AsMiniport {
    /// The miniport.
    fn miniport(&self) -> &dyn Miniport;
}

const fn miniport_vtbl<C: ComClass + AsMiniport, const OFF: usize>() -> IMiniportVtbl {
    IMiniportVtbl {
        base__: unknown_vtbl::<C, OFF>(),
        GetDescription: get_description::<C, OFF>,
        DataRangeIntersection: data_range_intersection::<C, OFF>,
    }
}

/// The COM body of a WaveRT miniport.
pub struct WaveRtMiniport<T>(T);

/// Interface pointers of a WaveRT miniport object: the miniport (also
/// `IUnknown` and `IMiniport`), then `IMiniportAudioSignalProcessing`
/// (answered only when the value has modes).
#[repr(C)]
pub struct WaveRtMiniportInterfaces {
    miniport: *const IMiniportWaveRTVtbl,
    signal_processing: *const IMiniportAudioSignalProcessingVtbl,
}

/// Byte offset of the `IMiniportAudioSignalProcessing` interface pointer.
const SIGNAL_PROCESSING: usize = core::mem::size_of::<*const c_void>();

impl<T: MiniportWaveRt> AsMiniport for WaveRtMiniport<T> {
    fn miniport(&self) -> &dyn Miniport {
        &self.0
    }
}

impl<T: MiniportWaveRt> WaveRtMiniport<T> {
    const VTBL: IMiniportWaveRTVtbl = IMiniportWaveRTVtbl {
        base__: miniport_vtbl::<Self, 0>(),
        Init: wave_init::<T>,
        NewStream: wave_new_stream::<T>,
        GetDeviceDescription: wave_device_description::<T>,
    };
    const SIGNAL_PROCESSING_VTBL: IMiniportAudioSignalProcessingVtbl =
        IMiniportAudioSignalProcessingVtbl {
            base__: unknown_vtbl::<Self, SIGNAL_PROCESSING>(),
            GetModes: wave_get_modes::<T>,
        };
}

// SAFETY: two vtable pointers, at offset 0 and SIGNAL_PROCESSING, each built
// with `unknown_vtbl` for its own offset; `query` answers each offset only
// for interfaces its vtable implements.
unsafe impl<T: MiniportWaveRt> ComClass for WaveRtMiniport<T> {
    type Interfaces = WaveRtMiniportInterfaces;
    fn interfaces() -> Self::Interfaces {
        WaveRtMiniportInterfaces {
            miniport: &Self::VTBL,
            signal_processing: &Self::SIGNAL_PROCESSING_VTBL,
        }
    }
    fn query(&self, iid: &GUID) -> Option<usize> {
        if [IID_IUnknown, IID_IMiniport, IID_IMiniportWaveRT].contains(iid) {
            return Some(0);
        }
        (*iid == IID_IMiniportAudioSignalProcessing && self.0.has_signal_processing_modes())
            .then_some(SIGNAL_PROCESSING)
    }
}

// SAFETY: the interface pointers point to immutable `static` vtables.
unsafe impl Send for WaveRtMiniportInterfaces {}
// SAFETY: as above.
unsafe impl Sync for WaveRtMiniportInterfaces {}

/// The miniport value behind `this`.
///
/// # Safety
///
/// `this` must be the first interface of a live `ComObject<WaveRtMiniport<T>>`.
unsafe fn wave<'a, T: MiniportWaveRt>(this: *mut c_void) -> &'a T {
    // SAFETY: guaranteed by the caller.
    &unsafe { ComObject::<WaveRtMiniport<T>>::from_this::<0>(this) }
        .value()
        .0
}

/// The WaveRT miniport value behind a filter property's `MajorTarget`.
///
/// PortCls passes the miniport's `IUnknown` as `MajorTarget` in a
/// `PCPROPERTY_REQUEST` addressed to its filter (a property of the filter's
/// automation table: `MinorTarget` is then null).
///
/// Property handlers are plain `extern "system"` functions listed in static
/// automation tables; this is how they reach the miniport's state. The
/// pointer is the one the adapter handed `IPort::Init` (the object's
/// `IUnknown`, its interface at offset 0), which PortCls keeps as the
/// subdevice's miniport (`ReactOS` portcls `PropertyItemDispatch`:
/// `MajorTarget = Descriptor->UnknownMiniport`; SYSVAD's wave property
/// handlers cast `MajorTarget` to their miniport class).
///
/// # Safety
///
/// `unknown` must be the offset-0 interface pointer (`IUnknown` or
/// `IMiniportWaveRT`) of a live object made by [`new_wave_rt_miniport`] with
/// this very `T`, valid for `'a` (PortCls holds its miniport for as long as
/// it dispatches requests to it).
pub unsafe fn wave_miniport_value<'a, T: MiniportWaveRt>(unknown: *mut c_void) -> &'a T {
    // SAFETY: the offset-0 interface of such an object (caller).
    unsafe { wave::<T>(unknown) }
}

#[windows_abi]
unsafe extern "system" fn wave_init<T: MiniportWaveRt>(
    this: *mut c_void,
    adapter: PUNKNOWN,
    resources: PRESOURCELIST,
    port: PPORTWAVERT,
) -> NTSTATUS {
    // SAFETY: the port passes a live (or null) adapter; we take our own reference.
    let adapter = unsafe { ComPtr::from_raw_borrowed(adapter) };
    // SAFETY: the port passes a live (or null) resource list; we take our own reference.
    let resources = unsafe { ComPtr::from_raw_borrowed(resources) };
    // SAFETY: as above.
    let Some(port) = (unsafe { ComPtr::from_raw_borrowed(port) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: installed only at offset 0 of a `ComObject<WaveRtMiniport<T>>`.
    status_of(unsafe { wave::<T>(this) }.init(adapter, resources, port))
}

#[windows_abi]
unsafe extern "system" fn wave_new_stream<T: MiniportWaveRt>(
    this: *mut c_void,
    out: *mut PMINIPORTWAVERTSTREAM,
    port_stream: PPORTWAVERTSTREAM,
    pin: ULONG,
    capture: u8,
    format: PKSDATAFORMAT,
) -> NTSTATUS {
    if out.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: `out` is non-null and writable.
    unsafe { out.write(ptr::null_mut()) };
    // SAFETY: the port passes a whole data format (FormatSize bytes).
    let Some(format_bytes) = (unsafe { ks_bytes(format) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: the same format, followed by its attribute list when flagged.
    let attributes = match unsafe { attribute_list(format.cast_const(), format_bytes) } {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    let format = format_bytes;
    // SAFETY: the port passes a live port stream; we take our own reference.
    let Some(port_stream) = (unsafe { ComPtr::from_raw_borrowed(port_stream) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: installed only at offset 0 of a `ComObject<WaveRtMiniport<T>>`.
    let created = unsafe { wave::<T>(this) }
        .new_stream(port_stream, pin, capture != 0, format, attributes)
        .and_then(new_stream_raw);
    match created {
        Ok(stream) => {
            // SAFETY: `out` is writable; the new object's one reference goes to the port.
            unsafe { out.write(stream.as_ptr().cast()) };
            portcls_sys::STATUS_SUCCESS
        }
        Err(e) => e.0,
    }
}

/// The attribute list of a data format: `None` when the format's `Flags`
/// lack `KSDATAFORMAT_ATTRIBUTES`, else the `KSMULTIPLE_ITEM` at the first
/// 8-byte boundary after the format's `FormatSize` bytes and the `Size`
/// bytes it announces (itself included), as `ks.h` lays it out and SYSVAD's
/// `NewStream` reads it. What is inside is left to the miniport to check.
///
/// # Errors
///
/// `STATUS_INVALID_PARAMETER` when the announced `Size` cannot even hold
/// the `KSMULTIPLE_ITEM`, or the offsets overflow.
///
/// # Safety
///
/// `format` points to the `format_bytes` the port passed; when flagged,
/// the port's buffer goes on with the attribute list and its `Size` bytes
/// (PortCls validated the pin-create request they came in).
unsafe fn attribute_list(
    format: *const KSDATAFORMAT,
    format_bytes: &[u8],
) -> Result<Option<&[u8]>, NTSTATUS> {
    // SAFETY: `format` is the readable KSDATAFORMAT behind `format_bytes`.
    if unsafe { (*format).Flags } & KSDATAFORMAT_ATTRIBUTES == 0 {
        return Ok(None);
    }
    let Some(offset) = format_bytes.len().checked_add(7).map(|end| end & !7) else {
        return Err(STATUS_INVALID_PARAMETER);
    };
    // SAFETY: the list starts `offset` bytes into the port's buffer (caller).
    let list = unsafe { format.cast::<u8>().add(offset) };
    // SAFETY: the KSMULTIPLE_ITEM is readable (caller); it may be unaligned
    // if a client misplaced it, so it is read byte-wise.
    let header = unsafe { list.cast::<KSMULTIPLE_ITEM>().read_unaligned() };
    let size = header.Size as usize;
    if size < core::mem::size_of::<KSMULTIPLE_ITEM>() {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // SAFETY: `size` readable bytes at `list` (caller: the port's buffer
    // holds the list it announces), valid as long as the format is.
    Ok(Some(unsafe { core::slice::from_raw_parts(list, size) }))
}

#[windows_abi]
unsafe extern "system" fn wave_get_modes<T: MiniportWaveRt>(
    this: *mut c_void,
    pin: ULONG,
    modes: *mut GUID,
    count: *mut ULONG,
) -> NTSTATUS {
    if count.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: installed only at offset SIGNAL_PROCESSING of a `ComObject<WaveRtMiniport<T>>`.
    let obj = unsafe { ComObject::<WaveRtMiniport<T>>::from_this::<SIGNAL_PROCESSING>(this) };
    let supported = match obj.value().0.signal_processing_modes(pin) {
        Ok(supported) => supported,
        Err(status) => return status.code(),
    };
    let Ok(needed) = ULONG::try_from(supported.len()) else {
        return STATUS_INVALID_PARAMETER;
    };
    // Learn (GetModes): a NULL array asks for the count, which comes back
    // with STATUS_SUCCESS; an array shorter than the count gets
    // STATUS_BUFFER_TOO_SMALL, and the count, as SYSVAD's GetModes answers.
    if !modes.is_null() {
        // SAFETY: `count` is non-null and readable (the caller's in-out count).
        let room = unsafe { count.read() };
        if room < needed {
            // SAFETY: `count` is non-null and writable.
            unsafe { count.write(needed) };
            return STATUS_BUFFER_TOO_SMALL;
        }
        // SAFETY: the caller's array holds `room` >= `needed` GUIDs.
        let out = unsafe { core::slice::from_raw_parts_mut(modes, supported.len()) };
        out.copy_from_slice(supported);
    }
    // SAFETY: `count` is non-null and writable.
    unsafe { count.write(needed) };
    STATUS_SUCCESS
}

#[windows_abi]
unsafe extern "system" fn wave_device_description<T: MiniportWaveRt>(
    this: *mut c_void,
    description: PDEVICE_DESCRIPTION,
) -> NTSTATUS {
    if description.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the port passes a writable DEVICE_DESCRIPTION, unaliased for the call.
    let description = unsafe { &mut *description };
    // SAFETY: installed only at offset 0 of a `ComObject<WaveRtMiniport<T>>`.
    status_of(unsafe { wave::<T>(this) }.device_description(description))
}

/// Creates a WaveRT miniport object; the pointer holds its one reference.
///
/// # Errors
///
/// `INSUFFICIENT_RESOURCES` when the allocation fails.
pub fn new_wave_rt_miniport<T: MiniportWaveRt>(value: T) -> NtResult<ComPtr<IMiniportWaveRT>> {
    let raw = ComObject::create(WaveRtMiniport(value))?;
    // SAFETY: a new object's first interface is IMiniportWaveRT, with one reference for us.
    unsafe { ComPtr::from_raw(raw.as_ptr().cast()) }.ok_or(crate::NtStatus::INSUFFICIENT_RESOURCES)
}

/// The COM body of a topology miniport.
pub struct TopologyMiniport<T>(T);

/// Interface pointers of a topology miniport object.
#[repr(C)]
pub struct TopologyMiniportInterfaces {
    miniport: *const IMiniportTopologyVtbl,
}
// SAFETY: pointers to immutable `static` vtables.
unsafe impl Send for TopologyMiniportInterfaces {}
// SAFETY: as above.
unsafe impl Sync for TopologyMiniportInterfaces {}

impl<T: MiniportTopology> AsMiniport for TopologyMiniport<T> {
    fn miniport(&self) -> &dyn Miniport {
        &self.0
    }
}

impl<T: MiniportTopology> TopologyMiniport<T> {
    const VTBL: IMiniportTopologyVtbl = IMiniportTopologyVtbl {
        base__: miniport_vtbl::<Self, 0>(),
        Init: topology_init::<T>,
    };
}

// SAFETY: one vtable pointer at offset 0, built with `unknown_vtbl::<Self, 0>`;
// `query` only answers offset 0 for interfaces that vtable implements.
unsafe impl<T: MiniportTopology> ComClass for TopologyMiniport<T> {
    type Interfaces = TopologyMiniportInterfaces;
    fn interfaces() -> Self::Interfaces {
        TopologyMiniportInterfaces {
            miniport: &Self::VTBL,
        }
    }
    fn query(&self, iid: &GUID) -> Option<usize> {
        [IID_IUnknown, IID_IMiniport, IID_IMiniportTopology]
            .contains(iid)
            .then_some(0)
    }
}

#[windows_abi]
unsafe extern "system" fn topology_init<T: MiniportTopology>(
    this: *mut c_void,
    adapter: PUNKNOWN,
    resources: PRESOURCELIST,
    port: PPORTTOPOLOGY,
) -> NTSTATUS {
    // SAFETY: the port passes a live (or null) adapter; we take our own reference.
    let adapter = unsafe { ComPtr::from_raw_borrowed(adapter) };
    // SAFETY: the port passes a live (or null) resource list; we take our own reference.
    let resources = unsafe { ComPtr::from_raw_borrowed(resources) };
    // SAFETY: as above.
    let Some(port) = (unsafe { ComPtr::from_raw_borrowed(port) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: installed only at offset 0 of a `ComObject<TopologyMiniport<T>>`.
    let obj = unsafe { ComObject::<TopologyMiniport<T>>::from_this::<0>(this) };
    status_of(obj.value().0.init(adapter, resources, port))
}

/// Creates a topology miniport object; the pointer holds its one reference.
///
/// # Errors
///
/// `INSUFFICIENT_RESOURCES` when the allocation fails.
pub fn new_topology_miniport<T: MiniportTopology>(value: T) -> NtResult<ComPtr<IMiniportTopology>> {
    let raw = ComObject::create(TopologyMiniport(value))?;
    // SAFETY: a new object's first interface is IMiniportTopology, with one reference for us.
    unsafe { ComPtr::from_raw(raw.as_ptr().cast()) }.ok_or(crate::NtStatus::INSUFFICIENT_RESOURCES)
}

/// The topology miniport value behind the `IUnknown` pointer PortCls passes
/// as `MajorTarget` in a `PCPROPERTY_REQUEST` addressed to one of its
/// filter's pins or nodes.
///
/// Property handlers are plain `extern "system"` functions listed in static
/// automation tables; this is how they reach the miniport's state.
///
/// # Safety
///
/// `unknown` must be an interface pointer of a live object made by
/// [`new_topology_miniport`] with this very `T`, valid for `'a` (PortCls
/// holds its miniport for as long as it dispatches requests to it).
pub unsafe fn topology_miniport_value<'a, T: MiniportTopology>(unknown: *mut c_void) -> &'a T {
    // SAFETY: a topology miniport object has its only interface at offset 0 (caller).
    &unsafe { ComObject::<TopologyMiniport<T>>::from_this::<0>(unknown) }
        .value()
        .0
}
