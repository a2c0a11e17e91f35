//! A small reference loopback cable: a wave miniport (render and capture
//! streaming pins on one filter) and a topology miniport, built on
//! `wavert-com`'s traits, used to test the emulator itself.
//!
//! It is deliberately simple and not the product: one cable clock at the
//! rate of the first stream opened; each timer tick (or position read)
//! moves the same number of frames on every running stream, render streams
//! first into a scratch area, capture streams from it, so the capture is
//! the render data with zero added latency. Its "DMA" reads and writes RAM
//! by the physical page addresses it got from `GetPhysicalPageAddress`,
//! while the engine writes through its own mapping: a page-order mistake on
//! either side shows up as wrong audio. [`FakeOptions`] can make it
//! misbehave on purpose so the emulator's checks can be seen to fail.

use std::ptr;
use std::sync::{Arc, Mutex, Weak};

use portcls_sys::{
    IMiniportTopology, IMiniportWaveRT, IPortTopology, IPortWaveRT, IPortWaveRTStream,
    IResourceList, IUnknown, MmCached, DEVICE_DESCRIPTION, GUID, KSAUDIO_POSITION,
    KSAUDIO_PRESENTATION_POSITION, KSCATEGORY_AUDIO, KSDATAFORMAT, KSDATAFORMAT_SPECIFIER_NONE,
    KSDATAFORMAT_SPECIFIER_WAVEFORMATEX, KSDATAFORMAT_SUBTYPE_ANALOG,
    KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, KSDATAFORMAT_SUBTYPE_PCM, KSDATAFORMAT_TYPE_AUDIO,
    KSDATARANGE, KSDATARANGE_AUDIO, KSNODETYPE_MICROPHONE, KSNODETYPE_SPEAKER,
    KSPIN_COMMUNICATION_NONE, KSPIN_COMMUNICATION_SINK, KSPIN_DATAFLOW_IN, KSPIN_DATAFLOW_OUT,
    KSPIN_DESCRIPTOR, KSRTAUDIO_HWLATENCY, KSSTATE, KSSTATE_ACQUIRE, KSSTATE_PAUSE, KSSTATE_RUN,
    KSSTATE_STOP, PCFILTER_DESCRIPTOR, PCPIN_DESCRIPTOR, PHYSICAL_ADDRESS, PKEVENT, PKSDATARANGE,
    PMDL,
};
use wavert_com::{
    new_topology_miniport, new_wave_rt_miniport, AudioBuffer, ComPtr, KernelEvent, Miniport,
    MiniportTopology, MiniportWaveRt, MiniportWaveRtStream, NtResult, NtStatus, PacketMode,
    ReadPacket,
};
use wavert_core::format::{AudioFormat, SampleType};
use wavert_core::notify::NotificationSchedule;
use wavert_core::range::{intersect, ks_data_format_len, write_ks_data_format, DeviceRange};

use crate::machine::{lock, Machine, QPC_FREQUENCY, QPC_PER_MS};
use crate::memory::PAGE_SIZE;
use crate::port::{Port, PortKind};

/// Ways to make the fake misbehave (all off by default).
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent fault switches, used in any combination: a state enum would not fit"
)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeOptions {
    /// DMA walks the buffer's pages in reverse order (a page-order bug).
    pub reverse_pages: bool,
    /// Never signals notification events.
    pub no_notifications: bool,
    /// Forgets to free the buffer's pages when asked.
    pub leak_buffer: bool,
    /// Position keeps moving in PAUSE (breaks the `WaveTest` rule).
    pub run_in_pause: bool,
    /// Timer period in QPC ticks (0: 1 ms).
    pub timer_period: u64,
}

const PAGE: u32 = 4096;
/// Largest buffer the fake grants.
const MAX_BUFFER: u32 = 4 << 20;

static PCM_RANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_PCM, 16, 32);
static FLOAT_RANGE: KSDATARANGE_AUDIO = audio_range(KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, 32, 32);
static BRIDGE_RANGE: KSDATARANGE = KSDATAFORMAT {
    Alignment: [],
    FormatSize: 64,
    Flags: 0,
    SampleSize: 0,
    Reserved: 0,
    MajorFormat: KSDATAFORMAT_TYPE_AUDIO,
    SubFormat: KSDATAFORMAT_SUBTYPE_ANALOG,
    Specifier: KSDATAFORMAT_SPECIFIER_NONE,
};

const fn audio_range(sub: GUID, min_bits: u32, max_bits: u32) -> KSDATARANGE_AUDIO {
    KSDATARANGE_AUDIO {
        DataRange: KSDATAFORMAT {
            Alignment: [],
            FormatSize: 84,
            Flags: 0,
            SampleSize: 0,
            Reserved: 0,
            MajorFormat: KSDATAFORMAT_TYPE_AUDIO,
            SubFormat: sub,
            Specifier: KSDATAFORMAT_SPECIFIER_WAVEFORMATEX,
        },
        MaximumChannels: 8,
        MinimumBitsPerSample: min_bits,
        MaximumBitsPerSample: max_bits,
        MinimumSampleFrequency: 8_000,
        MaximumSampleFrequency: 192_000,
    }
}

/// Static tables of pointers, shared read-only.
#[repr(transparent)]
struct Table<T, const N: usize>([T; N]);
// SAFETY: the pointers lead to immutable statics that are only read.
unsafe impl<T, const N: usize> Sync for Table<T, N> {}

static STREAM_RANGES: Table<PKSDATARANGE, 2> = Table([
    ptr::from_ref(&PCM_RANGE).cast_mut().cast(),
    ptr::from_ref(&FLOAT_RANGE).cast_mut().cast(),
]);
static BRIDGE_RANGES: Table<PKSDATARANGE, 1> = Table([ptr::from_ref(&BRIDGE_RANGE).cast_mut()]);

const fn pin(
    flow: i32,
    communication: i32,
    bridge: bool,
    category: *const GUID,
) -> PCPIN_DESCRIPTOR {
    let (count, ranges) = if bridge {
        (1, ptr::from_ref(&BRIDGE_RANGES.0).cast::<PKSDATARANGE>())
    } else {
        (2, ptr::from_ref(&STREAM_RANGES.0).cast::<PKSDATARANGE>())
    };
    PCPIN_DESCRIPTOR {
        MaxGlobalInstanceCount: 1,
        MaxFilterInstanceCount: 1,
        MinFilterInstanceCount: 0,
        AutomationTable: ptr::null(),
        KsPinDescriptor: KSPIN_DESCRIPTOR {
            InterfacesCount: 0,
            Interfaces: ptr::null(),
            MediumsCount: 0,
            Mediums: ptr::null(),
            DataRangesCount: count,
            DataRanges: ranges,
            DataFlow: flow,
            Communication: communication,
            Category: category,
            Name: ptr::null(),
            ConstrainedDataRangesCount: 0,
            ConstrainedDataRanges: ptr::null_mut(),
        },
    }
}

/// Wave filter pins: render sink, render bridge, capture sink, capture bridge.
pub const RENDER_PIN: u32 = 0;
/// The capture streaming pin of the fake's wave filter.
pub const CAPTURE_PIN: u32 = 2;

static WAVE_PINS: [PCPIN_DESCRIPTOR; 4] = [
    pin(
        KSPIN_DATAFLOW_IN,
        KSPIN_COMMUNICATION_SINK,
        false,
        ptr::null(),
    ),
    pin(
        KSPIN_DATAFLOW_OUT,
        KSPIN_COMMUNICATION_NONE,
        true,
        ptr::null(),
    ),
    pin(
        KSPIN_DATAFLOW_OUT,
        KSPIN_COMMUNICATION_SINK,
        false,
        ptr::null(),
    ),
    pin(
        KSPIN_DATAFLOW_IN,
        KSPIN_COMMUNICATION_NONE,
        true,
        ptr::null(),
    ),
];
static TOPOLOGY_PINS: [PCPIN_DESCRIPTOR; 4] = [
    pin(
        KSPIN_DATAFLOW_IN,
        KSPIN_COMMUNICATION_NONE,
        true,
        ptr::null(),
    ),
    pin(
        KSPIN_DATAFLOW_OUT,
        KSPIN_COMMUNICATION_NONE,
        true,
        &KSNODETYPE_SPEAKER,
    ),
    pin(
        KSPIN_DATAFLOW_IN,
        KSPIN_COMMUNICATION_NONE,
        true,
        &KSNODETYPE_MICROPHONE,
    ),
    pin(
        KSPIN_DATAFLOW_OUT,
        KSPIN_COMMUNICATION_NONE,
        true,
        ptr::null(),
    ),
];
static CATEGORIES: [GUID; 1] = [KSCATEGORY_AUDIO];

#[allow(
    clippy::cast_possible_truncation,
    reason = "evaluated at compile time: a pin descriptor is a few dozen bytes"
)]
const fn filter(pins: &'static [PCPIN_DESCRIPTOR; 4]) -> PCFILTER_DESCRIPTOR {
    PCFILTER_DESCRIPTOR {
        Version: 0,
        AutomationTable: ptr::null(),
        PinSize: size_of::<PCPIN_DESCRIPTOR>() as u32,
        PinCount: 4,
        Pins: pins.as_ptr(),
        NodeSize: 0,
        NodeCount: 0,
        Nodes: ptr::null(),
        ConnectionCount: 0,
        Connections: ptr::null(),
        CategoryCount: 1,
        Categories: CATEGORIES.as_ptr(),
    }
}

static WAVE_FILTER: PCFILTER_DESCRIPTOR = filter(&WAVE_PINS);
static TOPOLOGY_FILTER: PCFILTER_DESCRIPTOR = filter(&TOPOLOGY_PINS);

const PCM: DeviceRange = DeviceRange {
    sample_type: SampleType::Pcm,
    max_channels: 8,
    min_bits: 16,
    max_bits: 32,
    min_rate: 8_000,
    max_rate: 192_000,
    container_for_24: 32,
};
const FLOAT: DeviceRange = DeviceRange {
    sample_type: SampleType::Float,
    min_bits: 32,
    ..PCM
};

/// The buffer a stream got from the port.
struct Buffer {
    mdl: PMDL,
    base: *mut u8,
    size: u32,
    /// Physical address of each page, in the order DMA walks them.
    pages: Vec<u64>,
    notifications: u32,
}
// SAFETY: the buffer's mapping and MDL belong to the stream, which only
// touches them under its mutex.
unsafe impl Send for Buffer {}

struct EventPtr(PKEVENT);
// SAFETY: a PKEVENT is an opaque handle the kernel lets any thread signal.
unsafe impl Send for EventPtr {}

struct StreamState {
    capture: bool,
    block_align: u32,
    bytes_per_second: u32,
    buffer: Option<Buffer>,
    schedule: Option<NotificationSchedule>,
    events: Vec<EventPtr>,
    state: KSSTATE,
    frames: u64,
    last_qpc: u64,
}

struct CableState {
    rate: u32,
    origin: u64,
    last_frame: u64,
    streams: Vec<Weak<Mutex<StreamState>>>,
    timer: Option<u64>,
    scratch: Vec<u8>,
}

struct Cable {
    machine: Arc<Machine>,
    options: FakeOptions,
    state: Mutex<CableState>,
}

impl Cable {
    fn cable_frame(state: &CableState, qpc: u64) -> u64 {
        let ticks = u128::from(qpc.saturating_sub(state.origin));
        u64::try_from(ticks * u128::from(state.rate) / u128::from(QPC_FREQUENCY))
            .unwrap_or(u64::MAX)
    }

    /// Moves every running stream up to `qpc` and signals due notifications.
    #[allow(
        clippy::significant_drop_tightening,
        reason = "the cable lock is the device's DMA lock: it is held for the whole move on purpose, and `scratch` borrows from it to the end"
    )]
    fn advance(&self, qpc: u64) {
        let mut cable = lock(&self.state);
        let target = Self::cable_frame(&cable, qpc);
        let delta = target.saturating_sub(cable.last_frame);
        cable.last_frame = target;
        cable.streams.retain(|w| w.strong_count() > 0);
        let streams: Vec<_> = cable.streams.iter().filter_map(Weak::upgrade).collect();
        if delta == 0 {
            return;
        }
        let mut rendered = false;
        let CableState { scratch, .. } = &mut *cable;
        // Render first, so capture reads this very tick's data.
        for capture_pass in [false, true] {
            for s in &streams {
                let mut st = lock(s);
                let moving = st.state == KSSTATE_RUN
                    || (self.options.run_in_pause && st.state == KSSTATE_PAUSE);
                if st.capture != capture_pass || !moving || st.buffer.is_none() {
                    continue;
                }
                let bytes = usize::try_from(delta * u64::from(st.block_align)).unwrap_or(0);
                scratch.resize(bytes.max(scratch.len()), 0);
                let start = st.frames * u64::from(st.block_align);
                if capture_pass {
                    if !rendered {
                        scratch[..bytes].fill(0);
                    }
                    self.dma(&st, start, Some(&scratch[..bytes]), None);
                } else {
                    self.dma(&st, start, None, Some(&mut scratch[..bytes]));
                    rendered = true;
                }
                st.frames += delta;
                st.last_qpc = qpc;
                let linear = st.frames * u64::from(st.block_align);
                let due = st.schedule.as_mut().map_or(0, |sch| sch.poll(linear).count);
                if !self.options.no_notifications {
                    for _ in 0..due {
                        for e in &st.events {
                            self.machine.set_event(e.0);
                        }
                    }
                }
            }
        }
    }

    /// Copies between the cyclic buffer (from linear byte `start`) and a
    /// slice, page by page through physical addresses.
    fn dma(&self, st: &StreamState, start: u64, from: Option<&[u8]>, to: Option<&mut [u8]>) {
        let Some(buf) = &st.buffer else { return };
        let len = from.map_or_else(|| to.as_ref().map_or(0, |t| t.len()), <[u8]>::len);
        let mut to = to;
        let mut done = 0usize;
        let size = u64::from(buf.size);
        while done < len {
            let offset = (start + done as u64) % size;
            let page_index = usize::try_from(offset / u64::from(PAGE)).unwrap_or(0);
            let in_page = offset % u64::from(PAGE);
            let page = if self.options.reverse_pages {
                buf.pages.len() - 1 - page_index
            } else {
                page_index
            };
            let run = usize::try_from((u64::from(PAGE) - in_page).min(size - offset))
                .unwrap_or(0)
                .min(len - done);
            let physical = buf.pages[page] + in_page;
            let result = match (&from, &mut to) {
                (Some(src), _) => self
                    .machine
                    .memory
                    .write_physical(physical, &src[done..done + run]),
                (None, Some(dst)) => self
                    .machine
                    .memory
                    .read_physical(physical, &mut dst[done..done + run]),
                (None, None) => Ok(()),
            };
            if let Err(e) = result {
                self.machine.violation(format!("fake DMA outside RAM: {e}"));
            }
            done += run;
        }
    }

    fn any_running(&self) -> bool {
        lock(&self.state)
            .streams
            .iter()
            .filter_map(Weak::upgrade)
            .any(|s| lock(&s).state == KSSTATE_RUN)
    }

    fn update_timer(self: &Arc<Self>) {
        let running = self.any_running();
        let mut cable = lock(&self.state);
        match (running, cable.timer) {
            (true, None) => {
                let weak = Arc::downgrade(self);
                let period = if self.options.timer_period == 0 {
                    QPC_PER_MS
                } else {
                    self.options.timer_period
                };
                let id = self.machine.start_timer(
                    period,
                    Arc::new(move |qpc| {
                        if let Some(cable) = weak.upgrade() {
                            cable.advance(qpc);
                        }
                    }),
                );
                cable.timer = Some(id);
            }
            (false, Some(id)) => {
                self.machine.cancel_timer(id);
                cable.timer = None;
            }
            _ => {}
        }
    }
}

/// One stream of the fake cable.
pub struct FakeStream {
    cable: Arc<Cable>,
    port_stream: ComPtr<IPortWaveRTStream>,
    state: Arc<Mutex<StreamState>>,
}

impl FakeStream {
    fn allocate(&self, notifications: u32, requested: u32) -> NtResult<AudioBuffer> {
        let mut st = lock(&self.state);
        if st.buffer.is_some() || st.state != KSSTATE_STOP {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        if !(1..=2).contains(&notifications) {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let unit = st.block_align * notifications;
        // At least 4 ms: a shorter cyclic buffer wraps between two position
        // reads of a client that polls every millisecond.
        let min = (st.bytes_per_second / 250).div_ceil(unit) * unit;
        let mut size = ((requested.min(MAX_BUFFER) / unit) * unit).max(min);
        let vtbl = self.port_stream.vtbl();
        let this = self.port_stream.this();
        let high = PHYSICAL_ADDRESS { QuadPart: i64::MAX };
        // SAFETY: the port stream is live; the arguments are plain values.
        let mdl = unsafe {
            (vtbl.AllocatePagesForMdl)(this, high, size.div_ceil(PAGE) as usize * PAGE_SIZE)
        };
        if mdl.is_null() {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        // SAFETY: `mdl` came from this port stream.
        let pages = unsafe { (vtbl.GetPhysicalPagesCount)(this, mdl) };
        if pages * PAGE < size {
            // Settle for the largest whole-unit buffer the pages hold.
            size = pages * PAGE / unit * unit;
            if size == 0 {
                // SAFETY: `mdl` came from this port stream and is not mapped.
                unsafe { (vtbl.FreePagesFromMdl)(this, mdl) };
                return Err(NtStatus::INSUFFICIENT_RESOURCES);
            }
        }
        // SAFETY: `mdl` came from this port stream.
        let base = unsafe { (vtbl.MapAllocatedPages)(this, mdl, MmCached) };
        if base.is_null() {
            // SAFETY: `mdl` came from this port stream and is not mapped.
            unsafe { (vtbl.FreePagesFromMdl)(this, mdl) };
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        let mut addresses = Vec::new();
        for i in 0..pages {
            let mut result = PHYSICAL_ADDRESS::default();
            // SAFETY: the hidden result slot, the MDL and index are valid for the call.
            let returned = unsafe { (vtbl.GetPhysicalPageAddress)(this, &raw mut result, mdl, i) };
            if returned != &raw mut result {
                self.cable
                    .machine
                    .violation("GetPhysicalPageAddress returned another pointer".to_owned());
            }
            addresses.push(u64::try_from(result.QuadPart).unwrap_or(0));
        }
        let schedule = NotificationSchedule::new(size, notifications).ok();
        st.schedule = schedule;
        st.buffer = Some(Buffer {
            mdl,
            base: base.cast(),
            size,
            pages: addresses,
            notifications,
        });
        drop(st);
        Ok(AudioBuffer {
            mdl,
            actual_size: size,
            offset_from_first_page: 0,
            cache_type: MmCached,
        })
    }

    fn free(&self, mdl: PMDL) {
        let mut st = lock(&self.state);
        let Some(buf) = st.buffer.take() else { return };
        if buf.mdl != mdl {
            self.cable
                .machine
                .violation("FreeAudioBuffer with an MDL the stream did not hand out".to_owned());
        }
        st.schedule = None;
        drop(st);
        if self.cable.options.leak_buffer {
            return;
        }
        let vtbl = self.port_stream.vtbl();
        let this = self.port_stream.this();
        // SAFETY: the mapping and MDL came from this port stream.
        unsafe { (vtbl.UnmapAllocatedPages)(this, buf.base.cast(), buf.mdl) };
        // SAFETY: the MDL came from this port stream and is now unmapped.
        unsafe { (vtbl.FreePagesFromMdl)(this, buf.mdl) };
    }

    fn linear_bytes(&self) -> (u64, u32, u32) {
        self.cable.advance(self.cable.machine.qpc());
        let st = lock(&self.state);
        let (size, count) = st
            .buffer
            .as_ref()
            .map_or((0, 1), |b| (b.size, b.notifications));
        (st.frames * u64::from(st.block_align), size, count)
    }
}

impl Drop for FakeStream {
    fn drop(&mut self) {
        let buffer = lock(&self.state).buffer.as_ref().map(|b| b.mdl);
        if let Some(mdl) = buffer {
            self.free(mdl);
        }
    }
}

impl MiniportWaveRtStream for FakeStream {
    fn packet_mode(&self) -> PacketMode {
        if lock(&self.state).capture {
            PacketMode::Input
        } else {
            PacketMode::Output
        }
    }

    fn set_format(&self, _format: &[u8]) -> NtResult<()> {
        Err(NtStatus::NOT_SUPPORTED)
    }

    fn set_state(&self, state: KSSTATE) -> NtResult<()> {
        let now = self.cable.machine.qpc();
        self.cable.advance(now);
        {
            let mut st = lock(&self.state);
            let step_ok = (st.state - state).abs() == 1;
            if !step_ok || !(KSSTATE_STOP..=KSSTATE_RUN).contains(&state) {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            if state == KSSTATE_STOP {
                st.frames = 0;
                if let Some(s) = st.schedule.as_mut() {
                    s.reset();
                }
            }
            if state == KSSTATE_ACQUIRE && st.state == KSSTATE_STOP && st.buffer.is_none() {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            st.state = state;
            st.last_qpc = now;
        }
        self.cable.update_timer();
        Ok(())
    }

    fn position(&self) -> NtResult<KSAUDIO_POSITION> {
        let (linear, size, _) = self.linear_bytes();
        let offset = if size == 0 {
            0
        } else {
            linear % u64::from(size)
        };
        Ok(KSAUDIO_POSITION {
            PlayOffset: offset,
            WriteOffset: offset,
        })
    }

    fn allocate_audio_buffer(&self, requested_size: u32) -> NtResult<AudioBuffer> {
        self.allocate(1, requested_size)
    }

    fn free_audio_buffer(&self, mdl: PMDL, _size: u32) {
        self.free(mdl);
    }

    fn hw_latency(&self) -> KSRTAUDIO_HWLATENCY {
        KSRTAUDIO_HWLATENCY::default()
    }

    fn allocate_buffer_with_notification(
        &self,
        notification_count: u32,
        requested_size: u32,
    ) -> NtResult<AudioBuffer> {
        self.allocate(notification_count, requested_size)
    }

    fn free_buffer_with_notification(&self, mdl: PMDL, _size: u32) {
        self.free(mdl);
    }

    fn register_notification_event(&self, event: KernelEvent) -> NtResult<()> {
        let mut st = lock(&self.state);
        if st.buffer.is_none() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        st.events.push(EventPtr(event.as_raw()));
        drop(st);
        Ok(())
    }

    fn unregister_notification_event(&self, event: KernelEvent) -> NtResult<()> {
        let mut st = lock(&self.state);
        let before = st.events.len();
        st.events.retain(|e| e.0 != event.as_raw());
        let removed = st.events.len() != before;
        drop(st);
        if removed {
            Ok(())
        } else {
            Err(NtStatus::NOT_FOUND)
        }
    }

    fn set_write_packet(&self, _packet: u32, _flags: u32, _eos: u32) -> NtResult<()> {
        Ok(())
    }

    fn presentation_position(&self) -> NtResult<KSAUDIO_PRESENTATION_POSITION> {
        let (linear, _, _) = self.linear_bytes();
        let st = lock(&self.state);
        Ok(KSAUDIO_PRESENTATION_POSITION {
            u64PositionInBlocks: linear / u64::from(st.block_align),
            u64QPCPosition: st.last_qpc,
        })
    }

    fn packet_count(&self) -> NtResult<u32> {
        let (linear, size, count) = self.linear_bytes();
        if size == 0 {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let packets = linear / u64::from(size / count);
        Ok(u32::try_from(packets % (1 << 32)).unwrap_or(0))
    }

    fn read_packet(&self) -> NtResult<ReadPacket> {
        let (linear, size, count) = self.linear_bytes();
        if size == 0 {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let packet_bytes = u64::from(size / count);
        let completed = linear / packet_bytes;
        if completed == 0 {
            return Err(NtStatus::DEVICE_NOT_READY);
        }
        let st = lock(&self.state);
        let rate = u64::from(lock(&self.cable.state).rate);
        let frames_since = (linear - (completed - 1) * packet_bytes) / u64::from(st.block_align);
        Ok(ReadPacket {
            packet_number: u32::try_from((completed - 1) % (1 << 32)).unwrap_or(0),
            flags: 0,
            performance_counter: st
                .last_qpc
                .saturating_sub(frames_since * QPC_FREQUENCY / rate.max(1)),
            more_data: false,
        })
    }
}

/// The fake's wave miniport.
pub struct FakeWave {
    cable: Arc<Cable>,
}

fn device_range_for(matching: &[u8]) -> Option<DeviceRange> {
    let sub = matching.get(32..48)?;
    if sub == KSDATAFORMAT_SUBTYPE_PCM.to_bytes() {
        Some(PCM)
    } else if sub == KSDATAFORMAT_SUBTYPE_IEEE_FLOAT.to_bytes() {
        Some(FLOAT)
    } else {
        None
    }
}

impl Miniport for FakeWave {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        &WAVE_FILTER
    }

    fn data_range_intersection(
        &self,
        pin_id: u32,
        data_range: &[u8],
        matching_range: &[u8],
        result: &mut [u8],
        result_len: &mut u32,
    ) -> NtResult<()> {
        if pin_id != RENDER_PIN && pin_id != CAPTURE_PIN {
            return Err(NtStatus::NO_MATCH);
        }
        let device = device_range_for(matching_range).ok_or(NtStatus::NO_MATCH)?;
        let format = intersect(data_range, &device).map_err(|_| NtStatus::NO_MATCH)?;
        let needed = u32::try_from(ks_data_format_len(&format)).unwrap_or(u32::MAX);
        *result_len = needed;
        if result.is_empty() {
            return Err(NtStatus::BUFFER_OVERFLOW);
        }
        let written =
            write_ks_data_format(&format, result).map_err(|_| NtStatus::BUFFER_TOO_SMALL)?;
        *result_len = u32::try_from(written).unwrap_or(needed);
        Ok(())
    }
}

impl MiniportWaveRt for FakeWave {
    type Stream = FakeStream;

    fn init(
        &self,
        _adapter: Option<ComPtr<IUnknown>>,
        _resources: Option<ComPtr<IResourceList>>,
        _port: ComPtr<IPortWaveRT>,
    ) -> NtResult<()> {
        Ok(())
    }

    fn new_stream(
        &self,
        port_stream: ComPtr<IPortWaveRTStream>,
        pin: u32,
        capture: bool,
        format: &[u8],
    ) -> NtResult<FakeStream> {
        let expected_capture = match pin {
            RENDER_PIN => false,
            CAPTURE_PIN => true,
            _ => return Err(NtStatus::INVALID_PARAMETER),
        };
        if capture != expected_capture {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        let wave = format
            .get(size_of::<KSDATAFORMAT>()..)
            .ok_or(NtStatus::INVALID_PARAMETER)?;
        let parsed = AudioFormat::parse(wave).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        if !PCM.contains(&parsed) && !FLOAT.contains(&parsed) {
            return Err(NtStatus::NO_MATCH);
        }
        let state = Arc::new(Mutex::new(StreamState {
            capture,
            block_align: parsed.block_align(),
            bytes_per_second: parsed.bytes_per_second(),
            buffer: None,
            schedule: None,
            events: Vec::new(),
            state: KSSTATE_STOP,
            frames: 0,
            last_qpc: 0,
        }));
        let now = self.cable.machine.qpc();
        self.cable.advance(now);
        let mut cable = lock(&self.cable.state);
        cable.streams.retain(|w| w.strong_count() > 0);
        if cable.streams.is_empty() {
            cable.rate = parsed.sample_rate();
            cable.origin = now;
            cable.last_frame = 0;
        } else if cable.rate != parsed.sample_rate() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        cable.streams.push(Arc::downgrade(&state));
        drop(cable);
        Ok(FakeStream {
            cable: Arc::clone(&self.cable),
            port_stream,
            state,
        })
    }

    fn device_description(&self, description: &mut DEVICE_DESCRIPTION) -> NtResult<()> {
        description.Master = 1;
        description.ScatterGather = 1;
        description.Dma64BitAddresses = 1;
        Ok(())
    }
}

/// The fake's topology miniport.
pub struct FakeTopology;

impl Miniport for FakeTopology {
    fn description(&self) -> &'static PCFILTER_DESCRIPTOR {
        &TOPOLOGY_FILTER
    }

    fn data_range_intersection(
        &self,
        _pin_id: u32,
        _data_range: &[u8],
        _matching_range: &[u8],
        _result: &mut [u8],
        _result_len: &mut u32,
    ) -> NtResult<()> {
        Err(NtStatus::NO_MATCH)
    }
}

impl MiniportTopology for FakeTopology {
    fn init(
        &self,
        _adapter: Option<ComPtr<IUnknown>>,
        _resources: Option<ComPtr<IResourceList>>,
        _port: ComPtr<IPortTopology>,
    ) -> NtResult<()> {
        Ok(())
    }
}

/// A fake wave miniport and its topology partner, as raw COM objects.
///
/// # Errors
///
/// `INSUFFICIENT_RESOURCES` when an object cannot be allocated.
pub fn new_fake_cable(
    machine: &Arc<Machine>,
    options: FakeOptions,
) -> NtResult<(ComPtr<IMiniportWaveRT>, ComPtr<IMiniportTopology>)> {
    let cable = Arc::new(Cable {
        machine: Arc::clone(machine),
        options,
        state: Mutex::new(CableState {
            rate: 48_000,
            origin: machine.qpc(),
            last_frame: 0,
            streams: Vec::new(),
            timer: None,
            scratch: Vec::new(),
        }),
    });
    let wave = new_wave_rt_miniport(FakeWave { cable })?;
    let topology = new_topology_miniport(FakeTopology)?;
    Ok((wave, topology))
}

/// What the fake adapter's `StartDevice` set up.
#[derive(Debug)]
pub struct FakeAdapter {
    /// The wave port (subdevice "Wave").
    pub wave: Port,
    /// The topology port (subdevice "Topology").
    pub topology: Port,
}

impl FakeAdapter {
    /// Tears the adapter down the way PortCls does on removal.
    pub fn remove(self) {
        self.wave.unbind();
        self.topology.unbind();
    }
}

/// The fake adapter's `StartDevice`: `PcNewPort` twice, `IPort::Init` with
/// each miniport, `PcRegisterSubdevice` and the two physical connections.
///
/// # Errors
///
/// The failing status.
pub fn start_fake_adapter(
    machine: &Arc<Machine>,
    options: FakeOptions,
) -> Result<FakeAdapter, NtStatus> {
    let (wave_miniport, topology_miniport) = new_fake_cable(machine, options)?;
    let wave = Port::new(machine, PortKind::WaveRt);
    let topology = Port::new(machine, PortKind::Topology);
    let as_unknown_wave = wave_miniport.query::<IUnknown>()?;
    let as_unknown_topology = topology_miniport.query::<IUnknown>()?;
    drop((wave_miniport, topology_miniport));
    topology
        .init(&as_unknown_topology, None)
        .map_err(NtStatus::from_failure)?;
    wave.init(&as_unknown_wave, None)
        .map_err(NtStatus::from_failure)?;
    machine.register_subdevice("Wave", wave.address());
    machine.register_subdevice("Topology", topology.address());
    machine.register_physical_connection(wave.address(), 1, topology.address(), 0);
    machine.register_physical_connection(topology.address(), 3, wave.address(), 3);
    Ok(FakeAdapter { wave, topology })
}
