//! The audio engine model: what Windows' audio engine and PortCls do with a
//! WaveRT stream, in their order, through the miniport's vtables.
//!
//! Format (`DataRangeIntersection`), pin creation (`NewStream`, then
//! `QueryInterface` for the notification and packet interfaces), buffer
//! (with or without notification), event registration, stepwise states,
//! event-driven pumping with glitch accounting, position polling, packet
//! calls, and the close sequence.

use std::ptr;
use std::sync::Arc;

use portcls_sys::{
    IMiniportWaveRT, IMiniportWaveRTInputStream, IMiniportWaveRTOutputStream,
    IMiniportWaveRTStream, IMiniportWaveRTStreamNotification, MmWriteCombined, DEVICE_DESCRIPTION,
    KSAUDIO_POSITION, KSAUDIO_PRESENTATION_POSITION, KSDATAFORMAT, KSPIN_COMMUNICATION_BOTH,
    KSPIN_COMMUNICATION_SINK, KSPIN_DATAFLOW_OUT, KSRTAUDIO_HWLATENCY, KSRTAUDIO_HWREGISTER,
    KSSTATE, KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN, KSSTATE_STOP,
    KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM, MEMORY_CACHING_TYPE, NTSTATUS, NT_SUCCESS,
    PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR, PMDL, PMINIPORTWAVERTSTREAM, STATUS_BUFFER_OVERFLOW,
    STATUS_DATA_LATE_ERROR, STATUS_DEVICE_NOT_READY, STATUS_SUCCESS, STATUS_UNSUCCESSFUL,
};
use wavert_com::ComPtr;
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::position::LinearFromCyclic;
use wavert_core::range::{ks_data_format_len, write_ks_data_format, DeviceRange};

use crate::machine::{ClockMode, EmuEvent, Machine, QPC_FREQUENCY};
use crate::packets::{
    check_not_ready, check_packet_count, check_presentation, check_read_packet, check_write_status,
    expected_write_status, packets, Bounds, IdealClock, ReadAnswer,
};
use crate::personality::{OrderOutcome, PortPersonality};
use crate::port::PortStream;
use crate::timing::StreamClock;

/// Why the engine gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// A miniport call failed.
    Call {
        /// The slot.
        call: &'static str,
        /// Its status.
        status: NTSTATUS,
    },
    /// The miniport broke a rule the engine relies on.
    Protocol(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call { call, status } => write!(f, "{call} failed with {status:#010x}"),
            Self::Protocol(what) => write!(f, "protocol: {what}"),
        }
    }
}

impl std::error::Error for EngineError {}

fn no_interface(which: &str) -> EngineError {
    EngineError::Protocol(format!("the stream offers no packet {which} interface"))
}

const fn check(call: &'static str, status: NTSTATUS) -> Result<(), EngineError> {
    if NT_SUCCESS(status) {
        Ok(())
    } else {
        Err(EngineError::Call { call, status })
    }
}

/// The format a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatRequest {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Valid bits per sample.
    pub bits: u16,
    /// Channels.
    pub channels: u16,
    /// IEEE float samples.
    pub float: bool,
    /// 0: ask with a `KSDATARANGE_AUDIO` (minimum = maximum) and take the
    /// container the device picks. Otherwise the container of one specific
    /// format (`KSDATAFORMAT` + WAVEFORMATEXTENSIBLE with `bits` valid bits)
    /// proposed as the client's data range, as the audio engine proposes an
    /// exclusive-mode format: the only way to ask for 24 bits in 32 rather
    /// than packed, which a range cannot say.
    pub container_bits: u16,
}

impl Default for FormatRequest {
    fn default() -> Self {
        Self {
            rate: 48_000,
            bits: 16,
            channels: 2,
            float: false,
            container_bits: 0,
        }
    }
}

/// `48000 Hz 24-bit in 32 PCM, 2 ch` (the container only when the request
/// names one).
impl std::fmt::Display for FormatRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} Hz {}-bit", self.rate, self.bits)?;
        if self.container_bits != 0 && self.container_bits != self.bits {
            write!(f, " in {}", self.container_bits)?;
        }
        write!(
            f,
            " {}, {} ch",
            if self.float { "float" } else { "PCM" },
            self.channels
        )
    }
}

impl FormatRequest {
    /// The request for exactly `format` (its container included).
    #[must_use]
    pub const fn exact(format: &AudioFormat) -> Self {
        Self {
            rate: format.sample_rate(),
            bits: format.valid_bits(),
            channels: format.channels(),
            float: matches!(format.sample_type(), SampleType::Float),
            container_bits: format.container_bits(),
        }
    }

    /// The specific format a request with a container asks for (`None` for
    /// a range request, or a container and depth no format has).
    #[must_use]
    pub fn specific_format(&self) -> Option<AudioFormat> {
        if self.container_bits == 0 {
            return None;
        }
        self.format().ok()
    }

    /// What the client sends as its data range: [`Self::ks_data_range`],
    /// or the specific format as `KSDATAFORMAT` + WAVEFORMATEXTENSIBLE.
    ///
    /// # Errors
    ///
    /// A container and depth no format has.
    pub fn client_data_range(&self) -> Result<Vec<u8>, EngineError> {
        if self.container_bits == 0 {
            return Ok(self.ks_data_range());
        }
        let format = self.format().map_err(EngineError::Protocol)?;
        Ok(ks_data_format_bytes(&format))
    }

    /// The specific format this request with a container names.
    ///
    /// # Errors
    ///
    /// One line: the request and the rule it breaks (12 channels, a 20-bit
    /// container, ...).
    pub fn format(&self) -> Result<AudioFormat, String> {
        let sample_type = if self.float {
            SampleType::Float
        } else {
            SampleType::Pcm
        };
        AudioFormat::extensible(
            sample_type,
            self.channels,
            self.rate,
            self.container_bits,
            self.bits,
        )
        .map_err(|e| format!("{self} is not a format a pin can take: {e}"))
    }

    /// The request as a `KSDATARANGE_AUDIO` (minimum = maximum), as bytes,
    /// with `FormatSize` = `sizeof(KSDATARANGE_AUDIO)` on x64 (88: the 84
    /// bytes of fields padded to `KSDATARANGE`'s 8-byte alignment), as the
    /// audio engine sends it.
    #[must_use]
    pub fn ks_data_range(&self) -> Vec<u8> {
        let range = DeviceRange {
            sample_type: if self.float {
                SampleType::Float
            } else {
                SampleType::Pcm
            },
            max_channels: self.channels,
            min_bits: self.bits,
            max_bits: self.bits,
            min_rate: self.rate,
            max_rate: self.rate,
            containers_for_24: &[32],
        };
        let mut bytes = vec![0; size_of::<portcls_sys::KSDATARANGE_AUDIO>()];
        // The buffer holds at least the 84 bytes the writer needs.
        let _ = range.write_ks_data_range(&mut bytes);
        let size = u32::try_from(bytes.len()).unwrap_or(0);
        let at = std::mem::offset_of!(KSDATAFORMAT, FormatSize);
        bytes[at..at + 4].copy_from_slice(&size.to_le_bytes());
        bytes
    }
}

/// `format` as the bytes of a `KSDATAFORMAT` + WAVEFORMAT(EXTENSIBLE), as a
/// client passes it to `NewStream`, a format proposal or an intersection.
#[must_use]
pub fn ks_data_format_bytes(format: &AudioFormat) -> Vec<u8> {
    let mut bytes = vec![0; ks_data_format_len(format)];
    // The buffer has exactly the length the writer needs.
    let _ = write_ks_data_format(format, &mut bytes);
    bytes
}

/// The pins of a filter descriptor.
#[must_use]
pub const fn pins(description: &'static PCFILTER_DESCRIPTOR) -> &'static [PCPIN_DESCRIPTOR] {
    if description.Pins.is_null() || description.PinCount == 0 {
        return &[];
    }
    if description.PinSize as usize != size_of::<PCPIN_DESCRIPTOR>() {
        return &[];
    }
    // SAFETY: the miniport's descriptor lists `PinCount` pin descriptors of
    // `PinSize` bytes (checked) in static data.
    unsafe { std::slice::from_raw_parts(description.Pins, description.PinCount as usize) }
}

/// The streaming pin of a wave filter for render (`capture == false`: data
/// flows in) or capture (data flows out).
#[must_use]
pub fn streaming_pin(description: &'static PCFILTER_DESCRIPTOR, capture: bool) -> Option<u32> {
    pins(description)
        .iter()
        .position(|p| {
            let ks = &p.KsPinDescriptor;
            let sink = ks.Communication == KSPIN_COMMUNICATION_SINK
                || ks.Communication == KSPIN_COMMUNICATION_BOTH;
            sink && (ks.DataFlow == KSPIN_DATAFLOW_OUT) == capture
        })
        .and_then(|i| u32::try_from(i).ok())
}

/// The data ranges a pin advertises, each as its `FormatSize` bytes.
///
/// The ranges of [`crate::range_table::read_range_table`], which steps over
/// the attribute list after a range flagged `KSDATARANGE_ATTRIBUTES`.
#[must_use]
pub fn data_ranges(pin: &'static PCPIN_DESCRIPTOR) -> Vec<&'static [u8]> {
    crate::range_table::read_range_table(pin)
        .entries
        .into_iter()
        .map(|entry| entry.range)
        .collect()
}

/// `KSPROPERTY_PIN_DATAINTERSECTION` as PortCls serves it: each of the pin's
/// ranges in turn, first asking for the size, then for the format.
///
/// # Errors
///
/// `STATUS_NO_MATCH` (as a call error) when no range matches.
pub fn negotiate_format(
    wave: &ComPtr<IMiniportWaveRT>,
    description: &'static PCFILTER_DESCRIPTOR,
    pin: u32,
    request: &FormatRequest,
) -> Result<(AudioFormat, Vec<u8>), EngineError> {
    let client = request.client_data_range()?;
    intersect_client_range(wave, description, pin, &client)
}

/// `KSPROPERTY_PIN_DATAINTERSECTION` with the client's data range as bytes.
///
/// The client's range is a `KSDATARANGE_AUDIO`, a bare `KSDATARANGE`
/// wildcard or a specific format, tried against each of the pin's ranges
/// in turn as [`negotiate_format`] does.
///
/// # Errors
///
/// `STATUS_NO_MATCH` (as a call error) when no range matches.
pub fn intersect_client_range(
    wave: &ComPtr<IMiniportWaveRT>,
    description: &'static PCFILTER_DESCRIPTOR,
    pin: u32,
    client: &[u8],
) -> Result<(AudioFormat, Vec<u8>), EngineError> {
    // The miniport reads the client's KS structures as aligned data.
    let mut aligned = vec![0u64; client.len().div_ceil(8)];
    let client_ptr = aligned.as_mut_ptr().cast::<u8>();
    // SAFETY: `aligned` holds at least `client.len()` bytes; no overlap.
    unsafe { ptr::copy_nonoverlapping(client.as_ptr(), client_ptr, client.len()) };
    let pin_desc = pins(description)
        .get(pin as usize)
        .ok_or_else(|| EngineError::Protocol(format!("pin {pin} not described")))?;
    let intersect = wave.vtbl().base__.DataRangeIntersection;
    let mut last = portcls_sys::STATUS_NO_MATCH;
    for range in data_ranges(pin_desc) {
        let mut needed = 0u32;
        // SAFETY: the miniport is live; both ranges are whole KS structures
        // that outlive the call; no output buffer is offered.
        let status = unsafe {
            intersect(
                wave.this(),
                pin,
                client_ptr.cast(),
                range.as_ptr().cast_mut().cast(),
                0,
                ptr::null_mut(),
                &raw mut needed,
            )
        };
        if status != STATUS_BUFFER_OVERFLOW {
            last = status;
            continue;
        }
        let mut out = vec![0u8; needed as usize];
        let mut written = 0u32;
        // SAFETY: as above, with an output buffer of `needed` bytes.
        let status = unsafe {
            intersect(
                wave.this(),
                pin,
                client_ptr.cast(),
                range.as_ptr().cast_mut().cast(),
                needed,
                out.as_mut_ptr().cast(),
                &raw mut written,
            )
        };
        if !NT_SUCCESS(status) {
            last = status;
            continue;
        }
        out.truncate(written as usize);
        let wave_bytes = out.get(size_of::<KSDATAFORMAT>()..).unwrap_or(&[]);
        let format = AudioFormat::parse(wave_bytes).map_err(|e| {
            EngineError::Protocol(format!("intersection returned a bad format: {e:?}"))
        })?;
        return Ok((format, out));
    }
    Err(EngineError::Call {
        call: "DataRangeIntersection",
        status: last,
    })
}

/// One position read with its QPC stamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionSample {
    /// QPC just before the call.
    pub qpc_before: u64,
    /// QPC just after it.
    pub qpc_after: u64,
    /// Unwrapped (linear) byte position.
    pub linear_bytes: u64,
    /// The stream state at the time.
    pub state: KSSTATE,
}

/// Counters of one stream's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Notifications (event signals) handled.
    pub notifications: u64,
    /// Packets written (render) or read (capture).
    pub packets: u64,
    /// Packets written too late / read before captured or after overwrite.
    pub glitches: u64,
    /// Whole buffers the position went round between two reads more than
    /// a buffer apart (real time only; [`Stream::position`]).
    pub laps_missed: u64,
    /// Render notifications that found the engine a buffer ahead already
    /// (signals that piled up while it was late), served by no write.
    pub coalesced: u64,
    /// Packet-interface answers held to the packet rules (every one
    /// passed: a broken rule ends the stream with an error).
    pub packet_calls: u64,
    /// Render packet mode: packets `SetWritePacket` refused as late
    /// (`STATUS_DATA_LATE_ERROR`; the engine resynchronised after each).
    pub late_writes: u64,
    /// Capture packet mode: packets the device overwrote before the
    /// engine read them.
    pub dropped_packets: u64,
}

/// The engine's packet-mode book-keeping of one stream since STOP.
#[derive(Clone, Copy, Debug, Default)]
struct PacketTrack {
    /// Capture: the last packet read.
    last_read: Option<u64>,
    /// Render: the last presentation position.
    last_presentation: Option<KSAUDIO_PRESENTATION_POSITION>,
    /// Render: the end of stream was sent.
    end_of_stream: bool,
}

/// What stale data the engine leaves after the valid bytes of its last
/// packet: not silence, so a device that plays past the end of stream
/// is heard.
pub const STALE_BYTE: u8 = 0xA5;

/// The client's view of the cyclic buffer.
#[derive(Debug)]
struct ClientBuffer {
    mdl: PMDL,
    base: *mut u8,
    size: u32,
    view: *mut u8,
    notification_count: u32,
    with_notification: bool,
    /// What the port tells the client: `CacheType == MmWriteCombined`.
    call_memory_barrier: bool,
}

use crate::port::POISON_POINTER;
/// What the port poisons a `ULONG` out-parameter with.
pub const POISON_U32: u32 = 0xBAAD_F00D;
/// What the port poisons a cache-type out-parameter with: no valid
/// `MEMORY_CACHING_TYPE`.
pub const POISON_CACHE_TYPE: MEMORY_CACHING_TYPE = 0x0BAD_CAC4;

/// What a miniport granted for one buffer request, as the port checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedBuffer {
    /// The size the port asked for.
    pub requested: u32,
    /// Notifications per buffer (`None`: `AllocateAudioBuffer`).
    pub notification_count: Option<u32>,
    /// `ActualSize`.
    pub size: u32,
    /// `OffsetFromFirstPage`.
    pub offset: u32,
    /// `CacheType`.
    pub cache: MEMORY_CACHING_TYPE,
    /// Bytes the MDL's pages hold.
    pub mdl_bytes: usize,
    /// Bytes per frame of the stream's format.
    pub block_align: u32,
    /// Cache types of the miniport's own kernel mappings of the MDL.
    pub kernel_cache_types: Vec<MEMORY_CACHING_TYPE>,
}

/// The rules a granted buffer must meet before the port maps it for the
/// client.
///
/// Sources (Learn): `IMiniportWaveRTStream::AllocateAudioBuffer`,
/// `KSPROPERTY_RTAUDIO_BUFFER_WITH_NOTIFICATION`, `KSRTAUDIO_BUFFER`,
/// `MEMORY_CACHING_TYPE`.
///
/// # Errors
///
/// The first rule broken, in words.
pub fn check_granted_buffer(b: &GrantedBuffer) -> Result<(), String> {
    let count = b.notification_count.unwrap_or(1);
    let block = b.block_align;
    let whole_frames_per_packet = b.size != 0
        && count != 0
        && block != 0
        && b.size % count == 0
        && (b.size / count) % block == 0;
    if !whole_frames_per_packet {
        return Err(format!(
            "granted size {} is not whole frames per packet (block {block}, {count} packets)",
            b.size
        ));
    }
    if b.notification_count.is_none() && b.size < b.requested {
        return Err(format!(
            "AllocateAudioBuffer granted {} bytes for a request of {}: without notification \
             the actual size must be at least the requested size, or the audio engine will not \
             use the buffer and stream creation fails",
            b.size, b.requested
        ));
    }
    if b.offset as usize + b.size as usize > b.mdl_bytes {
        return Err(format!(
            "OffsetFromFirstPage {} + ActualSize {} passes the end of the MDL's {} bytes",
            b.offset, b.size, b.mdl_bytes
        ));
    }
    if !crate::port::is_usable_cache_type(b.cache) {
        return Err(format!(
            "CacheType {:#x} is no MEMORY_CACHING_TYPE a driver may give (MmNonCached, \
             MmCached, MmWriteCombined){}",
            b.cache,
            if b.cache == POISON_CACHE_TYPE {
                ": left unset"
            } else {
                ""
            }
        ));
    }
    if let Some(other) = b.kernel_cache_types.iter().find(|&&c| c != b.cache) {
        return Err(format!(
            "CacheType {} differs from the cache type {other} the miniport mapped the buffer \
             with: the client's mapping would disagree with the kernel's",
            b.cache
        ));
    }
    Ok(())
}

/// A status as an order's outcome.
const fn outcome_of(status: NTSTATUS) -> OrderOutcome {
    if NT_SUCCESS(status) {
        OrderOutcome::Tolerated
    } else {
        OrderOutcome::Refused(status)
    }
}

/// Reads a 32-bit register a stream offered (`KSRTAUDIO_HWREGISTER`) as
/// the audio engine reads it, through the port's user-mode mapping of the
/// same page: memory (a position buffer, a mirror) is read where it is; a
/// register inside the shipped image's trapped MMIO mapping goes to the
/// device ([`crate::image::mmio_trap::read_user_mapping`]), since the
/// kernel address is an inaccessible stand-in there.
///
/// # Safety
///
/// Outside a trapped MMIO window, `address` must be valid for an aligned
/// 32-bit read.
unsafe fn read_mapped_register32(address: *mut core::ffi::c_void) -> u32 {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if let Some(value) = crate::image::mmio_trap::read_user_mapping(address.addr()) {
        return value;
    }
    // SAFETY: the caller's contract: memory valid for an aligned read.
    unsafe { address.cast::<u32>().read_volatile() }
}

/// The two hardware registers a WaveRT stream may map to the audio engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HwRegister {
    /// `KSPROPERTY_RTAUDIO_POSITIONREGISTER`.
    Position,
    /// `KSPROPERTY_RTAUDIO_CLOCKREGISTER`.
    Clock,
}

impl HwRegister {
    const fn name(self) -> &'static str {
        match self {
            Self::Position => "GetPositionRegister",
            Self::Clock => "GetClockRegister",
        }
    }
}

/// The clock register read as the audio engine reads it (through its
/// address, no call into the driver), held against the QPC.
///
/// From the first
/// reading on, the ticks it counted (32-bit wraps unfolded) must be the
/// QPC's elapsed time at the register's Numerator/Denominator rate, no
/// ahead of it and behind it by no more than `max_lag_qpc` (the device's
/// clock moves in steps: QEMU's runs only when the coupling timer steps
/// it). A stale, stopped, too fast or too slow register fails.
#[derive(Clone, Debug)]
pub struct ClockRegisterCheck {
    register: KSRTAUDIO_HWREGISTER,
    qpc_frequency: u64,
    max_lag_qpc: u64,
    first: Option<(u32, u64)>,
    last_raw: u32,
    ticks: u64,
    /// Readings checked.
    pub readings: u64,
    /// Largest lag seen, in register ticks.
    pub max_lag_ticks: u64,
}

impl ClockRegisterCheck {
    /// A check of `register` (a successful, rule-abiding `GetClockRegister`
    /// answer) against a QPC of `qpc_frequency`.
    #[must_use]
    pub const fn new(register: KSRTAUDIO_HWREGISTER, qpc_frequency: u64, max_lag_qpc: u64) -> Self {
        Self {
            register,
            qpc_frequency,
            max_lag_qpc,
            first: None,
            last_raw: 0,
            ticks: 0,
            readings: 0,
            max_lag_ticks: 0,
        }
    }

    /// The register's rate in ticks per second (Numerator / Denominator).
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "a rate for the report")]
    pub fn ticks_per_second(&self) -> f64 {
        self.register.Numerator as f64 / self.register.Denominator.max(1) as f64
    }

    /// Reads the register now (`qpc`: the QPC at this instant) and checks it.
    ///
    /// # Errors
    ///
    /// The rule the reading breaks, in words.
    pub fn read(&mut self, qpc: u64) -> Result<(), String> {
        // SAFETY: `check_hw_register` accepted the address; the miniport
        // keeps it valid while the stream exists (GetClockRegister's
        // contract).
        let raw = unsafe { read_mapped_register32(self.register.Register) };
        self.check(raw, qpc)
    }

    /// Checks one reading `raw` taken at `qpc`.
    ///
    /// # Errors
    ///
    /// As [`Self::read`].
    pub fn check(&mut self, raw: u32, qpc: u64) -> Result<(), String> {
        if self.register.Width != 32 {
            return Err(format!("a {}-bit clock register", self.register.Width));
        }
        self.readings += 1;
        let Some((_, first_qpc)) = self.first else {
            self.first = Some((raw, qpc));
            self.last_raw = raw;
            return Ok(());
        };
        self.ticks += u64::from(raw.wrapping_sub(self.last_raw));
        self.last_raw = raw;
        let elapsed = u128::from(qpc.saturating_sub(first_qpc));
        let to_ticks = |qpc_ticks: u128| {
            qpc_ticks * u128::from(self.register.Numerator)
                / (u128::from(self.qpc_frequency) * u128::from(self.register.Denominator.max(1)))
        };
        let expected = to_ticks(elapsed);
        let counted = u128::from(self.ticks);
        // One tick either way for the rounding of both clocks.
        if counted > expected + 1 {
            return Err(format!(
                "clock register ran ahead of the QPC: {counted} ticks counted, {expected} expected after {elapsed} QPC ticks"
            ));
        }
        let lag = expected - counted;
        if lag > to_ticks(u128::from(self.max_lag_qpc)) + 1 {
            return Err(format!(
                "clock register behind the QPC: {counted} ticks counted, {expected} expected after {elapsed} QPC ticks (stale, stopped or slow)"
            ));
        }
        self.max_lag_ticks = self
            .max_lag_ticks
            .max(u64::try_from(lag).unwrap_or(u64::MAX));
        Ok(())
    }
}

/// A hardware register a successful `GetPositionRegister` or
/// `GetClockRegister` gives.
///
/// Learn's `KSRTAUDIO_HWREGISTER`: an address the port can map, a width of
/// 32 or 64 bits, and (for the clock) a non-zero frequency.
///
/// # Errors
///
/// The field that breaks the rule, in words.
pub fn check_hw_register(name: &str, r: &KSRTAUDIO_HWREGISTER) -> Result<(), String> {
    if r.Register.is_null() || r.Register.addr() == POISON_POINTER {
        return Err(format!("{name} succeeded without a register address"));
    }
    if !matches!(r.Width, 32 | 64) {
        return Err(format!("{name} gave a {}-bit register (32 or 64)", r.Width));
    }
    if name == "GetClockRegister" && (r.Numerator == 0 || r.Denominator == 0) {
        return Err(format!("{name} gave a clock without a frequency"));
    }
    Ok(())
}

/// A `DEVICE_DESCRIPTION` a successful `GetDeviceDescription` gives: a
/// version the kernel knows (0 to 3) and a maximum transfer length, both
/// written (the port poisons them first).
///
/// # Errors
///
/// The field that breaks the rule, in words.
pub fn check_device_description(d: &DEVICE_DESCRIPTION) -> Result<(), String> {
    if d.Version > 3 {
        return Err(format!(
            "GetDeviceDescription left Version {:#x} (DEVICE_DESCRIPTION_VERSION 0 to 3)",
            d.Version
        ));
    }
    if d.MaximumLength == POISON_U32 || d.MaximumLength == 0 {
        return Err("GetDeviceDescription gave no MaximumLength".to_owned());
    }
    Ok(())
}

/// The position rule (Learn: `KSAUDIO_POSITION`): both offsets lie inside
/// the cyclic buffer, so neither reaches its size; before a buffer exists
/// there is nothing to point into and both are 0.
///
/// # Errors
///
/// The offending offset, in words.
pub fn check_position_offsets(pos: &KSAUDIO_POSITION, buffer_size: u32) -> Result<(), String> {
    let size = u64::from(buffer_size);
    for (name, value) in [
        ("PlayOffset", pos.PlayOffset),
        ("WriteOffset", pos.WriteOffset),
    ] {
        let bad = if size == 0 { value != 0 } else { value >= size };
        if bad {
            return Err(format!(
                "GetPosition: {name} {value} is not inside the {buffer_size}-byte buffer \
                 (offsets wrap at the buffer's end and never reach its size)"
            ));
        }
    }
    Ok(())
}

/// One open pin instance, as the audio engine holds it.
#[derive(Debug)]
pub struct Stream {
    machine: Arc<Machine>,
    /// The port's `IPortWaveRTStream` handed to `NewStream`.
    port: PortStream,
    /// The miniport's stream (released at `close`).
    miniport: Option<ComPtr<IMiniportWaveRTStream>>,
    notification: Option<ComPtr<IMiniportWaveRTStreamNotification>>,
    output: Option<ComPtr<IMiniportWaveRTOutputStream>>,
    input: Option<ComPtr<IMiniportWaveRTInputStream>>,
    capture: bool,
    format: AudioFormat,
    buffer: Option<ClientBuffer>,
    event: Option<EmuEvent>,
    state: KSSTATE,
    unwrap: Option<LinearFromCyclic>,
    /// The nominal clock's bytes at the last position read.
    last_read_ideal_bytes: Option<u64>,
    cursor: u64,
    /// Counters.
    pub stats: StreamStats,
    /// Every position read.
    pub trace: Vec<PositionSample>,
    /// QPC just before the `SetState` call that last entered RUN.
    pub run_qpc: u64,
    /// The engine's own clock of the stream, for the packet rules.
    ideal: IdealClock,
    packets: PacketTrack,
}

impl Stream {
    /// Pin creation: `NewStream` through the vtable, then `QueryInterface`
    /// for the notification and packet interfaces.
    ///
    /// # Errors
    ///
    /// The failing call.
    pub fn open(
        machine: &Arc<Machine>,
        wave: &ComPtr<IMiniportWaveRT>,
        pin: u32,
        capture: bool,
        format_bytes: &[u8],
    ) -> Result<Self, EngineError> {
        let wave_bytes = format_bytes.get(size_of::<KSDATAFORMAT>()..).unwrap_or(&[]);
        let format = AudioFormat::parse(wave_bytes)
            .map_err(|e| EngineError::Protocol(format!("bad format: {e:?}")))?;
        let port_stream = PortStream::new(machine);
        let mut raw: PMINIPORTWAVERTSTREAM = ptr::null_mut();
        let mut format_copy = format_bytes.to_vec();
        let new_stream = wave.vtbl().NewStream;
        // SAFETY: the miniport and port stream are live; the format buffer
        // holds `FormatSize` bytes and outlives the call.
        let status = unsafe {
            new_stream(
                wave.this(),
                &raw mut raw,
                port_stream.interface().as_raw(),
                pin,
                u8::from(capture),
                format_copy.as_mut_ptr().cast(),
            )
        };
        check("NewStream", status)?;
        // SAFETY: a successful NewStream hands the port one reference.
        let stream = unsafe { ComPtr::from_raw(raw) }
            .ok_or_else(|| EngineError::Protocol("NewStream succeeded with NULL".to_owned()))?;
        let notification = stream.query::<IMiniportWaveRTStreamNotification>().ok();
        let output = stream.query::<IMiniportWaveRTOutputStream>().ok();
        let input = stream.query::<IMiniportWaveRTInputStream>().ok();
        let personality = machine.personality();
        if personality == PortPersonality::ReactOs && notification.is_none() {
            return Err(EngineError::Protocol(
                "no IMiniportWaveRTStreamNotification: ReactOS's port refuses the pin without it"
                    .to_owned(),
            ));
        }
        let opened = Self {
            machine: Arc::clone(machine),
            port: port_stream,
            miniport: Some(stream),
            notification,
            output,
            input,
            capture,
            format,
            buffer: None,
            event: None,
            state: KSSTATE_STOP,
            unwrap: None,
            last_read_ideal_bytes: None,
            cursor: 0,
            stats: StreamStats::default(),
            trace: Vec::new(),
            run_qpc: 0,
            ideal: IdealClock::new(format.sample_rate(), QPC_FREQUENCY),
            packets: PacketTrack::default(),
        };
        opened.at_open(wave)?;
        Ok(opened)
    }

    /// What the personality asks of a pin that has just opened: the latency
    /// (ReactOS caches it here), the position before any buffer, and the
    /// queries the model makes nowhere else.
    fn at_open(&self, wave: &ComPtr<IMiniportWaveRT>) -> Result<(), EngineError> {
        let behaviour = self.machine.personality().behaviour();
        if behaviour.latency_at_open {
            self.hw_latency()?;
        }
        if behaviour.position_before_buffer {
            let outcome = match self.raw_position() {
                Ok(pos) => {
                    check_position_offsets(&pos, 0).map_err(EngineError::Protocol)?;
                    OrderOutcome::Tolerated
                }
                Err(EngineError::Call { status, .. }) => OrderOutcome::Refused(status),
                Err(e) => return Err(e),
            };
            self.machine
                .record_order("GetPosition before any buffer", outcome);
        }
        if behaviour.extra_queries {
            self.extra_queries(wave)?;
        }
        Ok(())
    }

    /// `SetFormat` with the stream's own format while stopped,
    /// `GetPositionRegister`, `GetClockRegister` and `GetDeviceDescription`,
    /// each answer held to its page's rules.
    fn extra_queries(&self, wave: &ComPtr<IMiniportWaveRT>) -> Result<(), EngineError> {
        let s = self.stream()?;
        let mut format = ks_data_format_bytes(&self.format);
        let set_format = s.vtbl().SetFormat;
        // SAFETY: the stream is live; the format buffer outlives the call.
        let status = unsafe { set_format(s.this(), format.as_mut_ptr().cast()) };
        self.machine.record_order(
            "SetFormat with the stream's own format while stopped",
            outcome_of(status),
        );
        for register in [HwRegister::Position, HwRegister::Clock] {
            let (status, answer) = self.query_hw_register(register)?;
            let outcome = if NT_SUCCESS(status) {
                check_hw_register(register.name(), &answer).map_err(EngineError::Protocol)?;
                OrderOutcome::Tolerated
            } else {
                OrderOutcome::Declined(status)
            };
            self.machine.record_order(register.name(), outcome);
        }
        let mut description = DEVICE_DESCRIPTION {
            Version: POISON_U32,
            MaximumLength: POISON_U32,
            ..DEVICE_DESCRIPTION::default()
        };
        let describe = wave.vtbl().GetDeviceDescription;
        // SAFETY: the miniport is live; `description` outlives the call.
        let status = unsafe { describe(wave.this(), &raw mut description) };
        if NT_SUCCESS(status) {
            check_device_description(&description).map_err(EngineError::Protocol)?;
        }
        self.machine
            .record_order("GetDeviceDescription", outcome_of(status));
        Ok(())
    }

    fn stream(&self) -> Result<&ComPtr<IMiniportWaveRTStream>, EngineError> {
        self.miniport
            .as_ref()
            .ok_or_else(|| EngineError::Protocol("stream already released".to_owned()))
    }

    /// The stream's format.
    #[must_use]
    pub const fn format(&self) -> &AudioFormat {
        &self.format
    }

    /// Whether the stream offers event notification (pull mode).
    #[must_use]
    pub const fn supports_notification(&self) -> bool {
        self.notification.is_some()
    }

    /// Whether the stream offers the packet interface for its direction.
    #[must_use]
    pub const fn supports_packets(&self) -> bool {
        if self.capture {
            self.input.is_some()
        } else {
            self.output.is_some()
        }
    }

    /// Whether the engine streams in packet mode: the stream offers it,
    /// the port knows it (Windows 10's; ReactOS's `KSPROPSETID_RtAudio`
    /// set in `pin_wavert.cpp` has the seven Vista properties and none of
    /// the packet ones), and the buffer has notifications. Render also
    /// needs two packets per buffer: with one, the only packet is always
    /// the one in transfer, and the packet the protocol has the OS write
    /// next (count + 1) would overwrite it while it plays (Windows asks
    /// for two notifications in event-driven exclusive mode:
    /// microsoft/Windows-driver-samples issue 255).
    #[must_use]
    pub fn uses_packets(&self) -> bool {
        let Some(b) = self.buffer.as_ref() else {
            return false;
        };
        let port_knows = self.machine.personality().behaviour().packet_mode;
        let enough = if self.capture {
            b.with_notification
        } else {
            b.with_notification && b.notification_count >= 2
        };
        port_knows && self.supports_packets() && enough
    }

    /// The port stream (for leak checks).
    #[must_use]
    pub const fn port_stream(&self) -> &PortStream {
        &self.port
    }

    /// The granted buffer size in bytes (0 before allocation).
    #[must_use]
    pub fn buffer_size(&self) -> u32 {
        self.buffer.as_ref().map_or(0, |b| b.size)
    }

    /// Physical address of each page of the buffer, in buffer order
    /// (empty before allocation).
    #[must_use]
    pub fn buffer_pages(&self) -> Vec<u64> {
        self.buffer
            .as_ref()
            .and_then(|b| self.machine.memory.page_addresses(b.mdl.addr()))
            .unwrap_or_default()
    }

    /// Bytes per packet (buffer / notification count).
    #[must_use]
    pub fn packet_bytes(&self) -> u32 {
        self.buffer
            .as_ref()
            .map_or(0, |b| b.size / b.notification_count.max(1))
    }

    /// `KSPROPERTY_RTAUDIO_BUFFER[_WITH_NOTIFICATION]`: asks for a buffer
    /// (`notification_count` `None`: without notification), then maps it
    /// for the client as the port maps it to user mode.
    ///
    /// The request goes to the miniport as the personality passes it
    /// (ReactOS rounds it up to a page, the hostile port makes it no whole
    /// number of frames), and the hostile port frees the first buffer and
    /// asks again before using the second.
    ///
    /// # Errors
    ///
    /// The failing call, or a granted buffer that breaks the rules
    /// ([`check_granted_buffer`]).
    pub fn allocate(
        &mut self,
        requested: u32,
        notification_count: Option<u32>,
    ) -> Result<u32, EngineError> {
        let behaviour = self.machine.personality().behaviour();
        let mut requested = requested;
        if behaviour.ragged_request && self.format.block_align() > 1 {
            requested = requested.saturating_add(1);
        }
        if behaviour.page_round_request {
            let page = u32::try_from(crate::memory::PAGE_SIZE).unwrap_or(4096);
            requested = requested
                .checked_next_multiple_of(page)
                .unwrap_or(requested);
        }
        if self.buffer.is_some() {
            // A second request on the same pin: the port frees the first
            // buffer before asking again (Windows).
            self.free_buffer();
        }
        let first = self.allocate_once(requested, notification_count)?;
        if !behaviour.reallocate {
            return Ok(first);
        }
        self.free_buffer();
        let second = self.allocate_once(requested, notification_count);
        let outcome = match &second {
            Ok(_) => OrderOutcome::Tolerated,
            Err(EngineError::Call { status, .. }) => OrderOutcome::Refused(*status),
            Err(EngineError::Protocol(_)) => OrderOutcome::Refused(STATUS_UNSUCCESSFUL),
        };
        self.machine.record_order(
            "a second buffer on the open pin after freeing the first",
            outcome,
        );
        second
    }

    /// One allocation call with poisoned out-parameters, the granted buffer
    /// checked, kept (so [`Self::close`] frees it even when it breaks a
    /// rule) and mapped for the client.
    fn allocate_once(
        &mut self,
        requested: u32,
        notification_count: Option<u32>,
    ) -> Result<u32, EngineError> {
        let mut mdl: PMDL = ptr::without_provenance_mut(POISON_POINTER);
        let mut size = POISON_U32;
        let mut offset = POISON_U32;
        let mut cache: MEMORY_CACHING_TYPE = POISON_CACHE_TYPE;
        let status = if let Some(count) = notification_count {
            let n = self
                .notification
                .as_ref()
                .ok_or_else(|| EngineError::Protocol("no notification interface".to_owned()))?;
            let allocate = n.vtbl().AllocateBufferWithNotification;
            // SAFETY: the stream is live; the out-parameters outlive the call.
            unsafe {
                allocate(
                    n.this(),
                    count,
                    requested,
                    &raw mut mdl,
                    &raw mut size,
                    &raw mut offset,
                    &raw mut cache,
                )
            }
        } else {
            let s = self.stream()?;
            let allocate = s.vtbl().AllocateAudioBuffer;
            // SAFETY: the stream is live; the out-parameters outlive the call.
            unsafe {
                allocate(
                    s.this(),
                    requested,
                    &raw mut mdl,
                    &raw mut size,
                    &raw mut offset,
                    &raw mut cache,
                )
            }
        };
        check("AllocateAudioBuffer", status)?;
        let pages = self.machine.memory.page_count(mdl.addr()).ok_or_else(|| {
            EngineError::Protocol(format!(
                "AudioBufferMdl {mdl:p} is no MDL the port allocated (left unset?)"
            ))
        })?;
        let count = notification_count.unwrap_or(1);
        // Kept before the checks: the port frees what the miniport granted
        // whatever it then makes of it.
        self.buffer = Some(ClientBuffer {
            mdl,
            base: ptr::null_mut(),
            size,
            view: ptr::null_mut(),
            notification_count: count,
            with_notification: notification_count.is_some(),
            call_memory_barrier: cache == MmWriteCombined,
        });
        let granted = GrantedBuffer {
            requested,
            notification_count,
            size,
            offset,
            cache,
            mdl_bytes: pages * crate::memory::PAGE_SIZE,
            block_align: self.format.block_align(),
            kernel_cache_types: self.port.mapping_cache_types(mdl),
        };
        check_granted_buffer(&granted).map_err(EngineError::Protocol)?;
        if offset != 0 && self.machine.personality() == PortPersonality::ReactOs {
            return Err(EngineError::Protocol(format!(
                "OffsetFromFirstPage {offset}: ReactOS hands the client the page start, so the \
                 client would read {offset} bytes before the buffer"
            )));
        }
        let base = self
            .machine
            .memory
            .map_for_client(mdl.addr())
            .ok_or_else(|| EngineError::Protocol("client mapping failed".to_owned()))?;
        if let Some(b) = self.buffer.as_mut() {
            b.base = base;
            b.view = base.wrapping_add(offset as usize);
        }
        self.unwrap = LinearFromCyclic::new(size).ok();
        self.last_read_ideal_bytes = None;
        Ok(size)
    }

    /// `KSRTAUDIO_BUFFER::CallMemoryBarrier` as the port derives it: TRUE
    /// for a write-combined buffer (false before allocation).
    #[must_use]
    pub fn call_memory_barrier(&self) -> bool {
        self.buffer.as_ref().is_some_and(|b| b.call_memory_barrier)
    }

    /// Unmaps the client's view and frees the buffer through the method that
    /// allocated it.
    fn free_buffer(&mut self) {
        let Some(b) = self.buffer.take() else { return };
        if !b.base.is_null() {
            self.machine.memory.unmap(b.base, b.mdl.addr());
        }
        if b.with_notification {
            if let Some(n) = self.notification.as_ref() {
                let free = n.vtbl().FreeBufferWithNotification;
                // SAFETY: the stream is live; the MDL is the buffer it gave.
                unsafe { free(n.this(), b.mdl, b.size) };
            }
        } else if let Some(s) = self.miniport.as_ref() {
            let free = s.vtbl().FreeAudioBuffer;
            // SAFETY: the stream is live; the MDL is the buffer it gave.
            unsafe { free(s.this(), b.mdl, b.size) };
        }
        self.unwrap = None;
    }

    /// `KSPROPERTY_RTAUDIO_REGISTER_NOTIFICATION_EVENT`.
    ///
    /// # Errors
    ///
    /// The failing call.
    pub fn register_event(&mut self) -> Result<EmuEvent, EngineError> {
        let n = self
            .notification
            .as_ref()
            .ok_or_else(|| EngineError::Protocol("no notification interface".to_owned()))?;
        let event = self.machine.new_event();
        let register = n.vtbl().RegisterNotificationEvent;
        // SAFETY: the stream is live; the event is one the machine owns.
        let status = unsafe { register(n.this(), event.as_pkevent()) };
        if let Err(e) = check("RegisterNotificationEvent", status) {
            self.machine.delete_event(&event);
            return Err(e);
        }
        self.event = Some(event.clone());
        Ok(event)
    }

    /// `KSPROPERTY_RTAUDIO_HWLATENCY`, every field poisoned before the call.
    ///
    /// # Errors
    ///
    /// When the stream is gone, or the miniport left a field unset.
    pub fn hw_latency(&self) -> Result<KSRTAUDIO_HWLATENCY, EngineError> {
        let s = self.stream()?;
        let mut latency = KSRTAUDIO_HWLATENCY {
            FifoSize: POISON_U32,
            ChipsetDelay: POISON_U32,
            CodecDelay: POISON_U32,
        };
        let get = s.vtbl().GetHWLatency;
        // SAFETY: the stream is live; `latency` outlives the call.
        unsafe { get(s.this(), &raw mut latency) };
        for (name, value) in [
            ("FifoSize", latency.FifoSize),
            ("ChipsetDelay", latency.ChipsetDelay),
            ("CodecDelay", latency.CodecDelay),
        ] {
            if value == POISON_U32 {
                return Err(EngineError::Protocol(format!(
                    "GetHWLatency left {name} unset"
                )));
            }
        }
        Ok(latency)
    }

    /// `KSPROPERTY_CONNECTION_STATE` to `target`: one step at a time, as
    /// Windows does, or (a personality that jumps states) straight to the
    /// target, falling back to steps where the miniport refuses the jump.
    ///
    /// # Errors
    ///
    /// The failing step.
    pub fn set_state(&mut self, target: KSSTATE) -> Result<(), EngineError> {
        let jump = self.machine.personality().behaviour().jump_states;
        self.change_state(target, jump)
    }

    /// [`Self::set_state`], jumping only if `jump` (the close path of every
    /// port steps).
    fn change_state(&mut self, target: KSSTATE, jump: bool) -> Result<(), EngineError> {
        let set = self.stream()?.vtbl().SetState;
        let this = self.stream()?.this();
        if jump && self.state.abs_diff(target) > 1 {
            let order = format!(
                "{} -> {} in one call",
                state_name(self.state),
                state_name(target)
            );
            let before = self.machine.qpc();
            // SAFETY: the stream is live.
            let status = unsafe { set(this, target) };
            let after = self.machine.qpc();
            if NT_SUCCESS(status) {
                self.machine.record_order(&order, OrderOutcome::Tolerated);
                self.entered(target, (before, after));
                return Ok(());
            }
            self.machine
                .record_order(&order, OrderOutcome::Refused(status));
        }
        while self.state != target {
            let next = if target > self.state {
                self.state + 1
            } else {
                self.state - 1
            };
            let before = self.machine.qpc();
            // SAFETY: the stream is live.
            check("SetState", unsafe { set(this, next) })?;
            let after = self.machine.qpc();
            self.entered(next, (before, after));
        }
        Ok(())
    }

    /// Book-keeping once the miniport is in `state`, by a call made
    /// between the QPCs of `call`.
    fn entered(&mut self, state: KSSTATE, call: Bounds) {
        let from = self.state;
        self.state = state;
        if state == KSSTATE_RUN {
            // The QPC just before the call: the miniport's clock starts
            // inside it, so the ideal clock started here is never later
            // than the stream's and an on-time event never reads as early
            // (it reads at most the call's duration late).
            self.run_qpc = call.0;
            self.ideal.run(call.0, call.1);
        } else if from == KSSTATE_RUN {
            self.ideal.pause(call.0, call.1);
        }
        if state == KSSTATE_STOP && from != KSSTATE_STOP {
            if let Some(u) = self.unwrap.as_mut() {
                u.reset();
            }
            self.cursor = 0;
            self.ideal.stop();
            self.packets = PacketTrack::default();
        }
    }

    /// The device left D0 by a call made between the QPCs of `call`: a
    /// stream in RUN stops moving there, so its nominal clock (what the
    /// packet rules hold the counters to) stands still until
    /// [`Stream::device_powered`], as it does in PAUSE.
    pub const fn device_unpowered(&mut self, call: Bounds) {
        if self.state == KSSTATE_RUN {
            self.ideal.pause(call.0, call.1);
        }
    }

    /// The device is back in D0 by a call made between the QPCs of `call`:
    /// a stream in RUN moves again from there.
    pub const fn device_powered(&mut self, call: Bounds) {
        if self.state == KSSTATE_RUN {
            self.ideal.run(call.0, call.1);
        }
    }

    /// The state the engine last set.
    #[must_use]
    pub const fn state(&self) -> KSSTATE {
        self.state
    }

    /// `KSPROPERTY_AUDIO_POSITION`: reads, stamps and records the position;
    /// returns the unwrapped byte position.
    ///
    /// # Errors
    ///
    /// The failing call, or an offset outside the buffer
    /// ([`check_position_offsets`]).
    pub fn position(&mut self) -> Result<u64, EngineError> {
        let s = self.stream()?;
        let get = s.vtbl().GetPosition;
        let mut pos = KSAUDIO_POSITION {
            PlayOffset: u64::MAX,
            WriteOffset: u64::MAX,
        };
        let before = self.machine.qpc();
        // SAFETY: the stream is live; `pos` outlives the call.
        let status = unsafe { get(s.this(), &raw mut pos) };
        let after = self.machine.qpc();
        check("GetPosition", status)?;
        check_position_offsets(&pos, self.buffer_size()).map_err(EngineError::Protocol)?;
        let offset = u32::try_from(pos.PlayOffset).unwrap_or(0);
        let linear = self.unwrap_position(offset, (before, after));
        self.trace.push(PositionSample {
            qpc_before: before,
            qpc_after: after,
            linear_bytes: linear,
            state: self.state,
        });
        Ok(linear)
    }

    /// The linear position of cyclic `offset`, read between `call`'s two
    /// QPC readings. In real time the engine's thread may sleep past a whole
    /// buffer between two reads (the host's wake-up lateness), and the
    /// offsets alone cannot show the wraps it missed: then the stream's
    /// nominal clock since the last read says how many whole buffers went
    /// by. That trusts the device to keep the nominal pace, which only the
    /// virtual cable's QPC clock does by construction, and real time runs
    /// only the cable. In virtual time (every card, and reads a device may
    /// legitimately fall behind in: a halted or unpowered DMA) the offsets
    /// alone count, so a stuck position stays visible as one.
    fn unwrap_position(&mut self, offset: u32, call: Bounds) -> u64 {
        let size = u64::from(self.buffer_size().max(1));
        let real_time = self.machine.clock_mode() == ClockMode::RealTime;
        let Some(unwrap) = self.unwrap.as_mut() else {
            return u64::from(offset);
        };
        let before = unwrap.linear();
        let mut linear = unwrap.update(offset);
        if !real_time {
            return linear;
        }
        let block = u64::from(self.format.block_align());
        let (ideal_now, _) = self.ideal.frames(call.0, call.1);
        let ideal_now = ideal_now.saturating_mul(block);
        if let Some(ideal_then) = self.last_read_ideal_bytes {
            let elapsed = ideal_now.saturating_sub(ideal_then);
            let seen = linear - before;
            if elapsed > size {
                let laps = (elapsed.saturating_sub(seen) + size / 2) / size;
                unwrap.add_laps(laps);
                linear = unwrap.linear();
                self.stats.laps_missed += laps;
            }
        }
        self.last_read_ideal_bytes = Some(ideal_now);
        linear
    }

    /// The raw `KSAUDIO_POSITION` (no unwrapping, not recorded).
    ///
    /// # Errors
    ///
    /// The failing call.
    pub fn raw_position(&self) -> Result<KSAUDIO_POSITION, EngineError> {
        let s = self.stream()?;
        let get = s.vtbl().GetPosition;
        let mut pos = KSAUDIO_POSITION::default();
        // SAFETY: the stream is live; `pos` outlives the call.
        check("GetPosition", unsafe { get(s.this(), &raw mut pos) })?;
        Ok(pos)
    }

    /// `GetPositionRegister`, held to its page's rules
    /// ([`check_hw_register`]): `None` when the stream offers none.
    ///
    /// # Errors
    ///
    /// The rule a successful answer breaks, or no stream.
    pub fn position_register(&self) -> Result<Option<KSRTAUDIO_HWREGISTER>, EngineError> {
        self.offered_hw_register(HwRegister::Position)
    }

    /// `GetClockRegister`, held to its page's rules ([`check_hw_register`]):
    /// `None` when the stream offers none.
    ///
    /// # Errors
    ///
    /// The rule a successful answer breaks, or no stream.
    pub fn clock_register(&self) -> Result<Option<KSRTAUDIO_HWREGISTER>, EngineError> {
        self.offered_hw_register(HwRegister::Clock)
    }

    fn offered_hw_register(
        &self,
        register: HwRegister,
    ) -> Result<Option<KSRTAUDIO_HWREGISTER>, EngineError> {
        let (status, answer) = self.query_hw_register(register)?;
        if !NT_SUCCESS(status) {
            return Ok(None);
        }
        check_hw_register(register.name(), &answer).map_err(EngineError::Protocol)?;
        Ok(Some(answer))
    }

    /// Asks the stream for `register` with every field poisoned first.
    fn query_hw_register(
        &self,
        register: HwRegister,
    ) -> Result<(NTSTATUS, KSRTAUDIO_HWREGISTER), EngineError> {
        let s = self.stream()?;
        let get = match register {
            HwRegister::Position => s.vtbl().GetPositionRegister,
            HwRegister::Clock => s.vtbl().GetClockRegister,
        };
        let mut answer = KSRTAUDIO_HWREGISTER {
            Register: ptr::without_provenance_mut(POISON_POINTER),
            Width: POISON_U32,
            Numerator: u64::from(POISON_U32),
            Denominator: u64::from(POISON_U32),
            Accuracy: POISON_U32,
        };
        // SAFETY: the stream is live; `answer` outlives the call.
        let status = unsafe { get(s.this(), &raw mut answer) };
        Ok((status, answer))
    }

    /// Reads the position register as the audio engine would (the
    /// register's address: the emulator's port does not give registers a
    /// separate user-mode view, so this is the mapping the miniport made)
    /// and checks it against `GetPosition` at the same instant: the
    /// register is a byte offset inside the cyclic buffer, and equal to
    /// the play offset (nothing moves between the two reads: the device
    /// advances only on the machine's timer). A stale or wrong register
    /// fails here. Returns the register's value.
    ///
    /// # Errors
    ///
    /// The rule broken, in words.
    pub fn check_position_register(&self, register: &KSRTAUDIO_HWREGISTER) -> Result<u64, String> {
        if register.Width != 32 {
            return Err(format!("a {}-bit position register", register.Width));
        }
        // SAFETY: `check_hw_register` accepted the address; the miniport
        // keeps it valid while the buffer exists (GetPositionRegister's
        // contract).
        let value = unsafe { read_mapped_register32(register.Register) };
        let position = self.raw_position().map_err(|e| format!("{e:?}"))?;
        let size = u64::from(self.buffer_size());
        if u64::from(value) > size {
            return Err(format!(
                "position register {value:#x} beyond the {size}-byte buffer"
            ));
        }
        let offset = if u64::from(value) == size {
            0
        } else {
            u64::from(value)
        };
        if offset != position.PlayOffset {
            return Err(format!(
                "position register says {offset}, GetPosition {}: stale or wrong",
                position.PlayOffset
            ));
        }
        Ok(offset)
    }

    #[allow(
        clippy::needless_pass_by_ref_mut,
        reason = "the slice is made from a raw pointer: the `&mut` receiver is what keeps it exclusive"
    )]
    fn view(&mut self) -> Option<&mut [u8]> {
        let b = self.buffer.as_ref()?;
        // SAFETY: the client mapping covers `size` bytes from `view` and stays
        // mapped until `close`; the engine is its only user-mode writer.
        Some(unsafe { std::slice::from_raw_parts_mut(b.view, b.size as usize) })
    }

    /// Copies `data` into the cyclic buffer at linear byte `at`.
    fn write_at(&mut self, at: u64, data: &[u8]) {
        let Some(view) = self.view() else { return };
        let size = view.len() as u64;
        for (i, &byte) in data.iter().enumerate() {
            view[usize::try_from((at + i as u64) % size).unwrap_or(0)] = byte;
        }
    }

    /// Copies from the cyclic buffer at linear byte `at` into `out`.
    fn read_at(&mut self, at: u64, out: &mut [u8]) {
        let Some(view) = self.view() else { return };
        let size = view.len() as u64;
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = view[usize::try_from((at + i as u64) % size).unwrap_or(0)];
        }
    }

    /// Render: fills the whole buffer before RUN, advancing the write
    /// cursor; in packet mode each packet is announced with
    /// `SetWritePacket` (before RUN the whole buffer is the OS's to write).
    ///
    /// # Errors
    ///
    /// In packet mode, a refused packet or a broken packet rule.
    pub fn prefill(&mut self, source: &mut dyn FnMut(&mut [u8])) -> Result<(), EngineError> {
        let mut data = vec![0u8; self.buffer_size() as usize];
        source(&mut data);
        self.write_at(0, &data);
        self.cursor = data.len() as u64;
        if !self.uses_packets() {
            return Ok(());
        }
        let packets = self.buffer.as_ref().map_or(0, |b| b.notification_count);
        for number in 0..u64::from(packets) {
            let status = self.set_write_packet(number, 0, 0)?;
            check("SetWritePacket", status)?;
        }
        Ok(())
    }

    /// Render: writes one packet at the write cursor, checking against the
    /// play position (`position` must have been read just before).
    ///
    /// In packet mode ([`Self::uses_packets`]) the engine first reads
    /// `GetPacketCount` and the presentation position (each held to its
    /// rule), then announces the packet with `SetWritePacket`. A packet
    /// refused as late (the client missed packet ends) is counted, and the
    /// engine resynchronises as the page tells the OS to: the same data
    /// goes out as packet count + 1. After the end of stream nothing more
    /// is written; the counters are still read and checked (the stream
    /// keeps counting).
    ///
    /// # Errors
    ///
    /// A failing call or a broken packet rule.
    pub fn write_packet(
        &mut self,
        play: u64,
        source: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), EngineError> {
        let packet = u64::from(self.packet_bytes());
        if packet == 0 {
            return Ok(());
        }
        if !self.uses_packets() {
            let data = self.next_data(play, source);
            self.put_packet(self.cursor / packet, &data);
            return Ok(());
        }
        let count = self.packet_count()?;
        self.presentation_position()?;
        if self.packets.end_of_stream {
            return Ok(());
        }
        let data = self.next_data(play, source);
        self.announce(count, &data, 0, 0)
    }

    /// Render packet mode: the last packet, `valid` bytes from `source`
    /// followed by stale bytes ([`STALE_BYTE`]), announced with the end of
    /// stream flag and its length. The device must play silence after the
    /// `valid` bytes and keep counting.
    ///
    /// # Errors
    ///
    /// Not in packet mode, a failing call or a broken packet rule.
    pub fn end_stream(
        &mut self,
        play: u64,
        valid: u32,
        source: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), EngineError> {
        if !self.uses_packets() || self.packets.end_of_stream {
            return Err(EngineError::Protocol(
                "an end of stream needs render packet mode, once".to_owned(),
            ));
        }
        let count = self.packet_count()?;
        self.presentation_position()?;
        let mut data = self.next_data(play, source);
        let valid = valid.min(self.packet_bytes());
        let tail = data.get_mut(valid as usize..).unwrap_or_default();
        tail.fill(STALE_BYTE);
        self.announce(count, &data, KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM, valid)
    }

    /// Render: whether the next packet would land on the one `play` is in
    /// (the write cursor a whole buffer ahead). An engine woken late finds
    /// several notifications pending, but a kernel event that is set twice
    /// before its waiter runs wakes it once, so the engine serves one wake:
    /// it writes what the position asks for, not one packet per signal.
    /// Writing on
    /// would overwrite the packet being played, and keep the engine a
    /// packet ahead (and glitching) from then on.
    #[must_use]
    pub fn caught_up(&self, play: u64) -> bool {
        let packet = u64::from(self.packet_bytes());
        packet != 0 && self.cursor + packet > play + u64::from(self.buffer_size())
    }

    /// The next packet of `source`, the write cursor checked against the
    /// play position (a write behind it or a buffer ahead is a glitch).
    fn next_data(&mut self, play: u64, source: &mut dyn FnMut(&mut [u8])) -> Vec<u8> {
        let packet = u64::from(self.packet_bytes());
        let size = u64::from(self.buffer_size());
        if self.cursor < play || self.cursor + packet > play + size {
            self.stats.glitches += 1;
        }
        let mut data = vec![0u8; usize::try_from(packet).unwrap_or(0)];
        source(&mut data);
        data
    }

    /// Writes `data` as packet `number` and moves the cursor past it.
    fn put_packet(&mut self, number: u64, data: &[u8]) {
        let packet = u64::from(self.packet_bytes());
        self.write_at(number * packet, data);
        self.cursor = (number + 1) * packet;
        self.stats.packets += 1;
    }

    /// Packet mode: writes `data` as the next packet and announces it; a
    /// late packet goes out again as `count + 1` after a fresh count.
    fn announce(
        &mut self,
        count: u64,
        data: &[u8],
        flags: u32,
        length: u32,
    ) -> Result<(), EngineError> {
        let packet = u64::from(self.packet_bytes());
        let number = self.cursor / packet;
        self.put_packet(number, data);
        let status = self.set_write_packet(number, flags, length)?;
        if status != STATUS_DATA_LATE_ERROR {
            return Ok(());
        }
        // The client was late: packets `number ..= count` went by. Learn's
        // recovery: read the count again and write the packet after the one
        // in transfer.
        self.stats.late_writes += 1;
        self.stats.glitches += 1;
        let count = self.packet_count()?.max(count);
        self.put_packet(count + 1, data);
        let status = self.set_write_packet(count + 1, flags, length)?;
        if status == STATUS_SUCCESS {
            Ok(())
        } else {
            Err(EngineError::Call {
                call: "SetWritePacket",
                status,
            })
        }
    }

    /// Frames per packet.
    fn packet_frames(&self) -> u64 {
        u64::from(self.packet_bytes()) / u64::from(self.format.block_align().max(1))
    }

    /// Packets the nominal clock has completed at an instant within `call`.
    fn ideal_packets(&self, call: Bounds) -> Bounds {
        packets(self.ideal.frames(call.0, call.1), self.packet_frames())
    }

    /// `GetPacketCount`, held to the nominal clock
    /// ([`check_packet_count`]); returns the full count.
    ///
    /// # Errors
    ///
    /// No output interface, a failing call or the broken rule.
    pub fn packet_count(&mut self) -> Result<u64, EngineError> {
        let out = self.output.as_ref().ok_or_else(|| no_interface("output"))?;
        let get = out.vtbl().GetPacketCount;
        let mut count = POISON_U32;
        let before = self.machine.qpc();
        // SAFETY: the stream is live; `count` outlives the call.
        let status = unsafe { get(out.this(), &raw mut count) };
        let after = self.machine.qpc();
        check("GetPacketCount", status)?;
        self.stats.packet_calls += 1;
        check_packet_count(count, self.ideal_packets((before, after)))
            .map_err(EngineError::Protocol)
    }

    /// `SetWritePacket(number, flags, eos_length)`; the status must be
    /// what the page says for the packets the nominal clock has completed
    /// during the call ([`expected_write_status`]). Returns it; an
    /// accepted end of stream is remembered (later calls must be refused).
    ///
    /// # Errors
    ///
    /// No output interface or the broken rule.
    pub fn set_write_packet(
        &mut self,
        number: u64,
        flags: u32,
        eos_length: u32,
    ) -> Result<NTSTATUS, EngineError> {
        let out = self.output.as_ref().ok_or_else(|| no_interface("output"))?;
        let set = out.vtbl().SetWritePacket;
        let low = u32::try_from(number & u64::from(u32::MAX)).unwrap_or(0);
        let before = self.machine.qpc();
        // SAFETY: the stream is live.
        let status = unsafe { set(out.this(), low, flags, eos_length) };
        let after = self.machine.qpc();
        self.stats.packet_calls += 1;
        let running = self.ideal.running();
        let frames = self.ideal.frames(before, after);
        let packet_frames = self.packet_frames().max(1);
        let expect = |moved: u64| {
            expected_write_status(
                number,
                flags,
                eos_length,
                moved / packet_frames,
                running || moved % packet_frames != 0,
                self.buffer.as_ref().map_or(1, |b| b.notification_count),
                self.packet_bytes(),
                self.format.block_align(),
                self.packets.end_of_stream,
            )
        };
        let mut allowed = vec![expect(frames.0), expect(frames.1)];
        if allowed[0] != allowed[1] {
            // A packet end fell inside the call: any answer in between.
            allowed.push(STATUS_SUCCESS);
        }
        check_write_status(number, status, &allowed).map_err(EngineError::Protocol)?;
        if status == STATUS_SUCCESS && flags & KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM != 0 {
            self.packets.end_of_stream = true;
        }
        Ok(status)
    }

    /// `GetOutputStreamPresentationPosition`, held to its rules
    /// ([`check_presentation`]) against the nominal clock and the
    /// reported latency.
    ///
    /// # Errors
    ///
    /// No output interface, a failing call or the broken rule.
    pub fn presentation_position(&mut self) -> Result<KSAUDIO_PRESENTATION_POSITION, EngineError> {
        let latency = self.hw_latency()?;
        let out = self.output.as_ref().ok_or_else(|| no_interface("output"))?;
        let get = out.vtbl().GetOutputStreamPresentationPosition;
        let mut position = KSAUDIO_PRESENTATION_POSITION {
            u64PositionInBlocks: u64::MAX,
            u64QPCPosition: u64::MAX,
        };
        let before = self.machine.qpc();
        // SAFETY: the stream is live; `position` outlives the call.
        let status = unsafe { get(out.this(), &raw mut position) };
        let after = self.machine.qpc();
        check("GetOutputStreamPresentationPosition", status)?;
        self.stats.packet_calls += 1;
        let block = u64::from(self.format.block_align().max(1));
        let rate = u64::from(self.format.sample_rate());
        let latency_frames = u64::from(latency.FifoSize) / block
            + (u64::from(latency.ChipsetDelay) + u64::from(latency.CodecDelay)) * rate / 10_000_000;
        check_presentation(
            &position,
            (before, after),
            self.packets.last_presentation.as_ref(),
            self.ideal.frames(before, after),
            latency_frames,
        )
        .map_err(EngineError::Protocol)?;
        self.packets.last_presentation = Some(position);
        Ok(position)
    }

    /// Capture: reads one packet, checking against the record position
    /// (`position` must have been read just before).
    ///
    /// In packet mode ([`Self::uses_packets`]) `GetReadPacket` says which
    /// packet and when its first sample was taken (each answer held to the
    /// packet rules); the engine reads that packet, and the next while
    /// `MoreData` says more are ready. Packets the device overwrote before
    /// the read are counted as dropped.
    ///
    /// # Errors
    ///
    /// A failing call or a broken packet rule.
    pub fn read_packet(&mut self, recorded: u64, sink: &mut Vec<u8>) -> Result<(), EngineError> {
        let packet = u64::from(self.packet_bytes());
        let size = u64::from(self.buffer_size());
        if packet == 0 {
            return Ok(());
        }
        if self.cursor + packet > recorded || self.cursor + size < recorded {
            self.stats.glitches += 1;
        }
        if !self.uses_packets() {
            self.take_packet(self.cursor / packet, sink);
            return Ok(());
        }
        while let Some((number, more)) = self.get_read_packet()? {
            self.take_packet(number, sink);
            if !more {
                break;
            }
        }
        Ok(())
    }

    /// Copies packet `number` to `sink` and moves the cursor past it.
    fn take_packet(&mut self, number: u64, sink: &mut Vec<u8>) {
        let packet = u64::from(self.packet_bytes());
        let mut data = vec![0u8; usize::try_from(packet).unwrap_or(0)];
        self.read_at(number * packet, &mut data);
        sink.extend_from_slice(&data);
        self.cursor = (number + 1) * packet;
        self.stats.packets += 1;
    }

    /// `GetReadPacket`, held to the packet rules ([`check_read_packet`],
    /// [`check_not_ready`]): the packet's full number and `MoreData`, or
    /// `None` when nothing is new. The packet counts as read (the driver
    /// may assume the OS read every earlier one); those skipped count as
    /// dropped.
    ///
    /// # Errors
    ///
    /// No input interface, a failing call or the broken rule.
    pub fn get_read_packet(&mut self) -> Result<Option<(u64, bool)>, EngineError> {
        let input = self.input.as_ref().ok_or_else(|| no_interface("input"))?;
        let get = input.vtbl().GetReadPacket;
        let (mut number, mut flags, mut qpc, mut more) = (POISON_U32, POISON_U32, u64::MAX, -1i32);
        let before = self.machine.qpc();
        // SAFETY: the stream is live; the out-parameters outlive the call.
        let status = unsafe {
            get(
                input.this(),
                &raw mut number,
                &raw mut flags,
                &raw mut qpc,
                &raw mut more,
            )
        };
        let after = self.machine.qpc();
        self.stats.packet_calls += 1;
        let completed = self.ideal_packets((before, after));
        if status == STATUS_DEVICE_NOT_READY {
            check_not_ready(completed, self.packets.last_read).map_err(EngineError::Protocol)?;
            return Ok(None);
        }
        check("GetReadPacket", status)?;
        let answer = ReadAnswer {
            number,
            flags,
            qpc,
            more: more != 0,
        };
        let packet_frames = self.packet_frames();
        let ideal = self.ideal;
        let instant = move |packet: u64| ideal.instant_of_frame(packet * packet_frames);
        let packet = check_read_packet(&answer, completed, self.packets.last_read, &instant)
            .map_err(EngineError::Protocol)?;
        let first_unread = self.packets.last_read.map_or(0, |r| r + 1);
        self.stats.dropped_packets += packet - first_unread;
        self.packets.last_read = Some(packet);
        Ok(Some((packet, answer.more)))
    }

    /// The QPC of every signal of the registered event so far.
    #[must_use]
    pub fn signal_times(&self) -> Vec<u64> {
        self.event
            .as_ref()
            .map(EmuEvent::signal_times)
            .unwrap_or_default()
    }

    /// The ideal clock of the stream's last RUN (packets of the granted
    /// buffer).
    #[must_use]
    pub fn clock(&self) -> StreamClock {
        let block = self.format.block_align().max(1);
        StreamClock {
            run_qpc: self.run_qpc,
            rate: self.format.sample_rate(),
            block_align: block,
            packet_frames: u64::from(self.packet_bytes() / block),
        }
    }

    /// Notifications signalled since the last call (counted as handled).
    pub fn take_notifications(&mut self) -> u64 {
        let n = self.event.as_ref().map_or(0, EmuEvent::take);
        self.stats.notifications += n;
        n
    }

    /// The close sequence: RUN -> PAUSE -> ACQUIRE -> STOP, unregister the
    /// event, free the buffer (after the client mapping is gone), release.
    ///
    /// # Errors
    ///
    /// The first failing call (the rest of the sequence still runs).
    pub fn close(mut self) -> Result<StreamStats, EngineError> {
        // Even ReactOS steps down on close (`pin_wavert.cpp`).
        let mut first_error = self.change_state(KSSTATE_STOP, false).err();
        // The documented order unregisters the event (after the stop,
        // before the close) and then frees; ReactOS frees first.
        if self
            .machine
            .personality()
            .behaviour()
            .free_before_unregister
        {
            self.free_buffer();
        }
        if let (Some(event), Some(n)) = (self.event.take(), self.notification.as_ref()) {
            let unregister = n.vtbl().UnregisterNotificationEvent;
            // SAFETY: the stream is live; the event was registered on it.
            let status = unsafe { unregister(n.this(), event.as_pkevent()) };
            first_error =
                first_error.or_else(|| check("UnregisterNotificationEvent", status).err());
            self.machine.delete_event(&event);
        }
        self.free_buffer();
        let stats = self.stats;
        self.output = None;
        self.input = None;
        self.notification = None;
        self.miniport = None;
        if self.port.live_mdls() != 0 || self.port.live_mappings() != 0 {
            first_error = first_error.or_else(|| {
                Some(EngineError::Protocol(format!(
                    "stream closed with {} MDL(s) and {} mapping(s) still held",
                    self.port.live_mdls(),
                    self.port.live_mappings()
                )))
            });
        }
        first_error.map_or(Ok(stats), Err)
    }
}

/// Render or capture state names for reports.
#[must_use]
pub const fn state_name(state: KSSTATE) -> &'static str {
    match state {
        KSSTATE_STOP => "STOP",
        KSSTATE_ACQUIRE => "ACQUIRE",
        KSSTATE_PAUSE => "PAUSE",
        KSSTATE_RUN => "RUN",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcls_sys::{MmCached, MmNonCached};

    fn granted() -> GrantedBuffer {
        GrantedBuffer {
            requested: 7_680,
            notification_count: None,
            size: 7_680,
            offset: 0,
            cache: MmCached,
            mdl_bytes: 8_192,
            block_align: 4,
            kernel_cache_types: vec![MmCached],
        }
    }

    #[test]
    fn a_well_formed_buffer_passes_and_each_broken_field_fails() {
        assert_eq!(check_granted_buffer(&granted()), Ok(()));
        let broken = [
            GrantedBuffer {
                size: 7_678,
                ..granted()
            },
            GrantedBuffer {
                size: 7_676,
                ..granted()
            },
            GrantedBuffer {
                offset: 1_000,
                ..granted()
            },
            GrantedBuffer {
                cache: 3,
                ..granted()
            },
            GrantedBuffer {
                cache: MmNonCached,
                ..granted()
            },
            GrantedBuffer {
                notification_count: Some(2),
                size: 7_676,
                ..granted()
            },
        ];
        let messages: Vec<String> = broken
            .iter()
            .map(|b| check_granted_buffer(b).expect_err(&format!("{b:?}")))
            .collect();
        assert!(messages[0].contains("whole frames"), "{}", messages[0]);
        assert!(
            messages[1].contains("at least the requested"),
            "{}",
            messages[1]
        );
        assert!(messages[2].contains("end of the MDL"), "{}", messages[2]);
        assert!(
            messages[3].contains("no MEMORY_CACHING_TYPE"),
            "{}",
            messages[3]
        );
        assert!(messages[4].contains("differs"), "{}", messages[4]);
        assert!(
            messages[5].contains("whole frames per packet"),
            "{}",
            messages[5]
        );
        // Smaller with notification, whole frames per packet: allowed.
        let smaller = GrantedBuffer {
            notification_count: Some(2),
            size: 7_672,
            ..granted()
        };
        assert_eq!(check_granted_buffer(&smaller), Ok(()));
        // No kernel mapping: nothing to disagree with.
        let unmapped = GrantedBuffer {
            cache: MmWriteCombined,
            kernel_cache_types: Vec::new(),
            ..granted()
        };
        assert_eq!(check_granted_buffer(&unmapped), Ok(()));
    }

    #[test]
    fn offsets_must_lie_inside_the_buffer() {
        let at = |play, write| KSAUDIO_POSITION {
            PlayOffset: play,
            WriteOffset: write,
        };
        assert_eq!(check_position_offsets(&at(0, 7_679), 7_680), Ok(()));
        assert!(check_position_offsets(&at(7_680, 0), 7_680).is_err());
        assert!(check_position_offsets(&at(0, 9_000), 7_680).is_err());
        assert_eq!(check_position_offsets(&at(0, 0), 0), Ok(()));
        assert!(
            check_position_offsets(&at(4, 0), 0).is_err(),
            "no buffer, no offset"
        );
    }

    #[test]
    fn registers_and_descriptions_are_held_to_their_fields() {
        let mut value = 0u64;
        let good = KSRTAUDIO_HWREGISTER {
            Register: (&raw mut value).cast(),
            Width: 64,
            Numerator: 24_000_000,
            Denominator: 1,
            Accuracy: 0,
        };
        assert_eq!(check_hw_register("GetClockRegister", &good), Ok(()));
        for bad in [
            KSRTAUDIO_HWREGISTER { Width: 24, ..good },
            KSRTAUDIO_HWREGISTER {
                Denominator: 0,
                ..good
            },
            KSRTAUDIO_HWREGISTER {
                Register: ptr::without_provenance_mut(POISON_POINTER),
                ..good
            },
        ] {
            assert!(
                check_hw_register("GetClockRegister", &bad).is_err(),
                "{bad:?}"
            );
        }
        let described = DEVICE_DESCRIPTION {
            Version: 2,
            MaximumLength: 1 << 20,
            ..DEVICE_DESCRIPTION::default()
        };
        assert_eq!(check_device_description(&described), Ok(()));
        let unset = DEVICE_DESCRIPTION {
            Version: POISON_U32,
            MaximumLength: POISON_U32,
            ..DEVICE_DESCRIPTION::default()
        };
        assert!(check_device_description(&unset).is_err());
    }

    /// A 24 MHz clock register (HD Audio's WALCLK) as a reading at QPC
    /// `qpc` would find it, when the device's clock runs `lag_qpc` behind.
    fn wall_clock_at(qpc: u64, lag_qpc: u64, start: u32) -> u32 {
        let ticks = (qpc - lag_qpc.min(qpc)) * 24_000_000 / QPC_FREQUENCY;
        #[allow(
            clippy::cast_possible_truncation,
            reason = "the register wraps at 32 bits"
        )]
        start.wrapping_add(ticks as u32)
    }

    fn wall_clock_register(numerator: u64) -> KSRTAUDIO_HWREGISTER {
        KSRTAUDIO_HWREGISTER {
            Register: ptr::without_provenance_mut(0x1000),
            Width: 32,
            Numerator: numerator,
            Denominator: 1,
            Accuracy: 1,
        }
    }

    #[test]
    fn a_clock_register_that_keeps_time_passes_across_its_wrap() {
        let qpc_per_ms = QPC_FREQUENCY / 1000;
        let mut check =
            ClockRegisterCheck::new(wall_clock_register(24_000_000), QPC_FREQUENCY, qpc_per_ms);
        // Starts 1 s before the 32-bit wrap, runs 3 s, lagging by up to one
        // coupling step.
        let start = u32::MAX - 24_000_000;
        for ms in 0..3_000 {
            let qpc = ms * qpc_per_ms + 1_234;
            let lag = (ms % 3) * qpc_per_ms / 2;
            check.check(wall_clock_at(qpc, lag, start), qpc).unwrap();
        }
        assert_eq!(check.readings, 3_000);
        assert!(check.max_lag_ticks >= 23_000, "{}", check.max_lag_ticks);
    }

    #[test]
    fn a_stale_fast_or_slow_clock_register_fails() {
        let qpc_per_ms = QPC_FREQUENCY / 1000;
        let run = |numerator: u64, reading: &dyn Fn(u64) -> u32| {
            let mut check =
                ClockRegisterCheck::new(wall_clock_register(numerator), QPC_FREQUENCY, qpc_per_ms);
            (0..100).try_for_each(|ms| check.check(reading(ms * qpc_per_ms), ms * qpc_per_ms))
        };
        let keeps_time = |qpc| wall_clock_at(qpc, 0, 7);
        assert_eq!(run(24_000_000, &keeps_time), Ok(()));
        // Stale: the same value at every reading.
        let stale = run(24_000_000, &|_| 7).unwrap_err();
        assert!(stale.contains("behind"), "{stale}");
        // The register keeps time, but the answer states the wrong rate.
        let slow_rate = run(48_000_000, &keeps_time).unwrap_err();
        assert!(slow_rate.contains("behind"), "{slow_rate}");
        let fast_rate = run(12_000_000, &keeps_time).unwrap_err();
        assert!(fast_rate.contains("ahead"), "{fast_rate}");
        // A 64-bit answer is refused by this 32-bit reader.
        let mut wide = wall_clock_register(24_000_000);
        wide.Width = 64;
        assert!(ClockRegisterCheck::new(wide, QPC_FREQUENCY, qpc_per_ms)
            .check(0, 0)
            .is_err());
    }
}
