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
    IMiniportWaveRTStream, IMiniportWaveRTStreamNotification, KSAUDIO_POSITION, KSDATAFORMAT,
    KSPIN_COMMUNICATION_BOTH, KSPIN_COMMUNICATION_SINK, KSPIN_DATAFLOW_OUT, KSRTAUDIO_HWLATENCY,
    KSSTATE, KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN, KSSTATE_STOP, MEMORY_CACHING_TYPE,
    NTSTATUS, NT_SUCCESS, PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR, PMDL, PMINIPORTWAVERTSTREAM,
    STATUS_BUFFER_OVERFLOW,
};
use wavert_com::ComPtr;
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::position::LinearFromCyclic;
use wavert_core::range::{ks_data_format_len, write_ks_data_format, DeviceRange};

use crate::machine::{EmuEvent, Machine};
use crate::port::PortStream;

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
        .ok()
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
        let format = self
            .specific_format()
            .ok_or_else(|| EngineError::Protocol(format!("no format has {self:?}")))?;
        Ok(ks_data_format_bytes(&format))
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
#[must_use]
pub fn data_ranges(pin: &'static PCPIN_DESCRIPTOR) -> Vec<&'static [u8]> {
    let ks = &pin.KsPinDescriptor;
    if ks.DataRanges.is_null() {
        return Vec::new();
    }
    // SAFETY: the descriptor lists `DataRangesCount` range pointers (static data).
    let list = unsafe { std::slice::from_raw_parts(ks.DataRanges, ks.DataRangesCount as usize) };
    list.iter()
        .filter(|r| !r.is_null())
        .map(|&r| {
            // SAFETY: each range starts with a KSDATARANGE header (static data).
            let size = unsafe { (*r).FormatSize } as usize;
            // SAFETY: the range is `FormatSize` bytes long (KS rule).
            unsafe { std::slice::from_raw_parts(r.cast::<u8>(), size) }
        })
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
    /// Packet-interface answers that disagreed with the position.
    pub packet_mismatches: u64,
}

/// The client's view of the cyclic buffer.
#[derive(Debug)]
struct ClientBuffer {
    mdl: PMDL,
    base: *mut u8,
    size: u32,
    view: *mut u8,
    notification_count: u32,
    with_notification: bool,
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
    cursor: u64,
    /// Counters.
    pub stats: StreamStats,
    /// Every position read.
    pub trace: Vec<PositionSample>,
    /// QPC at which RUN was last entered.
    pub run_qpc: u64,
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
        Ok(Self {
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
            cursor: 0,
            stats: StreamStats::default(),
            trace: Vec::new(),
            run_qpc: 0,
        })
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
    /// # Errors
    ///
    /// The failing call, or a granted buffer that breaks the rules.
    pub fn allocate(
        &mut self,
        requested: u32,
        notification_count: Option<u32>,
    ) -> Result<u32, EngineError> {
        let mut mdl: PMDL = ptr::null_mut();
        let mut size = 0u32;
        let mut offset = 0u32;
        let mut cache: MEMORY_CACHING_TYPE = 0;
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
        let count = notification_count.unwrap_or(1);
        let block = self.format.block_align();
        if size == 0 || size % block != 0 || size % count != 0 || (size / count) % block != 0 {
            return Err(EngineError::Protocol(format!(
                "granted size {size} is not whole frames per packet (block {block}, {count} packets)"
            )));
        }
        let pages =
            self.machine.memory.page_count(mdl.addr()).ok_or_else(|| {
                EngineError::Protocol("buffer MDL unknown to the port".to_owned())
            })?;
        if (offset as usize + size as usize) > pages * crate::memory::PAGE_SIZE {
            return Err(EngineError::Protocol(
                "buffer larger than its MDL".to_owned(),
            ));
        }
        let base = self
            .machine
            .memory
            .map_for_client(mdl.addr())
            .ok_or_else(|| EngineError::Protocol("client mapping failed".to_owned()))?;
        self.buffer = Some(ClientBuffer {
            mdl,
            base,
            size,
            view: base.wrapping_add(offset as usize),
            notification_count: count,
            with_notification: notification_count.is_some(),
        });
        self.unwrap = LinearFromCyclic::new(size).ok();
        Ok(size)
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

    /// `KSPROPERTY_RTAUDIO_HWLATENCY`.
    ///
    /// # Errors
    ///
    /// When the stream is gone.
    pub fn hw_latency(&self) -> Result<KSRTAUDIO_HWLATENCY, EngineError> {
        let s = self.stream()?;
        let mut latency = KSRTAUDIO_HWLATENCY::default();
        let get = s.vtbl().GetHWLatency;
        // SAFETY: the stream is live; `latency` outlives the call.
        unsafe { get(s.this(), &raw mut latency) };
        Ok(latency)
    }

    /// `KSPROPERTY_CONNECTION_STATE`, one step at a time to `target`.
    ///
    /// # Errors
    ///
    /// The failing step.
    pub fn set_state(&mut self, target: KSSTATE) -> Result<(), EngineError> {
        let set = self.stream()?.vtbl().SetState;
        let this = self.stream()?.this();
        while self.state != target {
            let next = if target > self.state {
                self.state + 1
            } else {
                self.state - 1
            };
            // SAFETY: the stream is live.
            check("SetState", unsafe { set(this, next) })?;
            self.state = next;
            if next == KSSTATE_RUN {
                self.run_qpc = self.machine.qpc();
            }
            if next == KSSTATE_STOP {
                if let Some(u) = self.unwrap.as_mut() {
                    u.reset();
                }
                self.cursor = 0;
            }
        }
        Ok(())
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
    /// The failing call, or an offset outside the buffer.
    pub fn position(&mut self) -> Result<u64, EngineError> {
        let s = self.stream()?;
        let get = s.vtbl().GetPosition;
        let mut pos = KSAUDIO_POSITION::default();
        let before = self.machine.qpc();
        // SAFETY: the stream is live; `pos` outlives the call.
        let status = unsafe { get(s.this(), &raw mut pos) };
        let after = self.machine.qpc();
        check("GetPosition", status)?;
        let size = u64::from(self.buffer_size().max(1));
        let offset = u32::try_from(pos.PlayOffset % size).unwrap_or(0);
        let linear = self
            .unwrap
            .as_mut()
            .map_or(pos.PlayOffset, |u| u.update(offset));
        self.trace.push(PositionSample {
            qpc_before: before,
            qpc_after: after,
            linear_bytes: linear,
            state: self.state,
        });
        Ok(linear)
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

    /// Render: fills the whole buffer before RUN, advancing the write cursor.
    pub fn prefill(&mut self, source: &mut dyn FnMut(&mut [u8])) {
        let mut data = vec![0u8; self.buffer_size() as usize];
        source(&mut data);
        self.write_at(0, &data);
        self.cursor = data.len() as u64;
    }

    /// Render: writes one packet at the write cursor, checking against the
    /// play position (`position` must have been read just before).
    ///
    /// # Errors
    ///
    /// A failing packet-interface call.
    pub fn write_packet(
        &mut self,
        play: u64,
        source: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), EngineError> {
        let packet = u64::from(self.packet_bytes());
        let size = u64::from(self.buffer_size());
        if packet == 0 {
            return Ok(());
        }
        if self.cursor < play || self.cursor + packet > play + size {
            self.stats.glitches += 1;
        }
        let number = self.cursor / packet;
        if let Some(out) = &self.output {
            let mut count = 0u32;
            let get = out.vtbl().GetPacketCount;
            // SAFETY: the stream is live; `count` outlives the call.
            check("GetPacketCount", unsafe { get(out.this(), &raw mut count) })?;
            let per_buffer = size / packet;
            if u64::from(count) + per_buffer - 1 != number {
                self.stats.packet_mismatches += 1;
            }
        }
        let mut data = vec![0u8; usize::try_from(packet).unwrap_or(0)];
        source(&mut data);
        let at = self.cursor;
        self.write_at(at, &data);
        self.cursor += packet;
        self.stats.packets += 1;
        if let Some(out) = &self.output {
            let set = out.vtbl().SetWritePacket;
            let n = u32::try_from(number % (1 << 32)).unwrap_or(0);
            // SAFETY: the stream is live.
            check("SetWritePacket", unsafe { set(out.this(), n, 0, 0) })?;
        }
        Ok(())
    }

    /// Capture: reads one packet at the read cursor, checking against the
    /// record position (`position` must have been read just before).
    ///
    /// # Errors
    ///
    /// A failing packet-interface call.
    pub fn read_packet(&mut self, recorded: u64, sink: &mut Vec<u8>) -> Result<(), EngineError> {
        let packet = u64::from(self.packet_bytes());
        let size = u64::from(self.buffer_size());
        if packet == 0 {
            return Ok(());
        }
        if self.cursor + packet > recorded || self.cursor + size < recorded {
            self.stats.glitches += 1;
        }
        if let Some(input) = &self.input {
            let (mut number, mut flags, mut qpc, mut more) = (0u32, 0u32, 0u64, 0i32);
            let get = input.vtbl().GetReadPacket;
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
            check("GetReadPacket", status)?;
            let newest = recorded / packet;
            if u64::from(number) + 1 != newest.max(1) % (1 << 32) {
                self.stats.packet_mismatches += 1;
            }
        }
        let mut data = vec![0u8; usize::try_from(packet).unwrap_or(0)];
        let at = self.cursor;
        self.read_at(at, &mut data);
        sink.extend_from_slice(&data);
        self.cursor += packet;
        self.stats.packets += 1;
        Ok(())
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
        let mut first_error = self.set_state(KSSTATE_STOP).err();
        if let (Some(event), Some(n)) = (self.event.take(), self.notification.as_ref()) {
            let unregister = n.vtbl().UnregisterNotificationEvent;
            // SAFETY: the stream is live; the event was registered on it.
            let status = unsafe { unregister(n.this(), event.as_pkevent()) };
            first_error =
                first_error.or_else(|| check("UnregisterNotificationEvent", status).err());
            self.machine.delete_event(&event);
        }
        if let Some(b) = self.buffer.take() {
            self.machine.memory.unmap(b.base, b.mdl.addr());
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
        }
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
