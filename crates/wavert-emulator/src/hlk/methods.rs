//! The HLK's `WaveTest` and KS Position Test methods, one function each,
//! named after the method, run on one wave filter's host pin.
//!
//! What each method asserts comes from Microsoft's published test sources
//! (Windows-driver-samples `audio/tests/wavetest/{pintest,comptest}.cpp`,
//! `audio/tests/KSPosTst/pintest.cpp`, their `PinResourceHelpers`); the table
//! per method, with what the emulator cannot reproduce and why, is
//! `docs/hlk-methods.md`. The HLK drives the pin through the audio engine
//! (`IAudioEndpointControl`, `IAudioClock`); here the emulator's engine
//! makes the same KS calls on the miniport: `Start` is RUN, `Stop` PAUSE,
//! `Reset` STOP, `GetPosition` a position read the engine unwraps.
//!
//! Each method returns a [`MethodReport`]: one [`Finding`] per assertion,
//! or the whole method skipped with its reason (what the HLK itself skips,
//! or what needs a part of the driver that is not there yet), never
//! counted as passed.

use std::sync::Arc;

use portcls_sys::{IMiniportWaveRT, KSSTATE_RUN, PCFILTER_DESCRIPTOR};
use wavert_com::ComPtr;

use super::{
    advertised_formats, engine_wait, finding, latency_check, moving_reads, read,
    run_ks_position_test, state_control_sequence, Finding, KsPositionReport, LatencyReport,
    ENGINE_PERIOD_MS, LATENCY_WAIT_MS, SETTLE_MS,
};
use crate::engine::{negotiate_format, pins, EngineError, FormatRequest, Stream};
use crate::machine::Machine;
use crate::modes::{get_modes, mode_name, with_signal_processing_mode};

/// The HLK test methods the emulator ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HlkMethod {
    /// `WaveTest::TAEF_StreamStateControl`.
    StreamStateControl,
    /// `WaveTest::TAEF_LoopbackStreamStateControl`.
    LoopbackStreamStateControl,
    /// `WaveTest::TAEF_StreamMinBufferSize`.
    StreamMinBufferSize,
    /// `WaveTest::TAEF_StreamMaxBufferSize`.
    StreamMaxBufferSize,
    /// `WaveTest::TAEF_StreamDifferentFormat`.
    StreamDifferentFormat,
    /// `WaveTest::TAEF_LoopbackStreamDifferentFormat`.
    LoopbackStreamDifferentFormat,
    /// `WaveTest::TAEF_StreamMultipleModes`.
    StreamMultipleModes,
    /// `WaveTest::TAEF_VerifyPinWaveRTConformance`.
    VerifyPinWaveRTConformance,
    /// `KsPosTest::TAEF_DriftAndJitter`.
    DriftAndJitter,
    /// `KsPosTest::TAEF_Latency`.
    Latency,
}

impl HlkMethod {
    /// Every method, in the order the HLK lists them.
    pub const ALL: [Self; 10] = [
        Self::StreamStateControl,
        Self::LoopbackStreamStateControl,
        Self::StreamMinBufferSize,
        Self::StreamMaxBufferSize,
        Self::StreamDifferentFormat,
        Self::LoopbackStreamDifferentFormat,
        Self::StreamMultipleModes,
        Self::VerifyPinWaveRTConformance,
        Self::DriftAndJitter,
        Self::Latency,
    ];

    /// `Test.Method`, as the HLK names it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::StreamStateControl => "WaveTest.StreamStateControl",
            Self::LoopbackStreamStateControl => "WaveTest.LoopbackStreamStateControl",
            Self::StreamMinBufferSize => "WaveTest.StreamMinBufferSize",
            Self::StreamMaxBufferSize => "WaveTest.StreamMaxBufferSize",
            Self::StreamDifferentFormat => "WaveTest.StreamDifferentFormat",
            Self::LoopbackStreamDifferentFormat => "WaveTest.LoopbackStreamDifferentFormat",
            Self::StreamMultipleModes => "WaveTest.StreamMultipleModes",
            Self::VerifyPinWaveRTConformance => "WaveTest.VerifyPinWaveRTConformance",
            Self::DriftAndJitter => "KsPosTst.DriftAndJitter",
            Self::Latency => "KsPosTst.Latency",
        }
    }
}

/// One method's result on one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodReport {
    /// The method.
    pub method: HlkMethod,
    /// One finding per assertion made.
    pub findings: Vec<Finding>,
    /// Why the whole method did not run (the HLK's own skip, or a missing
    /// driver part); a skipped method is neither passed nor failed.
    pub skipped: Option<String>,
    /// Assertions of the HLK method the emulator cannot make, and why.
    pub not_reproduced: Vec<String>,
    /// Figures worth printing (rates, latencies, sizes).
    pub detail: Option<String>,
}

impl MethodReport {
    const fn new(method: HlkMethod) -> Self {
        Self {
            method,
            findings: Vec::new(),
            skipped: None,
            not_reproduced: Vec::new(),
            detail: None,
        }
    }

    fn skip(method: HlkMethod, reason: impl Into<String>) -> Self {
        Self {
            skipped: Some(reason.into()),
            ..Self::new(method)
        }
    }

    /// An engine call failed where the HLK's `VERIFY_SUCCEEDED` would.
    fn call_failed(mut self, step: &str, error: &EngineError) -> Self {
        self.findings.push(finding(step, Err(error.to_string())));
        self
    }

    /// Some assertion failed.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.outcome.is_err())
    }

    /// It ran and every assertion passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.skipped.is_none() && !self.findings.is_empty() && !self.failed()
    }

    /// The finding named `rule` (exactly, or as a prefix), if made.
    #[must_use]
    pub fn finding(&self, rule: &str) -> Option<&Finding> {
        self.findings
            .iter()
            .find(|f| f.rule == rule)
            .or_else(|| self.findings.iter().find(|f| f.rule.starts_with(rule)))
    }

    /// One line: `pass`, `FAIL: ...` or `skipped: ...`, with the figures
    /// and what could not be reproduced.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut text = self.skipped.as_ref().map_or_else(
            || {
                let failures: Vec<String> = self
                    .findings
                    .iter()
                    .filter_map(|f| f.outcome.as_ref().err().map(|e| format!("{}: {e}", f.rule)))
                    .collect();
                if failures.is_empty() {
                    format!("pass ({} assertions)", self.findings.len())
                } else {
                    format!(
                        "FAIL ({} of {} assertions): {}",
                        failures.len(),
                        self.findings.len(),
                        failures.join("; ")
                    )
                }
            },
            |reason| format!("skipped: {reason}"),
        );
        if let Some(detail) = &self.detail {
            text = format!("{text} [{detail}]");
        }
        if !self.not_reproduced.is_empty() {
            text = format!(
                "{text} (not reproduced: {})",
                self.not_reproduced.join("; ")
            );
        }
        text
    }
}

/// A wave filter's host (streaming) pin.
#[derive(Clone, Copy)]
pub struct HostPin<'a> {
    /// The wave miniport.
    pub wave: &'a ComPtr<IMiniportWaveRT>,
    /// Its filter descriptor.
    pub description: &'static PCFILTER_DESCRIPTOR,
    /// The streaming pin.
    pub pin: u32,
    /// Capture (data out of the pin) or render.
    pub capture: bool,
}

/// Where the loopback methods find their loopback pin.
#[derive(Clone, Copy)]
pub enum Loopback<'a> {
    /// The pin whose stream carries the host pin's render mix.
    Pin(HostPin<'a>),
    /// None here, and why.
    Absent(&'a str),
}

/// What the methods need to know of the endpoint besides its pin.
#[derive(Clone, Debug)]
pub struct HlkConfig {
    /// The endpoint's current (preferred) format.
    pub format: FormatRequest,
    /// The shortest engine period the device sustains, in ms, where it is
    /// known (the packet-size constraint the driver declares); `None`:
    /// the smallest buffer the driver grants.
    pub min_period_ms: Option<u32>,
    /// Whether to run the per-format sweeps (they take 0.6 s of stream time
    /// per format).
    pub format_sweeps: bool,
}

impl Default for HlkConfig {
    fn default() -> Self {
        Self {
            format: FormatRequest::default(),
            min_period_ms: None,
            format_sweeps: true,
        }
    }
}

/// The format bytes for `request` on `pin`, through `DataRangeIntersection`
/// as the engine negotiates.
fn format_bytes(pin: &HostPin<'_>, request: &FormatRequest) -> Result<Vec<u8>, EngineError> {
    negotiate_format(pin.wave, pin.description, pin.pin, request).map(|(_, bytes)| bytes)
}

/// The engine's stream set-up (`InitializeEndpoint`, `InitializeStream`):
/// pin creation, a buffer of `buffer_bytes` with two notifications (the
/// engine's event-driven buffer: two periods), the event.
fn open_stream(
    machine: &Arc<Machine>,
    pin: &HostPin<'_>,
    format: &[u8],
    buffer_bytes: u32,
) -> Result<Stream, EngineError> {
    let mut stream = Stream::open(machine, pin.wave, pin.pin, pin.capture, format)?;
    stream.allocate(buffer_bytes, Some(2))?;
    stream.register_event()?;
    Ok(stream)
}

/// Bytes of two engine periods of `period_ms` in `format` (0 for bytes
/// that do not parse, which `Stream::open` refuses before any buffer is
/// asked for).
fn two_periods(format: &[u8], period_ms: u64) -> u32 {
    let bytes_per_second = wavert_core::format::AudioFormat::parse(
        format
            .get(size_of::<portcls_sys::KSDATAFORMAT>()..)
            .unwrap_or(&[]),
    )
    .map_or(0, |f| f.bytes_per_second());
    u32::try_from(u64::from(bytes_per_second) * 2 * period_ms / 1000).unwrap_or(u32::MAX)
}

/// Opens, runs and watches one stream (`Test_StreamBufferSize`'s body):
/// the position must differ at each of the ten reads. Returns the granted
/// buffer size.
fn stream_moves(
    machine: &Arc<Machine>,
    pin: &HostPin<'_>,
    format: &[u8],
    buffer_bytes: u32,
) -> Result<u32, String> {
    let mut stream = open_stream(machine, pin, format, buffer_bytes).map_err(|e| e.to_string())?;
    let granted = stream.buffer_size();
    let moved = stream
        .set_state(KSSTATE_RUN)
        .and_then(|()| moving_reads(machine, &mut [&mut stream]))
        .map_err(|e| e.to_string());
    let closed = stream.close().map_err(|e| e.to_string());
    moved?.remove(0)?;
    closed?;
    Ok(granted)
}

fn format_name(request: &FormatRequest) -> String {
    format!(
        "{} Hz {} bit{} x{}",
        request.rate,
        request.bits,
        if request.float { " float" } else { "" },
        request.channels
    )
}

/// `WaveTest.StreamStateControl` on one host pin.
///
/// `StreamStateControl` (`pintest.cpp` `Test_StreamStateControl`): in the
/// current format at the default period, ten reads 50 ms apart after
/// 100 ms: all different in RUN, all equal in PAUSE, all 0 in STOP; then RUN
/// again.
#[must_use]
pub fn stream_state_control(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let report = MethodReport::new(HlkMethod::StreamStateControl);
    let run = || -> Result<Vec<Finding>, EngineError> {
        let format = format_bytes(host, &config.format)?;
        let mut stream = open_stream(
            machine,
            host,
            &format,
            two_periods(&format, ENGINE_PERIOD_MS),
        )?;
        let findings = state_control_sequence(machine, &mut stream)?;
        stream.close()?;
        Ok(findings)
    };
    match run() {
        Ok(findings) => MethodReport { findings, ..report },
        Err(e) => report.call_failed("stream set-up and states", &e),
    }
}

/// `LoopbackStreamStateControl` (`Test_LoopbackStreamStateControl`): the
/// host pin streams its current format; the loopback pin, in the same
/// format, goes through the `StreamStateControl` states.
#[must_use]
pub fn loopback_stream_state_control(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    loopback: Loopback<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let method = HlkMethod::LoopbackStreamStateControl;
    let loopback = match loopback {
        Loopback::Pin(pin) => pin,
        Loopback::Absent(reason) => return MethodReport::skip(method, reason),
    };
    let report = MethodReport::new(method);
    let run = || -> Result<Vec<Finding>, EngineError> {
        let host_format = format_bytes(host, &config.format)?;
        let buffer = two_periods(&host_format, ENGINE_PERIOD_MS);
        let mut host_stream = open_stream(machine, host, &host_format, buffer)?;
        host_stream.set_state(KSSTATE_RUN)?;
        let loop_format = format_bytes(&loopback, &config.format)?;
        let mut loop_stream = open_stream(machine, &loopback, &loop_format, buffer)?;
        let findings = state_control_sequence(machine, &mut loop_stream)?;
        loop_stream.close()?;
        host_stream.close()?;
        Ok(findings)
    };
    match run() {
        Ok(findings) => MethodReport { findings, ..report },
        Err(e) => report.call_failed("host and loopback streams", &e),
    }
}

/// `StreamMinBufferSize` (`Test_StreamMinBufferSize`): the stream at the
/// endpoint's minimum period moves at every read.
#[must_use]
pub fn stream_min_buffer_size(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let mut report = MethodReport::new(HlkMethod::StreamMinBufferSize);
    let format = match format_bytes(host, &config.format) {
        Ok(f) => f,
        Err(e) => return report.call_failed("format", &e),
    };
    // The HLK's minimum period is the engine's, from the driver's declared
    // packet-size constraint; without one, ask for the least (1 byte) and
    // take what the driver grants.
    let (request, what) = config.min_period_ms.map_or_else(
        || (1, "the smallest buffer the driver grants".to_owned()),
        |ms| {
            (
                two_periods(&format, u64::from(ms)),
                format!("a {ms} ms period, the endpoint's minimum here"),
            )
        },
    );
    let outcome = stream_moves(machine, host, &format, request);
    if let Ok(granted) = &outcome {
        report.detail = Some(format!("{what}: {granted} bytes"));
    }
    report.findings.push(finding(
        "position moves at the minimum period",
        outcome.map(|_| ()),
    ));
    report
}

/// `WaveTest.StreamMaxBufferSize` on one host pin.
///
/// `StreamMaxBufferSize` (`Test_StreamMaxBufferSize`): the stream at the
/// endpoint's maximum period moves at every read. The HLK's maximum is
/// capped at the engine's default period (`DiscoverPeriodicityCharacteristicsForFormat`)
/// for all but extended-periodicity clients; the emulator also streams the
/// largest buffer the driver grants (beyond the HLK).
#[must_use]
pub fn stream_max_buffer_size(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let mut report = MethodReport::new(HlkMethod::StreamMaxBufferSize);
    let format = match format_bytes(host, &config.format) {
        Ok(f) => f,
        Err(e) => return report.call_failed("format", &e),
    };
    let capped = stream_moves(
        machine,
        host,
        &format,
        two_periods(&format, ENGINE_PERIOD_MS),
    );
    let largest = stream_moves(machine, host, &format, u32::MAX / 2);
    report.detail = Some(format!(
        "default-period buffer {}, largest granted {}",
        capped
            .as_ref()
            .map_or_else(|_| "-".to_owned(), u32::to_string),
        largest
            .as_ref()
            .map_or_else(|_| "-".to_owned(), u32::to_string)
    ));
    report.findings.push(finding(
        "position moves at the maximum period (the HLK caps it at the 10 ms default)",
        capped.map(|_| ()),
    ));
    report.findings.push(finding(
        "position moves in the largest buffer the driver grants (beyond the HLK)",
        largest.map(|_| ()),
    ));
    report
}

/// `StreamDifferentFormat` (`Test_StreamDifferentFormat`): every format of
/// the pin's list streams at the default period and moves at every read.
///
/// The HLK's list is the formats the audio engine found the pin to support;
/// the emulator's is the pin's advertised ranges sampled at their corners
/// ([`advertised_formats`]).
#[must_use]
pub fn stream_different_format(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let method = HlkMethod::StreamDifferentFormat;
    if !config.format_sweeps {
        return MethodReport::skip(method, "format sweeps turned off for this run");
    }
    let mut report = MethodReport::new(method);
    let formats = advertised_formats(host.description, host.pin);
    if formats.is_empty() {
        report.findings.push(finding(
            "pin advertises formats",
            Err("no audio data range".to_owned()),
        ));
    }
    let mut refused = Vec::new();
    for request in &formats {
        let format = match format_bytes(host, request) {
            Ok(f) => Ok(f),
            Err(e) if refused_by_intersection(&e) => {
                refused.push(format_name(request));
                continue;
            }
            Err(e) => Err(e.to_string()),
        };
        let outcome =
            format.and_then(|f| stream_moves(machine, host, &f, two_periods(&f, ENGINE_PERIOD_MS)));
        report.findings.push(finding(
            format!("format {} streams", format_name(request)),
            outcome.map(|_| ()),
        ));
    }
    report.detail = Some(format_list_detail(formats.len(), &refused));
    report
}

/// `DataRangeIntersection` found no match: the audio engine leaves such a
/// format out of the list it hands the HLK (the pin does not support it),
/// so the method does not try it.
fn refused_by_intersection(error: &EngineError) -> bool {
    matches!(
        error,
        EngineError::Call {
            call: "DataRangeIntersection",
            status: portcls_sys::STATUS_NO_MATCH,
        }
    )
}

/// How many formats were tried, and which advertised ones the pin refused
/// (left out as the engine leaves them out; that the ranges advertise them
/// at all is issue 13 item 7's business, not this method's).
fn format_list_detail(advertised: usize, refused: &[String]) -> String {
    if refused.is_empty() {
        format!("{advertised} formats")
    } else {
        format!(
            "{} of {advertised} advertised formats; left out as refused by DataRangeIntersection: {}",
            advertised - refused.len(),
            refused.join(", ")
        )
    }
}

/// `LoopbackStreamDifferentFormat` (`Test_LoopbackStreamDifferentFormat`):
/// for every format of the host pin, the host streams it and the loopback
/// pin, in the same format, moves at every read.
#[must_use]
pub fn loopback_stream_different_format(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    loopback: Loopback<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let method = HlkMethod::LoopbackStreamDifferentFormat;
    let loopback = match loopback {
        Loopback::Pin(pin) => pin,
        Loopback::Absent(reason) => return MethodReport::skip(method, reason),
    };
    if !config.format_sweeps {
        return MethodReport::skip(method, "format sweeps turned off for this run");
    }
    let mut report = MethodReport::new(method);
    let formats = advertised_formats(host.description, host.pin);
    let mut refused = Vec::new();
    for request in &formats {
        let host_format = match format_bytes(host, request) {
            Ok(f) => f,
            Err(e) if refused_by_intersection(&e) => {
                refused.push(format_name(request));
                continue;
            }
            Err(e) => {
                report.findings.push(finding(
                    format!("loopback of {} streams", format_name(request)),
                    Err(format!("host: {e}")),
                ));
                continue;
            }
        };
        let outcome = (|| -> Result<(), String> {
            let buffer = two_periods(&host_format, ENGINE_PERIOD_MS);
            let mut host_stream = open_stream(machine, host, &host_format, buffer)
                .map_err(|e| format!("host: {e}"))?;
            host_stream
                .set_state(KSSTATE_RUN)
                .map_err(|e| format!("host: {e}"))?;
            let looped = format_bytes(&loopback, request)
                .map_err(|e| format!("loopback: {e}"))
                .and_then(|f| {
                    stream_moves(machine, &loopback, &f, buffer)
                        .map_err(|e| format!("loopback: {e}"))
                });
            host_stream.close().map_err(|e| format!("host: {e}"))?;
            looped.map(|_| ())
        })();
        report.findings.push(finding(
            format!("loopback of {} streams", format_name(request)),
            outcome,
        ));
    }
    report.detail = Some(format_list_detail(formats.len(), &refused));
    report
}

/// `WaveTest.StreamMultipleModes` on one host pin.
///
/// `StreamMultipleModes` (`Test_StreamMultipleModes`): skipped below two
/// modes (the pin's own, from `IMiniportAudioSignalProcessing::GetModes`),
/// then below two free pin instances; otherwise, for the resource of each
/// mode (the HLK makes one per mode of the pin) and each other mode, a
/// stream in the resource's mode is started, then one in the other mode,
/// and both must move at every read. Each stream is opened in its mode
/// (the mode attribute after the format, as the audio engine opens it).
#[must_use]
pub fn stream_multiple_modes(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let method = HlkMethod::StreamMultipleModes;
    // The HLK's m_cModes: the modes the engine read from the pin.
    let modes = match get_modes(host.wave, host.pin) {
        Ok(modes) => modes,
        Err(e) => return MethodReport::new(method).call_failed("GetModes", &e),
    };
    if modes.len() < 2 {
        return MethodReport::skip(
            method,
            format!("{} mode(s): the HLK skips below 2", modes.len()),
        );
    }
    // KSPROPERTY_PIN_CINSTANCES: PossibleCount - CurrentCount, nothing open.
    let possible = pins(host.description)
        .get(host.pin as usize)
        .map_or(0, |p| {
            p.MaxFilterInstanceCount.min(p.MaxGlobalInstanceCount)
        });
    let detail = Some(format!(
        "GetModes: {}",
        modes.iter().map(mode_name).collect::<Vec<_>>().join(", ")
    ));
    if possible < 2 {
        return MethodReport {
            detail,
            ..MethodReport::skip(
                method,
                format!("the pin allows {possible} instance(s): the HLK skips below 2"),
            )
        };
    }
    let mut report = MethodReport {
        detail,
        ..MethodReport::new(method)
    };
    report.not_reproduced.push(
        "each stream's format: the HLK takes the preferred format of the stream's mode (KSPROPERTY_PIN_PROPOSEDATAFORMAT2); both streams here use the endpoint's current format (the ks formats rules hold PROPOSEDATAFORMAT2 to one default format for every mode)".to_owned(),
    );
    let format = match format_bytes(host, &config.format) {
        Ok(f) => f,
        Err(e) => return report.call_failed("format", &e),
    };
    let buffer = two_periods(&format, ENGINE_PERIOD_MS);
    for first_mode in &modes {
        for second_mode in modes.iter().filter(|m| *m != first_mode) {
            let outcome = (|| -> Result<(), String> {
                let first_format = with_signal_processing_mode(&format, *first_mode);
                let second_format = with_signal_processing_mode(&format, *second_mode);
                let mut first = open_stream(machine, host, &first_format, buffer)
                    .map_err(|e| format!("first stream: {e}"))?;
                let result = first
                    .set_state(KSSTATE_RUN)
                    .and_then(|()| engine_wait(machine, &mut [&mut first], SETTLE_MS))
                    .map_err(|e| format!("first stream: {e}"))
                    .and_then(|()| {
                        let mut second = open_stream(machine, host, &second_format, buffer)
                            .map_err(|e| format!("second stream: {e}"))?;
                        let moved = second
                            .set_state(KSSTATE_RUN)
                            .and_then(|()| moving_reads(machine, &mut [&mut first, &mut second]))
                            .map_err(|e| e.to_string());
                        let closed = second.close().map_err(|e| e.to_string());
                        let moved = moved?;
                        moved[0].clone().map_err(|e| format!("first stream: {e}"))?;
                        moved[1]
                            .clone()
                            .map_err(|e| format!("second stream: {e}"))?;
                        closed.map(|_| ())
                    });
                let closed = first.close().map(|_| ()).map_err(|e| e.to_string());
                result.and(closed)
            })();
            report.findings.push(finding(
                format!(
                    "streams in {} and {} both move",
                    mode_name(first_mode),
                    mode_name(second_mode)
                ),
                outcome,
            ));
        }
    }
    report
}

/// `VerifyPinWaveRTConformance` (`comptest.cpp`): a PortCls driver's pin must
/// be RT-capable (a WaveRT pin) and, being RT-capable, event-driven.
///
/// The engine calls a pin RT-capable when it takes `KSPROPERTY_RTAUDIO_BUFFER`
/// and event-driven when it takes the buffer with notification and the
/// notification event; the emulator checks both, and that the event is
/// signalled twice per buffer cycle in RUN.
#[must_use]
pub fn verify_pin_wavert_conformance(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let mut report = MethodReport::new(HlkMethod::VerifyPinWaveRTConformance);
    report.not_reproduced.push(
        "IsPortCls (the .sys importing portcls.sys!PcNewPort) is not read per run: the shipped image does import it (xtask/kernel-exports/portcls.sys.def), and every build here goes through the emulated PcNewPort".to_owned(),
    );
    report.not_reproduced.push(
        "the INF's PKEY_AudioEndpoint_Supports_EventDriven_Mode: checked by tests/tests/inf_matches_subdevices.rs".to_owned(),
    );
    let format = match format_bytes(host, &config.format) {
        Ok(f) => f,
        Err(e) => return report.call_failed("format", &e),
    };
    let buffer = two_periods(&format, ENGINE_PERIOD_MS);
    let rt = (|| -> Result<(), String> {
        let mut stream = Stream::open(machine, host.wave, host.pin, host.capture, &format)
            .map_err(|e| e.to_string())?;
        let allocated = stream.allocate(buffer, None).map(|_| ());
        stream.close().map_err(|e| e.to_string())?;
        allocated.map_err(|e| format!("KSPROPERTY_RTAUDIO_BUFFER: {e}"))
    })();
    report.findings.push(finding(
        "RT-capable (IMiniportWaveRT stream takes KSPROPERTY_RTAUDIO_BUFFER)",
        rt,
    ));
    let event = (|| -> Result<String, String> {
        let mut stream = Stream::open(machine, host.wave, host.pin, host.capture, &format)
            .map_err(|e| e.to_string())?;
        let result = (|| {
            if !stream.supports_notification() {
                return Err("the stream has no IMiniportWaveRTStreamNotification".to_owned());
            }
            stream
                .allocate(buffer, Some(2))
                .map_err(|e| format!("KSPROPERTY_RTAUDIO_BUFFER_WITH_NOTIFICATION: {e}"))?;
            stream
                .register_event()
                .map_err(|e| format!("KSPROPERTY_RTAUDIO_REGISTER_NOTIFICATION_EVENT: {e}"))?;
            stream.set_state(KSSTATE_RUN).map_err(|e| e.to_string())?;
            // Five buffer cycles of two packets each.
            let cycles = 5;
            let cycle_ms = u64::from(stream.buffer_size()) * 1000
                / u64::from(stream.format().bytes_per_second().max(1));
            engine_wait(machine, &mut [&mut stream], cycles * cycle_ms.max(1))
                .map_err(|e| e.to_string())?;
            let signalled = stream.stats.notifications;
            let expected = 2 * cycles;
            if signalled + 2 < expected || signalled > expected + 2 {
                return Err(format!(
                    "{signalled} notification events in {cycles} buffer cycles (2 per cycle expected)"
                ));
            }
            Ok(format!("{signalled} events in {cycles} cycles"))
        })();
        stream.close().map_err(|e| e.to_string())?;
        result
    })();
    if let Ok(detail) = &event {
        report.detail = Some(detail.clone());
    }
    report.findings.push(finding(
        "event-driven capable (notification buffer, event registered and signalled)",
        event.map(|_| ()),
    ));
    report
}

/// `DriftAndJitter` (`KSPosTst/pintest.cpp` `Test_DriftAndJitter_Main`):
/// the collection and rules of [`run_ks_position_test`] on the current
/// format at the default period.
#[must_use]
pub fn drift_and_jitter(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    config: &HlkConfig,
) -> MethodReport {
    let mut report = MethodReport::new(HlkMethod::DriftAndJitter);
    let ks = format_bytes(host, &config.format)
        .and_then(|f| run_ks_position_test(machine, host.wave, host.pin, host.capture, &f));
    match ks {
        Ok(ks) => {
            report.findings = ks_findings(&ks);
            report.detail = Some(ks_detail(&ks));
            report
        }
        Err(e) => report.call_failed("stream set-up and reads", &e),
    }
}

/// The KS position report as one finding per rule, in the HLK's order.
#[must_use]
pub fn ks_findings(ks: &KsPositionReport) -> Vec<Finding> {
    [
        "first non-zero position",
        "enough samples",
        "sample rate",
        "mean error",
        "jitter max",
        "jitter std-dev",
    ]
    .into_iter()
    .map(|rule| finding(rule, named_failure(&ks.failures, rule)))
    .collect()
}

/// The failure of `failures` that starts with `rule`, without the name.
fn named_failure(failures: &[String], rule: &str) -> Result<(), String> {
    failures
        .iter()
        .find(|f| f.starts_with(rule))
        .map_or(Ok(()), |f| {
            Err(f
                .strip_prefix(rule)
                .map_or(f.as_str(), |rest| rest.trim_start_matches(':').trim_start())
                .to_owned())
        })
}

/// The figures of a KS position report.
#[must_use]
pub fn ks_detail(ks: &KsPositionReport) -> String {
    format!(
        "rate {:.2} Hz, {:.4} % off; error mean {:.4} ms, std-dev {:.4} ms, max {:.4} ms; first non-zero read {:.1} ms after RUN; {} reads, {} discarded",
        ks.measured_rate,
        ks.rate_error_percent,
        ks.mean_error_ms,
        ks.jitter_std_ms,
        ks.jitter_max_ms,
        ks.first_nonzero_ms.unwrap_or(f64::NAN),
        ks.used,
        ks.discarded
    )
}

/// `Latency` (`Test_Latency_Main`): one stream cycle to wake the driver,
/// then RUN and a read every 1 ms until the position is not 0; the rules of
/// [`latency_check`].
#[must_use]
pub fn latency(machine: &Arc<Machine>, host: &HostPin<'_>, config: &HlkConfig) -> MethodReport {
    let mut report = MethodReport::new(HlkMethod::Latency);
    let run = || -> Result<LatencyReport, EngineError> {
        let format = format_bytes(host, &config.format)?;
        let buffer = two_periods(&format, ENGINE_PERIOD_MS);
        // ActivateDriver: open, RUN for 100 ms, close.
        let mut warm = open_stream(machine, host, &format, buffer)?;
        warm.set_state(KSSTATE_RUN)?;
        engine_wait(machine, &mut [&mut warm], SETTLE_MS)?;
        warm.close()?;
        let mut stream = open_stream(machine, host, &format, buffer)?;
        let bytes_per_second = stream.format().bytes_per_second();
        let run_before = machine.qpc();
        stream.set_state(KSSTATE_RUN)?;
        let run_after = machine.qpc();
        let mut first = None;
        for _ in 0..LATENCY_WAIT_MS {
            engine_wait(machine, &mut [&mut stream], 1)?;
            let sample = read(&mut stream)?;
            if sample.linear_bytes != 0 {
                first = Some(sample);
                break;
            }
        }
        stream.close()?;
        Ok(latency_check(
            first.as_ref(),
            run_before,
            run_after,
            bytes_per_second,
        ))
    };
    match run() {
        Ok(latency) => {
            for rule in [
                "position leaves 0",
                "position not ahead of time",
                "start latency",
            ] {
                report
                    .findings
                    .push(finding(rule, named_failure(&latency.failures, rule)));
            }
            report.detail = latency
                .latency_ms
                .zip(latency.position_ms)
                .map(|(l, p)| format!("start latency {l:.3} ms, first position {p:.3} ms"));
            report
        }
        Err(e) => report.call_failed("stream set-up and reads", &e),
    }
}

/// Every method on one endpoint, in the HLK's order.
#[must_use]
pub fn run_all(
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    loopback: Loopback<'_>,
    config: &HlkConfig,
) -> Vec<MethodReport> {
    HlkMethod::ALL
        .into_iter()
        .map(|method| run_method(method, machine, host, loopback, config))
        .collect()
}

/// One method by name.
#[must_use]
pub fn run_method(
    method: HlkMethod,
    machine: &Arc<Machine>,
    host: &HostPin<'_>,
    loopback: Loopback<'_>,
    config: &HlkConfig,
) -> MethodReport {
    match method {
        HlkMethod::StreamStateControl => stream_state_control(machine, host, config),
        HlkMethod::LoopbackStreamStateControl => {
            loopback_stream_state_control(machine, host, loopback, config)
        }
        HlkMethod::StreamMinBufferSize => stream_min_buffer_size(machine, host, config),
        HlkMethod::StreamMaxBufferSize => stream_max_buffer_size(machine, host, config),
        HlkMethod::StreamDifferentFormat => stream_different_format(machine, host, config),
        HlkMethod::LoopbackStreamDifferentFormat => {
            loopback_stream_different_format(machine, host, loopback, config)
        }
        HlkMethod::StreamMultipleModes => stream_multiple_modes(machine, host, config),
        HlkMethod::VerifyPinWaveRTConformance => {
            verify_pin_wavert_conformance(machine, host, config)
        }
        HlkMethod::DriftAndJitter => drift_and_jitter(machine, host, config),
        HlkMethod::Latency => latency(machine, host, config),
    }
}

/// Why the cable's capture endpoint has no loopback method of its own.
pub const CABLE_LOOPBACK_ON_RENDER: &str = "the HLK adds LOOPBACK resources to render endpoints only; the cable's loopback (this capture pin carrying the render mix) is run on the render line";

/// Every method on both endpoints of the cable.
///
/// Every method on both endpoints of a cable-shaped adapter (`WaveRender`
/// and `WaveCapture`): the render host pin with the capture pin as its
/// loopback (the cable's capture is a post-mix loopback of render), then
/// the capture host pin. Returns (endpoint, reports) per endpoint.
///
/// # Errors
///
/// A wave filter or its streaming pin is missing.
pub fn run_on_cable(
    machine: &Arc<Machine>,
    adapter: &crate::cable::CableAdapter,
    config: &HlkConfig,
) -> Result<Vec<(&'static str, Vec<MethodReport>)>, String> {
    fn host(
        filter: &crate::cable::RegisteredWaveFilter,
        capture: bool,
    ) -> Result<HostPin<'_>, String> {
        crate::engine::streaming_pin(filter.description, capture)
            .map(|pin| HostPin {
                wave: &filter.miniport,
                description: filter.description,
                pin,
                capture,
            })
            .ok_or_else(|| format!("{}: no streaming pin", filter.name))
    }
    let render = adapter
        .wave_filter("WaveRender")
        .ok_or("no wave filter registered as WaveRender")?;
    let capture = adapter
        .wave_filter("WaveCapture")
        .ok_or("no wave filter registered as WaveCapture")?;

    let render_pin = host(&render, false)?;
    let capture_pin = host(&capture, true)?;
    Ok(vec![
        (
            "render",
            run_all(machine, &render_pin, Loopback::Pin(capture_pin), config),
        ),
        (
            "capture",
            run_all(
                machine,
                &capture_pin,
                Loopback::Absent(CABLE_LOOPBACK_ON_RENDER),
                config,
            ),
        ),
    ])
}
