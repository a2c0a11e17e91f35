//! The topology miniports (speaker and microphone) and their property
//! handlers: volume, mute and jack description.
//!
//! The handlers are `extern "system"` functions in static automation tables.
//! The only `unsafe` is in [`dispatch`], which turns the raw
//! `PCPROPERTY_REQUEST` into checked slices; everything after it is safe
//! code over byte slices, and every size is checked (hostile input):
//!
//! | request | answer |
//! |---|---|
//! | value buffer of 0 bytes on GET or BASICSUPPORT | `STATUS_BUFFER_OVERFLOW`, `ValueSize` = size needed |
//! | value buffer shorter than needed | `STATUS_BUFFER_TOO_SMALL` |
//! | instance (channel, pin id) missing or short | `STATUS_INVALID_PARAMETER` |
//! | unknown node, channel or pin | `STATUS_INVALID_PARAMETER` |
//! | verb the property does not support | `STATUS_INVALID_DEVICE_REQUEST` |
//!
//! IRQL: PortCls calls property handlers at `PASSIVE_LEVEL`.

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use portcls_sys::windows_abi;

use alloc::sync::Arc;

use portcls_sys::{
    eConnTypeUnknown, eGenLocInternal, eGeoLocFront, ePortConnIntegratedDevice, IPortTopology,
    IResourceList, IUnknown, KSPROPTYPESETID_General, KSAUDIO_SPEAKER_STEREO,
    KSPROPERTY_JACK_DESCRIPTION, KSPROPERTY_JACK_DESCRIPTION2,
    KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM, KSPROPERTY_MEMBER_STEPPEDRANGES,
    KSPROPERTY_TYPE_BASICSUPPORT, KSPROPERTY_TYPE_GET, KSPROPERTY_TYPE_SET,
    KSPROPERTY_TYPE_TOPOLOGY, NTSTATUS, PCFILTER_DESCRIPTOR, PCPROPERTY_REQUEST,
    STATUS_BUFFER_OVERFLOW, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, VT_BOOL, VT_I4, VT_ILLEGAL,
};
use wavert_com::{ComPtr, Miniport, MiniportTopology, NtResult, NtStatus};

use crate::direction::Direction;
use crate::filters::{
    TOPOLOGY_CAPTURE_FILTER, TOPOLOGY_RENDER_FILTER, TOPO_CAPTURE_MIC_PIN, TOPO_MUTE_NODE,
    TOPO_RENDER_SPEAKER_PIN, TOPO_VOLUME_NODE,
};

/// Channels with their own volume level.
pub const VOLUME_CHANNELS: usize = 8;
/// Lowest volume level: -96 dB in 1/65536 dB.
pub const VOLUME_MIN: i32 = -96 * 65536;
/// Highest volume level: 0 dB (the cable never amplifies).
pub const VOLUME_MAX: i32 = 0;
/// Volume step: 0.5 dB in 1/65536 dB.
pub const VOLUME_STEP: i32 = 32768;
/// `KSNODEPROPERTY_AUDIO_CHANNEL` value meaning every channel (master).
pub const MASTER_CHANNEL: i32 = -1;

/// `sizeof(KSPROPERTY_DESCRIPTION)`.
const DESCRIPTION_SIZE: u32 = 40;
/// `sizeof(KSPROPERTY_MEMBERSHEADER)`.
const MEMBERS_HEADER_SIZE: u32 = 16;
/// `sizeof(KSPROPERTY_STEPPING_LONG)`.
const STEPPING_LONG_SIZE: u32 = 16;
/// `sizeof(KSMULTIPLE_ITEM)`.
const MULTIPLE_ITEM_SIZE: u32 = 8;
/// `sizeof(KSJACK_DESCRIPTION)`.
const JACK_DESCRIPTION_SIZE: u32 = 28;
/// `sizeof(KSJACK_DESCRIPTION2)`.
const JACK_DESCRIPTION2_SIZE: u32 = 8;

const _: () = assert!(
    core::mem::size_of::<portcls_sys::KSPROPERTY_DESCRIPTION>() == DESCRIPTION_SIZE as usize
);
const _: () = assert!(
    core::mem::size_of::<portcls_sys::KSPROPERTY_MEMBERSHEADER>() == MEMBERS_HEADER_SIZE as usize
);
const _: () = assert!(
    core::mem::size_of::<portcls_sys::KSPROPERTY_STEPPING_LONG>() == STEPPING_LONG_SIZE as usize
);
const _: () =
    assert!(core::mem::size_of::<portcls_sys::KSMULTIPLE_ITEM>() == MULTIPLE_ITEM_SIZE as usize);
const _: () = assert!(
    core::mem::size_of::<portcls_sys::KSJACK_DESCRIPTION>() == JACK_DESCRIPTION_SIZE as usize
);
const _: () = assert!(
    core::mem::size_of::<portcls_sys::KSJACK_DESCRIPTION2>() == JACK_DESCRIPTION2_SIZE as usize
);

/// A volume node's range in 1/65536 dB: `min..=max` in steps of `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeRange {
    /// Lowest level.
    pub min: i32,
    /// Highest level.
    pub max: i32,
    /// Step (> 0).
    pub step: i32,
}

/// A software volume node's range (the cable's): -96..0 dB in 0.5 dB steps.
pub const SOFTWARE_VOLUME_RANGE: VolumeRange = VolumeRange {
    min: VOLUME_MIN,
    max: VOLUME_MAX,
    step: VOLUME_STEP,
};

/// Hardware behind a topology filter's volume and mute nodes (the AC'97
/// codec's mixer registers). IRQL: `PASSIVE_LEVEL` (property handlers).
pub trait TopologyHardware: Send + Sync {
    /// The volume node's range.
    fn volume_range(&self) -> VolumeRange;
    /// Applies left/right levels (snapped into the range) and the mute state.
    fn apply(&self, left: i32, right: i32, muted: bool);
}

/// The topology miniport of one direction, for every back-end: volume per
/// channel and mute, stored, and applied to hardware when there is some
/// ([`TopologyMiniport::with_hardware`]).
pub struct TopologyMiniport {
    direction: Direction,
    levels: [AtomicI32; VOLUME_CHANNELS],
    muted: AtomicBool,
    range: VolumeRange,
    hardware: Option<Arc<dyn TopologyHardware>>,
}

impl TopologyMiniport {
    /// Software nodes ([`SOFTWARE_VOLUME_RANGE`]) at 0 dB, not muted.
    #[must_use]
    pub const fn new(direction: Direction) -> Self {
        Self {
            direction,
            levels: [const { AtomicI32::new(VOLUME_MAX) }; VOLUME_CHANNELS],
            muted: AtomicBool::new(false),
            range: SOFTWARE_VOLUME_RANGE,
            hardware: None,
        }
    }

    /// A topology whose volume and mute drive `hardware` (at 0 dB, or the
    /// nearest level in its range, not muted; the hardware is told so at
    /// once).
    #[must_use]
    pub fn with_hardware(direction: Direction, hardware: Arc<dyn TopologyHardware>) -> Self {
        let range = hardware.volume_range();
        let topology = Self {
            direction,
            levels: [const { AtomicI32::new(VOLUME_MAX) }; VOLUME_CHANNELS],
            muted: AtomicBool::new(false),
            range,
            hardware: Some(hardware),
        };
        // 0 dB, or the range end nearest to it.
        let unity = snap_level(range, 0);
        for level in &topology.levels {
            level.store(unity, Ordering::Relaxed);
        }
        topology.apply();
        topology
    }

    /// The volume node's range.
    #[must_use]
    pub const fn volume_range(&self) -> VolumeRange {
        self.range
    }

    fn apply(&self) {
        if let Some(hardware) = &self.hardware {
            let left = self.level(0).unwrap_or(self.range.max);
            let right = self.level(1).unwrap_or(left);
            hardware.apply(left, right, self.is_muted());
        }
    }

    /// The level of `channel` in 1/65536 dB.
    #[must_use]
    pub fn level(&self, channel: usize) -> Option<i32> {
        self.levels.get(channel).map(|l| l.load(Ordering::Relaxed))
    }

    /// Whether muted.
    #[must_use]
    pub fn is_muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    /// The pin carrying the jack (the endpoint's bridge pin).
    const fn jack_pin(&self) -> u32 {
        match self.direction {
            Direction::Render => TOPO_RENDER_SPEAKER_PIN,
            Direction::Capture => TOPO_CAPTURE_MIC_PIN,
        }
    }
}

impl Miniport for TopologyMiniport {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        match self.direction {
            Direction::Render => &TOPOLOGY_RENDER_FILTER,
            Direction::Capture => &TOPOLOGY_CAPTURE_FILTER,
        }
    }

    fn data_range_intersection(
        &self,
        _pin_id: u32,
        _data_range: &[u8],
        _matching_range: &[u8],
        _result: &mut [u8],
        _result_len: &mut u32,
    ) -> NtResult<()> {
        // Only analog bridge pins here: the port's default intersection.
        Err(NtStatus::NOT_IMPLEMENTED)
    }
}

impl MiniportTopology for TopologyMiniport {
    fn init(
        &self,
        _adapter: Option<ComPtr<IUnknown>>,
        _resources: Option<ComPtr<IResourceList>>,
        _port: ComPtr<IPortTopology>,
    ) -> NtResult<()> {
        Ok(())
    }
}

/// What a handler sees of a property request.
#[derive(Debug)]
pub struct PropertyCall<'a> {
    /// Target node (`ULONG_MAX` for a filter or pin property).
    pub node: u32,
    /// GET, SET or BASICSUPPORT (the TOPOLOGY bit removed).
    pub verb: u32,
    /// The property item's id.
    pub id: u32,
    /// The instance data after the `KSPROPERTY` header (channel, pin id).
    pub instance: &'a [u8],
    /// The value buffer (input for SET, output otherwise).
    pub value: &'a mut [u8],
}

/// A handler's success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done; this many value bytes written (or read, for SET).
    Done(u32),
    /// The caller asked for the size (0-byte value): this many are needed.
    Size(u32),
}

/// Most instance bytes any handler reads (a channel or a pin id).
const INSTANCE_COPY: usize = 16;

/// Turns a raw request into a [`PropertyCall`] for `handle`, and its result
/// into the `NTSTATUS` and `ValueSize` PortCls reads back.
///
/// # Safety
///
/// `request` must be null or a `PCPROPERTY_REQUEST` from PortCls for a
/// property of a [`TopologyMiniport`] filter: `MajorTarget` that miniport,
/// `PropertyItem` valid, `Instance`/`Value` null or valid for
/// `InstanceSize`/`ValueSize` bytes, the value writable and not overlapping
/// the instance.
pub unsafe fn dispatch(
    request: *mut PCPROPERTY_REQUEST,
    handle: impl FnOnce(&TopologyMiniport, &mut PropertyCall<'_>) -> NtResult<Reply>,
) -> NTSTATUS {
    // SAFETY: null or a live request (caller).
    let Some(request) = (unsafe { request.as_mut() }) else {
        return STATUS_INVALID_PARAMETER;
    };
    if request.MajorTarget.is_null() || request.PropertyItem.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: a valid property item (caller).
    let id = unsafe { (*request.PropertyItem).Id };
    // The instance is copied out (it is tiny) so that no Rust reference to
    // it coexists with the mutable value slice.
    let mut instance = [0u8; INSTANCE_COPY];
    let instance_len = (request.InstanceSize as usize).min(INSTANCE_COPY);
    if !request.Instance.is_null() {
        // SAFETY: `Instance` holds `InstanceSize` >= `instance_len` readable bytes (caller).
        let src =
            unsafe { core::slice::from_raw_parts(request.Instance.cast::<u8>(), instance_len) };
        instance
            .get_mut(..instance_len)
            .into_iter()
            .for_each(|dst| dst.copy_from_slice(src));
    }
    let value: &mut [u8] = if request.Value.is_null() {
        &mut []
    } else {
        // SAFETY: `Value` holds `ValueSize` writable bytes, unaliased (caller).
        unsafe {
            core::slice::from_raw_parts_mut(request.Value.cast::<u8>(), request.ValueSize as usize)
        }
    };
    // SAFETY: the automation tables holding these handlers belong to
    // TopologyMiniport filters only, so MajorTarget is one (caller).
    let topology = unsafe {
        wavert_com::topology_miniport_value::<TopologyMiniport>(request.MajorTarget.cast())
    };
    let mut call = PropertyCall {
        node: request.Node,
        verb: request.Verb & !KSPROPERTY_TYPE_TOPOLOGY,
        id,
        instance: instance.get(..instance_len).unwrap_or(&[]),
        value,
    };
    match handle(topology, &mut call) {
        Ok(Reply::Done(written)) => {
            request.ValueSize = written;
            STATUS_SUCCESS
        }
        Ok(Reply::Size(needed)) => {
            request.ValueSize = needed;
            STATUS_BUFFER_OVERFLOW
        }
        Err(failure) => failure.code(),
    }
}

/// `KSPROPERTY_AUDIO_VOLUMELEVEL` on the volume node.
///
/// # Safety
///
/// Called by PortCls only (see [`dispatch`]).
#[windows_abi]
pub unsafe extern "system" fn volume_handler(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
    // SAFETY: PortCls passes a request for this table's TopologyMiniport filter.
    unsafe { dispatch(request, volume) }
}

/// `KSPROPERTY_AUDIO_MUTE` on the mute node.
///
/// # Safety
///
/// Called by PortCls only (see [`dispatch`]).
#[windows_abi]
pub unsafe extern "system" fn mute_handler(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
    // SAFETY: PortCls passes a request for this table's TopologyMiniport filter.
    unsafe { dispatch(request, mute) }
}

/// `KSPROPERTY_JACK_DESCRIPTION` and `_DESCRIPTION2` on the bridge pin.
///
/// # Safety
///
/// Called by PortCls only (see [`dispatch`]).
#[windows_abi]
pub unsafe extern "system" fn jack_handler(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
    // SAFETY: PortCls passes a request for this table's TopologyMiniport filter.
    unsafe { dispatch(request, jack) }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

/// Little-endian writer over a slice the caller has sized.
struct Out<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Out<'_> {
    fn bytes(&mut self, src: &[u8]) {
        let end = self.at.saturating_add(src.len());
        if let Some(dst) = self.buf.get_mut(self.at..end) {
            dst.copy_from_slice(src);
        }
        self.at = end;
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Checks an output buffer against `needed` bytes: `Some(reply)` when the
/// caller only gets a size or an error.
const fn output_check(len: usize, needed: u32) -> Option<NtResult<Reply>> {
    if len == 0 {
        return Some(Ok(Reply::Size(needed)));
    }
    if len < needed as usize {
        return Some(Err(NtStatus::BUFFER_TOO_SMALL));
    }
    None
}

/// A basic-support answer: access flags only (4-byte buffer), the
/// description (40 bytes) or the description with one stepped range.
fn basic_support(
    value: &mut [u8],
    access: u32,
    vt: u32,
    range: Option<(u32, i32, i32)>,
) -> NtResult<Reply> {
    let members = range.map_or(0, |_| MEMBERS_HEADER_SIZE + STEPPING_LONG_SIZE);
    let full = DESCRIPTION_SIZE + members;
    let len = value.len();
    if len == 0 {
        return Ok(Reply::Size(full));
    }
    let mut out = Out { buf: value, at: 0 };
    if len < DESCRIPTION_SIZE as usize {
        if len < 4 {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        out.u32(access);
        return Ok(Reply::Done(4));
    }
    out.u32(access);
    out.u32(full);
    out.bytes(&KSPROPTYPESETID_General.to_bytes());
    out.u32(vt);
    out.u32(0);
    out.u32(u32::from(range.is_some()));
    out.u32(0);
    let Some((delta, min, max)) = range else {
        return Ok(Reply::Done(DESCRIPTION_SIZE));
    };
    if len < full as usize {
        return Ok(Reply::Done(DESCRIPTION_SIZE));
    }
    out.u32(KSPROPERTY_MEMBER_STEPPEDRANGES);
    out.u32(STEPPING_LONG_SIZE);
    out.u32(1);
    // One range applies to every channel.
    out.u32(KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM);
    out.u32(delta);
    out.u32(0);
    out.i32(min);
    out.i32(max);
    Ok(Reply::Done(full))
}

const GET_SET_BASIC: u32 = KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_SET | KSPROPERTY_TYPE_BASICSUPPORT;

/// Snaps a level into the range, on a step.
const fn snap_level(range: VolumeRange, level: i32) -> i32 {
    let clamped = if level < range.min {
        range.min
    } else if level > range.max {
        range.max
    } else {
        level
    };
    let step = if range.step > 0 { range.step } else { 1 };
    // Steps are counted from the minimum; clamped - min is non-negative.
    clamped - (clamped - range.min) % step
}

/// The channel index list a request addresses.
fn channels(instance: &[u8]) -> NtResult<core::ops::Range<usize>> {
    let raw = read_u32(instance, 0).ok_or(NtStatus::INVALID_PARAMETER)?;
    if i32::from_ne_bytes(raw.to_ne_bytes()) == MASTER_CHANNEL {
        return Ok(0..VOLUME_CHANNELS);
    }
    let channel = raw as usize;
    if channel < VOLUME_CHANNELS {
        Ok(channel..channel + 1)
    } else {
        Err(NtStatus::INVALID_PARAMETER)
    }
}

fn volume(topology: &TopologyMiniport, call: &mut PropertyCall<'_>) -> NtResult<Reply> {
    if call.node != TOPO_VOLUME_NODE {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    match call.verb {
        KSPROPERTY_TYPE_BASICSUPPORT => basic_support(
            call.value,
            GET_SET_BASIC,
            VT_I4,
            Some((
                topology.range.step.unsigned_abs(),
                topology.range.min,
                topology.range.max,
            )),
        ),
        KSPROPERTY_TYPE_GET => {
            let range = channels(call.instance)?;
            if let Some(reply) = output_check(call.value.len(), 4) {
                return reply;
            }
            let level = topology
                .level(range.start)
                .ok_or(NtStatus::INVALID_PARAMETER)?;
            Out {
                buf: call.value,
                at: 0,
            }
            .i32(level);
            Ok(Reply::Done(4))
        }
        KSPROPERTY_TYPE_SET => {
            let range = channels(call.instance)?;
            let level = read_u32(call.value, 0).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            let level = snap_level(topology.range, i32::from_ne_bytes(level.to_ne_bytes()));
            for channel in range {
                if let Some(slot) = topology.levels.get(channel) {
                    slot.store(level, Ordering::Relaxed);
                }
            }
            topology.apply();
            Ok(Reply::Done(4))
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

fn mute(topology: &TopologyMiniport, call: &mut PropertyCall<'_>) -> NtResult<Reply> {
    if call.node != TOPO_MUTE_NODE {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    match call.verb {
        KSPROPERTY_TYPE_BASICSUPPORT => {
            basic_support(call.value, GET_SET_BASIC, VT_BOOL, Some((1, 0, 1)))
        }
        KSPROPERTY_TYPE_GET => {
            channels(call.instance)?;
            if let Some(reply) = output_check(call.value.len(), 4) {
                return reply;
            }
            Out {
                buf: call.value,
                at: 0,
            }
            .u32(u32::from(topology.is_muted()));
            Ok(Reply::Done(4))
        }
        KSPROPERTY_TYPE_SET => {
            channels(call.instance)?;
            let muted = read_u32(call.value, 0).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            topology.muted.store(muted != 0, Ordering::Relaxed);
            topology.apply();
            Ok(Reply::Done(4))
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

fn jack(topology: &TopologyMiniport, call: &mut PropertyCall<'_>) -> NtResult<Reply> {
    let pin = read_u32(call.instance, 0).ok_or(NtStatus::INVALID_PARAMETER)?;
    if pin != topology.jack_pin() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let body = match call.id {
        KSPROPERTY_JACK_DESCRIPTION => JACK_DESCRIPTION_SIZE,
        KSPROPERTY_JACK_DESCRIPTION2 => JACK_DESCRIPTION2_SIZE,
        _ => return Err(NtStatus::INVALID_DEVICE_REQUEST),
    };
    match call.verb {
        KSPROPERTY_TYPE_BASICSUPPORT => basic_support(
            call.value,
            KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_BASICSUPPORT,
            VT_ILLEGAL,
            None,
        ),
        KSPROPERTY_TYPE_GET => {
            let needed = MULTIPLE_ITEM_SIZE + body;
            if let Some(reply) = output_check(call.value.len(), needed) {
                return reply;
            }
            let mut out = Out {
                buf: call.value,
                at: 0,
            };
            out.u32(needed);
            out.u32(1);
            if call.id == KSPROPERTY_JACK_DESCRIPTION {
                // A virtual, always-present device: integrated, connected.
                out.u32(KSAUDIO_SPEAKER_STEREO);
                out.u32(0);
                out.i32(eConnTypeUnknown);
                out.i32(eGeoLocFront);
                out.i32(eGenLocInternal);
                out.i32(ePortConnIntegratedDevice);
                out.u32(1);
            } else {
                // No state flags, no presence detection (nothing to detect).
                out.u32(0);
                out.u32(0);
            }
            Ok(Reply::Done(needed))
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}
