//! The wave miniport (one per direction) every back-end shares, and its
//! filter's format properties: intersection, stream acceptance, the default
//! format and the bus come from the [`Backend`].
//!
//! # Which formats a stream may open with
//!
//! One function decides, [`WaveMiniport::stream_format`]: the format must
//! parse (a `KSDATAFORMAT` + WAVEFORMATEX(TENSIBLE)) and the back-end must
//! accept it ([`Backend::accepts`]). `NewStream` opens exactly what it
//! passes; `KSPROPERTY_PIN_PROPOSEDATAFORMAT` (SET) answers exactly what it
//! passes, without opening anything (the host pin has one instance, which
//! may be busy); `DataRangeIntersection` only returns formats it passes.
//!
//! # The filter's properties
//!
//! Every back-end's wave filter carries one automation table
//! ([`with_format_properties`]), as Microsoft's SYSVAD wave filters do
//! (`speakerwavtable.h`, `PropertiesSpeakerWaveFilter`: the two items below,
//! same verbs, one handler):
//!
//! | property | verbs | answer |
//! |---|---|---|
//! | `KSPROPERTY_PIN_PROPOSEDATAFORMAT` | SET, BASICSUPPORT | `STATUS_SUCCESS` if a stream would open with the format in the value, `STATUS_NO_MATCH` if the back-end refuses it (Learn: "`KSPROPERTY_PIN_PROPOSEDATAFORMAT`"), `STATUS_INVALID_PARAMETER` if it is malformed |
//! | `KSPROPERTY_PIN_PROPOSEDATAFORMAT2` | GET, BASICSUPPORT | the default format ([`Backend::default_format`]) for the mode the attribute list names (DEFAULT when none), flagged `KSDATAFORMAT_ATTRIBUTES`, followed by the request's attribute list at the next 8-byte boundary (as SYSVAD's `PropertyHandlerProposedFormat2`); `STATUS_NOT_SUPPORTED` for a mode the pin lacks or an attribute other than the mode |
//!
//! Common rules (both items): the instance is the `KSP_PIN` after its
//! `KSPROPERTY` (`PinId`, `Reserved`; PortCls hands a filter property's
//! handler the bytes after the `KSPROPERTY`, `ReactOS` portcls
//! `PropertyItemDispatch`);
//! a bridge pin is `STATUS_NOT_SUPPORTED`, an unknown pin or a short instance
//! `STATUS_INVALID_PARAMETER` (SYSVAD's checks); a 0-byte value is a size
//! query (`STATUS_BUFFER_OVERFLOW` with the size), a short one
//! `STATUS_BUFFER_TOO_SMALL`; basic support answers the access flags
//! (4 bytes) or a `KSPROPERTY_DESCRIPTION` (40 bytes, no type set, no
//! members, as SYSVAD's `PropertyHandler_BasicSupport` with `VT_ILLEGAL`).
//!
//! IRQL: every method and handler at `PASSIVE_LEVEL`.

use core::marker::PhantomData;
use core::mem::size_of;

use alloc::sync::Arc;
use portcls_sys::{
    windows_abi, IPortWaveRT, IPortWaveRTStream, IResourceList, IUnknown, KSPROPSETID_Pin,
    Width32Bits, DEVICE_DESCRIPTION, DEVICE_DESCRIPTION_VERSION, GUID, KSDATAFORMAT_ATTRIBUTES,
    KSIDENTIFIER, KSPROPERTY_DESCRIPTION, KSPROPERTY_PIN_PROPOSEDATAFORMAT,
    KSPROPERTY_PIN_PROPOSEDATAFORMAT2, KSPROPERTY_TYPE_BASICSUPPORT, KSPROPERTY_TYPE_GET,
    KSPROPERTY_TYPE_SET, KSPROPERTY_TYPE_TOPOLOGY, NTSTATUS, PCAUTOMATION_TABLE, PCEVENT_ITEM,
    PCFILTER_DESCRIPTOR, PCMETHOD_ITEM, PCPROPERTY_ITEM, PCPROPERTY_REQUEST,
    STATUS_INVALID_PARAMETER, ULONG,
};
use wavert_com::{ComPtr, Miniport, MiniportWaveRt, NtResult, NtStatus};
use wavert_core::format::AudioFormat;
use wavert_core::range::{
    intersect, ks_data_format_len, parse_client_request, write_ks_data_format, ClientRequest,
    DeviceRange, KSDATAFORMAT_SIZE,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::direction::Direction;
use crate::filters::{WAVE_BRIDGE_PIN, WAVE_HOST_PIN};
use crate::modes::mode_of;
use crate::platform::LogLevel;
use crate::stream::{parse_format, Backend, WaveRtStream};
use crate::topology::Reply;

/// The wave miniport of one direction of a device, for every back-end.
pub struct WaveMiniport<B: Backend> {
    backend: Arc<B>,
    direction: Direction,
    /// The back-end's run-time filter with this miniport's format
    /// properties, when it has one ([`Backend::runtime_wave_filter`]).
    runtime: Option<OwnedDescriptor>,
}

/// A filter descriptor whose pointers lead into a [`RuntimeWaveFilter`]
/// the miniport's back-end owns (it outlives the miniport, which holds it).
struct OwnedDescriptor(PCFILTER_DESCRIPTOR);

// SAFETY: the descriptor is never written after construction; its
// pointers lead to statics or to the back-end's `RuntimeWaveFilter`,
// itself `Send + Sync` and kept alive by the miniport's `Arc`.
unsafe impl Send for OwnedDescriptor {}
// SAFETY: as for `Send`.
unsafe impl Sync for OwnedDescriptor {}

impl<B: Backend> WaveMiniport<B> {
    /// The wave miniport for `direction` of `backend`.
    #[must_use]
    pub fn new(backend: Arc<B>, direction: Direction) -> Self {
        let runtime = backend
            .runtime_wave_filter(direction)
            .map(|filter| OwnedDescriptor(with_format_properties::<B>(*filter.descriptor())));
        Self {
            backend,
            direction,
            runtime,
        }
    }

    /// The format a stream would open with, from the `KSDATAFORMAT` +
    /// WAVEFORMATEX(TENSIBLE) `bytes` `NewStream` (or a format proposal)
    /// carries: the one rule both answer by.
    ///
    /// # Errors
    ///
    /// `STATUS_INVALID_PARAMETER` when malformed (or a range rather than a
    /// format), `STATUS_NOT_SUPPORTED` when the back-end refuses it.
    pub fn stream_format(&self, bytes: &[u8]) -> NtResult<AudioFormat> {
        let format = parse_format(bytes)?;
        if self.backend.accepts(self.direction, &format) {
            Ok(format)
        } else {
            Err(NtStatus::NOT_SUPPORTED)
        }
    }

    /// The signal-processing mode `attributes` names (DEFAULT without a
    /// list), if the host pin has it: the one rule `NewStream` and
    /// `KSPROPERTY_PIN_PROPOSEDATAFORMAT2` answer by, over the back-end's
    /// list ([`Backend::signal_processing_modes`], which `GetModes` answers).
    ///
    /// # Errors
    ///
    /// What [`mode_of`] refuses; `STATUS_NOT_SUPPORTED` for a mode the pin
    /// lacks (refused like a format it lacks).
    pub fn host_pin_mode(&self, attributes: Option<&[u8]>) -> NtResult<GUID> {
        let mode = mode_of(attributes)?;
        if self
            .backend
            .signal_processing_modes(self.direction)
            .contains(&mode)
        {
            Ok(mode)
        } else {
            Err(NtStatus::NOT_SUPPORTED)
        }
    }

    /// The host pin's device range `matching_range` is (the port passes one
    /// of the pin's own data ranges, in their serialised form).
    fn host_range(&self, matching_range: &[u8]) -> Option<DeviceRange> {
        let Ok(ClientRequest::Range(range)) = parse_client_request(matching_range) else {
            return None;
        };
        self.backend
            .host_ranges(self.direction)
            .iter()
            .copied()
            .find(|d| {
                range.sample_type == Some(d.sample_type)
                    && range.max_channels == u32::from(d.max_channels)
                    && range.min_bits == u32::from(d.min_bits)
                    && range.max_bits == u32::from(d.max_bits)
                    && range.min_rate == d.min_rate
                    && range.max_rate == d.max_rate
            })
    }
}

impl<B: Backend> Miniport for WaveMiniport<B> {
    fn description(&self) -> &PCFILTER_DESCRIPTOR {
        self.runtime
            .as_ref()
            .map_or_else(|| wave_filter::<B>(self.direction), |owned| &owned.0)
    }

    /// The format inside the client's range and `matching_range` closest to
    /// the back-end's default format, if a stream may open with it.
    fn data_range_intersection(
        &self,
        pin_id: u32,
        data_range: &[u8],
        matching_range: &[u8],
        result: &mut [u8],
        result_len: &mut u32,
    ) -> NtResult<()> {
        if pin_id != WAVE_HOST_PIN {
            // Bridge pins carry analog audio: the port's own intersection.
            return Err(NtStatus::NOT_IMPLEMENTED);
        }
        let device = self.host_range(matching_range).ok_or(NtStatus::NO_MATCH)?;
        let default = self.backend.default_format(self.direction);
        let format = intersect(data_range, &device, &default).map_err(|_| NtStatus::NO_MATCH)?;
        // A range cannot say everything (the AC'97's two channels only):
        // what a stream may not open with is no match.
        if !self.backend.accepts(self.direction, &format) {
            return Err(NtStatus::NO_MATCH);
        }
        write_intersection(&format, result, result_len)
    }
}

impl<B: Backend> MiniportWaveRt for WaveMiniport<B> {
    type Stream = WaveRtStream<B>;

    fn init(
        &self,
        _adapter: Option<ComPtr<IUnknown>>,
        _resources: Option<ComPtr<IResourceList>>,
        _port: ComPtr<IPortWaveRT>,
    ) -> NtResult<()> {
        // The adapter already claimed whatever resources the device has (it
        // is shared by four filters); the port reference is not needed (no
        // port events to generate), so it is released right away.
        self.backend.log(
            LogLevel::Info,
            format_args!(
                "{}{:?} wave miniport initialised",
                self.backend.log_prefix(),
                self.direction
            ),
        );
        Ok(())
    }

    fn new_stream(
        &self,
        port_stream: ComPtr<IPortWaveRTStream>,
        pin: u32,
        capture: bool,
        format: &[u8],
        attributes: Option<&[u8]>,
    ) -> NtResult<Self::Stream> {
        if pin != WAVE_HOST_PIN || capture != (self.direction == Direction::Capture) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        self.host_pin_mode(attributes)?;
        let format = self.stream_format(format)?;
        WaveRtStream::new(self.backend.clone(), self.direction, port_stream, format)
    }

    fn device_description(&self, description: &mut DEVICE_DESCRIPTION) -> NtResult<()> {
        // A scatter/gather bus master: PortCls only uses this to bound the
        // pages it allocates for the buffer.
        *description = DEVICE_DESCRIPTION {
            Version: DEVICE_DESCRIPTION_VERSION,
            Master: 1,
            ScatterGather: 1,
            Dma32BitAddresses: 1,
            Dma64BitAddresses: u8::from(self.backend.dma_reach() > u64::from(u32::MAX)),
            InterfaceType: self.backend.bus(),
            DmaWidth: Width32Bits,
            MaximumLength: self.backend.buffer_limits().max_bytes,
            ..DEVICE_DESCRIPTION::default()
        };
        Ok(())
    }

    fn has_signal_processing_modes(&self) -> bool {
        !self
            .backend
            .signal_processing_modes(self.direction)
            .is_empty()
    }

    /// The host pin's modes; the bridge pin has none (`STATUS_NOT_SUPPORTED`,
    /// Learn's `GetModes` page), a pin beyond the filter's is
    /// `STATUS_INVALID_PARAMETER`.
    fn signal_processing_modes(&self, pin: u32) -> NtResult<&'static [GUID]> {
        let modes = self.backend.signal_processing_modes(self.direction);
        if pin == WAVE_HOST_PIN && !modes.is_empty() {
            Ok(modes)
        } else if pin < self.description().PinCount {
            Err(NtStatus::NOT_SUPPORTED)
        } else {
            Err(NtStatus::INVALID_PARAMETER)
        }
    }
}

/// Answers `DataRangeIntersection` with `format` as a `KSDATAFORMAT` +
/// `WAVEFORMATEX(TENSIBLE)` (at most 104 bytes), following PortCls's size
/// protocol: an empty `result` is a size query (`STATUS_BUFFER_OVERFLOW` with
/// `*result_len` = the size needed), a short one is `STATUS_BUFFER_TOO_SMALL`.
pub(crate) fn write_intersection(
    format: &AudioFormat,
    result: &mut [u8],
    result_len: &mut u32,
) -> NtResult<()> {
    let needed = u32::try_from(ks_data_format_len(format)).unwrap_or(u32::MAX);
    *result_len = needed;
    if result.is_empty() {
        return Err(NtStatus::BUFFER_OVERFLOW);
    }
    let written = write_ks_data_format(format, result).map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    *result_len = u32::try_from(written).unwrap_or(needed);
    Ok(())
}

// ---- The wave filter's automation table --------------------------------------

const SET_BASIC: ULONG = KSPROPERTY_TYPE_SET | KSPROPERTY_TYPE_BASICSUPPORT;
const GET_BASIC: ULONG = KSPROPERTY_TYPE_GET | KSPROPERTY_TYPE_BASICSUPPORT;

#[allow(
    clippy::cast_possible_truncation,
    reason = "structure sizes of a few dozen bytes"
)]
const fn size32<T>() -> ULONG {
    size_of::<T>() as ULONG
}

/// The property items and automation table of `B`'s wave filters (generic:
/// the handler must know the miniport's type to reach it).
struct FormatProperties<B>(PhantomData<B>);

impl<B: Backend> FormatProperties<B> {
    const ITEMS: [PCPROPERTY_ITEM; 2] = [
        PCPROPERTY_ITEM {
            Set: &KSPROPSETID_Pin,
            Id: KSPROPERTY_PIN_PROPOSEDATAFORMAT,
            Flags: SET_BASIC,
            Handler: Some(format_property_handler::<B>),
        },
        PCPROPERTY_ITEM {
            Set: &KSPROPSETID_Pin,
            Id: KSPROPERTY_PIN_PROPOSEDATAFORMAT2,
            Flags: GET_BASIC,
            Handler: Some(format_property_handler::<B>),
        },
    ];

    const AUTOMATION: PCAUTOMATION_TABLE = PCAUTOMATION_TABLE {
        PropertyItemSize: size32::<PCPROPERTY_ITEM>(),
        #[allow(clippy::cast_possible_truncation, reason = "two items")]
        PropertyCount: Self::ITEMS.len() as ULONG,
        Properties: Self::ITEMS.as_ptr(),
        MethodItemSize: size32::<PCMETHOD_ITEM>(),
        MethodCount: 0,
        Methods: core::ptr::null(),
        EventItemSize: size32::<PCEVENT_ITEM>(),
        EventCount: 0,
        Events: core::ptr::null(),
        Reserved: 0,
    };
}

/// `filter` (a wave filter's pins, nodes, connections and categories) with
/// the format properties of `B`'s wave miniport as its automation table.
#[must_use]
pub const fn with_format_properties<B: Backend>(
    filter: PCFILTER_DESCRIPTOR,
) -> PCFILTER_DESCRIPTOR {
    PCFILTER_DESCRIPTOR {
        AutomationTable: &FormatProperties::<B>::AUTOMATION,
        ..filter
    }
}

/// The registered wave filters of `B` (statics cannot be generic; a
/// reference to one of these constants is a `'static` promoted constant).
struct WaveFilters<B>(PhantomData<B>);

impl<B: Backend> WaveFilters<B> {
    const RENDER: PCFILTER_DESCRIPTOR = with_format_properties::<B>(B::WAVE_RENDER_FILTER);
    const CAPTURE: PCFILTER_DESCRIPTOR = with_format_properties::<B>(B::WAVE_CAPTURE_FILTER);
}

/// The descriptor `direction`'s wave miniport of `B` registers: the
/// back-end's shape with the format properties of `WaveMiniport<B>`.
#[must_use]
pub const fn wave_filter<B: Backend>(direction: Direction) -> &'static PCFILTER_DESCRIPTOR {
    match direction {
        Direction::Render => &WaveFilters::<B>::RENDER,
        Direction::Capture => &WaveFilters::<B>::CAPTURE,
    }
}

/// What the handler sees of a filter property request.
#[derive(Debug)]
pub struct FilterPropertyCall<'a> {
    /// The property item's id.
    pub id: u32,
    /// The property item's flags (what basic support reports).
    pub item_flags: u32,
    /// GET, SET or BASICSUPPORT (the TOPOLOGY bit removed).
    pub verb: u32,
    /// The instance after the `KSPROPERTY` (a `KSP_PIN`'s `PinId` and
    /// `Reserved`, then any attribute list), at most [`INSTANCE_COPY`] bytes.
    pub instance: &'a [u8],
    /// Whether the instance was longer than [`INSTANCE_COPY`].
    pub instance_truncated: bool,
    /// The value buffer (input for SET, output otherwise).
    pub value: &'a mut [u8],
}

/// Most instance bytes the handler reads: the `KSP_PIN` tail (8), a
/// `KSMULTIPLE_ITEM` (8) and up to two 40-byte attributes (each at an 8-byte
/// boundary); a longer attribute list is refused.
pub const INSTANCE_COPY: usize = 96;

/// The `KSP_PIN` fields after the `KSPROPERTY`: `PinId`, `Reserved`.
const PIN_INSTANCE: usize = 8;

/// Turns a raw request into a [`FilterPropertyCall`] on the
/// [`WaveMiniport<B>`] it targets, and the answer into the `NTSTATUS` and
/// `ValueSize` PortCls reads back.
///
/// # Safety
///
/// `request` must be null or a `PCPROPERTY_REQUEST` from PortCls for a
/// property of the filter automation table of a `WaveMiniport<B>`'s filter:
/// `MajorTarget` that miniport's `IUnknown` (see
/// [`wavert_com::wave_miniport_value`]), `PropertyItem` valid,
/// `Instance`/`Value` null or valid for `InstanceSize`/`ValueSize` bytes,
/// the value writable and not overlapping the instance.
pub unsafe fn dispatch<B: Backend>(request: *mut PCPROPERTY_REQUEST) -> NTSTATUS {
    // SAFETY: null or a live request (caller).
    let Some(request) = (unsafe { request.as_mut() }) else {
        return STATUS_INVALID_PARAMETER;
    };
    if request.MajorTarget.is_null() || request.PropertyItem.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: a valid property item (caller).
    let item = unsafe { &*request.PropertyItem };
    // The instance is copied out so that no Rust reference to it coexists
    // with the mutable value slice.
    let mut instance = [0u8; INSTANCE_COPY];
    let total = request.InstanceSize as usize;
    let instance_len = total.min(INSTANCE_COPY);
    if !request.Instance.is_null() {
        // SAFETY: `Instance` holds `InstanceSize` >= `instance_len` readable bytes (caller).
        let src =
            unsafe { core::slice::from_raw_parts(request.Instance.cast::<u8>(), instance_len) };
        if let Some(dst) = instance.get_mut(..instance_len) {
            dst.copy_from_slice(src);
        }
    }
    let copied = if request.Instance.is_null() {
        0
    } else {
        instance_len
    };
    let value: &mut [u8] = if request.Value.is_null() {
        &mut []
    } else {
        // SAFETY: `Value` holds `ValueSize` writable bytes, unaliased (caller).
        unsafe {
            core::slice::from_raw_parts_mut(request.Value.cast::<u8>(), request.ValueSize as usize)
        }
    };
    // SAFETY: these handlers sit only in `with_format_properties::<B>`
    // tables, whose filter belongs to a `WaveMiniport<B>`: `MajorTarget` is
    // that miniport's IUnknown (caller).
    let miniport =
        unsafe { wavert_com::wave_miniport_value::<WaveMiniport<B>>(request.MajorTarget.cast()) };
    let mut call = FilterPropertyCall {
        id: item.Id,
        item_flags: item.Flags,
        verb: request.Verb & !KSPROPERTY_TYPE_TOPOLOGY,
        instance: instance.get(..copied).unwrap_or(&[]),
        instance_truncated: total > INSTANCE_COPY,
        value,
    };
    Reply::complete(format_property(miniport, &mut call), &mut request.ValueSize)
}

/// `KSPROPERTY_PIN_PROPOSEDATAFORMAT` and `_PROPOSEDATAFORMAT2` on a wave
/// filter of `B`.
///
/// # Safety
///
/// Called by PortCls only (see [`dispatch`]).
#[windows_abi]
pub unsafe extern "system" fn format_property_handler<B: Backend>(
    request: *mut PCPROPERTY_REQUEST,
) -> NTSTATUS {
    // SAFETY: PortCls passes a request for this table's WaveMiniport<B> filter.
    unsafe { dispatch::<B>(request) }
}

/// The safe half of the handler: both properties of a wave filter.
///
/// # Errors
///
/// The statuses of the module's table.
pub fn format_property<B: Backend>(
    miniport: &WaveMiniport<B>,
    call: &mut FilterPropertyCall<'_>,
) -> NtResult<Reply> {
    let pin = call
        .instance
        .get(..PIN_INSTANCE)
        .and_then(|b| u32::read_from_prefix(b).ok())
        .map(|(pin, _)| pin)
        .ok_or(NtStatus::INVALID_PARAMETER)?;
    match pin {
        WAVE_HOST_PIN => {}
        WAVE_BRIDGE_PIN => return Err(NtStatus::NOT_SUPPORTED),
        _ => return Err(NtStatus::INVALID_PARAMETER),
    }
    if call.verb & KSPROPERTY_TYPE_BASICSUPPORT != 0 {
        return basic_support(call.value, call.item_flags);
    }
    match call.id {
        KSPROPERTY_PIN_PROPOSEDATAFORMAT => propose_format(miniport, call),
        KSPROPERTY_PIN_PROPOSEDATAFORMAT2 => proposed_format_for_mode(miniport, call),
        _ => Err(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

const DESCRIPTION_SIZE: u32 = size32::<KSPROPERTY_DESCRIPTION>();
const FLAGS_SIZE: u32 = size32::<ULONG>();

/// Basic support: the access flags, or a description without a type set or
/// members.
fn basic_support(value: &mut [u8], access: ULONG) -> NtResult<Reply> {
    let len = value.len();
    if len == 0 {
        return Ok(Reply::Size(DESCRIPTION_SIZE));
    }
    if len < FLAGS_SIZE as usize {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    if len < DESCRIPTION_SIZE as usize {
        access
            .write_to_prefix(value)
            .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
        return Ok(Reply::Done(FLAGS_SIZE));
    }
    let description = KSPROPERTY_DESCRIPTION {
        AccessFlags: access,
        DescriptionSize: DESCRIPTION_SIZE,
        PropTypeSet: KSIDENTIFIER {
            Set: GUID::from_u128(0),
            Id: 0,
            Flags: 0,
        },
        MembersListCount: 0,
        Reserved: 0,
    };
    description
        .write_to_prefix(value)
        .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    Ok(Reply::Done(DESCRIPTION_SIZE))
}

/// The value size a proposal is answered with when it asks for one: a
/// `KSDATAFORMAT` + `WAVEFORMATEXTENSIBLE`, the largest format we parse.
const PROPOSAL_SIZE: u32 = 104;

/// `KSPROPERTY_PIN_PROPOSEDATAFORMAT` (SET): would a stream open with the
/// format in the value?
fn propose_format<B: Backend>(
    miniport: &WaveMiniport<B>,
    call: &FilterPropertyCall<'_>,
) -> NtResult<Reply> {
    if call.verb & KSPROPERTY_TYPE_SET == 0 {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    let len = call.value.len();
    if len == 0 {
        return Ok(Reply::Size(PROPOSAL_SIZE));
    }
    if len < KSDATAFORMAT_SIZE {
        return Err(NtStatus::BUFFER_TOO_SMALL);
    }
    match miniport.stream_format(call.value) {
        Ok(_) => Ok(Reply::Done(u32::try_from(len).unwrap_or(u32::MAX))),
        // The pin cannot be opened with it: Learn's answer for that.
        Err(refused) if refused == NtStatus::NOT_SUPPORTED => Err(NtStatus::NO_MATCH),
        Err(other) => Err(other),
    }
}

/// `n` rounded up to a multiple of 8 (`n` is at most a few hundred).
const fn align8(n: usize) -> usize {
    n.saturating_add(7) & !7
}

/// `KSPROPERTY_PIN_PROPOSEDATAFORMAT2` (GET): the default format for the
/// mode the attribute list names, then that list.
fn proposed_format_for_mode<B: Backend>(
    miniport: &WaveMiniport<B>,
    call: &mut FilterPropertyCall<'_>,
) -> NtResult<Reply> {
    if call.instance_truncated {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    // The list is required here (a request names its mode, or asks with
    // an empty list for DEFAULT): a missing one is malformed.
    let list = call.instance.get(PIN_INSTANCE..).unwrap_or(&[]);
    miniport.host_pin_mode(Some(list))?;
    if call.verb & KSPROPERTY_TYPE_GET == 0 {
        return Err(NtStatus::INVALID_DEVICE_REQUEST);
    }
    let format = miniport.backend.default_format(miniport.direction);
    let format_len = ks_data_format_len(&format);
    let list_at = align8(format_len);
    let needed = list_at.saturating_add(list.len());
    let needed32 = u32::try_from(needed).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let value = &mut *call.value;
    if value.is_empty() {
        return Ok(Reply::Size(needed32));
    }
    let out = value.get_mut(..needed).ok_or(NtStatus::BUFFER_TOO_SMALL)?;
    out.fill(0);
    write_ks_data_format(&format, out).map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    // KSDATAFORMAT.Flags (offset 4): attributes follow the format.
    KSDATAFORMAT_ATTRIBUTES
        .write_to_prefix(out.get_mut(4..).unwrap_or(&mut []))
        .map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
    out.get_mut(list_at..)
        .ok_or(NtStatus::BUFFER_TOO_SMALL)?
        .copy_from_slice(list);
    Ok(Reply::Done(needed32))
}
