//! `cargo xtask bench`: the hot paths against their references, as ratios.
//!
//! Runs the criterion benchmarks of `tests/benches/hot_paths.rs`, reads each
//! benchmark's median from criterion's `estimates.json`, and writes the table
//! to `docs/performance.md` (and prints it). Every ratio compares two figures
//! measured in the same run on the same machine. `--quick` only checks that
//! the benchmarks build and run once (criterion's `--test` mode); `cargo xtask
//! test` runs that.

use std::{fmt::Write as _, fs, path::Path};

use crate::util::{cargo, run, target_dir, workspace_root, StepResult};

/// What a row's target demands.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Median at most this many nanoseconds per unit.
    AtMostNanos(f64),
    /// Reference median / measured median at least this (throughput ratio).
    AtLeastRatio(f64),
    /// Measured per-unit cost within this factor of the reference's per-unit cost.
    LinearWithin(f64),
    /// Reported, no target set by the issue.
    None,
}

/// A counted (not timed) figure a benchmark wrote to `target/bench-figures/`.
#[derive(Debug, Clone, Copy)]
struct CountedRow {
    path: &'static str,
    figure: &'static str,
    unit: &'static str,
    at_most: Option<f64>,
}

const COUNTED_ROWS: &[CountedRow] = &[
    CountedRow {
        path: "AC'97 ISR register accesses per interrupt (steady state, counting bus)",
        figure: "ac97_isr_accesses_per_interrupt",
        unit: "accesses",
        at_most: Some(4.0),
    },
    CountedRow {
        path: "HD Audio ISR register accesses per interrupt (one stream, counting bus)",
        figure: "hda_isr_accesses_per_interrupt",
        unit: "accesses",
        at_most: Some(2.0),
    },
    CountedRow {
        path: "HD Audio position from the DMA position buffer: register accesses over the whole run",
        figure: "hda_position_register_accesses",
        unit: "accesses",
        at_most: Some(0.0),
    },
    CountedRow {
        path: "virtual cable CPU, 1 min of 48 kHz stereo loopback, 1 ms period",
        figure: "cable_cpu_fraction_1ms",
        unit: "of one core",
        at_most: None,
    },
    CountedRow {
        path: "virtual cable CPU, 1 min of 48 kHz stereo loopback, 10 ms period",
        figure: "cable_cpu_fraction_10ms",
        unit: "of one core",
        at_most: None,
    },
    CountedRow {
        path: "eight cables at once, 1 min of 48 kHz stereo loopback each, 10 ms period, together",
        figure: "eight_cables_cpu_fraction_10ms",
        unit: "of one core",
        at_most: Some(0.01),
    },
    CountedRow {
        path: "minimum period for 60 s of real-time loopback with zero glitches and a bit-exact capture (tried 10, 5, 3, 2, 1 ms)",
        figure: "minimum_period_frames_48k",
        unit: "frames at 48 kHz",
        at_most: None,
    },
    CountedRow {
        path: "render event lateness in that search at 10 ms, p99",
        figure: "event_lateness_p99_us_10ms",
        unit: "us",
        at_most: None,
    },
    CountedRow {
        path: "render event lateness in that search at 10 ms, max",
        figure: "event_lateness_max_us_10ms",
        unit: "us",
        at_most: None,
    },
    CountedRow {
        path: "render event lateness in that search at 2 ms, p99",
        figure: "event_lateness_p99_us_2ms",
        unit: "us",
        at_most: None,
    },
    CountedRow {
        path: "render event lateness in that search at 2 ms, max",
        figure: "event_lateness_max_us_2ms",
        unit: "us",
        at_most: None,
    },
];

fn counted_figure(name: &str) -> Result<f64, String> {
    let path = target_dir().join("bench-figures").join(name);
    let text =
        fs::read_to_string(&path).map_err(|error| format!("read {}: {error}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|error| format!("{}: {error}", path.display()))
}

fn evaluate_counted(row: &CountedRow) -> Result<(String, bool), String> {
    let value = match counted_figure(row.figure) {
        Ok(value) => value,
        // Only the minimum-period search may find nothing: every period
        // glitched. That is a result, not a broken run.
        Err(_)
            if row.at_most.is_none()
                && (row.figure.starts_with("minimum_period")
                    || row.figure.starts_with("event_lateness")) =>
        {
            let what = if row.figure.starts_with("minimum_period") {
                "none passed"
            } else {
                "not reached (the search stopped at a longer period)"
            };
            return Ok((
                format!("| {} | {what} | — | — | — | reported |", row.path),
                true,
            ));
        }
        Err(error) => return Err(error),
    };
    let (target, met) = row.at_most.map_or_else(
        || ("—".to_owned(), true),
        |limit| (format!("≤ {limit} {}", row.unit), value <= limit),
    );
    let verdict = if row.at_most.is_none() {
        "reported"
    } else if met {
        "met"
    } else {
        "**missed**"
    };
    Ok((
        format!(
            "| {} | {value:.6} {} (counted) | — | — | {target} | {verdict} |",
            row.path, row.unit
        ),
        met,
    ))
}

/// One line of the performance table.
#[derive(Debug, Clone, Copy)]
struct Row {
    path: &'static str,
    measured: &'static str,
    measured_units: f64,
    reference: Option<(&'static str, f64)>,
    unit: &'static str,
    target: Target,
}

const ROWS: &[Row] = &[
    Row {
        path: "descriptor list, 1 s at 192 kHz 8 ch 32-bit (1500 shuffled pages)",
        measured: "sg/list_1500_pages",
        measured_units: 1500.0,
        reference: None,
        unit: "page",
        target: Target::AtMostNanos(50.0),
    },
    Row {
        path: "descriptor list linearity: per-page cost, 1500 vs 375 pages",
        measured: "sg/list_1500_pages",
        measured_units: 1500.0,
        reference: Some(("sg/list_375_pages", 375.0)),
        unit: "page",
        target: Target::LinearWithin(1.25),
    },
    Row {
        path: "GetPosition through the stream's vtable (virtual cable, RUN)",
        measured: "position/get_position_vtable",
        measured_units: 1.0,
        reference: Some(("position/reference_atomic_load", 1.0)),
        unit: "call",
        target: Target::AtMostNanos(100.0),
    },
    Row {
        path:
            "GetPosition through the vtable against the bare position-from-QPC computation it wraps",
        measured: "position/get_position_vtable",
        measured_units: 1.0,
        reference: Some(("position/reference_position_from_qpc", 1.0)),
        unit: "call",
        target: Target::AtLeastRatio(0.5),
    },
    Row {
        path: "GetPosition through the vtable against the same computation behind one Windows x64 call from System V code (the calling-convention bridge only this Linux host pays)",
        measured: "position/get_position_vtable",
        measured_units: 1.0,
        reference: Some(("position/reference_position_across_win64", 1.0)),
        unit: "call",
        target: Target::None,
    },
    Row {
        path: "format conversion without rate change, 10 ms of 48 kHz 16-bit stereo to float 5.1, against copying the 11 520 output bytes",
        measured: "convert/pcm16_2ch_to_float_6ch_10ms",
        measured_units: 1.0,
        reference: Some(("convert/reference_float_6ch_10ms", 1.0)),
        unit: "period",
        target: Target::AtLeastRatio(0.25),
    },
    Row {
        path: "resampling 44.1 -> 48 kHz 16-bit stereo, per 10 ms of output (0.5 % of one core = 50 us)",
        measured: "convert/resample_44k1_to_48k_2ch_10ms",
        measured_units: 1.0,
        reference: None,
        unit: "period",
        target: Target::AtMostNanos(50_000.0),
    },
    Row {
        path: "loopback per period, 48 kHz 2 ch 16-bit, 1 ms (192 B)",
        measured: "loopback/cable_48k_2ch_16bit_1ms",
        measured_units: 1.0,
        reference: Some(("loopback/reference_48k_2ch_16bit_1ms", 1.0)),
        unit: "period",
        target: Target::None,
    },
    Row {
        path: "loopback per period, 48 kHz 2 ch 16-bit, 10 ms (1920 B)",
        measured: "loopback/cable_48k_2ch_16bit_10ms",
        measured_units: 1.0,
        reference: Some(("loopback/reference_48k_2ch_16bit_10ms", 1.0)),
        unit: "period",
        target: Target::AtLeastRatio(0.5),
    },
    Row {
        path: "loopback per period, 192 kHz 8 ch 32-bit, 1 ms (6 KiB)",
        measured: "loopback/cable_192k_8ch_32bit_1ms",
        measured_units: 1.0,
        reference: Some(("loopback/reference_192k_8ch_32bit_1ms", 1.0)),
        unit: "period",
        target: Target::AtLeastRatio(0.8),
    },
    Row {
        path: "loopback per period, 192 kHz 8 ch 32-bit, 10 ms (60 KiB)",
        measured: "loopback/cable_192k_8ch_32bit_10ms",
        measured_units: 1.0,
        reference: Some(("loopback/reference_192k_8ch_32bit_10ms", 1.0)),
        unit: "period",
        target: Target::AtLeastRatio(0.9),
    },
    Row {
        path: "AllocateBufferWithNotification end to end in the emulator, 2 MiB (512 pages)",
        measured: "allocate/buffer_2mib_192k_8ch_32bit",
        measured_units: 512.0,
        reference: None,
        unit: "page",
        target: Target::None,
    },
    Row {
        path: "AC'97 ISR, PCM out, steady state (in-memory counting bus: I/O excluded)",
        measured: "ac97_isr_pcm_out",
        measured_units: 1.0,
        reference: None,
        unit: "interrupt",
        target: Target::None,
    },
    Row {
        path: "HD Audio ISR, one stream (in-memory bus: MMIO excluded)",
        measured: "hda_isr_stream",
        measured_units: 1.0,
        reference: None,
        unit: "interrupt",
        target: Target::None,
    },
    Row {
        path: "HD Audio position from the DMA position buffer (core, no register access)",
        measured: "hda_position_from_buffer",
        measured_units: 1.0,
        reference: None,
        unit: "call",
        target: Target::None,
    },
    Row {
        path: "format intersection over the full advertised range",
        measured: "intersect/full_range",
        measured_units: 1.0,
        reference: Some(("intersect/reference_parse_waveformat", 1.0)),
        unit: "call",
        target: Target::None,
    },
];

fn median_nanos(id: &str) -> Result<f64, String> {
    let path = target_dir()
        .join("criterion")
        .join(id)
        .join("new")
        .join("estimates.json");
    let text =
        fs::read_to_string(&path).map_err(|error| format!("read {}: {error}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    json["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no median point estimate", path.display()))
}

/// A formatted table row and whether it met its target.
fn evaluate(row: &Row) -> Result<(String, bool), String> {
    let measured = median_nanos(row.measured)? / row.measured_units;
    let reference = match row.reference {
        Some((id, units)) => Some(median_nanos(id)? / units),
        None => None,
    };
    let ratio = reference.map(|reference| reference / measured);
    let (target_text, met) = match (row.target, ratio) {
        (Target::AtMostNanos(limit), _) => {
            (format!("≤ {limit} ns/{}", row.unit), measured <= limit)
        }
        (Target::AtLeastRatio(limit), Some(ratio)) => (format!("ratio ≥ {limit}"), ratio >= limit),
        (Target::LinearWithin(factor), Some(ratio)) => (
            format!("per-{} cost within ×{factor}", row.unit),
            ratio >= 1.0 / factor && ratio <= factor,
        ),
        (Target::AtLeastRatio(_) | Target::LinearWithin(_), None) => {
            return Err(format!("{}: the target needs a reference", row.path))
        }
        (Target::None, _) => ("—".to_owned(), true),
    };
    let reference_text = match (row.reference, reference) {
        (Some((id, _)), Some(nanos)) => format!("{nanos:.1} ns/{} (`{id}`)", row.unit),
        _ => "—".to_owned(),
    };
    let ratio_text = ratio.map_or_else(|| "—".to_owned(), |ratio| format!("{ratio:.2}"));
    let verdict = match (row.target, met) {
        (Target::None, _) => "reported",
        (_, true) => "met",
        (_, false) => "**missed**",
    };
    Ok((
        format!(
            "| {} | {measured:.1} ns/{} (`{}`) | {reference_text} | {ratio_text} | {target_text} | {verdict} |",
            row.path, row.unit, row.measured
        ),
        met,
    ))
}

/// Runs the benchmarks; `quick` only builds them and runs each once.
pub fn run_bench(quick: bool) -> StepResult {
    let mut command = cargo();
    command.current_dir(workspace_root()).args([
        "bench",
        "-p",
        "wavert-tests",
        "--bench",
        "hot_paths",
        "--",
    ]);
    if quick {
        command.arg("--test");
        run(&mut command)?;
        return Ok("every benchmark built and ran once".to_owned());
    }
    command.arg("--noplot");
    run(&mut command)?;

    let mut table = String::from(
        "| path | measured (median) | reference (median, same run) | ratio (reference / measured) | target | verdict |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut missed = 0;
    let timed = ROWS.iter().map(evaluate);
    let counted = COUNTED_ROWS.iter().map(evaluate_counted);
    for evaluated in timed.chain(counted) {
        let (line, met) = evaluated?;
        table.push_str(&line);
        table.push('\n');
        if !met {
            missed += 1;
        }
    }
    println!("\n{table}");
    write_report(&table)?;
    Ok(format!(
        "{} rows, {missed} target(s) missed; written to docs/performance.md",
        ROWS.len() + COUNTED_ROWS.len()
    ))
}

fn write_report(table: &str) -> Result<(), String> {
    let path = workspace_root().join("docs").join("performance.md");
    let mut text = String::from(
        "# Performance\n\n\
         Written by `cargo xtask bench` (criterion medians; every ratio compares two\n\
         figures measured in the same run on the same machine). Re-run it to\n\
         refresh this file; `cargo xtask bench --quick` only checks that the\n\
         benchmarks build and run.\n\n",
    );
    let _ = writeln!(
        text,
        "Machine: {} logical CPUs, {}.\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        std::env::consts::ARCH
    );
    text.push_str(table);
    text.push_str(
        "\nThe benchmark sources are `tests/benches/hot_paths.rs`; the rows and\n\
         targets are defined in `xtask/src/bench.rs`.\n",
    );
    write_report_file(&path, &text)
}

fn write_report_file(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|error| format!("write {}: {error}", path.display()))
}
