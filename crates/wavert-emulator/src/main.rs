//! `wavert-emulator`: plays a test signal through the driver's loopback
//! cable in the emulator, records it back and checks it bit for bit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use wavert_core::format::SampleType;
use wavert_emulator::engine::{streaming_pin, FormatRequest};
use wavert_emulator::fake::{start_fake_adapter, FakeOptions};
use wavert_emulator::hlk::{ks_position_check, run_wavetest_positions};
use wavert_emulator::machine::{ClockMode, Machine};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::session::{run_loopback, LoopbackConfig, WaveFilter};
use wavert_emulator::signal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Device {
    /// The virtual loopback cable.
    Virtual,
    /// The Intel ICH AC'97 back-end.
    Ac97,
}

/// Plays a signal through the WaveRT miniport's render endpoint in the
/// user-mode PortCls emulator, records the capture endpoint and verifies it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Play this WAV file instead of the generated 997 Hz tone + counter.
    #[arg(long, value_name = "FILE.wav")]
    input: Option<PathBuf>,
    /// Folder for the captured WAV and the position plot.
    #[arg(long, value_name = "DIR", default_value = "out")]
    output: PathBuf,
    /// Format as RATE,BITS,CHANNELS[,float], e.g. 48000,16,2 or 96000,32,2,float.
    #[arg(long, value_name = "RATE,BITS,CHANNELS[,float]", value_parser = parse_format)]
    format: Option<FormatRequest>,
    /// Engine period in milliseconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    period: u32,
    /// Seconds of generated signal.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Which device back-end.
    #[arg(long, value_enum, default_value_t = Device::Virtual)]
    device: Device,
    /// Run in real time instead of on the virtual clock.
    #[arg(long)]
    real_time: bool,
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

#[allow(clippy::too_many_lines, reason = "the report, in order")]
fn run(args: &Args) -> Result<bool, String> {
    if args.device == Device::Ac97 {
        return Err(
            "the AC'97 device is not yet available in the emulator (use --device virtual)"
                .to_owned(),
        );
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
    let adapter = start_fake_adapter(&machine, FakeOptions::default())
        .map_err(|e| format!("adapter start failed: {:#010x}", e.0))?;
    let wave = adapter
        .wave
        .wave_miniport()
        .ok_or("the wave port has no miniport")?;
    let description = adapter
        .wave
        .description()
        .ok_or("the wave miniport gave no descriptor")?;
    let filter = WaveFilter {
        miniport: &wave,
        description,
    };
    let config = LoopbackConfig {
        format: request,
        period_ms: args.period,
        ..LoopbackConfig::default()
    };

    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}").map_err(|e| e.to_string())?,
    );
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
        filter,
        filter,
        &config,
        &mut |format| {
            let data = match &input {
                Some(path) => signal::read_wav(path, format).unwrap_or_else(|e| {
                    read_error = Some(e);
                    Vec::new()
                }),
                None => signal::test_signal(format, seconds),
            };
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

    let ks = ks_position_check(
        &result.render_trace,
        result.render_run_qpc,
        format.sample_rate(),
        format.block_align(),
        Some(result.reported_latency_ms),
    );
    let render_pin = streaming_pin(description, false).unwrap_or(0);
    let (_, format_bytes) =
        wavert_emulator::engine::negotiate_format(&wave, description, render_pin, &request)
            .map_err(|e| e.to_string())?;
    let wavetest = run_wavetest_positions(
        &machine,
        &wave,
        render_pin,
        false,
        &format_bytes,
        format.block_align() * 960,
    )
    .map_err(|e| e.to_string())?;

    let wav_path = args.output.join("captured.wav");
    signal::write_wav(&wav_path, &format, &result.captured)
        .map_err(|e| format!("{}: {e}", wav_path.display()))?;
    let plot_path = args.output.join("position.svg");
    let svg = signal::position_plot_svg(
        &result.render_trace,
        result.render_run_qpc,
        format.block_align(),
        "render position (GetPosition) against time",
    );
    std::fs::write(&plot_path, svg).map_err(|e| format!("{}: {e}", plot_path.display()))?;

    drop(wave);
    adapter.remove();
    let leaks = machine.memory.pages_in_use();
    let violations = machine.violations();

    let kind = match format.sample_type() {
        SampleType::Float => "float",
        SampleType::Pcm => "PCM",
    };
    let page = wavert_emulator::memory::PAGE_SIZE;
    let frames_lag = lag.unwrap_or(0);
    #[allow(clippy::cast_precision_loss, reason = "report")]
    let lag_ms = frames_lag as f64 * 1000.0 / f64::from(format.sample_rate());
    println!(
        "device           : virtual loopback cable (emulator reference miniport), {} clock",
        if args.real_time {
            "real-time"
        } else {
            "virtual"
        }
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
        "buffers          : render {} bytes ({} pages), capture {} bytes ({} pages), peak {} pages in use",
        result.render_buffer,
        (result.render_buffer as usize).div_ceil(page),
        result.capture_buffer,
        (result.capture_buffer as usize).div_ceil(page),
        result.peak_pages
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
    println!(
        "latency          : measured {frames_lag} frames ({lag_ms:.3} ms), reported {:.3} ms",
        result.reported_latency_ms
    );
    println!(
        "position         : rate {:.2} Hz ({:.4} % off), jitter std-dev {:.4} ms, max {:.4} ms, first move {:.1} ms",
        ks.measured_rate,
        ks.rate_error_percent,
        ks.jitter_std_ms,
        ks.jitter_max_ms,
        ks.first_nonzero_ms.unwrap_or(f64::NAN)
    );
    let bit_exact = lag.is_some() && mismatches == 0;
    println!(
        "bit-exact        : {} ({} of {} frames differ{})",
        if bit_exact { "yes" } else { "NO" },
        mismatches,
        rendered.len() / block,
        first_bad.map_or_else(String::new, |f| format!(", first at frame {f}"))
    );
    for f in &wavetest {
        println!(
            "hlk wavetest     : {:<28} {}",
            f.rule,
            f.outcome
                .as_ref()
                .map_or_else(|e| format!("FAIL: {e}"), |()| "pass".to_owned())
        );
    }
    println!(
        "hlk ks position  : {}{}",
        if ks.passed() {
            "pass".to_owned()
        } else {
            format!("FAIL: {}", ks.failures.join("; "))
        },
        if ks.warnings.is_empty() {
            String::new()
        } else {
            format!(" (warning: {})", ks.warnings.join("; "))
        }
    );
    println!(
        "leaks            : {leaks} pages, {} MDLs, {} port objects alive",
        machine.memory.live_mdls(),
        machine.live_objects()
    );
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
        && ks.passed()
        && wavetest.iter().all(|f| f.outcome.is_ok())
        && leaks == 0
        && violations.is_empty();
    Ok(ok)
}
