//! The command line: what can be asked for, parsed by clap.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use wavert_emulator::engine::FormatRequest;
use wavert_emulator::memory::Layout;
use wavert_emulator::personality::PortPersonality;
use wavert_miniport::DmaMode;

/// The command line, parsed.
#[derive(Debug, Parser)]
#[command(
    name = "wavert-emulator",
    version,
    about = "Loads the virtual loopback cable through the user-mode PortCls emulator, plays a \
             signal through its render endpoint, records its capture endpoint and verifies it"
)]
pub struct Args {
    /// Play this WAV file instead of the generated 997 Hz tone + counter
    #[arg(long, value_name = "FILE.wav")]
    pub input: Option<PathBuf>,

    /// Folder for the captured WAV and the position plot
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub output: PathBuf,

    /// Format, e.g. 48000,16,2 or 96000,32,2,float
    #[arg(long, value_name = "RATE,BITS,CHANNELS[,float]", value_parser = parse_format)]
    pub format: Option<FormatRequest>,

    /// The capture pin's own format (the cable converts rate, sample type
    /// and channels); the capture is then checked as a tone, not byte for
    /// byte: level, THD+N and pitch against the rendered 997 Hz
    #[arg(long, value_name = "RATE,BITS,CHANNELS[,float]", value_parser = parse_format)]
    pub capture_format: Option<FormatRequest>,

    /// Engine period (one packet) in milliseconds; the buffer holds two
    /// (20 ms at 48 kHz 16-bit stereo: 7680 bytes on two scattered pages)
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub period: u32,

    /// Notification events per buffer (1: at the end; 2: middle and end)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=2)
    )]
    pub notifications: u32,

    /// Seconds of generated signal
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    pub seconds: f64,

    /// Device back-end: virtual (the loopback cable), ac97 (the AC'97
    /// miniport on QEMU's AC'97, 16-bit stereo 8-48 kHz; writes
    /// ac97-qemu.wav) or hda (the HD Audio miniport on QEMU's intel-hda,
    /// 16-bit stereo at the codec's rates; writes hda-qemu.wav)
    #[arg(long, value_enum, value_name = "device", default_value_t = Device::Virtual)]
    pub device: Device,

    /// Virtual DMA engine: looping (wraps by itself) or refill (AC'97-style
    /// 32-slot ring refilled from the timer routine)
    #[arg(long, value_enum, value_name = "dma", default_value_t = DmaEngine::Looping)]
    pub dma: DmaEngine,

    /// Run the shipped driver image (e.g. target/package/rswavert/amd64/rswavert.sys,
    /// from `cargo xtask cross`) instead of the host-built miniport: loaded,
    /// relocated and bound to kernel and PortCls stand-ins with Driver
    /// Verifier's rules
    #[arg(long, value_name = "RSWAVERT.SYS")]
    pub image: Option<PathBuf>,

    /// Run in real time instead of on the virtual clock
    #[arg(long)]
    pub real_time: bool,

    /// Port personality: the order the emulated PortCls calls the miniport
    /// in: windows (the documented order), reactos (ReactOS's PortCls:
    /// page-rounded requests, latency at open, state jumps, buffer freed
    /// before the event is unregistered) or hostile (everything the
    /// documentation allows, in the least convenient way)
    #[arg(long = "port", value_enum, value_name = "personality", default_value_t = Port::Windows)]
    pub port: Port,

    /// Send the virtual device N D0 -> D3 -> D0 power cycles during
    /// playback (through the power management its adapter registered, at
    /// random moments), each checked: positions held, nothing signalled,
    /// capture bit-exact after every resume
    #[arg(long = "power-cycle", value_name = "N", default_value_t = 0)]
    pub power_cycle: u32,

    /// Physical memory of the virtual device's machine: split (half of RAM
    /// from 4 GiB up, so buffers get pages above 4 GiB) or low (all below
    /// 4 GiB). The AC'97's QEMU guest RAM is always split.
    #[arg(long, value_enum, value_name = "layout", default_value_t = MemoryLayout::Split)]
    pub memory: MemoryLayout,

    /// Cables the virtual device registers (1 to 8, as the INF's
    /// `CableCount` parameter sets them), all streamed at once, each with
    /// its own signal and each checked bit-exact; cable 1 gets the full
    /// report
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub cables: u8,

    /// Render volume in dB (-96 to 0; the node keeps 0.5 dB steps), set on
    /// every cable's render volume node before playback as the audio
    /// engine sets it (`KSPROPERTY_AUDIO_VOLUMELEVEL`, all channels); the
    /// capture is then checked against the render scaled by that gain
    #[arg(long, value_name = "DB", allow_negative_numbers = true, value_parser = parse_volume)]
    pub volume: Option<f64>,
}

/// Parses `--volume DB`: a number of decibels from -96 to 0.
fn parse_volume(text: &str) -> Result<f64, String> {
    let db: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of decibels"))?;
    if (-96.0..=0.0).contains(&db) {
        Ok(db)
    } else {
        Err(format!(
            "{db} dB is outside -96 .. 0 (the cable's volume never amplifies)"
        ))
    }
}

/// The port personality `--port` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Port {
    // The documented order (Windows PortCls).
    Windows,
    // ReactOS's PortCls.
    Reactos,
    // The least convenient order the documentation allows.
    Hostile,
}

impl From<Port> for PortPersonality {
    fn from(port: Port) -> Self {
        match port {
            Port::Windows => Self::Windows,
            Port::Reactos => Self::ReactOs,
            Port::Hostile => Self::Hostile,
        }
    }
}

/// The physical memory layout `--memory` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MemoryLayout {
    // Half of RAM below 4 GiB, half from 4 GiB up.
    Split,
    // All of RAM below 4 GiB.
    Low,
}

impl From<MemoryLayout> for Layout {
    fn from(layout: MemoryLayout) -> Self {
        match layout {
            MemoryLayout::Split => Self::HalfHigh,
            MemoryLayout::Low => Self::Low,
        }
    }
}

// The variants carry plain comments, not doc comments: clap would show a
// doc comment as the value's own help and change `--help`.

/// The device back-end `--device` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    // The virtual loopback cable (`wavert-miniport`), loaded through the
    // emulated PortCls.
    Virtual,
    // The Intel ICH AC'97 back-end on QEMU's AC'97.
    Ac97,
    // The Intel HD Audio back-end on QEMU's intel-hda with hda-duplex.
    Hda,
}

/// The virtual cable's DMA engine `--dma` picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DmaEngine {
    // A buffer the engine wraps around by itself.
    Looping,
    // An AC'97-style 32-slot ring refilled from the timer routine.
    Refill,
}

impl From<DmaEngine> for DmaMode {
    fn from(engine: DmaEngine) -> Self {
        match engine {
            DmaEngine::Looping => Self::Looping,
            DmaEngine::Refill => Self::Refill,
        }
    }
}

/// Parses `--format RATE,BITS,CHANNELS[,float]`.
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
        // The device picks the container (the range request).
        container_bits: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        <Args as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn defaults_are_those_documented() {
        let args = Args::try_parse_from(["wavert-emulator"]).unwrap();
        assert_eq!(args.output, PathBuf::from("out"));
        assert_eq!((args.period, args.notifications), (20, 2));
        assert!((args.seconds - 5.0).abs() < f64::EPSILON);
        assert_eq!(
            (args.device, args.dma),
            (Device::Virtual, DmaEngine::Looping)
        );
        assert!(args.input.is_none() && args.format.is_none() && args.image.is_none());
        assert!(!args.real_time);
        assert_eq!(args.port, Port::Windows);
        assert_eq!(args.cables, 1);
        assert!(args.volume.is_none());
        assert!(args.capture_format.is_none());
    }

    #[test]
    fn volumes_parse_and_amplification_is_refused() {
        let volume = |v: &str| Args::try_parse_from(["x", "--volume", v]).map(|a| a.volume);
        assert_eq!(volume("-6").unwrap(), Some(-6.0));
        assert_eq!(volume("-0.5").unwrap(), Some(-0.5));
        assert_eq!(volume("0").unwrap(), Some(0.0));
        for bad in ["3", "-97", "loud"] {
            assert!(volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cable_counts_outside_one_to_eight_are_refused() {
        assert_eq!(
            Args::try_parse_from(["x", "--cables", "8"]).unwrap().cables,
            8
        );
        for bad in ["0", "9", "99"] {
            assert!(
                Args::try_parse_from(["x", "--cables", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn port_personalities_parse_and_map() {
        for (name, personality) in [
            ("windows", PortPersonality::Windows),
            ("reactos", PortPersonality::ReactOs),
            ("hostile", PortPersonality::Hostile),
        ] {
            let args = Args::try_parse_from(["x", "--port", name]).unwrap();
            assert_eq!(PortPersonality::from(args.port), personality);
            assert_eq!(personality.name(), name, "the report uses the flag's name");
        }
        assert!(Args::try_parse_from(["x", "--port", "linux"]).is_err());
    }

    #[test]
    fn memory_layouts_parse_and_map() {
        let args = Args::try_parse_from(["wavert-emulator"]).unwrap();
        assert_eq!(args.memory, MemoryLayout::Split);
        let low = Args::try_parse_from(["x", "--memory", "low"]).unwrap();
        assert_eq!(Layout::from(low.memory), Layout::Low);
    }

    #[test]
    fn formats_parse_and_bad_ones_say_why() {
        let f = parse_format("96000, 32, 2, float").unwrap();
        assert_eq!((f.rate, f.bits, f.channels, f.float), (96_000, 32, 2, true));
        assert!(parse_format("1,2").unwrap_err().contains("RATE,BITS"));
        assert!(parse_format("48000,16,2,int")
            .unwrap_err()
            .contains("'int'"));
        assert!(Args::try_parse_from(["x", "--period", "1001"]).is_err());
        assert!(Args::try_parse_from(["x", "--notifications", "3"]).is_err());
    }
}
