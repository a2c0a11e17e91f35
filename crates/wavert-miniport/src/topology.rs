//! The topology miniports (speaker and microphone) and their property
//! handlers: volume, mute and jack description.
//!
//! The handlers are `extern "system"` functions in static automation tables.
//! The only `unsafe` is in [`dispatch`], which turns the raw
//! `PCPROPERTY_REQUEST` into checked slices; everything after it is safe
//! code over byte slices, and every size is checked (hostile input). Values
//! are the `#[repr(C)]` structures of `portcls-sys` (their layouts checked
//! against the Windows headers), each built whole and copied in or out with
//! one bounds-checked `zerocopy` copy; no offset is computed by hand.
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

use core::mem::offset_of;
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use portcls_sys::windows_abi;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use alloc::sync::Arc;

use portcls_sys::{
    eConnTypeUnknown, eGenLocInternal, eGeoLocFront, ePortConnIntegratedDevice, IPortTopology,
    IResourceList, IUnknown, KSPROPTYPESETID_General, BOOL, KSAUDIO_SPEAKER_STEREO, KSIDENTIFIER,
    KSJACK_DESCRIPTION, KSJACK_DESCRIPTION2, KSMULTIPLE_ITEM, KSNODEPROPERTY,
    KSNODEPROPERTY_AUDIO_CHANNEL, KSPROPERTY, KSPROPERTY_BOUNDS_LONG, KSPROPERTY_DESCRIPTION,
    KSPROPERTY_JACK_DESCRIPTION, KSPROPERTY_JACK_DESCRIPTION2, KSPROPERTY_MEMBERSHEADER,
    KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM, KSPROPERTY_MEMBER_STEPPEDRANGES,
    KSPROPERTY_STEPPING_LONG, KSPROPERTY_TYPE_BASICSUPPORT, KSPROPERTY_TYPE_GET,
    KSPROPERTY_TYPE_SET, KSPROPERTY_TYPE_TOPOLOGY, KSP_PIN, LONG, NTSTATUS, PCFILTER_DESCRIPTOR,
    PCPROPERTY_REQUEST, STATUS_BUFFER_OVERFLOW, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, ULONG,
    VARENUM, VT_BOOL, VT_I4, VT_ILLEGAL,
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

/// `size_of::<T>()` as a `ValueSize`; only used in constants, so that the
/// assertion is evaluated at compile time.
#[allow(clippy::cast_possible_truncation)] // Asserted to fit first.
const fn value_size<T>() -> u32 {
    assert!(size_of::<T>() <= u32::MAX as usize);
    size_of::<T>() as u32
}

/// A basic-support answer with one stepped range: the description, its
/// members header and the range, back to back (the members list that
/// `KSPROPERTY_DESCRIPTION.MembersListCount` counts follows it).
#[repr(C)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct SteppedDescription {
    description: KSPROPERTY_DESCRIPTION,
    members: KSPROPERTY_MEMBERSHEADER,
    stepping: KSPROPERTY_STEPPING_LONG,
}

/// A `KSPROPERTY_JACK_DESCRIPTION` answer: a `KSMULTIPLE_ITEM` list of one
/// jack.
#[repr(C)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct JackDescriptionList {
    header: KSMULTIPLE_ITEM,
    jack: KSJACK_DESCRIPTION,
}

/// A `KSPROPERTY_JACK_DESCRIPTION2` answer: a `KSMULTIPLE_ITEM` list of one
/// jack.
#[repr(C)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct JackDescription2List {
    header: KSMULTIPLE_ITEM,
    jack: KSJACK_DESCRIPTION2,
}

// `IntoBytes` refuses padding, so each part follows the one before it.
const _: () = assert!(
    offset_of!(SteppedDescription, members) == size_of::<KSPROPERTY_DESCRIPTION>()
        && offset_of!(SteppedDescription, stepping)
            == offset_of!(SteppedDescription, members) + size_of::<KSPROPERTY_MEMBERSHEADER>()
        && offset_of!(JackDescriptionList, jack) == size_of::<KSMULTIPLE_ITEM>()
        && offset_of!(JackDescription2List, jack) == size_of::<KSMULTIPLE_ITEM>()
);

/// `sizeof(KSPROPERTY_DESCRIPTION)`: a basic-support answer without members.
const DESCRIPTION_SIZE: u32 = value_size::<KSPROPERTY_DESCRIPTION>();
/// A basic-support answer with one stepped range.
const STEPPED_DESCRIPTION_SIZE: u32 = value_size::<SteppedDescription>();
/// `sizeof(KSPROPERTY_STEPPING_LONG)`: one member of a stepped-ranges list.
const STEPPING_LONG_SIZE: u32 = value_size::<KSPROPERTY_STEPPING_LONG>();
/// A `KSPROPERTY_JACK_DESCRIPTION` answer.
const JACK_DESCRIPTION_LIST_SIZE: u32 = value_size::<JackDescriptionList>();
/// A `KSPROPERTY_JACK_DESCRIPTION2` answer.
const JACK_DESCRIPTION2_LIST_SIZE: u32 = value_size::<JackDescription2List>();
/// `sizeof(LONG)`: a volume level.
const LONG_SIZE: u32 = value_size::<LONG>();
/// `sizeof(BOOL)`: a mute state.
const BOOL_SIZE: u32 = value_size::<BOOL>();

/// Where `KSP_PIN.PinId` lies in a pin property's instance data (what
/// follows its `KSPROPERTY`).
const PIN_ID_AT: usize = offset_of!(KSP_PIN, PinId) - size_of::<KSPROPERTY>();
/// Where `KSNODEPROPERTY_AUDIO_CHANNEL.Channel` lies in a node property's
/// instance data (what follows its `KSNODEPROPERTY`).
const CHANNEL_AT: usize =
    offset_of!(KSNODEPROPERTY_AUDIO_CHANNEL, Channel) - size_of::<KSNODEPROPERTY>();

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

/// The `T` at `at` in `bytes`, if they hold all of it.
fn read_at<T: FromBytes>(bytes: &[u8], at: usize) -> Option<T> {
    T::read_from_prefix(bytes.get(at..)?)
        .ok()
        .map(|(value, _)| value)
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

/// Answers with `reply`, copied whole to the start of `value`, or with the
/// size-query or short-buffer answer when `value` cannot hold it.
fn write_reply<T: IntoBytes + Immutable>(value: &mut [u8], reply: &T) -> NtResult<Reply> {
    let needed = const { value_size::<T>() };
    if let Some(answer) = output_check(value.len(), needed) {
        return answer;
    }
    reply
        .write_to_prefix(value)
        .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    Ok(Reply::Done(needed))
}

/// A basic-support answer: access flags only (a buffer shorter than the
/// description), the description, or the description with its one stepped
/// range when there is one and room for it.
fn basic_support(
    value: &mut [u8],
    access: ULONG,
    vt: VARENUM,
    stepping: Option<KSPROPERTY_STEPPING_LONG>,
) -> NtResult<Reply> {
    let full = if stepping.is_some() {
        STEPPED_DESCRIPTION_SIZE
    } else {
        DESCRIPTION_SIZE
    };
    let len = value.len();
    if len == 0 {
        return Ok(Reply::Size(full));
    }
    let description = KSPROPERTY_DESCRIPTION {
        AccessFlags: access,
        DescriptionSize: full,
        PropTypeSet: KSIDENTIFIER {
            Set: KSPROPTYPESETID_General,
            Id: vt,
            Flags: 0,
        },
        MembersListCount: ULONG::from(stepping.is_some()),
        Reserved: 0,
    };
    if len < DESCRIPTION_SIZE as usize {
        // Room for `AccessFlags`, the description's first member, at most.
        return write_reply(value, &description.AccessFlags);
    }
    match stepping {
        Some(stepping) if len >= full as usize => write_reply(
            value,
            &SteppedDescription {
                description,
                members: KSPROPERTY_MEMBERSHEADER {
                    MembersFlags: KSPROPERTY_MEMBER_STEPPEDRANGES,
                    MembersSize: STEPPING_LONG_SIZE,
                    MembersCount: 1,
                    // One range applies to every channel.
                    Flags: KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM,
                },
                stepping,
            },
        ),
        _ => write_reply(value, &description),
    }
}

/// One stepped range, `min..=max` by `delta`.
const fn stepping(delta: ULONG, min: LONG, max: LONG) -> KSPROPERTY_STEPPING_LONG {
    KSPROPERTY_STEPPING_LONG {
        SteppingDelta: delta,
        Reserved: 0,
        Bounds: KSPROPERTY_BOUNDS_LONG {
            SignedMinimum: min,
            SignedMaximum: max,
        },
    }
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

/// The channel index list a request addresses
/// (`KSNODEPROPERTY_AUDIO_CHANNEL.Channel`).
fn channels(instance: &[u8]) -> NtResult<core::ops::Range<usize>> {
    let channel: LONG = read_at(instance, CHANNEL_AT).ok_or(NtStatus::INVALID_PARAMETER)?;
    if channel == MASTER_CHANNEL {
        return Ok(0..VOLUME_CHANNELS);
    }
    match usize::try_from(channel) {
        Ok(channel) if channel < VOLUME_CHANNELS => Ok(channel..channel + 1),
        _ => Err(NtStatus::INVALID_PARAMETER),
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
            Some(stepping(
                topology.range.step.unsigned_abs(),
                topology.range.min,
                topology.range.max,
            )),
        ),
        KSPROPERTY_TYPE_GET => {
            let range = channels(call.instance)?;
            let level: LONG = topology
                .level(range.start)
                .ok_or(NtStatus::INVALID_PARAMETER)?;
            write_reply(call.value, &level)
        }
        KSPROPERTY_TYPE_SET => {
            let range = channels(call.instance)?;
            let level: LONG = read_at(call.value, 0).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            let level = snap_level(topology.range, level);
            for channel in range {
                if let Some(slot) = topology.levels.get(channel) {
                    slot.store(level, Ordering::Relaxed);
                }
            }
            topology.apply();
            Ok(Reply::Done(LONG_SIZE))
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
            basic_support(call.value, GET_SET_BASIC, VT_BOOL, Some(stepping(1, 0, 1)))
        }
        KSPROPERTY_TYPE_GET => {
            channels(call.instance)?;
            write_reply(call.value, &BOOL::from(topology.is_muted()))
        }
        KSPROPERTY_TYPE_SET => {
            channels(call.instance)?;
            let muted: BOOL = read_at(call.value, 0).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            topology.muted.store(muted != 0, Ordering::Relaxed);
            topology.apply();
            Ok(Reply::Done(BOOL_SIZE))
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

fn jack(topology: &TopologyMiniport, call: &mut PropertyCall<'_>) -> NtResult<Reply> {
    let pin: ULONG = read_at(call.instance, PIN_ID_AT).ok_or(NtStatus::INVALID_PARAMETER)?;
    if pin != topology.jack_pin() {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    if !matches!(
        call.id,
        KSPROPERTY_JACK_DESCRIPTION | KSPROPERTY_JACK_DESCRIPTION2
    ) {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    match (call.verb, call.id) {
        (KSPROPERTY_TYPE_BASICSUPPORT, _) => basic_support(
            call.value,
            KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_BASICSUPPORT,
            VT_ILLEGAL,
            None,
        ),
        (KSPROPERTY_TYPE_GET, KSPROPERTY_JACK_DESCRIPTION) => write_reply(
            call.value,
            &JackDescriptionList {
                header: KSMULTIPLE_ITEM {
                    Size: JACK_DESCRIPTION_LIST_SIZE,
                    Count: 1,
                },
                // A virtual, always-present device: integrated, connected.
                jack: KSJACK_DESCRIPTION {
                    ChannelMapping: KSAUDIO_SPEAKER_STEREO,
                    Color: 0,
                    ConnectionType: eConnTypeUnknown,
                    GeoLocation: eGeoLocFront,
                    GenLocation: eGenLocInternal,
                    PortConnection: ePortConnIntegratedDevice,
                    IsConnected: BOOL::from(true),
                },
            },
        ),
        (KSPROPERTY_TYPE_GET, KSPROPERTY_JACK_DESCRIPTION2) => write_reply(
            call.value,
            &JackDescription2List {
                header: KSMULTIPLE_ITEM {
                    Size: JACK_DESCRIPTION2_LIST_SIZE,
                    Count: 1,
                },
                // No state flags, no presence detection (nothing to detect).
                jack: KSJACK_DESCRIPTION2 {
                    DeviceStateInfo: 0,
                    JackCapabilities: 0,
                },
            },
        ),
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, reason = "test code over fixed-size arrays")]
mod tests {
    use super::*;

    /// Little-endian words, as the documentation lays each reply out.
    fn words(words: &[u32]) -> [u8; 128] {
        let mut bytes = [0u8; 128];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// The value a handler writes for `verb`/`id` with `instance`, into a
    /// 128-byte buffer of 0xEE.
    fn reply(
        handler: fn(&TopologyMiniport, &mut PropertyCall<'_>) -> NtResult<Reply>,
        node: u32,
        verb: u32,
        id: u32,
        instance: u32,
    ) -> (NtResult<Reply>, [u8; 128]) {
        let topology = TopologyMiniport::new(Direction::Render);
        let instance = instance.to_le_bytes();
        let mut value = [0xEEu8; 128];
        let mut call = PropertyCall {
            node,
            verb,
            id,
            instance: &instance,
            value: &mut value,
        };
        let result = handler(&topology, &mut call);
        (result, value)
    }

    /// `KSPROPTYPESETID_General` as four little-endian words.
    fn general_set() -> [u32; 4] {
        let b = KSPROPTYPESETID_General.to_bytes();
        let mut w = [0u32; 4];
        for (word, chunk) in w.iter_mut().zip(b.chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        w
    }

    fn expected(len: usize, body: &[u32]) -> [u8; 128] {
        let mut want = [0xEEu8; 128];
        want[..len].copy_from_slice(&words(body)[..len]);
        want
    }

    #[test]
    fn volume_basic_support_is_description_members_header_and_stepping() {
        let [s0, s1, s2, s3] = general_set();
        let (result, got) = reply(volume, TOPO_VOLUME_NODE, KSPROPERTY_TYPE_BASICSUPPORT, 0, 0);
        assert_eq!(result, Ok(Reply::Done(72)));
        let want = expected(
            72,
            &[
                // KSPROPERTY_DESCRIPTION
                GET_SET_BASIC,
                72,
                s0,
                s1,
                s2,
                s3,
                VT_I4,
                0,
                1,
                0,
                // KSPROPERTY_MEMBERSHEADER
                KSPROPERTY_MEMBER_STEPPEDRANGES,
                16,
                1,
                KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM,
                // KSPROPERTY_STEPPING_LONG
                32768,
                0,
                u32::from_le_bytes(VOLUME_MIN.to_le_bytes()),
                0,
            ],
        );
        assert_eq!(got, want);
    }

    #[test]
    fn jack_basic_support_is_the_description_alone() {
        let [s0, s1, s2, s3] = general_set();
        let (result, got) = reply(
            jack,
            u32::MAX,
            KSPROPERTY_TYPE_BASICSUPPORT,
            KSPROPERTY_JACK_DESCRIPTION,
            TOPO_RENDER_SPEAKER_PIN,
        );
        assert_eq!(result, Ok(Reply::Done(40)));
        let access = KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_BASICSUPPORT;
        let want = expected(40, &[access, 40, s0, s1, s2, s3, VT_ILLEGAL, 0, 0, 0]);
        assert_eq!(got, want);
    }

    #[test]
    fn jack_descriptions_are_a_multiple_item_list_of_one() {
        let (result, got) = reply(
            jack,
            u32::MAX,
            KSPROPERTY_TYPE_GET,
            KSPROPERTY_JACK_DESCRIPTION,
            TOPO_RENDER_SPEAKER_PIN,
        );
        assert_eq!(result, Ok(Reply::Done(36)));
        let want = expected(
            36,
            &[
                // KSMULTIPLE_ITEM
                36,
                1,
                // KSJACK_DESCRIPTION
                KSAUDIO_SPEAKER_STEREO,
                0,
                u32::from_le_bytes(eConnTypeUnknown.to_le_bytes()),
                u32::from_le_bytes(eGeoLocFront.to_le_bytes()),
                u32::from_le_bytes(eGenLocInternal.to_le_bytes()),
                u32::from_le_bytes(ePortConnIntegratedDevice.to_le_bytes()),
                1,
            ],
        );
        assert_eq!(got, want);

        let (result, got) = reply(
            jack,
            u32::MAX,
            KSPROPERTY_TYPE_GET,
            KSPROPERTY_JACK_DESCRIPTION2,
            TOPO_RENDER_SPEAKER_PIN,
        );
        assert_eq!(result, Ok(Reply::Done(16)));
        assert_eq!(got, expected(16, &[16, 1, 0, 0]));
    }
}
