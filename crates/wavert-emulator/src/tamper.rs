//! A wrong answer injected at the trampoline: a wave miniport that forwards
//! every call to a real one through its vtable and alters one answer.
//!
//! The port's rules ([`crate::engine::check_granted_buffer`], the position
//! and latency checks, the register and device-description checks, the
//! record of refused orders) only count if they fire on a miniport that
//! breaks them. The product's miniports do not, and a decorator of the
//! back-end ([`crate::faulty`]) cannot reach answers the shared stream
//! computes (the granted size, the offset, the cache type). This object sits
//! where PortCls sits: it is an `IMiniportWaveRT` whose streams wrap the real
//! streams, so the engine calls it through the same vtables and
//! trampolines, and exactly one answer comes back wrong. The packet
//! interfaces are forwarded too (answered when the real stream answers
//! them), so the packet rules can be seen to fire.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use portcls_sys::{
    IMiniportWaveRT, IMiniportWaveRTInputStream, IMiniportWaveRTOutputStream,
    IMiniportWaveRTStream, IMiniportWaveRTStreamNotification, IPortWaveRT, IPortWaveRTStream,
    IResourceList, IUnknown, DEVICE_DESCRIPTION, KSAUDIO_POSITION, KSAUDIO_PRESENTATION_POSITION,
    KSRTAUDIO_HWLATENCY, KSRTAUDIO_HWREGISTER, KSSTATE, KSSTATE_STOP,
    KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM, MEMORY_CACHING_TYPE, NTSTATUS, PCFILTER_DESCRIPTOR, PMDL,
    PMINIPORTWAVERTSTREAM, STATUS_DATA_LATE_ERROR, ULONG,
};
use wavert_com::{
    new_wave_rt_miniport, AudioBuffer, ComPtr, KernelEvent, Miniport, MiniportWaveRt,
    MiniportWaveRtStream, NtResult, NtStatus, PacketMode, ReadPacket,
};

use crate::engine::POISON_U32;

/// The one answer that comes back wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// `ActualSize` this many bytes below what the miniport granted.
    ShortBuffer(u32),
    /// `OffsetFromFirstPage` one page further: offset + size passes the MDL.
    OffsetPastMdl,
    /// `CacheType` replaced by this value.
    CacheType(MEMORY_CACHING_TYPE),
    /// `PlayOffset` equal to the buffer size (one past the last byte).
    PlayOffsetAtSize,
    /// `WriteOffset` beyond the buffer.
    WriteOffsetBeyond,
    /// `GetHWLatency` leaves `CodecDelay` as the port poisoned it.
    LatencyFieldUnset,
    /// `GetPositionRegister` succeeds without a register address.
    RegisterWithoutAddress,
    /// `GetDeviceDescription` succeeds without writing the description.
    DeviceDescriptionUnset,
    /// `SetState` refuses any jump of more than one step.
    RefuseStateJumps,
    /// `GetPacketCount` one packet ahead of the real count.
    PacketCountAhead,
    /// `SetWritePacket` answers success where the real stream said the
    /// packet is late.
    AcceptLatePackets,
    /// `SetWritePacket` drops the end-of-stream flag (the device keeps
    /// playing the buffer).
    IgnoreEndOfStream,
    /// `GetOutputStreamPresentationPosition` one block behind its previous
    /// answer, from the second call on.
    PresentationBackwards,
    /// `GetReadPacket`'s QPC this many ticks after the real one.
    ReadPacketQpcLate(u64),
    /// `GetReadPacket` names the packet before the real one.
    ReadPacketNumberBehind,
    /// `GetReadPacket` claims `MoreData` with every packet.
    ReadPacketMoreData,
    /// `GetReadPacket` answers `STATUS_DEVICE_NOT_READY` from the second
    /// packet on, whatever is complete.
    ReadPacketNeverReady,
    /// `GetOutputStreamPresentationPosition` one block ahead of the real
    /// answer.
    PresentationAhead,
}

/// An `IMiniportWaveRT` over `real` whose answers are `real`'s except the
/// one `tamper` changes.
///
/// # Errors
///
/// When the COM object cannot be made.
pub fn tampered_wave_miniport(
    real: &ComPtr<IMiniportWaveRT>,
    tamper: Tamper,
) -> NtResult<ComPtr<IMiniportWaveRT>> {
    new_wave_rt_miniport(TamperedWave {
        real: real.clone(),
        tamper,
    })
}

struct TamperedWave {
    real: ComPtr<IMiniportWaveRT>,
    tamper: Tamper,
}

impl Miniport for TamperedWave {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        let mut desc: *mut PCFILTER_DESCRIPTOR = ptr::null_mut();
        let get = self.real.vtbl().base__.GetDescription;
        // SAFETY: the real miniport is live; `desc` outlives the call.
        let status = unsafe { get(self.real.this(), &raw mut desc) };
        if status < 0 || desc.is_null() {
            return &EMPTY_FILTER;
        }
        // SAFETY: PortCls requires the descriptor to be static data of the
        // miniport's, which outlives this decorator.
        unsafe { &*desc }
    }

    fn data_range_intersection(
        &self,
        pin: u32,
        client: &[u8],
        matching: &[u8],
        out: &mut [u8],
        written: &mut u32,
    ) -> NtResult<()> {
        let mut client = client.to_vec();
        let mut matching = matching.to_vec();
        let intersect = self.real.vtbl().base__.DataRangeIntersection;
        let out_len = ULONG::try_from(out.len()).unwrap_or(ULONG::MAX);
        // SAFETY: the real miniport is live; every buffer holds the length
        // passed and outlives the call.
        let status = unsafe {
            intersect(
                self.real.this(),
                pin,
                client.as_mut_ptr().cast(),
                matching.as_mut_ptr().cast(),
                out_len,
                out.as_mut_ptr().cast(),
                written,
            )
        };
        NtStatus::check(status)
    }
}

impl MiniportWaveRt for TamperedWave {
    type Stream = TamperedStream;

    fn init(
        &self,
        _adapter: Option<ComPtr<IUnknown>>,
        _resources: Option<ComPtr<IResourceList>>,
        _port: ComPtr<IPortWaveRT>,
    ) -> NtResult<()> {
        // The real miniport was initialised by its own port.
        Ok(())
    }

    fn new_stream(
        &self,
        port_stream: ComPtr<IPortWaveRTStream>,
        pin: u32,
        capture: bool,
        format: &[u8],
        attributes: Option<&[u8]>,
    ) -> NtResult<TamperedStream> {
        // NewStream takes the format with its attribute list after it.
        let mut whole = format.to_vec();
        if let Some(list) = attributes {
            whole.extend_from_slice(list);
        }
        let mut raw: PMINIPORTWAVERTSTREAM = ptr::null_mut();
        let new_stream = self.real.vtbl().NewStream;
        // SAFETY: the real miniport and the port stream are live; the
        // format buffer holds the format and its attributes.
        let status = unsafe {
            new_stream(
                self.real.this(),
                &raw mut raw,
                port_stream.as_raw(),
                pin,
                u8::from(capture),
                whole.as_mut_ptr().cast(),
            )
        };
        NtStatus::check(status)?;
        // SAFETY: a successful NewStream hands over one reference.
        let real = unsafe { ComPtr::from_raw(raw) }.ok_or(NtStatus::UNSUCCESSFUL)?;
        let notification = real.query::<IMiniportWaveRTStreamNotification>().ok();
        let output = real.query::<IMiniportWaveRTOutputStream>().ok();
        let input = real.query::<IMiniportWaveRTInputStream>().ok();
        Ok(TamperedStream {
            real,
            notification,
            output,
            input,
            tamper: self.tamper,
            state: AtomicI32::new(KSSTATE_STOP),
            last_presented: AtomicU64::new(u64::MAX),
        })
    }

    fn device_description(&self, description: &mut DEVICE_DESCRIPTION) -> NtResult<()> {
        if self.tamper == Tamper::DeviceDescriptionUnset {
            // Success, and the port's (poisoned) description left as it was.
            return Ok(());
        }
        let describe = self.real.vtbl().GetDeviceDescription;
        // SAFETY: the real miniport is live; `description` is writable.
        NtStatus::check(unsafe { describe(self.real.this(), description) })
    }
}

/// A filter descriptor for a miniport that gave none (never used: the
/// engine reads the real miniport's descriptor).
static EMPTY_FILTER: PCFILTER_DESCRIPTOR = PCFILTER_DESCRIPTOR {
    Version: 0,
    AutomationTable: ptr::null(),
    PinSize: 0,
    PinCount: 0,
    Pins: ptr::null(),
    NodeSize: 0,
    NodeCount: 0,
    Nodes: ptr::null(),
    ConnectionCount: 0,
    Connections: ptr::null(),
    CategoryCount: 0,
    Categories: ptr::null(),
};

/// A stream of [`TamperedWave`]: the real stream behind it.
pub struct TamperedStream {
    real: ComPtr<IMiniportWaveRTStream>,
    notification: Option<ComPtr<IMiniportWaveRTStreamNotification>>,
    output: Option<ComPtr<IMiniportWaveRTOutputStream>>,
    input: Option<ComPtr<IMiniportWaveRTInputStream>>,
    tamper: Tamper,
    /// The state the real stream last accepted.
    state: AtomicI32,
    /// The last presentation position answered (`u64::MAX`: none yet).
    last_presented: AtomicU64,
}

impl TamperedStream {
    fn notification(&self) -> NtResult<&ComPtr<IMiniportWaveRTStreamNotification>> {
        self.notification.as_ref().ok_or(NtStatus::NOT_SUPPORTED)
    }

    fn output(&self) -> NtResult<&ComPtr<IMiniportWaveRTOutputStream>> {
        self.output.as_ref().ok_or(NtStatus::NOT_SUPPORTED)
    }

    fn input(&self) -> NtResult<&ComPtr<IMiniportWaveRTInputStream>> {
        self.input.as_ref().ok_or(NtStatus::NOT_SUPPORTED)
    }

    /// One allocation call of the real stream, `call` given its four
    /// out-parameters, read back as an [`AudioBuffer`] with the tampered
    /// field changed.
    fn allocated(
        &self,
        call: impl FnOnce(&mut PMDL, &mut u32, &mut u32, &mut MEMORY_CACHING_TYPE) -> NTSTATUS,
    ) -> NtResult<AudioBuffer> {
        let (mut mdl, mut size, mut offset, mut cache) = (ptr::null_mut(), 0, 0, 0);
        NtStatus::check(call(&mut mdl, &mut size, &mut offset, &mut cache))?;
        Ok(self.alter(AudioBuffer {
            mdl,
            actual_size: size,
            offset_from_first_page: offset,
            cache_type: cache,
        }))
    }

    /// The granted buffer with the tampered field changed.
    const fn alter(&self, mut buffer: AudioBuffer) -> AudioBuffer {
        match self.tamper {
            Tamper::ShortBuffer(by) => buffer.actual_size = buffer.actual_size.saturating_sub(by),
            Tamper::OffsetPastMdl => buffer.offset_from_first_page += 4096,
            Tamper::CacheType(cache) => buffer.cache_type = cache,
            _ => {}
        }
        buffer
    }
}

impl MiniportWaveRtStream for TamperedStream {
    fn packet_mode(&self) -> PacketMode {
        match (&self.output, &self.input) {
            (Some(_), _) => PacketMode::Output,
            (None, Some(_)) => PacketMode::Input,
            (None, None) => PacketMode::None,
        }
    }

    fn set_format(&self, format: &[u8]) -> NtResult<()> {
        let mut format = format.to_vec();
        let set = self.real.vtbl().SetFormat;
        // SAFETY: the real stream is live; the format outlives the call.
        NtStatus::check(unsafe { set(self.real.this(), format.as_mut_ptr().cast()) })
    }

    fn set_state(&self, state: KSSTATE) -> NtResult<()> {
        let now = self.state.load(Ordering::Acquire);
        if self.tamper == Tamper::RefuseStateJumps && now.abs_diff(state) > 1 {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let set = self.real.vtbl().SetState;
        // SAFETY: the real stream is live.
        NtStatus::check(unsafe { set(self.real.this(), state) })?;
        self.state.store(state, Ordering::Release);
        Ok(())
    }

    fn position(&self) -> NtResult<KSAUDIO_POSITION> {
        let mut pos = KSAUDIO_POSITION::default();
        let get = self.real.vtbl().GetPosition;
        // SAFETY: the real stream is live; `pos` outlives the call.
        NtStatus::check(unsafe { get(self.real.this(), &raw mut pos) })?;
        match self.tamper {
            Tamper::PlayOffsetAtSize => pos.PlayOffset = u64::from(u32::MAX),
            Tamper::WriteOffsetBeyond => pos.WriteOffset = u64::MAX / 2,
            _ => {}
        }
        Ok(pos)
    }

    fn allocate_audio_buffer(&self, requested_size: u32) -> NtResult<AudioBuffer> {
        let allocate = self.real.vtbl().AllocateAudioBuffer;
        self.allocated(|mdl, size, offset, cache| {
            // SAFETY: the real stream is live; the out-parameters outlive the call.
            unsafe { allocate(self.real.this(), requested_size, mdl, size, offset, cache) }
        })
    }

    #[allow(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the MDL is not dereferenced: it goes back to the real stream, which matches it against the MDLs it gave"
    )]
    fn free_audio_buffer(&self, mdl: PMDL, size: u32) {
        let free = self.real.vtbl().FreeAudioBuffer;
        // SAFETY: the real stream is live; the MDL is one it gave.
        unsafe { free(self.real.this(), mdl, size) };
    }

    fn hw_latency(&self) -> KSRTAUDIO_HWLATENCY {
        let mut latency = KSRTAUDIO_HWLATENCY::default();
        let get = self.real.vtbl().GetHWLatency;
        // SAFETY: the real stream is live; `latency` outlives the call.
        unsafe { get(self.real.this(), &raw mut latency) };
        if self.tamper == Tamper::LatencyFieldUnset {
            // What a miniport that never writes the field leaves behind.
            latency.CodecDelay = POISON_U32;
        }
        latency
    }

    fn position_register(&self) -> NtResult<KSRTAUDIO_HWREGISTER> {
        if self.tamper == Tamper::RegisterWithoutAddress {
            return Ok(KSRTAUDIO_HWREGISTER {
                Register: ptr::null_mut(),
                Width: 32,
                Numerator: 0,
                Denominator: 0,
                Accuracy: 0,
            });
        }
        let mut register = KSRTAUDIO_HWREGISTER {
            Register: ptr::null_mut::<c_void>(),
            Width: 0,
            Numerator: 0,
            Denominator: 0,
            Accuracy: 0,
        };
        let get = self.real.vtbl().GetPositionRegister;
        // SAFETY: the real stream is live; `register` outlives the call.
        NtStatus::check(unsafe { get(self.real.this(), &raw mut register) })?;
        Ok(register)
    }

    fn allocate_buffer_with_notification(
        &self,
        notification_count: u32,
        requested_size: u32,
    ) -> NtResult<AudioBuffer> {
        let n = self.notification()?;
        let allocate = n.vtbl().AllocateBufferWithNotification;
        self.allocated(|mdl, size, offset, cache| {
            // SAFETY: the real stream is live; the out-parameters outlive the call.
            unsafe {
                allocate(
                    n.this(),
                    notification_count,
                    requested_size,
                    mdl,
                    size,
                    offset,
                    cache,
                )
            }
        })
    }

    #[allow(
        clippy::not_unsafe_ptr_arg_deref,
        reason = "the MDL is not dereferenced: it goes back to the real stream, which matches it against the MDLs it gave"
    )]
    fn free_buffer_with_notification(&self, mdl: PMDL, size: u32) {
        if let Ok(n) = self.notification() {
            let free = n.vtbl().FreeBufferWithNotification;
            // SAFETY: the real stream is live; the MDL is one it gave.
            unsafe { free(n.this(), mdl, size) };
        }
    }

    fn register_notification_event(&self, event: KernelEvent) -> NtResult<()> {
        let n = self.notification()?;
        let register = n.vtbl().RegisterNotificationEvent;
        // SAFETY: the real stream is live; the event is the port's.
        NtStatus::check(unsafe { register(n.this(), event.as_raw()) })
    }

    fn unregister_notification_event(&self, event: KernelEvent) -> NtResult<()> {
        let n = self.notification()?;
        let unregister = n.vtbl().UnregisterNotificationEvent;
        // SAFETY: the real stream is live; the event is the port's.
        NtStatus::check(unsafe { unregister(n.this(), event.as_raw()) })
    }

    fn set_write_packet(&self, packet_number: u32, flags: u32, eos_length: u32) -> NtResult<()> {
        let out = self.output()?;
        let (flags, eos_length) = if self.tamper == Tamper::IgnoreEndOfStream {
            (flags & !KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM, 0)
        } else {
            (flags, eos_length)
        };
        let set = out.vtbl().SetWritePacket;
        // SAFETY: the real stream is live.
        let status = unsafe { set(out.this(), packet_number, flags, eos_length) };
        if self.tamper == Tamper::AcceptLatePackets && status == STATUS_DATA_LATE_ERROR {
            return Ok(());
        }
        NtStatus::check(status)
    }

    fn presentation_position(&self) -> NtResult<KSAUDIO_PRESENTATION_POSITION> {
        let out = self.output()?;
        let mut position = KSAUDIO_PRESENTATION_POSITION::default();
        let get = out.vtbl().GetOutputStreamPresentationPosition;
        // SAFETY: the real stream is live; `position` outlives the call.
        NtStatus::check(unsafe { get(out.this(), &raw mut position) })?;
        if self.tamper == Tamper::PresentationAhead {
            position.u64PositionInBlocks += 1;
        }
        if self.tamper == Tamper::PresentationBackwards {
            let last = self.last_presented.load(Ordering::Acquire);
            if last != u64::MAX {
                position.u64PositionInBlocks = last.saturating_sub(1);
            }
            self.last_presented
                .store(position.u64PositionInBlocks, Ordering::Release);
        }
        Ok(position)
    }

    fn packet_count(&self) -> NtResult<u32> {
        let out = self.output()?;
        let mut count = 0;
        let get = out.vtbl().GetPacketCount;
        // SAFETY: the real stream is live; `count` outlives the call.
        NtStatus::check(unsafe { get(out.this(), &raw mut count) })?;
        if self.tamper == Tamper::PacketCountAhead {
            count = count.wrapping_add(1);
        }
        Ok(count)
    }

    fn read_packet(&self) -> NtResult<ReadPacket> {
        let input = self.input()?;
        let (mut number, mut flags, mut qpc, mut more) = (0, 0, 0, 0);
        let get = input.vtbl().GetReadPacket;
        // SAFETY: the real stream is live; the out-parameters outlive the call.
        let status = unsafe {
            get(
                input.this(),
                &raw mut number,
                &raw mut flags,
                &raw mut qpc,
                &raw mut more,
            )
        };
        NtStatus::check(status)?;
        match self.tamper {
            Tamper::ReadPacketQpcLate(ticks) => qpc = qpc.saturating_add(ticks),
            Tamper::ReadPacketNumberBehind => number = number.wrapping_sub(1),
            Tamper::ReadPacketMoreData => more = 1,
            Tamper::ReadPacketNeverReady if number > 0 => return Err(NtStatus::DEVICE_NOT_READY),
            _ => {}
        }
        Ok(ReadPacket {
            packet_number: number,
            flags,
            performance_counter: qpc,
            more_data: more != 0,
        })
    }
}
