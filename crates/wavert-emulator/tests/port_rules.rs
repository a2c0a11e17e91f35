//! Every rule of the emulated port fires: the product's cable behind
//! `tamper::tampered_wave_miniport`, one answer changed at the trampoline,
//! must be caught with the rule's own message; the untouched cable passes
//! the same sequence (so the rule, not the setup, is what fails).
#![allow(clippy::unwrap_used, reason = "test code")]

use std::sync::Arc;

use portcls_sys::{IMiniportWaveRT, MmWriteCombined, KSSTATE_RUN, PCFILTER_DESCRIPTOR};
use wavert_com::ComPtr;
use wavert_emulator::cable::{start_cable_adapter, CableAdapter, CableOptions};
use wavert_emulator::engine::{
    negotiate_format, streaming_pin, EngineError, FormatRequest, Stream, POISON_CACHE_TYPE,
};
use wavert_emulator::machine::{ClockMode, Machine, QPC_PER_MS};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::personality::{OrderOutcome, PortPersonality};
use wavert_emulator::tamper::{tampered_wave_miniport, Tamper};

struct Rig {
    machine: Arc<Machine>,
    adapter: CableAdapter,
    real: ComPtr<IMiniportWaveRT>,
    description: &'static PCFILTER_DESCRIPTOR,
}

fn rig(personality: PortPersonality) -> Rig {
    let memory = PhysicalMemory::anonymous(MemoryConfig {
        size_bytes: 16 << 20,
        ..MemoryConfig::default()
    })
    .unwrap();
    let machine = Machine::new(memory, ClockMode::Virtual);
    machine.set_personality(personality);
    let adapter = start_cable_adapter(&machine, CableOptions::default()).unwrap();
    let filter = adapter.wave_filter("WaveRender").unwrap();
    Rig {
        machine,
        adapter,
        real: filter.miniport,
        description: filter.description,
    }
}

/// Opens the render pin of `miniport` (the real one or a tampered one).
fn open(rig: &Rig, miniport: &ComPtr<IMiniportWaveRT>) -> Result<Stream, EngineError> {
    let pin = streaming_pin(rig.description, false).unwrap();
    let (_, format) =
        negotiate_format(miniport, rig.description, pin, &FormatRequest::default()).unwrap();
    Stream::open(&rig.machine, miniport, pin, false, &format)
}

/// Opens, allocates (`notifications` `None`: without notification), runs
/// and reads the position a few times, then closes: the first error.
fn session(
    rig: &Rig,
    miniport: &ComPtr<IMiniportWaveRT>,
    notifications: Option<u32>,
) -> Result<(), EngineError> {
    let mut stream = open(rig, miniport)?;
    let outcome = (|| {
        stream.allocate(7_680, notifications)?;
        stream.hw_latency()?;
        stream.set_state(KSSTATE_RUN)?;
        for _ in 0..50 {
            rig.machine.advance(QPC_PER_MS);
            stream.position()?;
        }
        Ok(())
    })();
    let closed = stream.close().map(|_| ());
    outcome.and(closed)
}

/// The rule's message from a session over `tamper`, and a clean machine
/// afterwards (a caught rule leaks nothing).
fn caught(personality: PortPersonality, tamper: Tamper, notifications: Option<u32>) -> String {
    let rig = rig(personality);
    let clean = session(&rig, &rig.real, notifications);
    assert_eq!(clean, Ok(()), "{personality}: the untouched cable passes");
    let tampered = tampered_wave_miniport(&rig.real, tamper).unwrap();
    let error = session(&rig, &tampered, notifications)
        .expect_err(&format!("{personality}: {tamper:?} must be caught"))
        .to_string();
    drop(tampered);
    let Rig {
        machine, adapter, ..
    } = rig;
    adapter.remove();
    assert_eq!(machine.memory.pages_in_use(), 0, "{tamper:?}: pages leaked");
    error
}

#[test]
fn a_buffer_smaller_than_asked_without_notification_is_caught() {
    let message = caught(PortPersonality::Windows, Tamper::ShortBuffer(4), None);
    assert!(message.contains("at least the requested size"), "{message}");
}

#[test]
fn a_smaller_buffer_with_notification_is_allowed() {
    // Two whole frames less per packet keeps whole frames per packet.
    let rig = rig(PortPersonality::Windows);
    let tampered = tampered_wave_miniport(&rig.real, Tamper::ShortBuffer(16)).unwrap();
    assert_eq!(session(&rig, &tampered, Some(2)), Ok(()));
}

#[test]
fn an_offset_past_the_mdl_is_caught() {
    let message = caught(PortPersonality::Windows, Tamper::OffsetPastMdl, Some(2));
    assert!(message.contains("passes the end of the MDL"), "{message}");
}

#[test]
fn a_reserved_or_unset_cache_type_is_caught() {
    let message = caught(PortPersonality::Windows, Tamper::CacheType(7), Some(2));
    assert!(message.contains("no MEMORY_CACHING_TYPE"), "{message}");
    let unset = caught(
        PortPersonality::Windows,
        Tamper::CacheType(POISON_CACHE_TYPE),
        None,
    );
    assert!(unset.contains("left unset"), "{unset}");
}

#[test]
fn a_cache_type_unlike_the_kernel_mapping_is_caught() {
    // The cable maps its buffer cached; claiming write-combined would have
    // the client map it differently.
    let message = caught(
        PortPersonality::Windows,
        Tamper::CacheType(MmWriteCombined),
        Some(2),
    );
    assert!(message.contains("differs from the cache type"), "{message}");
}

#[test]
fn positions_at_or_beyond_the_buffer_size_are_caught() {
    for tamper in [Tamper::PlayOffsetAtSize, Tamper::WriteOffsetBeyond] {
        let message = caught(PortPersonality::Windows, tamper, Some(2));
        assert!(
            message.contains("is not inside the"),
            "{tamper:?}: {message}"
        );
    }
}

#[test]
fn a_latency_field_left_unset_is_caught() {
    let message = caught(PortPersonality::Windows, Tamper::LatencyFieldUnset, Some(2));
    assert!(message.contains("left CodecDelay unset"), "{message}");
}

#[test]
fn a_register_without_an_address_is_caught_by_the_hostile_port() {
    let message = caught(
        PortPersonality::Hostile,
        Tamper::RegisterWithoutAddress,
        Some(2),
    );
    assert!(message.contains("without a register address"), "{message}");
}

#[test]
fn a_device_description_left_unwritten_is_caught_by_the_hostile_port() {
    let message = caught(
        PortPersonality::Hostile,
        Tamper::DeviceDescriptionUnset,
        Some(2),
    );
    assert!(message.contains("GetDeviceDescription"), "{message}");
}

#[test]
fn a_refused_state_jump_is_recorded_and_the_stream_runs_in_steps() {
    let rig = rig(PortPersonality::ReactOs);
    let tampered = tampered_wave_miniport(&rig.real, Tamper::RefuseStateJumps).unwrap();
    assert_eq!(
        session(&rig, &tampered, Some(2)),
        Ok(()),
        "steps still work"
    );
    let orders = rig.machine.orders();
    assert!(
        orders.iter().any(|o| o.order == "STOP -> RUN in one call"
            && matches!(o.outcome, OrderOutcome::Refused(_))),
        "{orders:?}"
    );
    // The product's stream takes the same jump.
    let fresh = self::rig(PortPersonality::ReactOs);
    assert_eq!(session(&fresh, &fresh.real, Some(2)), Ok(()));
    assert!(fresh
        .machine
        .orders()
        .iter()
        .all(|o| o.outcome == OrderOutcome::Tolerated));
}

#[test]
fn the_reactos_port_frees_before_unregistering_and_the_cable_takes_it() {
    let rig = rig(PortPersonality::ReactOs);
    assert_eq!(session(&rig, &rig.real, Some(2)), Ok(()));
    assert!(
        rig.machine.violations().is_empty(),
        "{:?}",
        rig.machine.violations()
    );
}

#[test]
fn call_memory_barrier_is_derived_from_the_cache_type() {
    // The cable maps its buffers cached: the client needs no barrier (the
    // port sets CallMemoryBarrier only for MmWriteCombined).
    let rig = rig(PortPersonality::Windows);
    let mut stream = open(&rig, &rig.real).unwrap();
    assert!(!stream.call_memory_barrier(), "no buffer yet");
    stream.allocate(7_680, Some(2)).unwrap();
    assert!(!stream.call_memory_barrier(), "a cached buffer");
    stream.close().unwrap();
}
