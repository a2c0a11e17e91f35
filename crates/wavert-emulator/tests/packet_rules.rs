//! Every packet rule of the emulated port fires: the product's cable behind
//! `tamper::tampered_wave_miniport`, one packet answer changed at the
//! trampoline, must be caught with the rule's own message; the untouched
//! cable passes the same sequence first (so the rule, not the setup, is
//! what fails).
#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;

use portcls_sys::{IMiniportWaveRT, KSSTATE_RUN, PCFILTER_DESCRIPTOR};
use wavert_com::ComPtr;
use wavert_emulator::cable::{start_cable_adapter, CableAdapter, CableOptions};
use wavert_emulator::engine::{
    negotiate_format, streaming_pin, EngineError, FormatRequest, Stream,
};
use wavert_emulator::machine::{ClockMode, Machine, QPC_PER_MS};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::session::{run_loopback, LoopbackConfig, WaveFilter};
use wavert_emulator::signal;
use wavert_emulator::tamper::{tampered_wave_miniport, Tamper};

struct Filter {
    real: ComPtr<IMiniportWaveRT>,
    description: &'static PCFILTER_DESCRIPTOR,
}

struct Rig {
    machine: Arc<Machine>,
    adapter: CableAdapter,
    render: Filter,
    capture: Filter,
}

fn rig() -> Rig {
    let memory = PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 16 << 20,
        ..MemoryConfig::default()
    })
    .unwrap();
    let machine = Machine::new(memory, ClockMode::Virtual);
    let adapter = start_cable_adapter(&machine, CableOptions::default()).unwrap();
    let filter = |name| {
        let f = adapter.wave_filter(name).unwrap();
        Filter {
            real: f.miniport,
            description: f.description,
        }
    };
    let render = filter("WaveRender");
    let capture = filter("WaveCapture");
    Rig {
        machine,
        adapter,
        render,
        capture,
    }
}

/// Which side a tamper sits on.
#[derive(Clone, Copy)]
enum Side {
    Render,
    Capture,
}

/// A loopback session (20 ms packets, two per buffer, 48 kHz 16-bit
/// stereo, 0.31 s: the signal ends half-way through a packet) with the
/// miniport of `side` replaced by `miniport`.
fn session(
    rig: &Rig,
    side: Side,
    miniport: &ComPtr<IMiniportWaveRT>,
    end_of_stream: bool,
) -> Result<(), EngineError> {
    let (render, capture) = match side {
        Side::Render => (miniport, &rig.capture.real),
        Side::Capture => (&rig.render.real, miniport),
    };
    let config = LoopbackConfig {
        end_of_stream,
        ..LoopbackConfig::default()
    };
    let result = run_loopback(
        &rig.machine,
        WaveFilter {
            miniport: render,
            description: rig.render.description,
        },
        WaveFilter {
            miniport: capture,
            description: rig.capture.description,
        },
        &config,
        &mut |format| signal::test_signal(format, 0.31),
        &mut |_| {},
    )?;
    assert!(result.packet_mode.render && result.packet_mode.capture);
    Ok(())
}

/// The rule's message from a session with `tamper` on `side`, after the
/// untouched cable passed the same session; nothing leaks either way.
fn caught(side: Side, tamper: Tamper, end_of_stream: bool) -> String {
    let rig = rig();
    let real = match side {
        Side::Render => rig.render.real.clone(),
        Side::Capture => rig.capture.real.clone(),
    };
    assert_eq!(
        session(&rig, side, &real, end_of_stream),
        Ok(()),
        "the untouched cable passes"
    );
    let tampered = tampered_wave_miniport(&real, tamper).unwrap();
    let error = session(&rig, side, &tampered, end_of_stream)
        .expect_err(&format!("{tamper:?} must be caught"))
        .to_string();
    drop((tampered, real));
    let Rig {
        machine,
        adapter,
        render,
        capture,
    } = rig;
    drop((render, capture));
    adapter.remove();
    assert_eq!(machine.memory.pages_in_use(), 0, "{tamper:?}: pages leaked");
    error
}

#[test]
fn a_packet_count_ahead_of_the_clock_is_caught() {
    let message = caught(Side::Render, Tamper::PacketCountAhead, false);
    assert!(message.contains("GetPacketCount answered"), "{message}");
    assert!(message.contains("nominal rate"), "{message}");
}

#[test]
fn a_presentation_position_going_backwards_is_caught() {
    let message = caught(Side::Render, Tamper::PresentationBackwards, false);
    assert!(message.contains("went backwards"), "{message}");
}

#[test]
fn an_ignored_end_of_stream_is_heard_in_the_capture() {
    let message = caught(Side::Render, Tamper::IgnoreEndOfStream, true);
    assert!(
        message.contains("after the end of stream") && message.contains("not silence"),
        "{message}"
    );
}

#[test]
fn a_read_packet_time_off_by_one_tick_is_caught() {
    let message = caught(Side::Capture, Tamper::ReadPacketQpcLate(1), false);
    assert!(message.contains("first sample"), "{message}");
}

#[test]
fn a_read_packet_number_behind_is_caught() {
    let message = caught(Side::Capture, Tamper::ReadPacketNumberBehind, false);
    assert!(
        message.contains("GetReadPacket answered packet"),
        "{message}"
    );
}

#[test]
fn a_presentation_position_ahead_of_the_clock_is_caught() {
    let message = caught(Side::Render, Tamper::PresentationAhead, false);
    assert!(message.contains("frames have been moved"), "{message}");
}

#[test]
fn more_data_claimed_for_the_newest_packet_is_caught() {
    let message = caught(Side::Capture, Tamper::ReadPacketMoreData, false);
    assert!(message.contains("MoreData TRUE"), "{message}");
}

#[test]
fn not_ready_while_a_packet_is_complete_is_caught() {
    let message = caught(Side::Capture, Tamper::ReadPacketNeverReady, false);
    assert!(
        message.contains("STATUS_DEVICE_NOT_READY, but packet 1 is complete"),
        "{message}"
    );
}

/// A render stream in packet mode that sleeps through three packet ends
/// before it writes again: its stale packet must be refused as late.
fn late_render_client(rig: &Rig, miniport: &ComPtr<IMiniportWaveRT>) -> Result<u64, EngineError> {
    let pin = streaming_pin(rig.render.description, false).unwrap();
    let (_, format) = negotiate_format(
        miniport,
        rig.render.description,
        pin,
        &FormatRequest::default(),
    )
    .unwrap();
    let mut stream = Stream::open(&rig.machine, miniport, pin, false, &format)?;
    let outcome = (|| {
        stream.allocate(7_680, Some(2))?;
        stream.register_event()?;
        assert!(stream.uses_packets());
        stream.prefill(&mut |out| out.fill(0x11))?;
        stream.set_state(KSSTATE_RUN)?;
        rig.machine.advance(65 * QPC_PER_MS);
        let play = stream.position()?;
        stream.write_packet(play, &mut |out| out.fill(0x22))?;
        Ok(stream.stats.late_writes)
    })();
    let closed = stream.close().map(|_| ());
    outcome.and_then(|late| closed.map(|()| late))
}

#[test]
fn a_late_packet_accepted_as_written_is_caught() {
    let rig = rig();
    assert_eq!(late_render_client(&rig, &rig.render.real), Ok(1));
    let tampered = tampered_wave_miniport(&rig.render.real, Tamper::AcceptLatePackets).unwrap();
    let message = late_render_client(&rig, &tampered)
        .expect_err("a late packet taken must be caught")
        .to_string();
    assert!(
        message.contains("SetWritePacket(2) answered STATUS_SUCCESS")
            && message.contains("STATUS_DATA_LATE_ERROR"),
        "{message}"
    );
}
