//! WaveRT streams: `IMiniportWaveRTStream(Notification)` and the Windows 10
//! packet interfaces in one object.

use core::ffi::c_void;
use core::ptr::NonNull;
use portcls_sys::windows_abi;

use portcls_sys::{
    IID_IMiniportWaveRTInputStream, IID_IMiniportWaveRTOutputStream, IID_IMiniportWaveRTStream,
    IID_IMiniportWaveRTStreamNotification, IID_IUnknown, IMiniportWaveRTInputStreamVtbl,
    IMiniportWaveRTOutputStreamVtbl, IMiniportWaveRTStreamNotification,
    IMiniportWaveRTStreamNotificationVtbl, IMiniportWaveRTStreamVtbl, BOOL, DWORD, GUID,
    KSAUDIO_POSITION, KSAUDIO_PRESENTATION_POSITION, KSRTAUDIO_HWLATENCY, KSRTAUDIO_HWREGISTER,
    KSSTATE, MEMORY_CACHING_TYPE, NTSTATUS, PKEVENT, PKSAUDIO_POSITION, PKSDATAFORMAT, PMDL,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS, ULONG, ULONG64,
};

use crate::object::{unknown_vtbl, ComClass, ComObject};
use crate::{status_of, ComPtr, KernelEvent, NtResult, NtStatus};

/// A cyclic buffer handed to the port.
#[derive(Clone, Copy, Debug)]
pub struct AudioBuffer {
    /// The MDL describing the buffer's pages.
    pub mdl: PMDL,
    /// Its size in bytes (what the client gets; may differ from the request).
    pub actual_size: u32,
    /// Offset of the buffer in its first page.
    pub offset_from_first_page: u32,
    /// How the pages are mapped.
    pub cache_type: MEMORY_CACHING_TYPE,
}

/// A captured packet (`IMiniportWaveRTInputStream::GetReadPacket`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadPacket {
    /// Number of the packet (0-based since STOP, low 32 bits).
    pub packet_number: u32,
    /// Flags, 0 for now.
    pub flags: u32,
    /// QPC value of the packet's first sample.
    pub performance_counter: u64,
    /// Whether a newer complete packet is ready too (`MoreData`).
    pub more_data: bool,
}

/// Which packet interface a stream offers besides the notification one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketMode {
    /// Neither packet interface.
    None,
    /// `IMiniportWaveRTOutputStream` (render).
    Output,
    /// `IMiniportWaveRTInputStream` (capture).
    Input,
}

/// A WaveRT stream. The notification methods are mandatory (event-driven
/// mode); the packet methods answer only if [`packet_mode`] says so.
///
/// [`packet_mode`]: MiniportWaveRtStream::packet_mode
pub trait MiniportWaveRtStream: Send + Sync + 'static {
    /// The packet interface `QueryInterface` answers.
    fn packet_mode(&self) -> PacketMode {
        PacketMode::None
    }
    /// Changes the format (`KSDATAFORMAT` and what follows, `FormatSize` bytes).
    ///
    /// # Errors
    ///
    /// E.g. `NOT_SUPPORTED` while running.
    fn set_format(&self, format: &[u8]) -> NtResult<()>;
    /// Moves to `state`, one step at a time.
    ///
    /// # Errors
    ///
    /// Any failure status.
    fn set_state(&self, state: KSSTATE) -> NtResult<()>;
    /// The play/record and write positions (any IRQL up to DISPATCH).
    ///
    /// # Errors
    ///
    /// Any failure status.
    fn position(&self) -> NtResult<KSAUDIO_POSITION>;
    /// Allocates the cyclic buffer (no notification).
    ///
    /// # Errors
    ///
    /// E.g. `INSUFFICIENT_RESOURCES`.
    fn allocate_audio_buffer(&self, requested_size: u32) -> NtResult<AudioBuffer>;
    /// Frees what `allocate_audio_buffer` gave.
    fn free_audio_buffer(&self, mdl: PMDL, size: u32);
    /// FIFO, chipset and codec delays.
    fn hw_latency(&self) -> KSRTAUDIO_HWLATENCY;
    /// A position register mapped for the client.
    ///
    /// # Errors
    ///
    /// `NOT_SUPPORTED` (the default) when there is none.
    fn position_register(&self) -> NtResult<KSRTAUDIO_HWREGISTER> {
        Err(NtStatus::NOT_SUPPORTED)
    }
    /// A clock register mapped for the client.
    ///
    /// # Errors
    ///
    /// `NOT_SUPPORTED` (the default) when there is none.
    fn clock_register(&self) -> NtResult<KSRTAUDIO_HWREGISTER> {
        Err(NtStatus::NOT_SUPPORTED)
    }
    /// Allocates the cyclic buffer with `notification_count` events per cycle.
    ///
    /// # Errors
    ///
    /// E.g. `INSUFFICIENT_RESOURCES`.
    fn allocate_buffer_with_notification(
        &self,
        notification_count: u32,
        requested_size: u32,
    ) -> NtResult<AudioBuffer>;
    /// Frees what `allocate_buffer_with_notification` gave.
    fn free_buffer_with_notification(&self, mdl: PMDL, size: u32);
    /// Adds an event to signal at each notification point.
    ///
    /// # Errors
    ///
    /// Any failure status.
    fn register_notification_event(&self, event: KernelEvent) -> NtResult<()>;
    /// Removes a registered event.
    ///
    /// # Errors
    ///
    /// `NOT_FOUND` for an event never registered.
    fn unregister_notification_event(&self, event: KernelEvent) -> NtResult<()>;
    /// Render packet mode: the client wrote packet `packet_number`.
    ///
    /// # Errors
    ///
    /// `NOT_SUPPORTED` by default.
    fn set_write_packet(
        &self,
        packet_number: u32,
        flags: u32,
        eos_packet_length: u32,
    ) -> NtResult<()> {
        let _ = (packet_number, flags, eos_packet_length);
        Err(NtStatus::NOT_SUPPORTED)
    }
    /// Render packet mode: position in blocks with its QPC time.
    ///
    /// # Errors
    ///
    /// `NOT_SUPPORTED` by default.
    fn presentation_position(&self) -> NtResult<KSAUDIO_PRESENTATION_POSITION> {
        Err(NtStatus::NOT_SUPPORTED)
    }
    /// Render packet mode: packets completely transferred since STOP (the
    /// 1-based count, which is also the 0-based number of the packet in
    /// transfer).
    ///
    /// # Errors
    ///
    /// `NOT_SUPPORTED` by default.
    fn packet_count(&self) -> NtResult<u32> {
        Err(NtStatus::NOT_SUPPORTED)
    }
    /// Capture packet mode: the next complete packet for the OS to read.
    ///
    /// # Errors
    ///
    /// `NOT_SUPPORTED` by default; `DEVICE_NOT_READY` when none is complete.
    fn read_packet(&self) -> NtResult<ReadPacket> {
        Err(NtStatus::NOT_SUPPORTED)
    }
}

/// The COM body of a stream.
pub struct WaveRtStream<T>(T);

/// Interface pointers of a stream object: notification (also the stream
/// and `IUnknown` interface), then the two packet interfaces.
#[repr(C)]
pub struct StreamInterfaces {
    notification: *const IMiniportWaveRTStreamNotificationVtbl,
    output: *const IMiniportWaveRTOutputStreamVtbl,
    input: *const IMiniportWaveRTInputStreamVtbl,
}
// SAFETY: pointers to immutable `static` vtables.
unsafe impl Send for StreamInterfaces {}
// SAFETY: as above.
unsafe impl Sync for StreamInterfaces {}

const PTR: usize = core::mem::size_of::<*const c_void>();
const OUTPUT: usize = PTR;
const INPUT: usize = 2 * PTR;

/// The stream value behind an interface pointer at byte `OFF`.
///
/// # Safety
///
/// `this` must be the interface at offset `OFF` of a live
/// `ComObject<WaveRtStream<T>>`.
unsafe fn stream<'a, T: MiniportWaveRtStream, const OFF: usize>(this: *mut c_void) -> &'a T {
    // SAFETY: guaranteed by the caller.
    &unsafe { ComObject::<WaveRtStream<T>>::from_this::<OFF>(this) }
        .value()
        .0
}

/// Writes `value` to `out` and returns the status of `r`.
///
/// # Safety
///
/// `out` must be null or writable.
unsafe fn put<V>(out: *mut V, r: NtResult<V>) -> NTSTATUS {
    if out.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    match r {
        Ok(v) => {
            // SAFETY: `out` is non-null and writable (caller).
            unsafe { out.write(v) };
            STATUS_SUCCESS
        }
        Err(e) => e.0,
    }
}

#[windows_abi]
unsafe extern "system" fn set_format<T: MiniportWaveRtStream>(
    this: *mut c_void,
    format: PKSDATAFORMAT,
) -> NTSTATUS {
    if format.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the port passes a readable KSDATAFORMAT.
    let size = unsafe { (*format).FormatSize } as usize;
    if size < core::mem::size_of::<portcls_sys::KSDATAFORMAT>() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the port passes the whole format, `FormatSize` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(format.cast::<u8>(), size) };
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    status_of(unsafe { stream::<T, 0>(this) }.set_format(bytes))
}

#[windows_abi]
unsafe extern "system" fn set_state<T: MiniportWaveRtStream>(
    this: *mut c_void,
    state: KSSTATE,
) -> NTSTATUS {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    status_of(unsafe { stream::<T, 0>(this) }.set_state(state))
}

#[windows_abi]
unsafe extern "system" fn get_position<T: MiniportWaveRtStream>(
    this: *mut c_void,
    out: PKSAUDIO_POSITION,
) -> NTSTATUS {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    let r = unsafe { stream::<T, 0>(this) }.position();
    // SAFETY: the port passes a writable position (or null, refused).
    unsafe { put(out, r) }
}

/// Writes a buffer's four out-parameters.
///
/// # Safety
///
/// Each pointer must be null or writable.
const unsafe fn put_buffer(
    r: NtResult<AudioBuffer>,
    mdl: *mut PMDL,
    size: *mut ULONG,
    offset: *mut ULONG,
    cache: *mut MEMORY_CACHING_TYPE,
) -> NTSTATUS {
    if mdl.is_null() || size.is_null() || offset.is_null() || cache.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    match r {
        Ok(b) => {
            // SAFETY: checked non-null, writable by the port's contract.
            unsafe { mdl.write(b.mdl) };
            // SAFETY: as above.
            unsafe { size.write(b.actual_size) };
            // SAFETY: as above.
            unsafe { offset.write(b.offset_from_first_page) };
            // SAFETY: as above.
            unsafe { cache.write(b.cache_type) };
            STATUS_SUCCESS
        }
        Err(e) => e.0,
    }
}

#[windows_abi]
unsafe extern "system" fn allocate_audio_buffer<T: MiniportWaveRtStream>(
    this: *mut c_void,
    requested: ULONG,
    mdl: *mut PMDL,
    size: *mut ULONG,
    offset: *mut ULONG,
    cache: *mut MEMORY_CACHING_TYPE,
) -> NTSTATUS {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    let r = unsafe { stream::<T, 0>(this) }.allocate_audio_buffer(requested);
    // SAFETY: the port passes writable out-parameters.
    unsafe { put_buffer(r, mdl, size, offset, cache) }
}

#[windows_abi]
unsafe extern "system" fn free_audio_buffer<T: MiniportWaveRtStream>(
    this: *mut c_void,
    mdl: PMDL,
    size: ULONG,
) {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    unsafe { stream::<T, 0>(this) }.free_audio_buffer(mdl, size);
}

#[windows_abi]
unsafe extern "system" fn get_hw_latency<T: MiniportWaveRtStream>(
    this: *mut c_void,
    out: *mut KSRTAUDIO_HWLATENCY,
) {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    let latency = unsafe { stream::<T, 0>(this) }.hw_latency();
    if !out.is_null() {
        // SAFETY: non-null and writable (port's contract).
        unsafe { out.write(latency) };
    }
}

#[windows_abi]
unsafe extern "system" fn get_position_register<T: MiniportWaveRtStream>(
    this: *mut c_void,
    out: *mut KSRTAUDIO_HWREGISTER,
) -> NTSTATUS {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    let r = unsafe { stream::<T, 0>(this) }.position_register();
    // SAFETY: the port passes a writable register (or null, refused).
    unsafe { put(out, r) }
}

#[windows_abi]
unsafe extern "system" fn get_clock_register<T: MiniportWaveRtStream>(
    this: *mut c_void,
    out: *mut KSRTAUDIO_HWREGISTER,
) -> NTSTATUS {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    let r = unsafe { stream::<T, 0>(this) }.clock_register();
    // SAFETY: the port passes a writable register (or null, refused).
    unsafe { put(out, r) }
}

#[windows_abi]
unsafe extern "system" fn allocate_buffer_with_notification<T: MiniportWaveRtStream>(
    this: *mut c_void,
    count: ULONG,
    requested: ULONG,
    mdl: *mut PMDL,
    size: *mut ULONG,
    offset: *mut ULONG,
    cache: *mut MEMORY_CACHING_TYPE,
) -> NTSTATUS {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    let r = unsafe { stream::<T, 0>(this) }.allocate_buffer_with_notification(count, requested);
    // SAFETY: the port passes writable out-parameters.
    unsafe { put_buffer(r, mdl, size, offset, cache) }
}

#[windows_abi]
unsafe extern "system" fn free_buffer_with_notification<T: MiniportWaveRtStream>(
    this: *mut c_void,
    mdl: PMDL,
    size: ULONG,
) {
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    unsafe { stream::<T, 0>(this) }.free_buffer_with_notification(mdl, size);
}

#[windows_abi]
unsafe extern "system" fn register_notification_event<T: MiniportWaveRtStream>(
    this: *mut c_void,
    event: PKEVENT,
) -> NTSTATUS {
    // SAFETY: PortCls passes an event it keeps alive until it unregisters it.
    let Some(event) = (unsafe { KernelEvent::from_raw(event) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    status_of(unsafe { stream::<T, 0>(this) }.register_notification_event(event))
}

#[windows_abi]
unsafe extern "system" fn unregister_notification_event<T: MiniportWaveRtStream>(
    this: *mut c_void,
    event: PKEVENT,
) -> NTSTATUS {
    // SAFETY: the same contract as for registration; the event is only compared.
    let Some(event) = (unsafe { KernelEvent::from_raw(event) }) else {
        return STATUS_INVALID_PARAMETER;
    };
    // SAFETY: installed at offset 0 of a `ComObject<WaveRtStream<T>>`.
    status_of(unsafe { stream::<T, 0>(this) }.unregister_notification_event(event))
}

#[windows_abi]
unsafe extern "system" fn set_write_packet<T: MiniportWaveRtStream>(
    this: *mut c_void,
    packet: ULONG,
    flags: DWORD,
    eos: ULONG,
) -> NTSTATUS {
    // SAFETY: installed at offset OUTPUT of a `ComObject<WaveRtStream<T>>`.
    status_of(unsafe { stream::<T, OUTPUT>(this) }.set_write_packet(packet, flags, eos))
}

#[windows_abi]
unsafe extern "system" fn get_presentation_position<T: MiniportWaveRtStream>(
    this: *mut c_void,
    out: *mut KSAUDIO_PRESENTATION_POSITION,
) -> NTSTATUS {
    // SAFETY: installed at offset OUTPUT of a `ComObject<WaveRtStream<T>>`.
    let r = unsafe { stream::<T, OUTPUT>(this) }.presentation_position();
    // SAFETY: the port passes a writable position (or null, refused).
    unsafe { put(out, r) }
}

#[windows_abi]
unsafe extern "system" fn get_packet_count<T: MiniportWaveRtStream>(
    this: *mut c_void,
    out: *mut ULONG,
) -> NTSTATUS {
    // SAFETY: installed at offset OUTPUT of a `ComObject<WaveRtStream<T>>`.
    let r = unsafe { stream::<T, OUTPUT>(this) }.packet_count();
    // SAFETY: the port passes a writable count (or null, refused).
    unsafe { put(out, r) }
}

#[windows_abi]
unsafe extern "system" fn get_read_packet<T: MiniportWaveRtStream>(
    this: *mut c_void,
    packet: *mut ULONG,
    flags: *mut DWORD,
    qpc: *mut ULONG64,
    more: *mut BOOL,
) -> NTSTATUS {
    if packet.is_null() || flags.is_null() || qpc.is_null() || more.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: installed at offset INPUT of a `ComObject<WaveRtStream<T>>`.
    match unsafe { stream::<T, INPUT>(this) }.read_packet() {
        Ok(p) => {
            // SAFETY: checked non-null, writable by the port's contract.
            unsafe { packet.write(p.packet_number) };
            // SAFETY: as above.
            unsafe { flags.write(p.flags) };
            // SAFETY: as above.
            unsafe { qpc.write(p.performance_counter) };
            // SAFETY: as above.
            unsafe { more.write(BOOL::from(p.more_data)) };
            STATUS_SUCCESS
        }
        Err(e) => e.0,
    }
}

impl<T: MiniportWaveRtStream> WaveRtStream<T> {
    const NOTIFICATION: IMiniportWaveRTStreamNotificationVtbl =
        IMiniportWaveRTStreamNotificationVtbl {
            base__: IMiniportWaveRTStreamVtbl {
                base__: unknown_vtbl::<Self, 0>(),
                SetFormat: set_format::<T>,
                SetState: set_state::<T>,
                GetPosition: get_position::<T>,
                AllocateAudioBuffer: allocate_audio_buffer::<T>,
                FreeAudioBuffer: free_audio_buffer::<T>,
                GetHWLatency: get_hw_latency::<T>,
                GetPositionRegister: get_position_register::<T>,
                GetClockRegister: get_clock_register::<T>,
            },
            AllocateBufferWithNotification: allocate_buffer_with_notification::<T>,
            FreeBufferWithNotification: free_buffer_with_notification::<T>,
            RegisterNotificationEvent: register_notification_event::<T>,
            UnregisterNotificationEvent: unregister_notification_event::<T>,
        };
    const OUTPUT: IMiniportWaveRTOutputStreamVtbl = IMiniportWaveRTOutputStreamVtbl {
        base__: unknown_vtbl::<Self, OUTPUT>(),
        SetWritePacket: set_write_packet::<T>,
        GetOutputStreamPresentationPosition: get_presentation_position::<T>,
        GetPacketCount: get_packet_count::<T>,
    };
    const INPUT: IMiniportWaveRTInputStreamVtbl = IMiniportWaveRTInputStreamVtbl {
        base__: unknown_vtbl::<Self, INPUT>(),
        GetReadPacket: get_read_packet::<T>,
    };
}

// SAFETY: three vtable pointers at offsets 0, OUTPUT and INPUT, each built
// with `unknown_vtbl` for its own offset; `query` answers each offset only
// for interfaces its vtable implements.
unsafe impl<T: MiniportWaveRtStream> ComClass for WaveRtStream<T> {
    type Interfaces = StreamInterfaces;
    fn interfaces() -> Self::Interfaces {
        StreamInterfaces {
            notification: &Self::NOTIFICATION,
            output: &Self::OUTPUT,
            input: &Self::INPUT,
        }
    }
    fn query(&self, iid: &GUID) -> Option<usize> {
        if [
            IID_IUnknown,
            IID_IMiniportWaveRTStream,
            IID_IMiniportWaveRTStreamNotification,
        ]
        .contains(iid)
        {
            return Some(0);
        }
        match self.0.packet_mode() {
            PacketMode::Output if *iid == IID_IMiniportWaveRTOutputStream => Some(OUTPUT),
            PacketMode::Input if *iid == IID_IMiniportWaveRTInputStream => Some(INPUT),
            _ => None,
        }
    }
}

/// Creates a stream object and returns its first interface with one reference.
pub fn new_stream_raw<T: MiniportWaveRtStream>(value: T) -> NtResult<NonNull<c_void>> {
    ComObject::create(WaveRtStream(value))
}

/// Creates a stream object on its own (tests, emulator); the pointer holds
/// its one reference.
///
/// # Errors
///
/// `INSUFFICIENT_RESOURCES` when the allocation fails.
pub fn new_wave_rt_stream<T: MiniportWaveRtStream>(
    value: T,
) -> NtResult<ComPtr<IMiniportWaveRTStreamNotification>> {
    let raw = new_stream_raw(value)?;
    // SAFETY: a new stream's first interface is IMiniportWaveRTStreamNotification, with one reference for us.
    unsafe { ComPtr::from_raw(raw.as_ptr().cast()) }.ok_or(NtStatus::INSUFFICIENT_RESOURCES)
}
