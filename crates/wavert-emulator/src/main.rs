//! `wavert-emulator`: loads the driver's virtual loopback cable
//! (`wavert-miniport`) through the emulated PortCls, plays a test signal
//! through its render endpoint, records its capture endpoint and checks it
//! bit for bit, then runs the HLK position rules on both endpoints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{value_parser, Arg, ArgAction, Command};
use indicatif::{ProgressBar, ProgressStyle};
use wavert_core::format::SampleType;
use wavert_emulator::ac97::{run_ac97_session, Ac97Options};
use wavert_emulator::cable::{start_cable_adapter, CableOptions, RegisteredWaveFilter};
use wavert_emulator::engine::{negotiate_format, streaming_pin, FormatRequest};
use wavert_emulator::hlk::{ks_position_check, run_wavetest_positions, Finding, KsPositionReport};
use wavert_emulator::image::{start_image_adapter, ImageDevice, ImageDriver};
use wavert_emulator::machine::{ClockMode, Machine};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::session::{run_loopback, LoopbackConfig};
use wavert_emulator::signal;
use wavert_miniport::DmaMode;

// The arguments are declared with clap's builder: its derive macros emit
// `#[allow(clippy::restriction)]`, which the workspace's `forbid`s reject.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Device {
    /// The virtual loopback cable (`wavert-miniport`), loaded through the
    /// emulated PortCls.
    Virtual,
    /// The Intel ICH AC'97 back-end.
    Ac97,
}

/// The command line, parsed.
#[derive(Debug)]
struct Args {
    input: Option<PathBuf>,
    output: PathBuf,
    format: Option<FormatRequest>,
    period: u32,
    notifications: u32,
    seconds: f64,
    device: Device,
    dma: DmaMode,
    real_time: bool,
    image: Option<PathBuf>,
}

fn command() -> Command {
    Command::new("wavert-emulator")
        .version(env!("CARGO_PKG_VERSION"))
        .about(
            "Loads the virtual loopback cable through the user-mode PortCls emulator, plays a \
             signal through its render endpoint, records its capture endpoint and verifies it",
        )
        .arg(
            Arg::new("input")
                .long("input")
                .value_name("FILE.wav")
                .value_parser(value_parser!(PathBuf))
                .help("Play this WAV file instead of the generated 997 Hz tone + counter"),
        )
        .arg(
            Arg::new("output")
                .long("output")
                .value_name("DIR")
                .default_value("out")
                .value_parser(value_parser!(PathBuf))
                .help("Folder for the captured WAV and the position plot"),
        )
        .arg(
            Arg::new("format")
                .long("format")
                .value_name("RATE,BITS,CHANNELS[,float]")
                .value_parser(parse_format)
                .help("Format, e.g. 48000,16,2 or 96000,32,2,float"),
        )
        .arg(
            Arg::new("period")
                .long("period")
                .value_name("MS")
                .default_value("20")
                .value_parser(value_parser!(u32).range(1..=1000))
                .help(
                    "Engine period (one packet) in milliseconds; the buffer holds two \
                     (20 ms at 48 kHz 16-bit stereo: 7680 bytes on two scattered pages)",
                ),
        )
        .arg(
            Arg::new("notifications")
                .long("notifications")
                .value_name("N")
                .default_value("2")
                .value_parser(value_parser!(u32).range(1..=2))
                .help("Notification events per buffer (1: at the end; 2: middle and end)"),
        )
        .arg(
            Arg::new("seconds")
                .long("seconds")
                .value_name("S")
                .default_value("5")
                .value_parser(value_parser!(f64))
                .help("Seconds of generated signal"),
        )
        .arg(
            Arg::new("device")
                .long("device")
                .default_value("virtual")
                .value_parser(["virtual", "ac97"])
                .help(
                    "Device back-end: virtual (the loopback cable) or ac97 (the AC'97 miniport \
                     on QEMU's AC'97, 16-bit stereo 8-48 kHz; writes ac97-qemu.wav)",
                ),
        )
        .arg(
            Arg::new("dma")
                .long("dma")
                .default_value("looping")
                .value_parser(["looping", "refill"])
                .help(
                    "Virtual DMA engine: looping (wraps by itself) or refill (AC'97-style \
                     32-slot ring refilled from the timer routine)",
                ),
        )
        .arg(
            Arg::new("image")
                .long("image")
                .value_name("RSWAVERT.SYS")
                .value_parser(value_parser!(PathBuf))
                .help(
                    "Run the shipped driver image (e.g. target/package/rswavert/rswavert.sys, \
                     from `cargo xtask cross`) instead of the host-built miniport: loaded, \
                     relocated and bound to kernel and PortCls stand-ins with Driver Verifier's rules",
                ),
        )
        .arg(
            Arg::new("real-time")
                .long("real-time")
                .action(ArgAction::SetTrue)
                .help("Run in real time instead of on the virtual clock"),
        )
}

impl Args {
    fn parse() -> Self {
        let m = command().get_matches();
        let text = |name: &str| m.get_one::<String>(name).map_or("", String::as_str);
        Self {
            input: m.get_one::<PathBuf>("input").cloned(),
            output: m
                .get_one::<PathBuf>("output")
                .cloned()
                .unwrap_or_else(|| PathBuf::from("out")),
            format: m.get_one::<FormatRequest>("format").copied(),
            period: m.get_one::<u32>("period").copied().unwrap_or(20),
            notifications: m.get_one::<u32>("notifications").copied().unwrap_or(2),
            seconds: m.get_one::<f64>("seconds").copied().unwrap_or(5.0),
            device: if text("device") == "ac97" {
                Device::Ac97
            } else {
                Device::Virtual
            },
            dma: if text("dma") == "refill" {
                DmaMode::Refill
            } else {
                DmaMode::Looping
            },
            real_time: m.get_flag("real-time"),
            image: m.get_one::<PathBuf>("image").cloned(),
        }
    }
}

fn parse_format(text: &str) -> Result<FormatRequest, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if !(3..=4).contains(&parts.len()) {
        return Err("expected RATE,BITS,CHANNELS[,float]".to_owned());
    }
    let number = |s: &str, what: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{what} '{s}' is not a number"))
    };
    let rate = number(parts[0], "rate")?;
    let bits = u16::try_from(number(parts[1], "bits")?).map_err(|_| "bits too large".to_owned())?;
    let channels =
        u16::try_from(number(parts[2], "channels")?).map_err(|_| "too many channels".to_owned())?;
    let float = match parts.get(3) {
        None => false,
        Some(&"float") => true,
        Some(other) => return Err(format!("unknown sample type '{other}' (only 'float')")),
    };
    Ok(FormatRequest {
        rate,
        bits,
        channels,
        float,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Pages as physical frame numbers, and whether any two in a row are adjacent.
fn describe_pages(pages: &[u64]) -> String {
    let page = wavert_emulator::memory::PAGE_SIZE as u64;
    let frames: Vec<String> = pages.iter().map(|p| format!("{:#x}", p / page)).collect();
    let contiguous = pages.windows(2).filter(|w| w[1] == w[0] + page).count();
    format!(
        "frames [{}], {} of {} page steps contiguous",
        frames.join(", "),
        contiguous,
        pages.len().saturating_sub(1)
    )
}

fn outcome_text(outcome: &Result<(), String>) -> String {
    outcome
        .as_ref()
        .map_or_else(|e| format!("FAIL: {e}"), |()| "pass".to_owned())
}

fn ks_text(ks: &KsPositionReport) -> String {
    format!(
        "{} (rate {:.2} Hz, {:.4} % off; jitter std-dev {:.4} ms, max {:.4} ms; first move {:.1} ms; {} samples){}",
        if ks.passed() {
            "pass".to_owned()
        } else {
            format!("FAIL: {}", ks.failures.join("; "))
        },
        ks.measured_rate,
        ks.rate_error_percent,
        ks.jitter_std_ms,
        ks.jitter_max_ms,
        ks.first_nonzero_ms.unwrap_or(f64::NAN),
        ks.used,
        if ks.warnings.is_empty() {
            String::new()
        } else {
            format!(" (warning: {})", ks.warnings.join("; "))
        }
    )
}

/// The HLK position rules on one endpoint, after the loopback session.
fn wavetest_on(
    machine: &Arc<Machine>,
    filter: &RegisteredWaveFilter,
    capture: bool,
    request: &FormatRequest,
    block_align: u32,
) -> Result<Vec<Finding>, String> {
    let pin = streaming_pin(filter.description, capture)
        .ok_or_else(|| format!("{}: no streaming pin", filter.name))?;
    let (_, format_bytes) = negotiate_format(&filter.miniport, filter.description, pin, request)
        .map_err(|e| e.to_string())?;
    run_wavetest_positions(
        machine,
        &filter.miniport,
        pin,
        capture,
        &format_bytes,
        block_align * 960,
    )
    .map_err(|e| e.to_string())
}

/// `--device ac97`: the AC'97 miniport on QEMU's AC'97; the report, and
/// QEMU's output beside it.
fn run_ac97(args: &Args) -> Result<bool, String> {
    let format = match (&args.input, args.format) {
        (Some(path), _) => signal::wav_format_request(path)?,
        (None, Some(f)) => f,
        (None, None) => FormatRequest::default(),
    };
    let report = run_ac97_session(&Ac97Options {
        input: args.input.clone(),
        format,
        seconds: args.seconds,
        period_ms: args.period,
        notifications: args.notifications,
        output_dir: args.output.clone(),
        image: args.image.clone(),
    })?;
    for line in report.lines() {
        println!("{line}");
    }
    println!(
        "buffer pages     : {}",
        describe_pages(&report.buffer_pages)
    );
    Ok(report.passed())
}

#[allow(
    clippy::too_many_lines,
    reason = "the session and its report, in order"
)]
fn run(args: &Args) -> Result<bool, String> {
    if args.device == Device::Ac97 {
        return run_ac97(args);
    }
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return Err(format!("--seconds {} is outside 0 .. 600", args.seconds));
    }
    let request = match (&args.input, args.format) {
        (Some(path), _) => signal::wav_format_request(path)?,
        (None, Some(f)) => f,
        (None, None) => FormatRequest::default(),
    };
    std::fs::create_dir_all(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let memory = PhysicalMemory::anonymous(MemoryConfig::default()).map_err(|e| e.to_string())?;
    let mode = if args.real_time {
        ClockMode::RealTime
    } else {
        ClockMode::Virtual
    };
    let machine = Machine::new(memory, mode);
    let dma = args.dma;
    let adapter = match &args.image {
        Some(path) => {
            if dma != DmaMode::Looping {
                return Err(
                    "--dma refill is a test mode of the host build; the image's cable runs looping DMA"
                        .to_owned(),
                );
            }
            start_image_adapter(&machine, path, ImageDevice::default())
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => start_cable_adapter(
            &machine,
            CableOptions {
                dma,
                ..CableOptions::default()
            },
        )
        .map_err(|e| format!("StartDevice failed: {:#010x}", e.0))?,
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
    let config = LoopbackConfig {
        format: request,
        period_ms: args.period,
        notification_count: args.notifications,
        ..LoopbackConfig::default()
    };

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
    let mut rendered = Vec::new();
    let input = args.input.clone();
    let seconds = args.seconds;
    let mut read_error = None;
    let result = run_loopback(
        &machine,
        render_filter.as_filter(),
        capture_filter.as_filter(),
        &config,
        &mut |format| {
            let data = input.as_ref().map_or_else(
                || signal::test_signal(format, seconds),
                |path| {
                    signal::read_wav(path, format).unwrap_or_else(|e| {
                        read_error = Some(e);
                        Vec::new()
                    })
                },
            );
            rendered.clone_from(&data);
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
    );
    bar.finish_and_clear();
    if let Some(e) = read_error {
        return Err(e);
    }
    let result = result.map_err(|e| e.to_string())?;
    let format = result.format;
    let block = format.block_align() as usize;
    let max_lag = usize::try_from(result.capture_buffer).unwrap_or(0) / block * 4 + 4800;
    let lag = signal::find_alignment(&rendered, &result.captured, block, max_lag);
    let (mismatches, first_bad) = lag.map_or((rendered.len() / block, Some(0)), |l| {
        signal::mismatched_frames(&rendered, &result.captured, block, l)
    });
    let reported_frames = result.reported_latency_frames;

    let ks_render = ks_position_check(
        &result.render_trace,
        result.render_run_qpc,
        format.sample_rate(),
        format.block_align(),
        Some(result.reported_latency_ms),
    );
    let ks_capture = ks_position_check(
        &result.capture_trace,
        result.capture_run_qpc,
        format.sample_rate(),
        format.block_align(),
        Some(result.reported_latency_ms),
    );
    let stats = adapter.cable().map(|c| c.stats()).unwrap_or_default();
    let wavetest_render = wavetest_on(
        &machine,
        &render_filter,
        false,
        &request,
        format.block_align(),
    )?;
    let wavetest_capture = wavetest_on(
        &machine,
        &capture_filter,
        true,
        &request,
        format.block_align(),
    )?;

    let wav_path = args.output.join("captured.wav");
    signal::write_wav(&wav_path, &format, &result.captured)
        .map_err(|e| format!("{}: {e}", wav_path.display()))?;
    let plot_path = args.output.join("position.svg");
    let svg = signal::position_plot_svg(
        &result.render_trace,
        result.render_run_qpc,
        format.block_align(),
        "render position (GetPosition) against time",
    )?;
    std::fs::write(&plot_path, svg).map_err(|e| format!("{}: {e}", plot_path.display()))?;

    drop((render_filter, capture_filter));
    adapter.remove();
    let leaks = machine.memory.pages_in_use();
    let violations = machine.violations();
    let timers = machine.running_timers();

    let kind = match format.sample_type() {
        SampleType::Float => "float",
        SampleType::Pcm => "PCM",
    };
    let page = wavert_emulator::memory::PAGE_SIZE;
    let frames_lag = lag.unwrap_or(0);
    #[allow(clippy::cast_precision_loss, reason = "report")]
    let lag_ms = frames_lag as f64 * 1000.0 / f64::from(format.sample_rate());
    println!("build            : {build}");
    println!(
        "device           : virtual loopback cable (wavert-miniport, {} DMA) through the emulated PortCls, {} clock",
        match args.dma {
            DmaMode::Looping => "looping",
            DmaMode::Refill => "refill",
        },
        if args.real_time {
            "real-time"
        } else {
            "virtual"
        }
    );
    println!(
        "subdevices       : {}",
        registrations
            .subdevices
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "connections      : {}",
        registrations
            .connections
            .iter()
            .map(|c| format!("{} pin {} -> {} pin {}", c.from, c.from_pin, c.to, c.to_pin))
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!(
        "format           : {} Hz, {} bit ({} in {}) {kind}, {} ch, {} bytes/frame",
        format.sample_rate(),
        format.valid_bits(),
        format.valid_bits(),
        format.container_bits(),
        format.channels(),
        block
    );
    println!(
        "buffers          : render {} bytes ({} pages), capture {} bytes ({} pages), {} notifications each, peak {} pages in use",
        result.render_buffer,
        (result.render_buffer as usize).div_ceil(page),
        result.capture_buffer,
        (result.capture_buffer as usize).div_ceil(page),
        args.notifications,
        result.peak_pages
    );
    println!(
        "render pages     : {}",
        describe_pages(&result.render_pages)
    );
    println!(
        "capture pages    : {}",
        describe_pages(&result.capture_pages)
    );
    println!(
        "notifications    : render {}, capture {}",
        result.render.notifications, result.capture.notifications
    );
    println!(
        "packets          : render {}, capture {} (packet interfaces: {}, mismatches {})",
        result.render.packets,
        result.capture.packets,
        if result.packet_mode { "yes" } else { "no" },
        result.render.packet_mismatches + result.capture.packet_mismatches
    );
    println!(
        "glitches         : render {}, capture {}",
        result.render.glitches, result.capture.glitches
    );
    if let Some(kernel) = &kernel {
        let c = kernel.counters();
        println!(
            "kernel           : {} pool allocations, {} frees, {} timer callbacks, {} DPCs, {} events signalled, {} spinlock acquisitions, {} debug prints",
            c.pool_allocations,
            c.pool_frees,
            c.timer_callbacks,
            c.dpcs_run,
            c.events_signalled,
            c.spinlock_acquisitions,
            c.debug_prints
        );
        println!(
            "driver verifier  : {} violation(s) by the image (IRQL, pool, spinlock, timer, DPC, unload rules)",
            kernel.violation_count()
        );
    } else {
        println!(
            "cable            : {} bytes copied, {} bytes of silence, {} skipped, {} DMA errors, {} events signalled",
            stats.copied_bytes,
            stats.silence_bytes,
            stats.skipped_bytes,
            stats.dma_errors,
            stats.signals
        );
    }
    println!(
        "latency          : measured {frames_lag} frames ({lag_ms:.3} ms), reported {:.3} ms ({reported_frames} frames)",
        result.reported_latency_ms
    );
    let lag_as_reported = lag.is_some_and(|l| l as u64 == reported_frames);
    let bit_exact = lag_as_reported && mismatches == 0;
    println!(
        "bit-exact        : {} ({} of {} frames differ{}{})",
        if bit_exact { "yes" } else { "NO" },
        mismatches,
        rendered.len() / block,
        first_bad.map_or_else(String::new, |f| format!(", first at frame {f}")),
        if lag.is_some() && !lag_as_reported {
            ", measured latency differs from the reported one"
        } else {
            ""
        }
    );
    for (endpoint, findings) in [("render", &wavetest_render), ("capture", &wavetest_capture)] {
        for f in findings {
            println!(
                "hlk wavetest     : {endpoint:<8} {:<26} {}",
                f.rule,
                outcome_text(&f.outcome)
            );
        }
    }
    println!("hlk ks position  : render   {}", ks_text(&ks_render));
    println!("hlk ks position  : capture  {}", ks_text(&ks_capture));
    println!(
        "leaks            : {leaks} pages, {} MDLs, {} port objects alive, {timers} timers running",
        machine.memory.live_mdls(),
        machine.live_objects()
    );
    for line in machine.log_lines() {
        println!("driver log       : {line}");
    }
    println!(
        "violations       : {}",
        if violations.is_empty() {
            "none".to_owned()
        } else {
            violations.join("; ")
        }
    );
    println!(
        "output           : {}, {}",
        wav_path.display(),
        plot_path.display()
    );
    let ok = bit_exact
        && result.render.glitches == 0
        && result.capture.glitches == 0
        && ks_render.passed()
        && ks_capture.passed()
        && wavetest_render
            .iter()
            .chain(&wavetest_capture)
            .all(|f| f.outcome.is_ok())
        && leaks == 0
        && machine.live_objects() == 0
        && timers == 0
        && violations.is_empty();
    Ok(ok)
}
