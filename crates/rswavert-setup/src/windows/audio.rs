//! The endpoints (`MMDevice`) and `check`'s loopback run (`WASAPI`,
//! event-driven): the test signal into the cable's render endpoint, the
//! cable's capture endpoint recorded, position reads on both, then the
//! portable analysis.
//!
//! Unverified here (no Windows machine): this type-checks against the
//! `windows` crate for both Windows targets; it has not run.

use windows::Win32::Devices::FunctionDiscovery::{
    PKEY_DeviceInterface_FriendlyName, PKEY_Device_DeviceDesc, PKEY_Device_FriendlyName,
};
use windows::Win32::Foundation::PROPERTYKEY;
use windows::Win32::Foundation::{CloseHandle, HANDLE, WAIT_OBJECT_0};
use windows::Win32::Media::Audio::{
    eCapture, eRender, EDataFlow, IAudioCaptureClient, IAudioClient, IAudioClock,
    IAudioRenderClient, IMMDevice, IMMDeviceEnumerator, MMDeviceEnumerator,
    AUDCLNT_BUFFERFLAGS_DATA_DISCONTINUITY, AUDCLNT_BUFFERFLAGS_SILENT, AUDCLNT_SHAREMODE,
    AUDCLNT_SHAREMODE_EXCLUSIVE, AUDCLNT_SHAREMODE_SHARED, AUDCLNT_STREAMFLAGS_EVENTCALLBACK,
    DEVICE_STATE_ACTIVE, WAVEFORMATEX,
};
use windows::Win32::System::Com::{
    CoCreateInstance, CoInitializeEx, CoTaskMemFree, CLSCTX_ALL, COINIT_MULTITHREADED, STGM_READ,
};
use windows::Win32::System::Performance::{QueryPerformanceCounter, QueryPerformanceFrequency};
use windows::Win32::System::Threading::{CreateEventW, WaitForSingleObject};
use windows::Win32::System::Variant::VT_BLOB;
use windows::Win32::UI::Shell::PropertiesSystem::IPropertyStore;

use wavert_analysis::position::PositionRead;
use wavert_analysis::signal::test_signal;
use wavert_core::format::AudioFormat;

use crate::check::{analyse, LoopbackRun};
use crate::cli::{CheckOptions, ShareMode};
use crate::diagnose::{is_cable_endpoint, missing_endpoints, problem_of_hresult, Problem};

/// `PKEY_AudioEngine_DeviceFormat` (mmdeviceapi.h / Learn): the format the
/// endpoint's device runs in, a WAVEFORMATEX blob, {F19F064D-082C-4E27-BC73-6882A1BB8E4C},0.
const PKEY_AUDIOENGINE_DEVICEFORMAT: PROPERTYKEY = PROPERTYKEY {
    fmtid: windows::core::GUID::from_u128(0xf19f064d_082c_4e27_bc73_6882a1bb8e4c),
    pid: 0,
};

/// One active endpoint.
struct Endpoint {
    device: IMMDevice,
    /// Its names (friendly name, device description, interface name).
    names: Vec<String>,
}

impl Endpoint {
    fn name(&self) -> String {
        self.names.first().cloned().unwrap_or_default()
    }
}

fn initialise_com() {
    // SAFETY: once per thread; a repeated call returns S_FALSE, harmless.
    let _ = unsafe { CoInitializeEx(None, COINIT_MULTITHREADED) };
}

fn failed(call: &str, endpoint: &str, error: &windows::core::Error) -> String {
    #[allow(clippy::cast_sign_loss, reason = "an HRESULT's bits")]
    let code = error.code().0 as u32;
    problem_of_hresult(code, endpoint).map_or_else(
        || format!("{call} on {endpoint:?} failed: {error} ({code:#010x})"),
        |problem| problem.message(),
    )
}

fn string_property(store: &IPropertyStore, key: &PROPERTYKEY) -> Option<String> {
    // SAFETY: a live property store and a property key.
    let value = unsafe { store.GetValue(key) }.ok()?;
    let text = value.to_string();
    (!text.is_empty()).then_some(text)
}

/// The active endpoints of one data flow, with their names.
fn endpoints(flow: EDataFlow) -> Result<Vec<Endpoint>, String> {
    initialise_com();
    // SAFETY: COM is initialised on this thread.
    let enumerator: IMMDeviceEnumerator =
        unsafe { CoCreateInstance(&MMDeviceEnumerator, None, CLSCTX_ALL) }
            .map_err(|error| failed("CoCreateInstance(MMDeviceEnumerator)", "", &error))?;
    // SAFETY: a live enumerator.
    let collection = unsafe { enumerator.EnumAudioEndpoints(flow, DEVICE_STATE_ACTIVE) }
        .map_err(|error| failed("EnumAudioEndpoints", "", &error))?;
    // SAFETY: a live collection.
    let count = unsafe { collection.GetCount() }.map_err(|error| failed("GetCount", "", &error))?;
    let mut found = Vec::new();
    for index in 0..count {
        // SAFETY: an index below the collection's count.
        let Ok(device) = (unsafe { collection.Item(index) }) else {
            continue;
        };
        // SAFETY: a live endpoint.
        let Ok(store) = (unsafe { device.OpenPropertyStore(STGM_READ) }) else {
            continue;
        };
        let names = [
            &PKEY_Device_FriendlyName,
            &PKEY_Device_DeviceDesc,
            &PKEY_DeviceInterface_FriendlyName,
        ]
        .into_iter()
        .filter_map(|key| string_property(&store, key))
        .collect();
        found.push(Endpoint { device, names });
    }
    Ok(found)
}

/// The endpoint's device format, if it has one.
fn device_format(endpoint: &Endpoint) -> Option<Vec<u8>> {
    // SAFETY: a live endpoint.
    let store = unsafe { endpoint.device.OpenPropertyStore(STGM_READ) }.ok()?;
    // SAFETY: a live store and a property key.
    let value = unsafe { store.GetValue(&PKEY_AUDIOENGINE_DEVICEFORMAT) }.ok()?;
    if value.vt() != VT_BLOB {
        return None;
    }
    // SAFETY: every PROPVARIANT starts with its tag and data (the outer
    // union's first member).
    let tagged = unsafe { &value.Anonymous.Anonymous };
    // SAFETY: a VT_BLOB PROPVARIANT: the blob member is the live one.
    let blob = unsafe { tagged.Anonymous.blob };
    if blob.pBlobData.is_null() {
        return None;
    }
    // SAFETY: the blob's `cbSize` bytes are readable while `value` lives.
    let bytes = unsafe { std::slice::from_raw_parts(blob.pBlobData, blob.cbSize as usize) };
    Some(bytes.to_vec())
}

/// `status`'s endpoint half.
pub fn status() -> Result<bool, String> {
    let render = endpoints(eRender)?;
    let capture = endpoints(eCapture)?;
    for (flow, list) in [("render", &render), ("capture", &capture)] {
        for endpoint in list.iter().filter(|e| is_cable_endpoint(&e.names)) {
            let format = device_format(endpoint)
                .and_then(|blob| AudioFormat::parse(&blob).ok())
                .map_or_else(
                    || "format unknown".to_owned(),
                    |format| format!("{format:?}"),
                );
            println!(
                "endpoint         : {flow:<7} {} (active; device format {format})",
                endpoint.names.join(" / ")
            );
        }
    }
    let names = |list: &[Endpoint]| list.iter().map(|e| e.names.clone()).collect::<Vec<_>>();
    let missing = missing_endpoints(&names(&render), &names(&capture));
    if missing.is_empty() {
        Ok(true)
    } else {
        println!(
            "problem: {}",
            Problem::EndpointsMissing { expected: missing }.message()
        );
        Ok(false)
    }
}

/// `check`.
pub fn check(options: &CheckOptions) -> Result<bool, String> {
    let render = endpoints(eRender)?;
    let capture = endpoints(eCapture)?;
    let names = |list: &[Endpoint]| list.iter().map(|e| e.names.clone()).collect::<Vec<_>>();
    let missing = missing_endpoints(&names(&render), &names(&capture));
    if !missing.is_empty() {
        println!(
            "problem: {}",
            Problem::EndpointsMissing { expected: missing }.message()
        );
        return Ok(false);
    }
    let cable = |list: &[Endpoint]| {
        list.iter()
            .find(|e| is_cable_endpoint(&e.names))
            .map(|e| Endpoint {
                device: e.device.clone(),
                names: e.names.clone(),
            })
    };
    let (Some(render), Some(capture)) = (cable(&render), cable(&capture)) else {
        return Ok(false);
    };
    let mut passed = true;
    for &mode in &options.modes {
        match loopback(&render, &capture, mode, options.seconds) {
            Ok(run) => {
                let report = analyse(&run);
                for line in report.lines() {
                    println!("{line}");
                }
                passed &= report.passed();
            }
            Err(message) => {
                println!("problem: {mode:?}: {message}", mode = mode.name());
                passed = false;
            }
        }
    }
    Ok(passed)
}

/// A stream on one endpoint, initialised event-driven.
struct Stream {
    client: IAudioClient,
    clock: IAudioClock,
    clock_frequency: u64,
    event: HANDLE,
    buffer_frames: u32,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: a live client; stopping a stopped client is harmless.
        let _ = unsafe { self.client.Stop() };
        // SAFETY: the event created for this stream, closed once.
        let _ = unsafe { CloseHandle(self.event) };
    }
}

const fn share_mode(mode: ShareMode) -> AUDCLNT_SHAREMODE {
    match mode {
        ShareMode::Shared => AUDCLNT_SHAREMODE_SHARED,
        ShareMode::Exclusive => AUDCLNT_SHAREMODE_EXCLUSIVE,
    }
}

/// The bytes of a WAVEFORMATEX `WASAPI` allocated, freed after copying.
fn take_format(format: *mut WAVEFORMATEX) -> Vec<u8> {
    if format.is_null() {
        return Vec::new();
    }
    // SAFETY: WASAPI returned a valid WAVEFORMATEX; its cbSize says how many
    // bytes follow the 18-byte header.
    let size = 18 + usize::from(unsafe { (*format).cbSize });
    // SAFETY: `size` bytes are readable at `format` (see above).
    let bytes = unsafe { std::slice::from_raw_parts(format.cast::<u8>(), size) }.to_vec();
    // SAFETY: memory WASAPI allocated with CoTaskMemAlloc, freed once.
    unsafe { CoTaskMemFree(Some(format.cast_const().cast())) };
    bytes
}

fn open_stream(endpoint: &Endpoint, mode: ShareMode, format: &[u8]) -> Result<Stream, String> {
    let name = endpoint.name();
    // SAFETY: a live endpoint; IAudioClient is what it activates.
    let client: IAudioClient = unsafe { endpoint.device.Activate(CLSCTX_ALL, None) }
        .map_err(|error| failed("Activate(IAudioClient)", &name, &error))?;
    let (period, buffer) = match mode {
        // Shared event-driven streams pass 0 for both (the engine's period).
        ShareMode::Shared => (0, 0),
        // Exclusive event-driven streams: buffer = period (Learn,
        // IAudioClient::Initialize, AUDCLNT_STREAMFLAGS_EVENTCALLBACK).
        ShareMode::Exclusive => {
            let mut default_period = 0i64;
            // SAFETY: a live client and a writable output.
            unsafe { client.GetDevicePeriod(Some(&raw mut default_period), None) }
                .map_err(|error| failed("GetDevicePeriod", &name, &error))?;
            (default_period, default_period)
        }
    };
    // WAVEFORMATEX needs 2-byte alignment: copy the blob into u16s.
    let mut aligned = vec![0u16; format.len().div_ceil(2)];
    for (index, byte) in format.iter().enumerate() {
        aligned[index / 2] |= u16::from(*byte) << (8 * (index % 2));
    }
    // SAFETY: a live client; `aligned` holds a whole WAVEFORMATEX(TENSIBLE).
    unsafe {
        client.Initialize(
            share_mode(mode),
            AUDCLNT_STREAMFLAGS_EVENTCALLBACK,
            buffer,
            period,
            aligned.as_ptr().cast(),
            None,
        )
    }
    .map_err(|error| failed("IAudioClient::Initialize", &name, &error))?;
    // SAFETY: an unnamed auto-reset event, closed by the stream.
    let event = unsafe { CreateEventW(None, false, false, None) }
        .map_err(|error| failed("CreateEvent", &name, &error))?;
    // SAFETY: an initialised client and a live event.
    unsafe { client.SetEventHandle(event) }
        .map_err(|error| failed("SetEventHandle", &name, &error))?;
    // SAFETY: an initialised client.
    let buffer_frames = unsafe { client.GetBufferSize() }
        .map_err(|error| failed("GetBufferSize", &name, &error))?;
    // SAFETY: an initialised client.
    let clock: IAudioClock = unsafe { client.GetService() }
        .map_err(|error| failed("GetService(IAudioClock)", &name, &error))?;
    // SAFETY: a live clock.
    let clock_frequency = unsafe { clock.GetFrequency() }
        .map_err(|error| failed("IAudioClock::GetFrequency", &name, &error))?;
    Ok(Stream {
        client,
        clock,
        clock_frequency,
        event,
        buffer_frames,
    })
}

fn qpc() -> u64 {
    let mut now = 0i64;
    // SAFETY: a writable counter.
    let _ = unsafe { QueryPerformanceCounter(&raw mut now) };
    u64::try_from(now).unwrap_or(0)
}

/// One position read: the clock's position in bytes, the counter around it.
fn read_position(stream: &Stream, bytes_per_second: u64) -> Option<PositionRead> {
    let before = qpc();
    let mut position = 0u64;
    // SAFETY: a live clock; the QPC output is optional.
    unsafe { stream.clock.GetPosition(&raw mut position, None) }.ok()?;
    let after = qpc();
    // IAudioClock positions count in units of GetFrequency per second.
    let bytes = u128::from(position) * u128::from(bytes_per_second)
        / u128::from(stream.clock_frequency.max(1));
    Some(PositionRead {
        qpc_before: before,
        qpc_after: after,
        linear_bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
        running: true,
    })
}

/// One loopback run in one mode.
#[allow(clippy::too_many_lines, reason = "the run, step by step")]
fn loopback(
    render: &Endpoint,
    capture: &Endpoint,
    mode: ShareMode,
    seconds: f64,
) -> Result<LoopbackRun, String> {
    let format_bytes = match mode {
        ShareMode::Shared => {
            // SAFETY: a live endpoint; IAudioClient is what it activates.
            let client: IAudioClient = unsafe { render.device.Activate(CLSCTX_ALL, None) }
                .map_err(|error| failed("Activate(IAudioClient)", &render.name(), &error))?;
            // SAFETY: a live client; the format is freed by `take_format`.
            take_format(
                unsafe { client.GetMixFormat() }
                    .map_err(|error| failed("GetMixFormat", &render.name(), &error))?,
            )
        }
        ShareMode::Exclusive => {
            device_format(render).ok_or("the render endpoint has no device format")?
        }
    };
    let format = AudioFormat::parse(&format_bytes)
        .map_err(|error| format!("the endpoint's format: {error:?}"))?;
    let block = format.block_align() as usize;
    let bytes_per_second = u64::from(format.sample_rate()) * u64::from(format.block_align());
    let render_stream = open_stream(render, mode, &format_bytes)?;
    let capture_stream = open_stream(capture, mode, &format_bytes)?;
    // SAFETY: initialised clients.
    let render_client: IAudioRenderClient = unsafe { render_stream.client.GetService() }
        .map_err(|error| failed("GetService(IAudioRenderClient)", &render.name(), &error))?;
    // SAFETY: as above.
    let capture_client: IAudioCaptureClient = unsafe { capture_stream.client.GetService() }
        .map_err(|error| failed("GetService(IAudioCaptureClient)", &capture.name(), &error))?;

    let signal = test_signal(&format, seconds);
    // Half a second of silence after the signal carries its tail through
    // the cable's delay.
    let tail = usize::try_from(bytes_per_second / 2).unwrap_or(0);
    let mut rendered = Vec::with_capacity(signal.len() + tail);
    let mut captured = Vec::with_capacity(signal.len() + tail);
    let mut render_reads = Vec::new();
    let mut capture_reads = Vec::new();
    let (mut render_glitches, mut capture_glitches) = (0u64, 0u64);
    let mut frequency = 0i64;
    // SAFETY: a writable output.
    let _ = unsafe { QueryPerformanceFrequency(&raw mut frequency) };

    let write = |frames: u32, rendered: &mut Vec<u8>| -> Result<(), String> {
        if frames == 0 {
            return Ok(());
        }
        // SAFETY: a started or prepared render client; `frames` fit the buffer.
        let data = unsafe { render_client.GetBuffer(frames) }
            .map_err(|error| failed("IAudioRenderClient::GetBuffer", &render.name(), &error))?;
        let bytes = frames as usize * block;
        let start = rendered.len();
        let from_signal = signal.get(start..).unwrap_or_default();
        let chunk: Vec<u8> = from_signal
            .iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(bytes)
            .collect();
        // SAFETY: WASAPI's buffer holds `bytes` writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), data, bytes) };
        rendered.extend_from_slice(&chunk);
        // SAFETY: the frames just written.
        unsafe { render_client.ReleaseBuffer(frames, 0) }
            .map_err(|error| failed("IAudioRenderClient::ReleaseBuffer", &render.name(), &error))
    };
    // Pre-roll: a whole buffer before Start, as event-driven clients must.
    write(render_stream.buffer_frames, &mut rendered)?;
    // SAFETY: initialised clients.
    unsafe { capture_stream.client.Start() }
        .map_err(|error| failed("Start", &capture.name(), &error))?;
    let capture_start_qpc = qpc();
    // SAFETY: as above.
    unsafe { render_stream.client.Start() }
        .map_err(|error| failed("Start", &render.name(), &error))?;
    let render_start_qpc = qpc();

    let total = signal.len() + tail;
    while captured.len() < total {
        // Two seconds without an event: the stream has stopped.
        // SAFETY: the stream's live event.
        if unsafe { WaitForSingleObject(render_stream.event, 2000) } != WAIT_OBJECT_0 {
            return Err("the render endpoint stopped signalling its event (2 s)".to_owned());
        }
        let free = match mode {
            ShareMode::Exclusive => render_stream.buffer_frames,
            ShareMode::Shared => {
                // SAFETY: a started client.
                let padding = unsafe { render_stream.client.GetCurrentPadding() }
                    .map_err(|error| failed("GetCurrentPadding", &render.name(), &error))?;
                if padding == 0 && rendered.len() < total {
                    render_glitches += 1;
                }
                render_stream.buffer_frames - padding
            }
        };
        if rendered.len() < total + block * render_stream.buffer_frames as usize {
            write(free, &mut rendered)?;
        }
        render_reads.extend(read_position(&render_stream, bytes_per_second));
        capture_reads.extend(read_position(&capture_stream, bytes_per_second));
        loop {
            // SAFETY: a started capture client.
            let next = unsafe { capture_client.GetNextPacketSize() }
                .map_err(|error| failed("GetNextPacketSize", &capture.name(), &error))?;
            if next == 0 {
                break;
            }
            let mut data = std::ptr::null_mut();
            let mut frames = 0u32;
            let mut flags = 0u32;
            // SAFETY: writable outputs; the packet is released below.
            unsafe {
                capture_client.GetBuffer(&raw mut data, &raw mut frames, &raw mut flags, None, None)
            }
            .map_err(|error| failed("IAudioCaptureClient::GetBuffer", &capture.name(), &error))?;
            let bytes = frames as usize * block;
            #[allow(clippy::cast_sign_loss, reason = "flag bits")]
            let silent = flags & AUDCLNT_BUFFERFLAGS_SILENT.0 as u32 != 0;
            #[allow(clippy::cast_sign_loss, reason = "flag bits")]
            let discontinuity = flags & AUDCLNT_BUFFERFLAGS_DATA_DISCONTINUITY.0 as u32 != 0;
            if discontinuity && !captured.is_empty() {
                capture_glitches += 1;
            }
            if silent || data.is_null() {
                captured.resize(captured.len() + bytes, 0);
            } else {
                // SAFETY: the packet holds `bytes` readable bytes until released.
                captured.extend_from_slice(unsafe { std::slice::from_raw_parts(data, bytes) });
            }
            // SAFETY: the packet just read.
            unsafe { capture_client.ReleaseBuffer(frames) }.map_err(|error| {
                failed(
                    "IAudioCaptureClient::ReleaseBuffer",
                    &capture.name(),
                    &error,
                )
            })?;
        }
    }
    // SAFETY: an initialised client.
    let render_latency = unsafe { render_stream.client.GetStreamLatency() };
    // SAFETY: an initialised client.
    let capture_latency = unsafe { capture_stream.client.GetStreamLatency() };
    let latency = (render_latency, capture_latency);
    rendered.truncate(signal.len());
    Ok(LoopbackRun {
        mode,
        format,
        rendered,
        captured,
        capture_buffer_bytes: u64::from(capture_stream.buffer_frames) * block as u64,
        render_reads,
        capture_reads,
        render_start_qpc,
        capture_start_qpc,
        qpc_frequency: u64::try_from(frequency).unwrap_or(1),
        render_glitches,
        capture_glitches,
        reported_latency_hns: (latency.0.unwrap_or(0), latency.1.unwrap_or(0)),
    })
}
