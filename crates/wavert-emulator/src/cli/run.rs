//! The session the command line asked for, run to the end: what it saw,
//! nothing printed.

use std::path::PathBuf;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use portcls_sys::{DEVPKEY_DeviceInterface_FriendlyName, DEVPROP_TYPE_STRING};
use wavert_analysis::tone::{self, ToneFit};
use wavert_core::convert::channels::ChannelMap;
use wavert_core::convert::sample::Encoding;
use wavert_core::format::{AudioFormat, SampleType};
use wavert_emulator::cable::{
    start_cable_adapter, CableAdapter, CableOptions, RegisteredWaveFilter,
};
use wavert_emulator::engine::{streaming_pin, EngineError, FormatRequest};
use wavert_emulator::faulty::Ac97Fault;
use wavert_emulator::hlk::methods::{run_on_cable, HlkConfig, MethodReport};
use wavert_emulator::hlk::{ks_position_check, Finding, KsPositionReport};
use wavert_emulator::image::kernel::KernelCounters;
use wavert_emulator::image::{start_image_adapter, ImageDevice, ImageDriver, RegistryData};
use wavert_emulator::ks::KsFilter;
use wavert_emulator::ks_formats::check_wave_filter_formats;
use wavert_emulator::ks_topology::{
    check_topology_filter, endpoint_channels, has_peak_meter, read_peak_meter, set_volume,
};
use wavert_emulator::machine::{ClockMode, Machine, Registrations};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::personality::{OrderRecord, PortPersonality};
use wavert_emulator::power::{PowerCycle, PowerCycler, PowerPlan};
use wavert_emulator::qemu_card::{
    run_card_hlk, run_card_session, CardHlkReport, CardOptions, CardReport, QemuCard,
};
use wavert_emulator::session::{run_loopbacks_with, LoopbackConfig, LoopbackResult, WaveFilter};
use wavert_emulator::signal;
use wavert_miniport::adapter::{Subdevice, SubdeviceKind, CABLE_SUBDEVICES, SUBDEVICES};
use wavert_miniport::{CableStats, Direction, DmaMode};

use super::args::{Args, Device, MemoryLayout};

/// What a session saw, by device.
pub enum Outcome {
    /// `--device virtual`.
    Virtual(Box<VirtualOutcome>),
    /// `--device ac97` and `--device hda`.
    Card(Box<CardOutcome>),
}

/// What a QEMU card's session and its HLK runs saw.
pub struct CardOutcome {
    /// The playback session.
    pub session: CardReport,
    /// The HLK methods, per endpoint (each on its own QEMU).
    pub hlk: Vec<(&'static str, CardHlkReport)>,
}

/// What the virtual cable's session saw, up to the removal of the device.
pub struct VirtualOutcome {
    /// Which build of the driver ran.
    pub build: String,
    /// The cable's DMA engine.
    pub dma: DmaMode,
    /// Whether the clock was real time.
    pub real_time: bool,
    /// The port personality the emulated PortCls followed.
    pub personality: PortPersonality,
    /// The orders the personality used, and what the miniport made of them.
    pub orders: Vec<OrderRecord>,
    /// Where the machine's RAM was (`--memory`).
    pub memory: String,
    /// Notification events per buffer asked for.
    pub notifications: u32,
    /// What the driver registered with PortCls.
    pub registrations: Registrations,
    /// The loopback session.
    pub session: LoopbackResult,
    /// Power cycles asked for (`--power-cycle`).
    pub power_cycles_asked: u32,
    /// The power cycles made during the session.
    pub power_cycles: Vec<PowerCycle>,
    /// The input file and its format as stored (`None`: the test signal).
    pub input: Option<String>,
    /// Frames rendered.
    pub rendered_frames: usize,
    /// Where the capture repeats the render data, in frames, if anywhere.
    pub lag: Option<usize>,
    /// Rendered frames that did not come back at `lag`, and the first.
    pub mismatches: (usize, Option<usize>),
    /// The render volume set before playback (`--volume`), if any.
    pub volume: Option<VolumeSet>,
    /// Cable 1's peak meters, read during the session as a level bar polls
    /// them (`None`: the topology filters have no meter).
    pub meters: Option<MeterCheck>,
    /// Every cable streamed at the same time as cable 1's session (cable 1
    /// first, the same checks as `lag` and `mismatches`).
    pub cables: Vec<CableCheck>,
    /// KS position rules on the render stream.
    pub ks_render: KsPositionReport,
    /// KS position rules on the capture stream.
    pub ks_capture: KsPositionReport,
    /// The HLK test methods, per endpoint.
    pub hlk: Vec<(&'static str, Vec<MethodReport>)>,
    /// The KS topology rules on each topology filter, by subdevice name.
    pub ks_topology: Vec<(String, Vec<Finding>)>,
    /// The format rules on each wave filter, by subdevice name.
    pub ks_formats: Vec<(String, Vec<Finding>)>,
    /// The image's kernel counters, or the host build's cable counters.
    pub counters: DriverCounters,
    /// Pages still allocated after the removal.
    pub leaked_pages: usize,
    /// MDLs still alive after the removal.
    pub live_mdls: usize,
    /// Port objects still alive after the removal.
    pub live_objects: usize,
    /// Timers still running after the removal.
    pub running_timers: usize,
    /// The driver's log lines up to the end of the session.
    pub driver_log: Vec<String>,
    /// Lines the driver logged during the HLK methods (counted, not shown).
    pub hlk_log_lines: usize,
    /// Protocol violations the machine saw.
    pub violations: Vec<String>,
    /// The captured WAV written.
    pub wav_path: PathBuf,
    /// The position plot written.
    pub plot_path: PathBuf,
}

/// The render volume `--volume` set on every cable's render volume node.
#[derive(Clone, Copy, Debug)]
pub struct VolumeSet {
    /// What was asked, in dB.
    pub asked_db: f64,
    /// The level the node holds (its 0.5 dB step), in 1/65536 dB.
    pub level: i32,
    /// That level's linear gain, which every captured sample must show.
    pub gain: f64,
}

/// Sets the render volume node of cable `number` (1-based) to `db`.
fn set_render_volume(adapter: &CableAdapter, number: usize, db: f64) -> Result<VolumeSet, String> {
    let name = CABLE_SUBDEVICES
        .get(number - 1)
        .and_then(|table| {
            table
                .iter()
                .find(|s| s.kind == SubdeviceKind::Topology(Direction::Render))
        })
        .map(|s| s.name)
        .ok_or("no render topology subdevice")?;
    let filter = adapter
        .ks_filter(name)
        .ok_or_else(|| format!("no topology filter registered as {name}"))?;
    #[allow(
        clippy::cast_possible_truncation,
        reason = "-96 dB in 1/65536 dB fits an i32"
    )]
    let asked = (db * 65_536.0).round() as i32;
    let level = set_volume(&filter, -1, asked).map_err(|e| format!("{name} volume: {e}"))?;
    Ok(VolumeSet {
        asked_db: db,
        level,
        gain: 10f64.powf(f64::from(level) / 65_536.0 / 20.0),
    })
}

/// Cable 1's two peak meters against the audio: each channel's largest
/// reading over the session beside the peak the side carried, on
/// `KSPROPERTY_AUDIO_PEAKMETER2`'s scale (full scale `i32::MAX`).
pub struct MeterCheck {
    /// Reads of every channel of both meters.
    pub polls: usize,
    /// The render and the capture stream's channels (the meters have the
    /// endpoint's, which may be more: those past the format must read 0).
    pub format_channels: [usize; 2],
    /// Render meter: per channel, the largest reading.
    pub render: Vec<i32>,
    /// Render: the played frames' peak times the render volume.
    pub render_expected: Vec<f64>,
    /// Capture meter: per channel, the largest reading.
    pub capture: Vec<i32>,
    /// Capture: the captured frames' peak.
    pub capture_expected: Vec<u32>,
}

impl MeterCheck {
    /// Most a render reading may differ from the played peak times the
    /// volume: the gain table's rounding, far below a 16-bit step (2^16).
    pub const RENDER_TOLERANCE: f64 = 64.0;

    /// Both meters read what the sides carried: the capture meter exactly,
    /// the render meter within [`Self::RENDER_TOLERANCE`].
    #[must_use]
    pub fn passed(&self) -> bool {
        self.polls > 0
            && self.render.len() == self.render_expected.len()
            && self
                .render
                .iter()
                .zip(&self.render_expected)
                .all(|(&read, &want)| (f64::from(read) - want).abs() <= Self::RENDER_TOLERANCE)
            && self.capture.len() == self.capture_expected.len()
            && self
                .capture
                .iter()
                .zip(&self.capture_expected)
                .all(|(&read, &want)| read.unsigned_abs() == want)
    }

    /// The session's peaks against the readings.
    fn of(
        session: &LoopbackResult,
        rendered: &[u8],
        gain: Option<f64>,
        readings: &PeakReadings,
    ) -> Self {
        // A meter has the endpoint's channels; those past the stream's
        // format carry nothing and must read 0.
        let peaks = |format: &AudioFormat, data: &[u8], meter_channels: usize| {
            let mut peaks = vec![0u32; meter_channels];
            Encoding::of(format).raise_peaks(data, usize::from(format.channels()), &mut peaks);
            peaks
        };
        let gain = gain.unwrap_or(1.0);
        Self {
            polls: readings.polls,
            format_channels: [
                usize::from(session.format.channels()),
                usize::from(session.capture_format.channels()),
            ],
            render: readings.most[0].clone(),
            render_expected: peaks(&session.format, rendered, readings.most[0].len())
                .into_iter()
                .map(|peak| f64::from(peak) * gain)
                .collect(),
            capture: readings.most[1].clone(),
            capture_expected: peaks(
                &session.capture_format,
                &session.captured,
                readings.most[1].len(),
            ),
        }
    }
}

/// The largest readings of both meters of a cable so far.
struct PeakReadings {
    render: KsFilter,
    capture: KsFilter,
    /// Render, capture: per channel.
    most: [Vec<i32>; 2],
    polls: usize,
}

impl PeakReadings {
    /// Cable 1's meters, `channels` each (`None`: no peak-meter node).
    fn of_cable(adapter: &CableAdapter, channels: [usize; 2]) -> Result<Option<Self>, String> {
        let filter = |kind| {
            let name = CABLE_SUBDEVICES
                .first()
                .and_then(|table| table.iter().find(|s| s.kind == kind))
                .map(|s| s.name)
                .ok_or("no topology subdevice")?;
            adapter
                .ks_filter(name)
                .ok_or_else(|| format!("no topology filter registered as {name}"))
        };
        let render = filter(SubdeviceKind::Topology(Direction::Render))?;
        let capture = filter(SubdeviceKind::Topology(Direction::Capture))?;
        if !has_peak_meter(&render) || !has_peak_meter(&capture) {
            return Ok(None);
        }
        Ok(Some(Self {
            render,
            capture,
            most: channels.map(|count| vec![0; count]),
            polls: 0,
        }))
    }

    /// Reads every channel of both meters (which also arms them: a meter
    /// measures while it is read).
    fn read(&mut self) -> Result<(), String> {
        for (filter, most) in [&self.render, &self.capture]
            .into_iter()
            .zip(&mut self.most)
        {
            for (channel, held) in most.iter_mut().enumerate() {
                *held = (*held).max(read_peak_meter(filter, channel)?);
            }
        }
        self.polls += 1;
        Ok(())
    }
}

/// What one cable's loopback, streamed beside the others, delivered.
pub struct CableCheck {
    /// 1-based.
    pub number: usize,
    /// Its four subdevice names, in registration order.
    pub subdevices: [&'static str; 4],
    /// The friendly name the driver gave its topology interfaces
    /// (`DEVPKEY_DeviceInterface_FriendlyName`, the endpoint name Windows
    /// shows), if it set one.
    pub name: Option<String>,
    /// Frames rendered into it.
    pub frames: usize,
    /// Where its capture repeats its render, in frames.
    pub lag: Option<usize>,
    /// Whether that lag is the reported latency.
    pub lag_as_reported: bool,
    /// Rendered frames that did not come back at `lag`, and the first.
    pub mismatches: (usize, Option<usize>),
    /// The tone check, when the capture pin ran another format
    /// (`--capture-format`): bytes cannot be compared then.
    pub conversion: Option<ConversionCheck>,
}

/// The rendered tone heard through the cable's format conversion.
pub struct ConversionCheck {
    /// The render pin's format.
    pub from: AudioFormat,
    /// The capture pin's format.
    pub to: AudioFormat,
    /// The 997 Hz sine fitted to the capture's first channel (`None`: too
    /// little tone to fit).
    pub fit: Option<ToneFit>,
    /// The level the tone should have (the signal's -6.02 dBFS through the
    /// converter's channel map, scaled by a render volume).
    pub expected_dbfs: f64,
    /// The least THD+N the formats allow: 6.02 dB per bit of the narrower
    /// side less 10 (the render side's lowered by as much as the tone was
    /// played quieter to leave a fold-down room), at most 90 dB, for the
    /// tone at its -6.02 dBFS (less by as much as a volume or a channel map
    /// lowers it).
    pub min_snr_db: f64,
}

/// The test tone's level: amplitude 1/2.
const FULL_TONE_DBFS: f64 = -6.020_599_913_279_624;

/// Per capture channel, the sum of the gains the converter's channel map
/// gives the render channels it takes (1 for a channel passed through,
/// -3 dB for each one folded in).
fn tap_sums(from: &AudioFormat, to: &AudioFormat) -> Vec<f64> {
    ChannelMap::new(
        usize::from(from.channels()),
        from.channel_mask(),
        usize::from(to.channels()),
        to.channel_mask(),
    )
    .map_or_else(
        |_| Vec::new(),
        |map| {
            (0..map.outputs())
                .map(|output| {
                    map.taps(output)
                        .iter()
                        .map(|t| f64::from(t.gain) / 32_768.0)
                        .sum()
                })
                .collect()
        },
    )
}

/// The amplitude of the tone `--capture-format` plays on every render
/// channel: 1/2, or less when the fold-down sums several channels of it
/// into one (7.1.4 into stereo sums six), so that no capture channel
/// passes 1/2 and clips. A fold-down of correlated channels clips by
/// design (the converter does not normalise); the check is of the
/// conversion, not of that.
fn tone_amplitude(from: &AudioFormat, to: &AudioFormat) -> f64 {
    let most = tap_sums(from, to).into_iter().fold(1.0, f64::max);
    0.5 / most
}

impl ConversionCheck {
    /// Most level error, dB.
    pub const MAX_LEVEL_ERROR_DB: f64 = 0.1;
    /// Most pitch error, parts per million (a cent is 578).
    pub const MAX_PITCH_ERROR_PPM: f64 = 10.0;

    /// The tone came through at its level, clean, at its pitch.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.fit.is_some_and(|f| {
            (f.level_dbfs - self.expected_dbfs).abs() <= Self::MAX_LEVEL_ERROR_DB
                && f.snr_db >= self.min_snr_db
                && f.pitch_error_ppm(signal::TONE_HZ).abs() <= Self::MAX_PITCH_ERROR_PPM
        })
    }

    /// Fits the tone `rendered_frames` of render frames made, in `session`'s
    /// capture, and holds it to `gain` (a render volume).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "frame counts and rates far below 2^52"
    )]
    fn of(session: &LoopbackResult, rendered_frames: usize, gain: Option<f64>) -> Self {
        let (from, to) = (session.format, session.capture_format);
        let samples = tone::channel_samples(&to, &session.captured, 0);
        let rate = f64::from(to.sample_rate());
        // From the first sound, past 50 ms of filters settling, to 50 ms
        // before the tone's end.
        let settle = (rate * 0.05) as usize;
        let frames = (rendered_frames as f64 * rate / f64::from(from.sample_rate())) as usize;
        let fit = samples
            .iter()
            .position(|y| y.abs() > 1e-3)
            .and_then(|start| {
                let end = (start + frames).saturating_sub(settle).min(samples.len());
                tone::fit_tone(
                    samples.get(..end)?,
                    to.sample_rate(),
                    signal::TONE_HZ,
                    start + settle,
                )
            });
        let bits = |f: &AudioFormat| {
            if f.sample_type() == SampleType::Float {
                24.0
            } else {
                f64::from(f.valid_bits())
            }
        };
        // 6.02 dB per bit less 10: what a format's own rounding leaves.
        let floor = |f: &AudioFormat| 6.02f64.mul_add(bits(f), -10.0);
        // Every render channel carries the same tone: the capture's first
        // channel hears it through the sum of its taps (the converter's
        // channel map: 1 for a channel passed through, -3 dB each for a
        // stereo pair folded into mono).
        let taps = tap_sums(&from, &to).first().copied().unwrap_or(0.0);
        let expected_dbfs =
            20.0 * (tone_amplitude(&from, &to) * taps * gain.unwrap_or(1.0)).log10();
        Self {
            from,
            to,
            fit,
            expected_dbfs,
            // The formats' noise floor stays where it is: a quieter tone
            // stands less far above it.
            // A tone played quieter (to leave a fold-down headroom) stands
            // that much less far above the render format's floor.
            min_snr_db: 20.0f64
                .mul_add((tone_amplitude(&from, &to) / 0.5).log10(), floor(&from))
                .min(floor(&to))
                .min(90.0)
                + (expected_dbfs - FULL_TONE_DBFS).min(0.0),
        }
    }
}

impl CableCheck {
    /// Every frame back, unchanged, at the reported latency.
    #[must_use]
    pub const fn bit_exact(&self) -> bool {
        self.lag_as_reported && self.mismatches.0 == 0
    }

    /// Bit-exact, or with another capture format the tone check passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.conversion
            .as_ref()
            .map_or_else(|| self.bit_exact(), ConversionCheck::passed)
    }

    /// The checks of one cable's session; with `gain` (a render volume
    /// set) the capture must be the render scaled by it, every sample
    /// within the rounding of the format.
    fn of(
        number: usize,
        subdevices: &[Subdevice; 4],
        registrations: &Registrations,
        rendered: &[u8],
        session: &LoopbackResult,
        gain: Option<f64>,
    ) -> Self {
        let format = &session.format;
        let block = format.block_align() as usize;
        if session.capture_format != session.format {
            return Self {
                number,
                subdevices: subdevices.each_ref().map(|s| s.name),
                name: friendly_name(registrations, subdevices),
                frames: rendered.len() / block,
                lag: None,
                lag_as_reported: false,
                mismatches: (0, None),
                conversion: Some(ConversionCheck::of(session, rendered.len() / block, gain)),
            };
        }
        let max_lag = usize::try_from(session.capture_buffer).unwrap_or(0) / block * 4 + 4800;
        let captured = &session.captured;
        let lag = gain.map_or_else(
            || signal::find_alignment(rendered, captured, block, max_lag),
            |gain| signal::find_scaled_alignment(format, rendered, captured, gain, max_lag),
        );
        let mismatches = lag.map_or((rendered.len() / block, Some(0)), |l| {
            gain.map_or_else(
                || signal::mismatched_frames(rendered, captured, block, l),
                |gain| signal::mismatched_scaled_frames(format, rendered, captured, l, gain),
            )
        });
        Self {
            number,
            subdevices: subdevices.each_ref().map(|s| s.name),
            name: friendly_name(registrations, subdevices),
            frames: rendered.len() / block,
            lag,
            lag_as_reported: lag.is_some_and(|l| session.lag_is_reported_latency(l as u64)),
            mismatches,
            conversion: None,
        }
    }
}

/// The `DEVPROP_TYPE_STRING` friendly name set on `subdevices`' render
/// topology interface.
fn friendly_name(registrations: &Registrations, subdevices: &[Subdevice; 4]) -> Option<String> {
    let topology = subdevices
        .iter()
        .find(|s| s.kind == SubdeviceKind::Topology(Direction::Render))?;
    let property = registrations.interface_properties.iter().find(|p| {
        p.name == topology.name
            && p.key == DEVPKEY_DeviceInterface_FriendlyName
            && p.kind == DEVPROP_TYPE_STRING
    })?;
    let units: Vec<u16> = property
        .value
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|&unit| unit != 0)
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// Cable `index`'s own signal: cable 1's rotated by `index` times 4801
/// frames (not a multiple of any period), so a capture that heard another
/// cable's render would not line up at the reported latency.
fn cable_signal(first: &[u8], block: usize, index: usize) -> Vec<u8> {
    let frames = first.len() / block.max(1);
    if frames == 0 {
        return first.to_vec();
    }
    let mut out = first.to_vec();
    out.rotate_left((index * 4801 % frames) * block);
    out
}

/// Counters of the driver that ran.
pub enum DriverCounters {
    /// The shipped image: its kernel calls and Driver Verifier violations.
    Image {
        /// Kernel calls counted by the stand-ins.
        kernel: KernelCounters,
        /// Violations of Driver Verifier's rules.
        verifier_violations: usize,
    },
    /// The host build: the cable's own counters.
    Host(CableStats),
}

/// Runs the session `args` asks for.
///
/// # Errors
///
/// Anything that keeps the session from running to its end: bad options,
/// unreadable or unwritable files, a driver that does not start.
pub fn run(args: &Args) -> Result<Outcome, String> {
    match args.device {
        Device::Ac97 => run_card(QemuCard::Ac97, args).map(|o| Outcome::Card(Box::new(o))),
        Device::Hda => run_card(QemuCard::Hda, args).map(|o| Outcome::Card(Box::new(o))),
        Device::Virtual => run_virtual(args).map(|outcome| Outcome::Virtual(Box::new(outcome))),
    }
}

/// The format to play: the input file's, or the one asked for, or the default.
///
/// # Errors
///
/// An unreadable file, or a file whose samples no pin could take, named
/// with the rule they break.
fn format_request(args: &Args) -> Result<FormatRequest, String> {
    match (&args.input, args.format) {
        (Some(path), _) => {
            let request = signal::wav_format_request(path)?;
            request
                .format()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(request)
        }
        (None, Some(f)) => Ok(f),
        (None, None) => Ok(FormatRequest::default()),
    }
}

/// The report's line on the input file: what its header says the samples
/// are, which is what the session plays (the request names the file's own
/// container, so the negotiation gives that format or fails).
fn input_line(args: &Args, request: &FormatRequest) -> Option<String> {
    args.input
        .as_ref()
        .map(|path| format!("{}: {request} as stored in the file", path.display()))
}

/// `--device ac97` / `hda`: the card's miniport on QEMU's card, QEMU's output
/// beside the report, then the HLK methods on both endpoints.
fn run_card(card: QemuCard, args: &Args) -> Result<CardOutcome, String> {
    if args.memory != MemoryLayout::Split {
        return Err(
            "--memory low applies to --device virtual: QEMU's guest RAM is always split".to_owned(),
        );
    }
    if args.power_cycle != 0 {
        return Err(
            "--power-cycle applies to --device virtual (the QEMU cards' power cycles run in \
             wavert-qemu's tests)"
                .to_owned(),
        );
    }
    let session = run_card_session(&CardOptions {
        card,
        input: args.input.clone(),
        format: format_request(args)?,
        seconds: args.seconds,
        period_ms: args.period,
        notifications: args.notifications,
        output_dir: args.output.clone(),
        image: args.image.clone(),
        personality: PortPersonality::from(args.port),
        fault: Ac97Fault::None,
    })?;
    let hlk = [("render", false), ("capture", true)]
        .into_iter()
        .map(|(endpoint, capture)| {
            run_card_hlk(
                card,
                capture,
                args.image.as_deref(),
                PortPersonality::from(args.port),
            )
            .map(|report| (endpoint, report))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(CardOutcome { session, hlk })
}

/// The KS topology rules on `direction`'s topology filter, whose endpoint
/// is `wave`'s.
fn ks_topology_of(
    adapter: &CableAdapter,
    direction: Direction,
    wave: &RegisteredWaveFilter,
) -> Result<(String, Vec<Finding>), String> {
    let name = SUBDEVICES
        .iter()
        .find(|s| s.kind == SubdeviceKind::Topology(direction))
        .map(|s| s.name)
        .ok_or("no topology subdevice")?;
    let filter = adapter
        .ks_filter(name)
        .ok_or_else(|| format!("no topology filter registered as {name}"))?;
    let channels = endpoint_channels(wave.description, 0);
    Ok((name.to_owned(), check_topology_filter(&filter, channels)))
}

/// The format rules on the wave filter `wave` (against the cable's
/// default format, the INF's `PKEY_AudioEngine_OEMFormat`).
fn ks_formats_of(
    machine: &Arc<Machine>,
    adapter: &CableAdapter,
    wave: &RegisteredWaveFilter,
    capture: bool,
) -> Result<(String, Vec<Finding>), String> {
    let filter = adapter
        .ks_filter(&wave.name)
        .ok_or_else(|| format!("no wave filter registered as {}", wave.name))?;
    let pin = streaming_pin(wave.description, capture).ok_or("no streaming pin")?;
    let findings = check_wave_filter_formats(
        machine,
        &wave.miniport,
        &filter,
        pin,
        capture,
        Some(&wavert_miniport::cable::filters::DEFAULT_FORMAT),
    );
    Ok((wave.name.clone(), findings))
}

/// A progress bar for sessions long enough to want one (hidden otherwise).
fn progress_bar(args: &Args) -> Result<ProgressBar, String> {
    let bar = ProgressBar::new(1000);
    // indicatif's template syntax, not a Rust format string.
    #[allow(
        clippy::literal_string_with_formatting_args,
        reason = "an indicatif template"
    )]
    let template = ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}");
    bar.set_style(template.map_err(|e| e.to_string())?);
    let show_bar = args.real_time && args.seconds > 1.0 || args.seconds > 20.0;
    if !show_bar {
        bar.finish_and_clear();
    }
    Ok(bar)
}

/// `--device virtual`: the loopback session, the HLK rules on both
/// endpoints, the WAV and the plot written, the device removed.
#[allow(
    clippy::too_many_lines,
    reason = "the session in Windows' order: start, stream, check, remove"
)]
fn run_virtual(args: &Args) -> Result<VirtualOutcome, String> {
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return Err(format!("--seconds {} is outside 0 .. 600", args.seconds));
    }
    if args.capture_format.is_some() && args.input.is_some() {
        return Err(
            "--capture-format checks the generated 997 Hz tone: leave out --input".to_owned(),
        );
    }
    if args.power_cycle != 0 && args.cables != 1 {
        // The power cycler tells one pair of engine streams of the device's
        // power changes; the other cables' streams would not know.
        return Err("--power-cycle takes one cable: leave --cables at 1".to_owned());
    }
    let request = format_request(args)?;
    let input = input_line(args, &request);
    std::fs::create_dir_all(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let memory = PhysicalMemory::anonymous(MemoryConfig {
        layout: args.memory.into(),
        ..MemoryConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let mode = if args.real_time {
        ClockMode::RealTime
    } else {
        ClockMode::Virtual
    };
    let machine = Machine::new(memory, mode);
    let personality = PortPersonality::from(args.port);
    machine.set_personality(personality);
    let dma = DmaMode::from(args.dma);
    // Both builds read the cable count where the INF puts it: the device's
    // hardware key (the image through its ZwQueryValueKey stand-in).
    let registry = vec![(
        "CableCount".to_owned(),
        RegistryData::Dword(u32::from(args.cables)),
    )];
    let adapter = match &args.image {
        Some(path) => {
            if dma != DmaMode::Looping {
                return Err(
                    "--dma refill is a test mode of the host build; the image's cable runs looping DMA"
                        .to_owned(),
                );
            }
            let device = ImageDevice {
                registry,
                ..ImageDevice::default()
            };
            start_image_adapter(&machine, path, device)
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => start_cable_adapter(
            &machine,
            CableOptions {
                dma,
                registry,
                ..CableOptions::default()
            },
        )
        .map_err(|e| format!("StartDevice failed: {:#010x}", e.code()))?,
    };
    let build = adapter.image().map_or_else(
        || "host build of wavert-miniport (cargo run -p wavert-emulator)".to_owned(),
        ImageDriver::describe,
    );
    let kernel = adapter.image().map(|driver| Arc::clone(driver.kernel()));
    let registrations = machine.registrations();
    let render_filter = adapter
        .wave_filter("WaveRender")
        .ok_or("no wave filter registered as WaveRender")?;
    let capture_filter = adapter
        .wave_filter("WaveCapture")
        .ok_or("no wave filter registered as WaveCapture")?;
    // Cables 2 and up, found by their own registered names.
    let mut more_cables = Vec::new();
    for table in CABLE_SUBDEVICES
        .iter()
        .take(usize::from(args.cables))
        .skip(1)
    {
        let find = |kind: SubdeviceKind| {
            let name = table
                .iter()
                .find(|s| s.kind == kind)
                .map_or("?", |s| s.name);
            adapter
                .wave_filter(name)
                .ok_or_else(|| format!("no wave filter registered as {name}"))
        };
        more_cables.push((
            find(SubdeviceKind::Wave(Direction::Render))?,
            find(SubdeviceKind::Wave(Direction::Capture))?,
        ));
    }
    // `--volume`: every cable's render volume node, before playback.
    let volume = args
        .volume
        .map(|db| {
            (1..=usize::from(args.cables))
                .map(|number| set_render_volume(&adapter, number, db))
                .collect::<Result<Vec<_>, String>>()
        })
        .transpose()?
        .and_then(|set| set.first().copied());
    let pairs: Vec<(WaveFilter<'_>, WaveFilter<'_>)> =
        std::iter::once((render_filter.as_filter(), capture_filter.as_filter()))
            .chain(
                more_cables
                    .iter()
                    .map(|(r, c)| (r.as_filter(), c.as_filter())),
            )
            .collect();
    let config = LoopbackConfig {
        format: request,
        capture_format: args.capture_format,
        period_ms: args.period,
        notification_count: args.notifications,
        ..LoopbackConfig::default()
    };

    // Cable 1's meters, read once before playback (which arms them) and
    // then after every poll.
    let channels = [
        endpoint_channels(render_filter.description, 0),
        endpoint_channels(capture_filter.description, 0),
    ];
    let mut meters = PeakReadings::of_cable(&adapter, channels)?;
    if let Some(meters) = meters.as_mut() {
        meters.read()?;
    }

    // The capture's layout (its container does not matter here: a request
    // without one gets the depth's, 32 bits for 24).
    let capture_format = args
        .capture_format
        .map(|request| {
            let container_bits = match (request.container_bits, request.bits) {
                (0, 24) => 32,
                (0, bits) => bits,
                (container, _) => container,
            };
            FormatRequest {
                container_bits,
                ..request
            }
            .format()
        })
        .transpose()?;
    let bar = progress_bar(args)?;
    let mut rendered_by_cable: Vec<Vec<u8>> = Vec::new();
    let mut read_error = None;
    let mut cycler = PowerCycler::new(
        &machine,
        adapter.portcls(),
        PowerPlan::spread(args.power_cycle, args.seconds, 0x5EED),
    );
    let sessions = run_loopbacks_with(
        &machine,
        &pairs,
        &config,
        &mut |index, format| {
            let data = rendered_by_cable.first().map_or_else(
                || {
                    args.input.as_ref().map_or_else(
                        || {
                            capture_format.as_ref().map_or_else(
                                || signal::test_signal(format, args.seconds),
                                |capture| {
                                    let amplitude = tone_amplitude(format, capture);
                                    signal::tone_signal_at(format, args.seconds, amplitude)
                                },
                            )
                        },
                        |path| {
                            signal::read_wav(path, format).unwrap_or_else(|e| {
                                read_error = Some(e);
                                Vec::new()
                            })
                        },
                    )
                },
                |first| cable_signal(first, format.block_align() as usize, index),
            );
            rendered_by_cable.push(data.clone());
            data
        },
        &mut |done| {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "progress in per mille"
            )]
            bar.set_position((done * 1000.0) as u64);
        },
        &mut |render, capture| {
            if let Some(meters) = meters.as_mut() {
                meters.read().map_err(EngineError::Protocol)?;
            }
            cycler.between(render, capture)
        },
    );
    let power_cycles = cycler.cycles().to_vec();
    drop(cycler);
    bar.finish_and_clear();
    if let Some(e) = read_error {
        return Err(e);
    }
    drop(pairs);
    let mut sessions = sessions.map_err(|e| e.to_string())?;
    let cables: Vec<CableCheck> = sessions
        .iter()
        .zip(&rendered_by_cable)
        .zip(CABLE_SUBDEVICES.iter())
        .enumerate()
        .map(|(index, ((session, rendered), table))| {
            CableCheck::of(
                index + 1,
                table,
                &registrations,
                rendered,
                session,
                volume.map(|v| v.gain),
            )
        })
        .collect();
    let meters = meters
        .zip(sessions.first().zip(rendered_by_cable.first()))
        .map(|(readings, (session, rendered))| {
            MeterCheck::of(session, rendered, volume.map(|v| v.gain), &readings)
        });
    // The HLK methods and the topology rules after the session see the
    // nodes at 0 dB again.
    if volume.is_some() {
        for number in 1..=usize::from(args.cables) {
            set_render_volume(&adapter, number, 0.0)?;
        }
    }
    // Cable 1's session gets the full report.
    let session = sessions.swap_remove(0);
    drop(sessions);
    let rendered = rendered_by_cable.swap_remove(0);
    let format = session.format;
    let block = format.block_align() as usize;
    let (lag, mismatches) = cables
        .first()
        .map_or((None, (0, None)), |c| (c.lag, c.mismatches));

    let ks_render = ks_position_check(
        &session.render_trace,
        session.render_run_qpc,
        format.sample_rate(),
        format.block_align(),
    );
    let ks_capture = ks_position_check(
        &session.capture_trace,
        session.capture_run_qpc,
        session.capture_format.sample_rate(),
        session.capture_format.block_align(),
    );
    let cable_stats = adapter.cable().map(|c| c.stats()).unwrap_or_default();
    let session_log_lines = machine.log_lines().len();
    // The HLK methods, after the session. Their format sweeps take minutes
    // of wall time on the host clock, so `--real-time` leaves them out.
    let hlk = run_on_cable(
        &machine,
        &adapter,
        &HlkConfig {
            format: request,
            format_sweeps: !args.real_time,
            ..HlkConfig::default()
        },
    )?;
    let ks_topology = [
        (Direction::Render, &render_filter),
        (Direction::Capture, &capture_filter),
    ]
    .into_iter()
    .map(|(direction, wave)| ks_topology_of(&adapter, direction, wave))
    .collect::<Result<Vec<_>, String>>()?;
    let ks_formats = [(&render_filter, false), (&capture_filter, true)]
        .into_iter()
        .map(|(wave, capture)| ks_formats_of(&machine, &adapter, wave, capture))
        .collect::<Result<Vec<_>, String>>()?;

    let wav_path = args.output.join("captured.wav");
    // The capture in its own format (which `--capture-format` may make
    // another than the render's).
    signal::write_wav(&wav_path, &session.capture_format, &session.captured)
        .map_err(|e| format!("{}: {e}", wav_path.display()))?;
    let plot_path = args.output.join("timing.svg");
    let svg = signal::session_plot_svg(
        &session,
        "positions, position error and event lateness against the ideal clock",
    )?;
    std::fs::write(&plot_path, svg).map_err(|e| format!("{}: {e}", plot_path.display()))?;

    drop((render_filter, capture_filter, more_cables));
    adapter.remove();
    let counters = kernel.map_or(DriverCounters::Host(cable_stats), |kernel| {
        DriverCounters::Image {
            kernel: kernel.counters(),
            verifier_violations: kernel.violation_count(),
        }
    });
    Ok(VirtualOutcome {
        build,
        dma,
        real_time: args.real_time,
        personality,
        orders: machine.orders(),
        memory: machine.memory.layout().describe(),
        notifications: args.notifications,
        registrations,
        input,
        rendered_frames: rendered.len() / block,
        session,
        power_cycles_asked: args.power_cycle,
        power_cycles,
        lag,
        mismatches,
        volume,
        meters,
        cables,
        ks_render,
        ks_capture,
        hlk,
        ks_topology,
        ks_formats,
        counters,
        leaked_pages: machine.memory.pages_in_use(),
        live_mdls: machine.memory.live_mdls(),
        live_objects: machine.live_objects(),
        running_timers: machine.running_timers(),
        driver_log: machine
            .log_lines()
            .into_iter()
            .take(session_log_lines)
            .collect(),
        hlk_log_lines: machine.log_lines().len().saturating_sub(session_log_lines),
        violations: machine.violations(),
        wav_path,
        plot_path,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn session(extra: &[&str]) -> Result<Outcome, String> {
        let output = std::env::temp_dir().join(format!(
            "wavert-emulator-cli-{}-{}",
            std::process::id(),
            extra.join("_").replace([',', '.'], "-")
        ));
        let mut argv = vec!["wavert-emulator", "--seconds", "1", "--output"];
        let output_text = output.display().to_string();
        argv.push(&output_text);
        argv.extend_from_slice(extra);
        let outcome = run(&Args::try_parse_from(argv).map_err(|e| e.to_string())?);
        std::fs::remove_dir_all(&output).ok();
        outcome
    }

    #[test]
    fn a_capture_in_another_format_is_checked_as_the_tone_it_carries() {
        for (render, format, level) in [
            ("48000,16,2", "44100,16,2", -6.02),
            ("48000,16,2", "96000,32,6,float", -6.02),
            // The converter folds a stereo pair into mono at -3 dB each, and
            // 7.1.4 into stereo six channels into each side: the tone is
            // played quieter by as much, so the capture still hears -6.02.
            ("48000,16,2", "48000,16,1", -6.02),
            ("48000,16,12", "48000,16,2", -6.02),
        ] {
            let outcome = session(&["--format", render, "--capture-format", format]).unwrap();
            assert!(outcome.passed(), "{format}: {:#?}", outcome.report_lines());
            let Outcome::Virtual(virtual_outcome) = outcome else {
                panic!("not the cable's outcome");
            };
            let conversion = virtual_outcome.cables[0]
                .conversion
                .as_ref()
                .expect("a conversion check");
            let fit = conversion.fit.expect("a tone in the capture");
            assert!((fit.level_dbfs - level).abs() < 0.01, "{format}: {fit:?}");
            assert!(fit.snr_db >= conversion.min_snr_db, "{format}: {fit:?}");
            assert!(
                fit.pitch_error_ppm(signal::TONE_HZ).abs() < 1.0,
                "{format}: {fit:?}"
            );
        }
    }

    #[test]
    fn the_same_format_on_both_pins_stays_a_byte_comparison() {
        let Outcome::Virtual(outcome) = session(&[]).unwrap() else {
            panic!("not the cable's outcome");
        };
        assert!(outcome.cables[0].conversion.is_none());
        assert!(outcome.cables[0].bit_exact());
    }

    #[test]
    fn the_peak_meters_are_held_to_the_audio_and_can_fail() {
        let Outcome::Virtual(outcome) = session(&["--volume", "-6"]).unwrap() else {
            panic!("not the cable's outcome");
        };
        let meters = outcome.meters.as_ref().expect("the cable has peak meters");
        assert!(
            meters.passed(),
            "render {:?} capture {:?}",
            meters.render,
            meters.capture
        );
        assert!(meters.polls > 100);
        // -6 dB on the tone of amplitude 1/2: about -12 dBFS on channel 0.
        let level = 20.0 * (f64::from(meters.render[0]) / f64::from(i32::MAX)).log10();
        assert!((level + 12.04).abs() < 0.05, "{level}");
        let mut off_by_one = clone_meters(meters);
        off_by_one.capture[0] += 1;
        assert!(!off_by_one.passed(), "a capture reading one unit off");
        let mut stale = clone_meters(meters);
        stale.render[1] = 0;
        assert!(!stale.passed(), "a render meter that read nothing");
        let mut leaking = clone_meters(meters);
        leaking.capture[7] = 1;
        assert!(!leaking.passed(), "a channel past the format that reads");
    }

    fn clone_meters(m: &MeterCheck) -> MeterCheck {
        MeterCheck {
            polls: m.polls,
            format_channels: m.format_channels,
            render: m.render.clone(),
            render_expected: m.render_expected.clone(),
            capture: m.capture.clone(),
            capture_expected: m.capture_expected.clone(),
        }
    }

    #[test]
    fn a_capture_format_is_refused_beside_an_input_file() {
        let Err(error) = session(&["--capture-format", "44100,16,2", "--input", "x.wav"]) else {
            panic!("--capture-format with --input ran");
        };
        assert!(error.contains("leave out --input"), "{error}");
    }
}
