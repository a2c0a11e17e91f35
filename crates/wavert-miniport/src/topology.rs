//! The topology miniports (speaker and microphone) and their property
//! handlers: volume, mute, peak meter and jack description.
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
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use portcls_sys::windows_abi;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use alloc::sync::Arc;

use portcls_sys::{
    IPortTopology, IResourceList, IUnknown, KSPROPTYPESETID_General, BOOL, KSIDENTIFIER,
    KSJACK_DESCRIPTION, KSJACK_DESCRIPTION2, KSMULTIPLE_ITEM, KSNODEPROPERTY,
    KSNODEPROPERTY_AUDIO_CHANNEL, KSPROPERTY, KSPROPERTY_AUDIO_PEAKMETER2, KSPROPERTY_BOUNDS_LONG,
    KSPROPERTY_DESCRIPTION, KSPROPERTY_JACK_DESCRIPTION, KSPROPERTY_JACK_DESCRIPTION2,
    KSPROPERTY_MEMBERSHEADER, KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL,
    KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM, KSPROPERTY_MEMBER_STEPPEDRANGES,
    KSPROPERTY_STEPPING_LONG, KSPROPERTY_TYPE_BASICSUPPORT, KSPROPERTY_TYPE_GET,
    KSPROPERTY_TYPE_SET, KSPROPERTY_TYPE_TOPOLOGY, KSP_PIN, LONG, NTSTATUS, PCFILTER_DESCRIPTOR,
    PCPROPERTY_REQUEST, STATUS_BUFFER_OVERFLOW, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, ULONG,
    VARENUM, VT_BOOL, VT_I4, VT_ILLEGAL,
};
use wavert_com::{ComPtr, Miniport, MiniportTopology, NtResult, NtStatus};

use crate::direction::Direction;
use crate::filters::{
    METERED_TOPOLOGY_CAPTURE_FILTER, METERED_TOPOLOGY_RENDER_FILTER, TOPOLOGY_CAPTURE_FILTER,
    TOPOLOGY_RENDER_FILTER, TOPO_CAPTURE_MIC_PIN, TOPO_MUTE_NODE, TOPO_PEAK_METER_NODE,
    TOPO_RENDER_SPEAKER_PIN, TOPO_VOLUME_NODE,
};

/// Most channels a node can address: one per position of a KSAUDIO speaker
/// mask (`SPEAKER_FRONT_LEFT` .. `SPEAKER_TOP_BACK_RIGHT`, 18 bits).
pub const MAX_CHANNELS: usize = 18;
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
    offset_of!(JackDescriptionList, jack) == size_of::<KSMULTIPLE_ITEM>()
        && offset_of!(JackDescription2List, jack) == size_of::<KSMULTIPLE_ITEM>()
);

/// `sizeof(KSPROPERTY_DESCRIPTION)`: a basic-support answer without members.
const DESCRIPTION_SIZE: u32 = value_size::<KSPROPERTY_DESCRIPTION>();
/// `sizeof(KSPROPERTY_MEMBERSHEADER)`: the header of a members list.
const MEMBERS_HEADER_SIZE: u32 = value_size::<KSPROPERTY_MEMBERSHEADER>();
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

/// A peak meter (`KSNODETYPE_PEAKMETER`).
///
/// Per channel, the largest sample magnitude since the channel was last
/// read, on `KSPROPERTY_AUDIO_PEAKMETER2`'s linear scale (full scale
/// `LONG_MAX`, silence 0). The side that carries the audio raises it; a
/// read returns the peak and resets it (Learn, `KSPROPERTY_AUDIO_PEAKMETER2`).
///
/// Measuring costs a pass over every sample, so the carrier measures only
/// while somebody reads: each read marks the meter wanted, and the carrier
/// keeps measuring for a while after the last mark ([`Self::take_wanted`]).
/// The first read after a quiet spell therefore reports 0; a meter a UI
/// polls reads true from its second poll on.
///
/// All atomics: raised at `DISPATCH_LEVEL` under the carrier's lock, read
/// at `PASSIVE_LEVEL` by the property handler, without a lock between them.
#[derive(Debug)]
pub struct PeakMeter {
    peaks: [AtomicU32; MAX_CHANNELS],
    wanted: AtomicBool,
}

impl Default for PeakMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl PeakMeter {
    /// A meter at 0, not wanted.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            peaks: [const { AtomicU32::new(0) }; MAX_CHANNELS],
            wanted: AtomicBool::new(false),
        }
    }

    /// Raises each channel's peak to `peaks[channel]` if that is larger
    /// (values past `i32::MAX` are held as `i32::MAX`).
    pub fn raise(&self, peaks: &[u32]) {
        for (held, &peak) in self.peaks.iter().zip(peaks) {
            held.fetch_max(peak.min(i32::MAX.unsigned_abs()), Ordering::Relaxed);
        }
    }

    /// `channel`'s peak since its last read, and resets it to 0; marks the
    /// meter wanted. `None` past the meter's channels.
    pub fn take(&self, channel: usize) -> Option<i32> {
        self.wanted.store(true, Ordering::Relaxed);
        let peak = self.peaks.get(channel)?.swap(0, Ordering::Relaxed);
        // Held values never pass i32::MAX (raise).
        Some(i32::try_from(peak).unwrap_or(i32::MAX))
    }

    /// Whether a read came since the last call (and clears the mark): the
    /// carrier's cue to go on measuring.
    pub fn take_wanted(&self) -> bool {
        // A plain load first: the service asks every period, and a meter
        // nobody reads should cost it no locked instruction.
        self.wanted.load(Ordering::Relaxed) && self.wanted.swap(false, Ordering::Relaxed)
    }
}

/// What acts on a topology filter's volume and mute nodes: hardware (the
/// AC'97 codec's mixer registers) or the cable's own gain stage. IRQL:
/// `PASSIVE_LEVEL` (property handlers).
pub trait TopologyHardware: Send + Sync {
    /// The volume node's range.
    fn volume_range(&self) -> VolumeRange;
    /// Applies left/right levels (snapped into the range) and the mute state.
    fn apply(&self, left: i32, right: i32, muted: bool);
    /// Applies every channel's level (snapped into the range; one per
    /// channel of the endpoint) and the mute state. Stereo hardware takes
    /// the first two ([`Self::apply`]; a mono endpoint's one level serves
    /// both).
    fn apply_channels(&self, levels: &[i32], muted: bool) {
        let left = levels.first().copied().unwrap_or(0);
        let right = levels.get(1).copied().unwrap_or(left);
        self.apply(left, right, muted);
    }
    /// The peak meter after the mute, when the hardware measures one: its
    /// topology filter then has the peak-meter node. None by default (a
    /// codec's mixer has no meter the driver can read).
    fn peak_meter(&self) -> Option<&PeakMeter> {
        None
    }
}

/// `JACKDESC_RGB(r, g, b)`: a jack colour as `KSJACK_DESCRIPTION.Color`
/// holds it (`0x00RRGGBB`).
#[must_use]
pub const fn jack_rgb(red: u8, green: u8, blue: u8) -> u32 {
    // Widening casts: each byte lands in its own field of the word.
    ((red as u32) << 16) | ((green as u32) << 8) | (blue as u32)
}

/// What one endpoint is to its topology filter: how many channels its
/// volume and mute nodes address, and the jack it is reached through.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    channels: u8,
    jack: KSJACK_DESCRIPTION,
}

impl Endpoint {
    /// An endpoint whose nodes address `channels` channels (clamped to
    /// `1..=MAX_CHANNELS`), reached through `jack`.
    #[must_use]
    pub const fn new(channels: u8, jack: KSJACK_DESCRIPTION) -> Self {
        let channels = if channels == 0 {
            1
        } else if channels as usize > MAX_CHANNELS {
            // MAX_CHANNELS is 18: it fits a byte.
            #[allow(clippy::cast_possible_truncation, reason = "18 fits in a u8")]
            let most = MAX_CHANNELS as u8;
            most
        } else {
            channels
        };
        Self { channels, jack }
    }

    /// The nodes' channel count.
    #[must_use]
    pub const fn channels(&self) -> usize {
        self.channels as usize
    }

    /// The endpoint's jack.
    #[must_use]
    pub const fn jack(&self) -> KSJACK_DESCRIPTION {
        self.jack
    }
}

/// The topology miniport of one direction, for every back-end: volume per
/// channel and one mute for all of them, stored, and applied to hardware
/// when there is some ([`TopologyMiniport::with_hardware`]).
///
/// # Invariants
///
/// `endpoint.channels()` is in `1..=MAX_CHANNELS` ([`Endpoint::new`]), so
/// every channel a request names after [`channels`] is a valid index of
/// `levels`.
pub struct TopologyMiniport {
    direction: Direction,
    endpoint: Endpoint,
    levels: [AtomicI32; MAX_CHANNELS],
    muted: AtomicBool,
    range: VolumeRange,
    hardware: Option<Arc<dyn TopologyHardware>>,
}

impl TopologyMiniport {
    /// Software nodes ([`SOFTWARE_VOLUME_RANGE`]) at 0 dB, not muted.
    #[must_use]
    pub const fn new(direction: Direction, endpoint: Endpoint) -> Self {
        Self {
            direction,
            endpoint,
            levels: [const { AtomicI32::new(VOLUME_MAX) }; MAX_CHANNELS],
            muted: AtomicBool::new(false),
            range: SOFTWARE_VOLUME_RANGE,
            hardware: None,
        }
    }

    /// A topology whose volume and mute drive `hardware` (at 0 dB, or the
    /// nearest level in its range, not muted; the hardware is told so at
    /// once).
    #[must_use]
    pub fn with_hardware(
        direction: Direction,
        endpoint: Endpoint,
        hardware: Arc<dyn TopologyHardware>,
    ) -> Self {
        let range = hardware.volume_range();
        let topology = Self {
            direction,
            endpoint,
            levels: [const { AtomicI32::new(VOLUME_MAX) }; MAX_CHANNELS],
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

    /// The endpoint the nodes serve.
    #[must_use]
    pub const fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn apply(&self) {
        if let Some(hardware) = &self.hardware {
            let mut levels = [0; MAX_CHANNELS];
            let count = self.endpoint.channels();
            for (channel, level) in levels.iter_mut().enumerate().take(count) {
                *level = self.level(channel).unwrap_or(self.range.max);
            }
            hardware.apply_channels(levels.get(..count).unwrap_or(&[]), self.is_muted());
        }
    }

    /// The level of `channel` in 1/65536 dB (`None` past the endpoint's
    /// channels).
    #[must_use]
    pub fn level(&self, channel: usize) -> Option<i32> {
        if channel >= self.endpoint.channels() {
            return None;
        }
        self.levels.get(channel).map(|l| l.load(Ordering::Relaxed))
    }

    /// Whether muted.
    #[must_use]
    pub fn is_muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    /// The hardware's peak meter, if it has one.
    #[must_use]
    pub fn peak_meter(&self) -> Option<&PeakMeter> {
        self.hardware
            .as_deref()
            .and_then(TopologyHardware::peak_meter)
    }

    /// The pin carrying the jack (the endpoint's bridge pin).
    const fn jack_pin(&self) -> u32 {
        match self.direction {
            Direction::Render => TOPO_RENDER_SPEAKER_PIN,
            Direction::Capture => TOPO_CAPTURE_MIC_PIN,
        }
    }

    /// The channel index list a request addresses
    /// (`KSNODEPROPERTY_AUDIO_CHANNEL.Channel`): one channel, or every one
    /// for the master channel.
    fn channels(&self, instance: &[u8]) -> NtResult<core::ops::Range<usize>> {
        let channel: LONG = read_at(instance, CHANNEL_AT).ok_or(NtStatus::INVALID_PARAMETER)?;
        let count = self.endpoint.channels();
        if channel == MASTER_CHANNEL {
            return Ok(0..count);
        }
        match usize::try_from(channel) {
            Ok(channel) if channel < count => Ok(channel..channel + 1),
            _ => Err(NtStatus::INVALID_PARAMETER),
        }
    }
}

impl Miniport for TopologyMiniport {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        match (self.direction, self.peak_meter().is_some()) {
            (Direction::Render, false) => &TOPOLOGY_RENDER_FILTER,
            (Direction::Capture, false) => &TOPOLOGY_CAPTURE_FILTER,
            (Direction::Render, true) => &METERED_TOPOLOGY_RENDER_FILTER,
            (Direction::Capture, true) => &METERED_TOPOLOGY_CAPTURE_FILTER,
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

impl Reply {
    /// A handler's result as PortCls reads it back: the status, with
    /// `ValueSize` set to the bytes written or needed (every property
    /// handler of the crate ends here).
    pub(crate) const fn complete(result: NtResult<Self>, value_size: &mut u32) -> NTSTATUS {
        match result {
            Ok(Self::Done(written)) => {
                *value_size = written;
                STATUS_SUCCESS
            }
            Ok(Self::Size(needed)) => {
                *value_size = needed;
                STATUS_BUFFER_OVERFLOW
            }
            Err(failure) => failure.code(),
        }
    }
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
    Reply::complete(handle(topology, &mut call), &mut request.ValueSize)
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

/// `KSPROPERTY_AUDIO_PEAKMETER2` on the peak-meter node.
///
/// # Safety
///
/// Called by PortCls only (see [`dispatch`]).
#[windows_abi]
pub unsafe extern "system" fn peak_meter_handler(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
    // SAFETY: PortCls passes a request for this table's TopologyMiniport filter.
    unsafe { dispatch(request, peak_meter) }
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

/// The members list of a multichannel basic-support answer: one stepped
/// range per channel.
#[derive(Clone, Copy)]
struct ChannelRanges {
    /// `KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_*`.
    flags: ULONG,
    /// Channels (one range each).
    count: usize,
    /// Every channel's range.
    stepping: KSPROPERTY_STEPPING_LONG,
}

/// A basic-support answer: access flags only (a buffer shorter than the
/// description), the description, or the description with its members
/// list (header, then one stepped range per channel) when there is one
/// and room for it.
fn basic_support(
    value: &mut [u8],
    access: ULONG,
    vt: VARENUM,
    members: Option<ChannelRanges>,
) -> NtResult<Reply> {
    let members_size = members.map_or(0, |m| {
        // At most MAX_CHANNELS (18) ranges of 16 bytes: no overflow.
        MEMBERS_HEADER_SIZE as usize + m.count * STEPPING_LONG_SIZE as usize
    });
    let full = u32::try_from(DESCRIPTION_SIZE as usize + members_size)
        .map_err(|_| NtStatus::INVALID_PARAMETER)?;
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
        MembersListCount: ULONG::from(members.is_some()),
        Reserved: 0,
    };
    if len < DESCRIPTION_SIZE as usize {
        // Room for `AccessFlags`, the description's first member, at most.
        return write_reply(value, &description.AccessFlags);
    }
    let Some(members) = members.filter(|_| len >= full as usize) else {
        return write_reply(value, &description);
    };
    let (head, rest) = value.split_at_mut(DESCRIPTION_SIZE as usize);
    description
        .write_to(head)
        .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    let (header, mut ranges) = rest.split_at_mut(MEMBERS_HEADER_SIZE as usize);
    KSPROPERTY_MEMBERSHEADER {
        MembersFlags: KSPROPERTY_MEMBER_STEPPEDRANGES,
        MembersSize: STEPPING_LONG_SIZE,
        MembersCount: u32::try_from(members.count).map_err(|_| NtStatus::INVALID_PARAMETER)?,
        Flags: members.flags,
    }
    .write_to(header)
    .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    for _ in 0..members.count {
        let (range, after) = ranges.split_at_mut(STEPPING_LONG_SIZE as usize);
        members
            .stepping
            .write_to(range)
            .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
        ranges = after;
    }
    Ok(Reply::Done(full))
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

fn volume(topology: &TopologyMiniport, call: &mut PropertyCall<'_>) -> NtResult<Reply> {
    if call.node != TOPO_VOLUME_NODE {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    match call.verb {
        KSPROPERTY_TYPE_BASICSUPPORT => basic_support(
            call.value,
            GET_SET_BASIC,
            VT_I4,
            // Each channel has its own level (no UNIFORM flag), over the
            // same range.
            Some(ChannelRanges {
                flags: KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL,
                count: topology.endpoint.channels(),
                stepping: stepping(
                    topology.range.step.unsigned_abs(),
                    topology.range.min,
                    topology.range.max,
                ),
            }),
        ),
        KSPROPERTY_TYPE_GET => {
            let range = topology.channels(call.instance)?;
            let level: LONG = topology
                .level(range.start)
                .ok_or(NtStatus::INVALID_PARAMETER)?;
            write_reply(call.value, &level)
        }
        KSPROPERTY_TYPE_SET => {
            let range = topology.channels(call.instance)?;
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
        // One mute state applies to every channel: UNIFORM, which is only
        // defined together with MULTICHANNEL (Learn, "Exposing Multichannel
        // Nodes").
        KSPROPERTY_TYPE_BASICSUPPORT => basic_support(
            call.value,
            GET_SET_BASIC,
            VT_BOOL,
            Some(ChannelRanges {
                flags: KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL
                    | KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM,
                count: topology.endpoint.channels(),
                stepping: stepping(1, 0, 1),
            }),
        ),
        KSPROPERTY_TYPE_GET => {
            topology.channels(call.instance)?;
            write_reply(call.value, &BOOL::from(topology.is_muted()))
        }
        KSPROPERTY_TYPE_SET => {
            topology.channels(call.instance)?;
            let muted: BOOL = read_at(call.value, 0).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
            topology.muted.store(muted != 0, Ordering::Relaxed);
            topology.apply();
            Ok(Reply::Done(BOOL_SIZE))
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

/// `KSPROPERTY_AUDIO_PEAKMETER2`: read only. Basic support gives one range
/// per channel, `LONG_MIN..=LONG_MAX` (the bounds Learn requires), by 1: the
/// meter reports exact magnitudes, not steps. GET names one channel (the
/// master channel has no single peak: `STATUS_INVALID_PARAMETER`, as
/// SYSVAD's handler refuses any channel past its last) and resets it.
fn peak_meter(topology: &TopologyMiniport, call: &mut PropertyCall<'_>) -> NtResult<Reply> {
    let meter = topology
        .peak_meter()
        .ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    if call.node != TOPO_PEAK_METER_NODE || call.id != KSPROPERTY_AUDIO_PEAKMETER2 {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    match call.verb {
        KSPROPERTY_TYPE_BASICSUPPORT => basic_support(
            call.value,
            KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_BASICSUPPORT,
            VT_I4,
            Some(ChannelRanges {
                flags: KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL,
                count: topology.endpoint.channels(),
                stepping: stepping(1, LONG::MIN, LONG::MAX),
            }),
        ),
        KSPROPERTY_TYPE_GET => {
            let channel: LONG =
                read_at(call.instance, CHANNEL_AT).ok_or(NtStatus::INVALID_PARAMETER)?;
            let channel = usize::try_from(channel)
                .ok()
                .filter(|&c| c < topology.endpoint.channels())
                .ok_or(NtStatus::INVALID_PARAMETER)?;
            // The size checks come before the read: a refused request leaves
            // the meter as it was (Learn: "If the request does not succeed,
            // the peakmeter is not changed").
            if let Some(answer) = output_check(call.value.len(), LONG_SIZE) {
                return answer;
            }
            let peak: LONG = meter.take(channel).ok_or(NtStatus::INVALID_PARAMETER)?;
            write_reply(call.value, &peak)
        }
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

/// `KSPROPERTY_JACK_DESCRIPTION(2)`, a filter property with a `KSP_PIN`:
/// only the endpoint's bridge pin has a jack; any other pin, or a request
/// without a pin id, is `STATUS_INVALID_DEVICE_REQUEST` (what the samples'
/// jack handlers answer: simpleaudiosample `mintopo.cpp`).
fn jack(topology: &TopologyMiniport, call: &mut PropertyCall<'_>) -> NtResult<Reply> {
    let pin: ULONG = read_at(call.instance, PIN_ID_AT).ok_or(NtStatus::INVALID_DEVICE_REQUEST)?;
    if pin != topology.jack_pin() {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
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
                jack: topology.endpoint.jack(),
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

    /// A stereo speaker jack the tests describe in full.
    const STEREO_SPEAKER: Endpoint = Endpoint::new(
        2,
        KSJACK_DESCRIPTION {
            ChannelMapping: portcls_sys::KSAUDIO_SPEAKER_STEREO,
            Color: 0x00B3_C98C,
            ConnectionType: portcls_sys::eConnType3Point5mm,
            GeoLocation: portcls_sys::eGeoLocRear,
            GenLocation: portcls_sys::eGenLocPrimaryBox,
            PortConnection: portcls_sys::ePortConnJack,
            IsConnected: 1,
        },
    );

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
        let topology = TopologyMiniport::new(Direction::Render, STEREO_SPEAKER);
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
    fn volume_basic_support_is_description_members_header_and_a_range_per_channel() {
        let [s0, s1, s2, s3] = general_set();
        let (result, got) = reply(volume, TOPO_VOLUME_NODE, KSPROPERTY_TYPE_BASICSUPPORT, 0, 0);
        assert_eq!(result, Ok(Reply::Done(88)));
        let min = u32::from_le_bytes(VOLUME_MIN.to_le_bytes());
        let want = expected(
            88,
            &[
                // KSPROPERTY_DESCRIPTION
                GET_SET_BASIC,
                88,
                s0,
                s1,
                s2,
                s3,
                VT_I4,
                0,
                1,
                0,
                // KSPROPERTY_MEMBERSHEADER: two channels, each its own level.
                KSPROPERTY_MEMBER_STEPPEDRANGES,
                16,
                2,
                KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL,
                // KSPROPERTY_STEPPING_LONG, left then right
                32768,
                0,
                min,
                0,
                32768,
                0,
                min,
                0,
            ],
        );
        assert_eq!(got, want);
    }

    #[test]
    fn mute_basic_support_is_one_uniform_state_over_every_channel() {
        let (result, got) = reply(mute, TOPO_MUTE_NODE, KSPROPERTY_TYPE_BASICSUPPORT, 0, 0);
        assert_eq!(result, Ok(Reply::Done(88)));
        let want = expected(
            88,
            &[
                KSPROPERTY_MEMBER_STEPPEDRANGES,
                16,
                2,
                KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_MULTICHANNEL
                    | KSPROPERTY_MEMBER_FLAG_BASICSUPPORT_UNIFORM,
                1,
                0,
                0,
                1,
                1,
                0,
                0,
                1,
            ],
        );
        assert_eq!(got[40..88], want[..48]);
    }

    #[test]
    fn channels_past_the_endpoint_are_refused_and_master_addresses_all() {
        let topology = TopologyMiniport::new(Direction::Render, STEREO_SPEAKER);
        assert_eq!(topology.channels(&(-1i32).to_le_bytes()), Ok(0..2));
        assert_eq!(topology.channels(&1i32.to_le_bytes()), Ok(1..2));
        assert_eq!(
            topology.channels(&2i32.to_le_bytes()),
            Err(NtStatus::INVALID_PARAMETER)
        );
        assert_eq!(topology.level(2), None);
        assert_eq!(Endpoint::new(0, STEREO_SPEAKER.jack()).channels(), 1);
        assert_eq!(
            Endpoint::new(200, STEREO_SPEAKER.jack()).channels(),
            MAX_CHANNELS
        );
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
                portcls_sys::KSAUDIO_SPEAKER_STEREO,
                0x00B3_C98C,
                u32::from_le_bytes(portcls_sys::eConnType3Point5mm.to_le_bytes()),
                u32::from_le_bytes(portcls_sys::eGeoLocRear.to_le_bytes()),
                u32::from_le_bytes(portcls_sys::eGenLocPrimaryBox.to_le_bytes()),
                u32::from_le_bytes(portcls_sys::ePortConnJack.to_le_bytes()),
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
