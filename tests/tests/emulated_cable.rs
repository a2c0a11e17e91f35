//! The product's virtual cable (`wavert-miniport`) loaded by the emulator as
//! PortCls loads it (`StartDevice` through the miniport crate's own
//! `adapter::install`), found by its registered subdevice names and driven
//! only through its vtables by the emulated audio engine.
//!
//! With `RSWAVERT_IMAGE` naming the cross-built `rswavert.sys` (`cargo xtask
//! test`'s image stage), every test runs the shipped image instead: loaded,
//! relocated and bound to the emulator's kernel and PortCls stand-ins, with
//! the same engine, sessions and checks. The image's cable is built with
//! looping DMA, so the refill mode is the host build's alone.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::cast_possible_truncation,
    reason = "test code: byte counts far below 2^32"
)]

use std::path::PathBuf;
use std::sync::Arc;

use wavert_core::format::{AudioFormat, SampleType};
use wavert_emulator::cable::{start_cable_adapter, CableAdapter, CableOptions, PnpRequest};
use wavert_emulator::engine::{negotiate_format, streaming_pin, FormatRequest, Stream};
use wavert_emulator::hlk::methods::{run_on_cable, HlkConfig, HlkMethod};
use wavert_emulator::image::{start_image_adapter, ImageDevice, ImageRunError};
use wavert_emulator::ks_formats::{check_wave_filter_formats, propose_format};
use wavert_emulator::machine::{ClockMode, Machine};
use wavert_emulator::memory::{
    Fault, Fragmentation, MemoryConfig, PhysicalMemory, HIGH_RAM_BASE, PAGE_SIZE,
};
use wavert_emulator::personality::{summarise, OrderOutcome, PortPersonality};
use wavert_emulator::power::{
    register_power, FaultyPower, PowerCycle, PowerCycler, PowerFault, PowerPlan,
};
use wavert_emulator::session::{LoopbackConfig, LoopbackResult, PacketModeUse};
use wavert_emulator::signal;
use wavert_miniport::adapter::{PHYSICAL_CONNECTIONS, SUBDEVICES};
use wavert_miniport::{ac97, cable, DmaMode};

const PAGE: u64 = PAGE_SIZE as u64;

fn machine_with(config: MemoryConfig) -> Arc<Machine> {
    machine_clocked(config, ClockMode::Virtual)
}

fn machine_clocked(config: MemoryConfig, clock: ClockMode) -> Arc<Machine> {
    Machine::new(PhysicalMemory::anonymous(config).unwrap(), clock)
}

fn new_machine() -> Arc<Machine> {
    machine_with(MemoryConfig {
        size_bytes: 32 << 20,
        ..MemoryConfig::default()
    })
}

/// The shipped image under test, if the image stage named one.
fn image() -> Option<PathBuf> {
    std::env::var_os("RSWAVERT_IMAGE").map(PathBuf::from)
}

/// The DMA modes the driver under test has.
fn dma_modes() -> Vec<DmaMode> {
    if image().is_some() {
        vec![DmaMode::Looping]
    } else {
        vec![DmaMode::Looping, DmaMode::Refill]
    }
}

/// `StartDevice` of the driver under test, failing PortCls call `fail`.
#[allow(
    clippy::option_if_let_else,
    reason = "two drivers, two arms: clearer than map_or_else"
)]
fn try_start(
    machine: &Arc<Machine>,
    dma: DmaMode,
    fail: Option<usize>,
) -> Result<CableAdapter, i32> {
    match image() {
        Some(path) => {
            assert_eq!(dma, DmaMode::Looping, "the image runs looping DMA");
            let device = ImageDevice {
                fail_portcls_call: fail,
                ..ImageDevice::default()
            };
            start_image_adapter(machine, &path, device).map_err(|e| match e {
                ImageRunError::Status { status, .. } => status,
                other => panic!("{}: {other}", path.display()),
            })
        }
        None => start_cable_adapter(
            machine,
            CableOptions {
                dma,
                fail_portcls_call: fail,
                ..CableOptions::default()
            },
        )
        .map_err(wavert_com::NtStatus::code),
    }
}

fn start(machine: &Arc<Machine>, dma: DmaMode) -> CableAdapter {
    try_start(machine, dma, None).unwrap()
}

/// Events the cable signalled (its own counter for the host build, the
/// kernel's `KeSetEvent` count for the image), and whether its DMA engine
/// reported errors or skipped bytes (only the host build can tell).
fn signals_and_dma_trouble(adapter: &CableAdapter) -> (u64, bool) {
    adapter.cable().map_or_else(
        || {
            let image = adapter.image().unwrap();
            (image.kernel().counters().events_signalled, false)
        },
        |cable| {
            let stats = cable.stats();
            (
                stats.signals,
                stats.dma_errors != 0 || stats.skipped_bytes != 0,
            )
        },
    )
}

/// Nothing left behind: pages, MDLs, mappings, port objects, timers,
/// protocol violations.
fn assert_clean(machine: &Machine, what: &str) {
    assert_eq!(machine.memory.pages_in_use(), 0, "{what}: pages leaked");
    assert_eq!(machine.memory.live_mdls(), 0, "{what}: MDLs leaked");
    assert_eq!(machine.memory.live_mappings(), 0, "{what}: mappings leaked");
    assert_eq!(machine.live_objects(), 0, "{what}: port objects leaked");
    assert_eq!(machine.running_timers(), 0, "{what}: timer still running");
    assert!(
        machine.violations().is_empty(),
        "{what}: {:?}",
        machine.violations()
    );
}

/// Whether a page list is scattered: no page directly follows the one
/// before it (trivially true for one page).
fn scattered(pages: &[u64]) -> bool {
    pages.windows(2).all(|w| w[1] != w[0] + PAGE)
}

/// One render-to-capture session through the registered wave filters.
fn loopback(
    adapter: &CableAdapter,
    config: &LoopbackConfig,
    seconds: f64,
) -> (LoopbackResult, Vec<u8>) {
    let (result, rendered) = adapter.loopback_test_signal(config, seconds);
    (
        result.unwrap_or_else(|e| panic!("{config:?}: {e}")),
        rendered,
    )
}

/// [`assert_bit_exact_under`] the Windows port.
fn assert_bit_exact(result: &LoopbackResult, rendered: &[u8], config: &LoopbackConfig) {
    assert_bit_exact_under(result, rendered, config, PortPersonality::Windows);
}

/// Every rendered frame comes back, at exactly the reported latency, with
/// no glitch on either side, and the event and packet counts agree; packet
/// mode was used where the port knows it (render with two packets per
/// buffer, capture always), and every packet answer passed its rule.
fn assert_bit_exact_under(
    result: &LoopbackResult,
    rendered: &[u8],
    config: &LoopbackConfig,
    personality: PortPersonality,
) {
    let what = format!("{personality} {config:?}");
    let packet_port = personality.behaviour().packet_mode;
    assert_eq!(
        result.packet_mode,
        PacketModeUse {
            render: packet_port && config.notification_count == 2,
            capture: packet_port,
        },
        "{what}"
    );
    if result.packet_mode.render {
        // GetPacketCount, the presentation position and SetWritePacket per
        // packet, each held to its rule (a broken one ends the session).
        assert!(
            result.render.packet_calls >= 3 * result.render.packets,
            "{what}: {:?}",
            result.render
        );
    }
    if result.packet_mode.capture {
        assert!(
            result.capture.packet_calls >= result.capture.packets,
            "{what}: {:?}",
            result.capture
        );
    }
    assert_eq!(result.render.late_writes, 0, "{what}");
    assert_eq!(result.capture.dropped_packets, 0, "{what}");
    let format = result.format;
    assert_eq!(format.sample_rate(), config.format.rate, "{what}");
    assert_eq!(format.channels(), config.format.channels, "{what}");
    assert_eq!(format.valid_bits(), config.format.bits, "{what}");
    if config.format.container_bits != 0 {
        assert_eq!(
            format.container_bits(),
            config.format.container_bits,
            "{what}"
        );
    }
    let block = format.block_align() as usize;
    let lag = signal::find_alignment(rendered, &result.captured, block, 96_000)
        .unwrap_or_else(|| panic!("{what}: rendered signal not found in the capture"));
    assert_eq!(
        lag as u64, result.reported_latency_frames,
        "{what}: capture repeats render {lag} frames late, the stream reported {}",
        result.reported_latency_frames
    );
    let (mismatches, first) = signal::mismatched_frames(rendered, &result.captured, block, lag);
    assert_eq!(mismatches, 0, "{what}: first differing frame {first:?}");
    assert_eq!(result.render.glitches, 0, "{what}: render glitches");
    assert_eq!(result.capture.glitches, 0, "{what}: capture glitches");
    // One packet per notification, a packet being buffer / count.
    let packet = result.capture_buffer / config.notification_count;
    assert_eq!(
        result.captured.len() as u64,
        result.capture.packets * u64::from(packet),
        "{what}"
    );
    assert_eq!(
        result.capture.notifications, result.capture.packets,
        "{what}"
    );
    assert_eq!(result.render.notifications, result.render.packets, "{what}");
    assert!(
        result
            .render
            .notifications
            .abs_diff(result.capture.notifications)
            <= 1,
        "{what}: render {} and capture {} notifications at the same rate",
        result.render.notifications,
        result.capture.notifications
    );
    // Each granted buffer is whole frames per packet, on scattered pages.
    for (size, pages) in [
        (result.render_buffer, &result.render_pages),
        (result.capture_buffer, &result.capture_pages),
    ] {
        assert_eq!(size % config.notification_count, 0, "{what}");
        assert_eq!(
            (size / config.notification_count) as usize % block,
            0,
            "{what}"
        );
        assert_eq!(pages.len(), (size as usize).div_ceil(PAGE_SIZE), "{what}");
        assert!(scattered(pages), "{what}: contiguous pages {pages:x?}");
    }
}

/// A range request: the device picks the container.
const fn request(rate: u32, bits: u16, channels: u16, float: bool) -> FormatRequest {
    FormatRequest {
        rate,
        bits,
        channels,
        float,
        container_bits: 0,
    }
}

/// A specific PCM format: `bits` valid bits in `container` bits.
const fn exact(rate: u32, bits: u16, container: u16, channels: u16) -> FormatRequest {
    FormatRequest {
        rate,
        bits,
        channels,
        float: false,
        container_bits: container,
    }
}

#[test]
fn start_device_registers_four_subdevices_and_two_connections() {
    let machine = new_machine();
    let adapter = start(&machine, DmaMode::Looping);
    let r = machine.registrations();
    let names: Vec<&str> = r.subdevices.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "WaveRender",
            "TopologyRender",
            "WaveCapture",
            "TopologyCapture"
        ]
    );
    assert_eq!(
        names,
        SUBDEVICES.iter().map(|s| s.name).collect::<Vec<_>>(),
        "the registration order is the adapter table's"
    );
    // Four distinct port objects.
    let mut ports: Vec<usize> = r.subdevices.iter().map(|(_, p)| *p).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 4);
    let connections: Vec<(&str, u32, &str, u32)> = r
        .connections
        .iter()
        .map(|c| (c.from.as_str(), c.from_pin, c.to.as_str(), c.to_pin))
        .collect();
    assert_eq!(
        connections,
        [
            ("WaveRender", 1, "TopologyRender", 0),
            ("TopologyCapture", 1, "WaveCapture", 1)
        ]
    );
    for (c, table) in r.connections.iter().zip(PHYSICAL_CONNECTIONS) {
        assert_eq!(c.from, SUBDEVICES[table.from].name);
        assert_eq!(c.to, SUBDEVICES[table.to].name);
    }
    // The engine finds wave filters (and only those) by name, each with a
    // render or capture streaming pin as its direction says.
    let render = adapter.wave_filter("WaveRender").unwrap();
    let capture = adapter.wave_filter("WaveCapture").unwrap();
    assert_eq!(streaming_pin(render.description, false), Some(0));
    assert_eq!(streaming_pin(render.description, true), None);
    assert_eq!(streaming_pin(capture.description, true), Some(0));
    assert_eq!(streaming_pin(capture.description, false), None);
    assert!(adapter.wave_filter("TopologyRender").is_none());
    assert!(adapter.wave_filter("Wave").is_none());
    assert!(adapter.topology_filter("TopologyRender").is_some());
    assert!(adapter.topology_filter("TopologyCapture").is_some());
    assert!(adapter.topology_filter("WaveRender").is_none());
    // The timer only runs while a stream runs.
    assert_eq!(machine.running_timers(), 0);
    let log = machine.log_lines();
    assert!(
        log.iter()
            .any(|l| l.contains("virtual cable 1 of 1 registered")),
        "{log:?}"
    );
    drop((render, capture));
    adapter.remove();
    assert_clean(&machine, "after removal");
    let r = machine.registrations();
    assert!(r.subdevices.is_empty() && r.connections.is_empty(), "{r:?}");
    // The same machine starts the device again.
    let adapter = start(&machine, *dma_modes().last().unwrap());
    assert_eq!(machine.registrations().subdevices.len(), 4);
    adapter.remove();
    assert_clean(&machine, "after the second removal");
}

/// A connection: from, its pin, to, its pin.
type Connection = (String, u32, String, u32);

/// The subdevice names and connections registered now.
fn registered(machine: &Machine) -> (Vec<String>, Vec<Connection>) {
    let r = machine.registrations();
    (
        r.subdevices.into_iter().map(|(n, _)| n).collect(),
        r.connections
            .into_iter()
            .map(|c| (c.from, c.from_pin, c.to, c.to_pin))
            .collect(),
    )
}

/// The emulated PortCls's unregister log lines since line `from`.
fn unregistrations(machine: &Machine, from: usize) -> Vec<String> {
    machine
        .log_lines()
        .into_iter()
        .skip(from)
        .filter(|l| l.starts_with("PortCls: Unregister"))
        .collect()
}

/// A short bit-exact loopback through the registered wave filters.
fn streams_bit_exact(adapter: &CableAdapter, what: &str) {
    let config = LoopbackConfig {
        format: request(48_000, 16, 2, false),
        period_ms: 20,
        notification_count: 2,
        ..LoopbackConfig::default()
    };
    let (result, rendered) = adapter.loopback_test_signal(&config, 0.3);
    let result = result.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_bit_exact(&result, &rendered, &config);
}

#[test]
fn pnp_stop_start_stream_and_remove_reregister_cleanly() {
    let machine = new_machine();
    let mut adapter = start(&machine, DmaMode::Looping);
    let first = registered(&machine);
    assert_eq!(first.0.len(), 4);
    assert_eq!(first.1.len(), 2);
    streams_bit_exact(&adapter, "before the stop");

    // IRP_MN_STOP_DEVICE: the driver unregisters the connections (last
    // registered first), then the subdevices (last registered first),
    // before PortCls sees the IRP; PortCls lets go of every port.
    let log_before = machine.log_lines().len();
    adapter.stop().unwrap();
    let (names, connections) = registered(&machine);
    assert!(
        names.is_empty() && connections.is_empty(),
        "{names:?} {connections:?}"
    );
    assert_eq!(
        unregistrations(&machine, log_before),
        [
            "PortCls: UnregisterPhysicalConnection TopologyCapture pin 1 -> WaveCapture pin 1",
            "PortCls: UnregisterPhysicalConnection WaveRender pin 1 -> TopologyRender pin 0",
            "PortCls: UnregisterSubdevice TopologyCapture",
            "PortCls: UnregisterSubdevice WaveCapture",
            "PortCls: UnregisterSubdevice TopologyRender",
            "PortCls: UnregisterSubdevice WaveRender",
        ]
    );
    assert_eq!(adapter.port_count(), 0, "PortCls still holds ports");
    assert!(adapter.wave_filter("WaveRender").is_none());
    assert_eq!(machine.running_timers(), 0);
    assert!(
        machine.violations().is_empty(),
        "{:?}",
        machine.violations()
    );
    if let Some(image) = adapter.image() {
        assert_eq!(
            image.kernel().portcls().adapter_slot(),
            0,
            "the driver's state is still in the device extension"
        );
    }

    // IRP_MN_START_DEVICE: the same four subdevices and two connections.
    adapter.start().unwrap();
    assert_eq!(registered(&machine), first);
    assert_eq!(adapter.port_count(), 4);
    if let Some(image) = adapter.image() {
        assert_ne!(image.kernel().portcls().adapter_slot(), 0);
        assert_eq!(
            image.kernel().portcls().dispatched(),
            [0x00, 0x04, 0x00],
            "start, stop, start reached PortCls"
        );
    }
    streams_bit_exact(&adapter, "after the restart");

    // A surprise removal unregisters; the removal after it finds nothing
    // left to unregister (no second unregister call), and nothing leaks.
    let log_before = machine.log_lines().len();
    adapter.pnp(PnpRequest::SurpriseRemoval).unwrap();
    assert_eq!(registered(&machine), (Vec::new(), Vec::new()));
    assert_eq!(unregistrations(&machine, log_before).len(), 6);
    let log_before = machine.log_lines().len();
    adapter.remove();
    assert!(unregistrations(&machine, log_before).is_empty());
    assert_clean(&machine, "after the removal");
}

#[test]
fn a_restart_after_a_stop_that_did_not_unregister_is_refused() {
    // The host build with a PnP handler that unregisters nothing: PortCls's
    // subdevice slots stay taken, so the restart's PcRegisterSubdevice fails
    // as KS's KsAddObjectCreateItemToDeviceHeader does. All eight cables,
    // so that every slot AddDevice asked for is taken.
    let machine = new_machine();
    let mut adapter = start_cable_adapter(
        &machine,
        CableOptions {
            skip_unregister_on_stop: true,
            ..CableOptions::with_cables(8)
        },
    )
    .unwrap();
    adapter.stop().unwrap();
    assert_eq!(
        machine.registrations().subdevices.len(),
        wavert_miniport::adapter::MAX_SUBDEVICES as usize,
        "left registered"
    );
    assert_eq!(
        adapter.start().map_err(wavert_com::NtStatus::code),
        Err(portcls_sys::STATUS_ALLOTTED_SPACE_EXCEEDED)
    );
    let violations = machine.violations();
    assert!(
        violations.iter().any(|v| v.contains("subdevice slots")),
        "{violations:?}"
    );
    adapter.remove();
    assert_eq!(registered(&machine), (Vec::new(), Vec::new()));
    assert_eq!(machine.live_objects(), 0);
}

/// A dispatch routine that completes every PnP IRP itself.
#[portcls_sys::windows_abi]
const unsafe extern "system" fn swallowing_pnp_dispatch(
    _device: portcls_sys::PDEVICE_OBJECT,
    _irp: portcls_sys::PIRP,
) -> portcls_sys::NTSTATUS {
    portcls_sys::STATUS_SUCCESS
}

#[test]
fn the_image_pnp_checks_fire_on_a_broken_dispatch() {
    let Some(path) = image() else {
        // Host build: the image's own dispatch is what these break.
        return;
    };
    // The driver's handler replaced by PortCls's own (as when a driver
    // installs it before PcInitializeAdapterDriver): the stop unregisters
    // nothing, so the check the PnP test makes after a stop (nothing left
    // registered) fails. The driver's StartDevice then unregisters the
    // stale registration it still holds before registering again (its
    // defence against a start without a stop), so the restart recovers;
    // the emulated PortCls's refusal of a full subdevice table is shown on
    // the host build (`a_restart_after_a_stop_that_did_not_unregister_is_refused`).
    let machine = new_machine();
    let mut adapter = start_image_adapter(&machine, &path, ImageDevice::default()).unwrap();
    adapter.image_mut().unwrap().set_pnp_dispatch(None);
    adapter.stop().unwrap();
    assert_eq!(
        machine.registrations().subdevices.len(),
        4,
        "without the driver's handler the stop must leave the subdevices registered"
    );
    let log_before = machine.log_lines().len();
    adapter.start().unwrap();
    assert_eq!(unregistrations(&machine, log_before).len(), 6);
    assert_eq!(machine.registrations().subdevices.len(), 4);
    // And the removal, which the driver's handler never sees either, leaves
    // its four port references and its pool block behind: both reported.
    adapter.remove();
    assert_eq!(machine.live_objects(), 4, "the driver's port references");
    assert!(
        machine
            .violations()
            .iter()
            .any(|v| v.contains("pool leak") && v.contains("still allocated at unload")),
        "{:?}",
        machine.violations()
    );

    // A handler that never passes the IRP to PcDispatchIrp.
    let machine = new_machine();
    let mut adapter = start_image_adapter(&machine, &path, ImageDevice::default()).unwrap();
    adapter
        .image_mut()
        .unwrap()
        .set_pnp_dispatch(Some(swallowing_pnp_dispatch));
    adapter.stop().unwrap();
    assert!(
        machine
            .violations()
            .iter()
            .any(|v| v.contains("did not pass minor 0x04 to PcDispatchIrp")),
        "{:?}",
        machine.violations()
    );
    adapter.image_mut().unwrap().set_pnp_dispatch(None);
    adapter.remove();
}

#[test]
fn a_failing_portcls_call_during_start_device_leaves_nothing_behind() {
    // A clean start of the host build makes 14 PortCls calls: PcNewPort,
    // IPort::Init and PcRegisterSubdevice per subdevice, then two physical
    // connections. The image calls IPort::Init on the port object itself
    // (a method, not a PortCls export), so its failures are injected at
    // the exports: 2 per subdevice, 10 in all.
    let per_subdevice = if image().is_some() { 2 } else { 3 };
    let machine = new_machine();
    let services_calls = {
        let adapter = start(&machine, DmaMode::Looping);
        let r = machine.registrations();
        adapter.remove();
        assert_clean(&machine, "clean start");
        r.subdevices.len() * per_subdevice + r.connections.len()
    };
    assert_eq!(services_calls, 4 * per_subdevice + 2);
    for call in 0..services_calls {
        let machine = new_machine();
        let status = try_start(&machine, DmaMode::Looping, Some(call)).unwrap_err();
        assert_eq!(
            status,
            portcls_sys::STATUS_INSUFFICIENT_RESOURCES,
            "call {call}"
        );
        // The failed device's subdevices are gone with it.
        let r = machine.registrations();
        assert!(
            r.subdevices.is_empty() && r.connections.is_empty(),
            "call {call}: {r:?}"
        );
        assert_clean(&machine, &format!("PortCls call {call} failed"));
        // The log says which subdevice or connection failed (connections
        // come after all four subdevices).
        let failed = machine
            .log_lines()
            .into_iter()
            .find(|l| l.contains("failed"));
        if call < 4 * per_subdevice {
            let name = SUBDEVICES[call / per_subdevice].name;
            assert!(
                failed.as_deref().is_some_and(|l| l.contains(name)),
                "call {call}: {failed:?}"
            );
        } else {
            let c = PHYSICAL_CONNECTIONS[call - 4 * per_subdevice];
            let expected = format!(
                "physical connection {} -> {} failed",
                SUBDEVICES[c.from].name, SUBDEVICES[c.to].name
            );
            assert!(
                failed.as_deref().is_some_and(|l| l.contains(&expected)),
                "call {call}: {failed:?}"
            );
        }
    }
}

#[test]
fn format_sweep_is_bit_exact() {
    // Every bit depth and float at every rate class, stereo, 24 bits both
    // packed and in 32 (the default format); then 1, 6, 8, 12 (7.1.4) and
    // 16 channels.
    // Packed 24-bit frames (6, 18, 24 bytes) straddle page ends.
    let mut requests = Vec::new();
    for rate in [44_100, 48_000, 96_000, 192_000] {
        for (bits, float) in [(16, false), (32, false), (32, true)] {
            requests.push(request(rate, bits, 2, float));
        }
        requests.push(exact(rate, 24, 24, 2));
        requests.push(exact(rate, 24, 32, 2));
    }
    requests.extend([
        request(48_000, 16, 1, false),
        exact(44_100, 24, 24, 1),
        exact(44_100, 24, 32, 1),
        exact(48_000, 24, 24, 6),
        exact(48_000, 24, 32, 6),
        request(96_000, 32, 6, true),
        request(48_000, 16, 8, false),
        exact(192_000, 24, 24, 8),
        exact(192_000, 24, 32, 8),
        request(44_100, 32, 8, true),
        request(48_000, 16, 12, false),
        exact(48_000, 24, 24, 12),
        request(96_000, 32, 16, true),
        exact(192_000, 24, 32, 16),
        // Unsigned 8-bit (its silence: the next test).
        request(8_000, 8, 1, false),
        request(48_000, 8, 2, false),
        request(44_100, 8, 12, false),
        // A range asking for 24 bits gets the default's container.
        request(48_000, 24, 2, false),
    ]);
    for format in requests {
        let machine = new_machine();
        let adapter = start(&machine, DmaMode::Looping);
        let config = LoopbackConfig {
            format,
            period_ms: 10,
            notification_count: 2,
            ..LoopbackConfig::default()
        };
        let (result, rendered) = loopback(&adapter, &config, 0.25);
        assert_bit_exact(&result, &rendered, &config);
        let (_, dma_trouble) = signals_and_dma_trouble(&adapter);
        assert!(!dma_trouble, "{format:?}");
        adapter.remove();
        assert_clean(&machine, &format!("{format:?}"));
    }
}

#[test]
fn both_dma_modes_and_notification_counts_are_bit_exact() {
    for dma in dma_modes() {
        for notification_count in [1, 2] {
            for (format, period_ms) in [
                (request(48_000, 16, 2, false), 20),
                // Buffers of whole milliseconds (the cable's timer period):
                // with one notification the client rewrites the whole
                // buffer at the event, so the event must not come late.
                (request(44_100, 24, 2, false), 20),
                (request(96_000, 32, 8, true), 10),
            ] {
                let machine = new_machine();
                let adapter = start(&machine, dma);
                let config = LoopbackConfig {
                    format,
                    period_ms,
                    notification_count,
                    ..LoopbackConfig::default()
                };
                let (result, rendered) = loopback(&adapter, &config, 0.4);
                assert_bit_exact(&result, &rendered, &config);
                assert!(
                    result.render_pages.len() >= 2,
                    "{config:?}: buffer on one page shows no scatter"
                );
                let (signals, dma_trouble) = signals_and_dma_trouble(&adapter);
                assert!(!dma_trouble, "{dma:?} {config:?}");
                // Every event the cable signalled reached the engine.
                assert!(
                    signals >= result.render.notifications + result.capture.notifications,
                    "{dma:?} {config:?}: {signals} signals"
                );
                adapter.remove();
                assert_clean(&machine, &format!("{dma:?} {config:?}"));
            }
        }
    }
}

#[test]
fn buffers_with_pages_above_4_gib_stay_bit_exact() {
    // The default layout puts half of RAM from 4 GiB up; the cable asks
    // for any page (`HighAddress` -1), so its buffers get high pages, and
    // its 64-bit page handling must keep them in order.
    for dma in dma_modes() {
        let machine = new_machine();
        assert!(machine.memory.layout().above_4g() > 0);
        let adapter = start(&machine, dma);
        let config = LoopbackConfig {
            format: request(96_000, 24, 6, false),
            period_ms: 20,
            notification_count: 2,
            ..LoopbackConfig::default()
        };
        let (result, rendered) = loopback(&adapter, &config, 0.3);
        assert_bit_exact(&result, &rendered, &config);
        for pages in [&result.render_pages, &result.capture_pages] {
            assert!(
                pages.iter().any(|&p| p >= HIGH_RAM_BASE),
                "{dma:?}: {pages:x?}"
            );
            assert!(
                pages.iter().any(|&p| p < HIGH_RAM_BASE),
                "{dma:?}: {pages:x?}"
            );
        }
        adapter.remove();
        assert_clean(&machine, &format!("{dma:?} high memory"));
    }
}

#[test]
fn fragmented_memory_gives_isolated_pages_and_stays_bit_exact() {
    // Contiguous RAM, then every page taken and every other one given
    // back: each free page is alone, so every buffer is all page breaks.
    let machine = machine_with(MemoryConfig {
        size_bytes: 4 << 20,
        fragmentation: Fragmentation::Contiguous,
        ..MemoryConfig::default()
    });
    let mut held = Vec::new();
    while let Some(mdl) = machine.memory.allocate_pages(u64::MAX, PAGE_SIZE) {
        held.push(mdl);
    }
    assert!(held.len() > 500, "{} pages", held.len());
    for (i, &mdl) in held.iter().enumerate() {
        if i % 2 == 0 {
            machine.memory.free(mdl);
        }
    }
    let in_use = machine.memory.pages_in_use();
    for dma in dma_modes() {
        let adapter = start(&machine, dma);
        let config = LoopbackConfig {
            format: request(96_000, 24, 6, false),
            period_ms: 20,
            notification_count: 2,
            ..LoopbackConfig::default()
        };
        let (result, rendered) = loopback(&adapter, &config, 0.3);
        assert_bit_exact(&result, &rendered, &config);
        assert!(
            result.render_pages.len() >= 16,
            "{}",
            result.render_pages.len()
        );
        for pages in [&result.render_pages, &result.capture_pages] {
            // Not merely out of order: no two buffer pages are neighbours.
            let mut sorted = pages.clone();
            sorted.sort_unstable();
            assert!(scattered(&sorted), "{dma:?}: {pages:x?}");
        }
        adapter.remove();
        assert_eq!(
            machine.memory.pages_in_use(),
            in_use,
            "{dma:?}: pages leaked"
        );
    }
    for (i, &mdl) in held.iter().enumerate() {
        if i % 2 == 1 {
            machine.memory.free(mdl);
        }
    }
    assert_clean(&machine, "fragmented");
}

/// Opens render and capture, asks each for a 20 ms x 2 buffer, then
/// streams a little when both got one; closes everything. Returns the
/// granted sizes.
fn open_allocate_stream_close(
    machine: &Arc<Machine>,
    adapter: &CableAdapter,
) -> Result<(u32, u32), String> {
    let format = request(48_000, 16, 2, false);
    let mut streams = Vec::new();
    for (name, capture) in [("WaveRender", false), ("WaveCapture", true)] {
        let filter = adapter.wave_filter(name).unwrap();
        let pin = streaming_pin(filter.description, capture).unwrap();
        let (_, bytes) =
            negotiate_format(&filter.miniport, filter.description, pin, &format).unwrap();
        streams.push(Stream::open(machine, &filter.miniport, pin, capture, &bytes).unwrap());
    }
    let mut granted = Vec::new();
    let mut outcome = Ok(());
    for stream in &mut streams {
        match stream.allocate(7680, Some(2)) {
            Ok(size) => granted.push(size),
            Err(e) => {
                // The first failure is the one reported.
                if outcome.is_ok() {
                    outcome = Err(e.to_string());
                }
            }
        }
    }
    if outcome.is_ok() {
        for stream in &mut streams {
            stream.register_event().map_err(|e| e.to_string())?;
            stream
                .set_state(portcls_sys::KSSTATE_RUN)
                .map_err(|e| e.to_string())?;
        }
        machine.advance(50 * wavert_emulator::machine::QPC_PER_MS);
        for stream in &mut streams {
            let moved = stream.position().map_err(|e| e.to_string())?;
            if moved == 0 {
                outcome = Err("position did not move".to_owned());
            }
        }
    }
    for stream in streams {
        stream.close().map_err(|e| e.to_string())?;
    }
    outcome.map(|()| (granted[0], granted[1]))
}

#[test]
fn an_allocation_failure_at_every_point_leaks_nothing() {
    let machine = new_machine();
    let adapter = start(&machine, DmaMode::Looping);
    assert_eq!(
        open_allocate_stream_close(&machine, &adapter).unwrap(),
        (7680, 7680)
    );
    adapter.remove();
    assert_clean(&machine, "no fault");
    let points = machine.memory.allocation_calls();
    // Pages and a mapping per stream (the client's own view is no fault point).
    assert_eq!(points.len(), 4, "{points:?}");

    for call in 0..points.len() as u64 {
        // One failure: the miniport halves its wish and retries (pages), or
        // gives up cleanly (mapping).
        let machine = new_machine();
        let adapter = start(&machine, DmaMode::Looping);
        machine.memory.inject(call, Fault::Fail);
        match open_allocate_stream_close(&machine, &adapter) {
            Ok((render, capture)) => {
                assert!(render <= 7680 && capture <= 7680, "call {call}");
                assert!(
                    render < 7680 || capture < 7680,
                    "call {call}: fault unnoticed"
                );
                assert_eq!(render % 8, 0, "call {call}: whole frames per packet");
                assert_eq!(capture % 8, 0, "call {call}: whole frames per packet");
            }
            Err(e) => assert!(e.contains("0xc000009a"), "call {call}: {e}"),
        }
        adapter.remove();
        assert_clean(&machine, &format!("fault at call {call}"));

        // Every call from here on fails: the allocation must fail, cleanly.
        let machine = new_machine();
        let adapter = start(&machine, DmaMode::Looping);
        for later in call..call + 64 {
            machine.memory.inject(later, Fault::Fail);
        }
        let e = open_allocate_stream_close(&machine, &adapter).unwrap_err();
        assert!(e.contains("0xc000009a"), "calls {call}..: {e}");
        adapter.remove();
        assert_clean(&machine, &format!("faults from call {call}"));

        // Fewer pages than asked: a smaller buffer, still whole packets.
        let machine = new_machine();
        let adapter = start(&machine, DmaMode::Looping);
        machine.memory.inject(call, Fault::Partial { pages: 1 });
        match open_allocate_stream_close(&machine, &adapter) {
            Ok((render, capture)) => {
                assert!(render % 8 == 0 && capture % 8 == 0, "call {call}");
                assert!(render <= 7680 && capture <= 7680, "call {call}");
            }
            Err(e) => assert!(e.contains("0xc000009a"), "call {call}: {e}"),
        }
        adapter.remove();
        assert_clean(&machine, &format!("partial at call {call}"));
    }

    // A page budget too small for both buffers: capture settles for less,
    // and the cable still streams.
    let machine = new_machine();
    machine.memory.set_page_budget(Some(3));
    let adapter = start(&machine, *dma_modes().last().unwrap());
    let (render, capture) = open_allocate_stream_close(&machine, &adapter).unwrap();
    assert_eq!(render, 7680);
    assert!(capture <= 4096 && capture % 8 == 0, "capture {capture}");
    adapter.remove();
    assert_clean(&machine, "page budget");
}

#[test]
fn hlk_methods_pass_on_render_and_capture() {
    for dma in dma_modes() {
        let machine = new_machine();
        let adapter = start(&machine, dma);
        let what = format!("{dma:?}");
        let endpoints = run_on_cable(&machine, &adapter, &HlkConfig::default()).unwrap();
        assert_eq!(endpoints.len(), 2, "{what}");
        for (endpoint, reports) in &endpoints {
            assert_eq!(reports.len(), HlkMethod::ALL.len(), "{what} {endpoint}");
            for report in reports {
                let name = report.method.name();
                println!("{what} {endpoint} {name}: {}", report.summary());
                assert!(
                    !report.failed(),
                    "{what} {endpoint} {name}: {}",
                    report.summary()
                );
                // Skipped only where the HLK itself would not run the
                // method here, or where the mode list is not wired yet.
                let may_skip = match report.method {
                    HlkMethod::StreamMultipleModes => true,
                    HlkMethod::LoopbackStreamStateControl
                    | HlkMethod::LoopbackStreamDifferentFormat => *endpoint == "capture",
                    _ => false,
                };
                assert!(
                    report.passed() || (may_skip && report.skipped.is_some()),
                    "{what} {endpoint} {name}: {}",
                    report.summary()
                );
            }
            // The HLK's own skip: one pin instance.
            let modes = reports
                .iter()
                .find(|r| r.method == HlkMethod::StreamMultipleModes)
                .unwrap();
            assert!(
                modes
                    .skipped
                    .as_deref()
                    .is_some_and(|r| r.contains("1 instance")),
                "{what}: {}",
                modes.summary()
            );
            let formats = reports
                .iter()
                .find(|r| r.method == HlkMethod::StreamDifferentFormat)
                .unwrap();
            assert!(
                formats.findings.len() >= 20,
                "{what}: {}",
                formats.summary()
            );
            let ks = reports
                .iter()
                .find(|r| r.method == HlkMethod::DriftAndJitter)
                .unwrap();
            assert!(ks.findings.iter().all(|f| f.outcome.is_ok()));
        }
        adapter.remove();
        assert_clean(&machine, &format!("{dma:?} HLK runs"));
    }
}

/// Under every port personality (the orders a real PortCls may call in),
/// both DMA modes stream bit-exact, every HLK method passes, and the
/// miniport refuses no order a real port uses.
#[test]
fn every_port_personality_streams_bit_exact_and_passes_the_hlk_methods() {
    for personality in PortPersonality::ALL {
        for dma in dma_modes() {
            let what = format!("{personality} {dma:?}");
            let machine = new_machine();
            machine.set_personality(personality);
            let adapter = start(&machine, dma);
            // Two notifications, as the audio engine asks: with one, the
            // client rewrites the whole buffer at the event, which the
            // cable's 1 ms timer signals up to 1 ms late unless the buffer
            // is whole milliseconds (a page-rounded or ragged request is
            // not); the one-shot timer of issue 15 removes that lateness.
            let config = LoopbackConfig::default();
            let (result, rendered) = loopback(&adapter, &config, 0.3);
            assert_bit_exact_under(&result, &rendered, &config, personality);
            let hlk = HlkConfig {
                format_sweeps: false,
                ..HlkConfig::default()
            };
            for (endpoint, reports) in run_on_cable(&machine, &adapter, &hlk).unwrap() {
                for report in reports {
                    assert!(
                        !report.failed(),
                        "{what} {endpoint} {}: {}",
                        report.method.name(),
                        report.summary()
                    );
                }
            }
            let orders = machine.orders();
            println!("{what}: {}", summarise(&orders));
            for order in &orders {
                assert!(
                    !matches!(order.outcome, OrderOutcome::Refused(_)),
                    "{what}: {} {:?}",
                    order.order,
                    order.outcome
                );
            }
            let used = |text: &str| orders.iter().any(|o| o.order.contains(text));
            match personality {
                PortPersonality::Windows => assert!(orders.is_empty(), "{what}: {orders:?}"),
                PortPersonality::ReactOs => assert!(used("STOP -> RUN in one call"), "{what}"),
                PortPersonality::Hostile => {
                    assert!(used("second buffer") && used("SetFormat"), "{what}");
                }
            }
            adapter.remove();
            assert_clean(&machine, &what);
        }
    }
}

#[test]
fn ks_topology_rules_pass_on_both_topology_filters() {
    let machine = new_machine();
    let adapter = start(&machine, DmaMode::Looping);
    for (topology, wave) in [
        ("TopologyRender", "WaveRender"),
        ("TopologyCapture", "WaveCapture"),
    ] {
        let channels = wavert_emulator::ks_topology::endpoint_channels(
            adapter.wave_filter(wave).unwrap().description,
            0,
        );
        let filter = adapter.ks_filter(topology).unwrap();
        let findings = wavert_emulator::ks_topology::check_topology_filter(&filter, channels);
        assert!(!findings.is_empty());
        for finding in &findings {
            assert_eq!(finding.outcome, Ok(()), "{topology}: {}", finding.rule);
        }
    }
    adapter.remove();
    assert_clean(&machine, "after the topology rules");
}

#[test]
fn proposals_accept_exactly_what_opens_a_stream_including_24_in_32() {
    let machine = new_machine();
    let adapter = start(&machine, DmaMode::Looping);
    let in32 = AudioFormat::extensible(SampleType::Pcm, 2, 48_000, 32, 24).unwrap();
    for (name, capture) in [("WaveRender", false), ("WaveCapture", true)] {
        let filter = adapter.wave_filter(name).unwrap();
        let ks = adapter.ks_filter(name).unwrap();
        let pin = streaming_pin(filter.description, capture).unwrap();
        // The mode attribute in the ranges, the proposal <=> NewStream
        // sweep, the advertised matrix, the busy pin, the default per mode
        // against the INF's, the wildcard.
        let findings = check_wave_filter_formats(
            &machine,
            &filter.miniport,
            &ks,
            pin,
            capture,
            Some(&cable::filters::DEFAULT_FORMAT),
        );
        assert_eq!(findings.len(), 6, "{name}");
        for f in &findings {
            assert_eq!(f.outcome, Ok(()), "{name}: {}", f.rule);
        }
        // 24 bits in 32 is advertised (the 24-bit range), proposed, opened.
        let advertised = wavert_emulator::hlk::advertised_formats(filter.description, pin);
        assert!(advertised.contains(&FormatRequest::exact(&in32)), "{name}");
        let bytes = wavert_emulator::engine::ks_data_format_bytes(&in32);
        assert_eq!(
            propose_format(&ks, pin, &bytes),
            portcls_sys::STATUS_SUCCESS
        );
        let stream = Stream::open(&machine, &filter.miniport, pin, capture, &bytes).unwrap();
        assert_eq!(*stream.format(), in32);
        stream.close().unwrap();
    }
    adapter.remove();
    assert_clean(&machine, "format proposals");
    // The AC'97's range has no 24 bits at all, so it is refused there
    // (its proposals run on QEMU: wavert-qemu's emulator_ac97_session).
    assert!(!ac97::filters::AC97_RANGE.contains(&in32));
}

#[test]
fn wave_filters_have_default_and_raw_modes_and_packet_constraints() {
    use portcls_sys::{
        AUDIO_SIGNALPROCESSINGMODE_DEFAULT, AUDIO_SIGNALPROCESSINGMODE_RAW, GUID,
        STATUS_NOT_SUPPORTED,
    };
    use wavert_emulator::engine::EngineError;
    use wavert_emulator::modes::{
        check_packet_constraints, get_modes, with_signal_processing_mode,
    };
    // A mode neither host pin has.
    const COMMUNICATIONS: GUID = portcls_sys::AUDIO_SIGNALPROCESSINGMODE_COMMUNICATIONS;
    let machine = new_machine();
    let adapter = start(&machine, DmaMode::Looping);
    let registrations = machine.registrations();
    for (name, capture) in [("WaveRender", false), ("WaveCapture", true)] {
        let filter = adapter.wave_filter(name).unwrap();
        let host = streaming_pin(filter.description, capture).unwrap();
        // GetModes, its size protocol checked on the way: DEFAULT and RAW
        // on the host pin, none on the bridge pin.
        assert_eq!(
            get_modes(&filter.miniport, host).unwrap(),
            [
                AUDIO_SIGNALPROCESSINGMODE_DEFAULT,
                AUDIO_SIGNALPROCESSINGMODE_RAW
            ],
            "{name}"
        );
        assert_eq!(get_modes(&filter.miniport, 1 - host).unwrap(), [], "{name}");
        // The constraints, decoded: set before registration, 2 ms minimum
        // (two ticks of the 1 ms timer), packets up to a 2 MiB buffer.
        let constraints = check_packet_constraints(&registrations, &filter).unwrap();
        assert_eq!(constraints.min_packet_period_hns, 20_000, "{name}");
        assert_eq!(constraints.max_packet_bytes, 2 << 20, "{name}");
        assert_eq!(constraints.ten_ms_of_largest_format, 245_760, "{name}");
        assert_eq!(
            constraints.modes,
            [
                (AUDIO_SIGNALPROCESSINGMODE_DEFAULT, 0, 20_000),
                (AUDIO_SIGNALPROCESSINGMODE_RAW, 0, 20_000)
            ],
            "{name}"
        );
        // A stream opens in RAW, and is refused in a mode the pin lacks.
        let (_, bytes) = negotiate_format(
            &filter.miniport,
            filter.description,
            host,
            &request(48_000, 16, 2, false),
        )
        .unwrap();
        let raw = with_signal_processing_mode(&bytes, AUDIO_SIGNALPROCESSINGMODE_RAW);
        drop(Stream::open(&machine, &filter.miniport, host, capture, &raw).unwrap());
        let other = with_signal_processing_mode(&bytes, COMMUNICATIONS);
        match Stream::open(&machine, &filter.miniport, host, capture, &other) {
            Err(EngineError::Call { status, .. }) => assert_eq!(status, STATUS_NOT_SUPPORTED),
            Ok(_) => panic!("{name}: a stream opened in a mode the pin lacks"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    adapter.remove();
    assert_clean(&machine, "modes and constraints");
}

#[test]
fn the_minimum_packet_period_streams_bit_exact() {
    // The cable claims 2 ms packets (MinPacketPeriodInHns 20 000): a
    // 4 ms buffer with two notifications, in every DMA mode.
    for dma in dma_modes() {
        let machine = new_machine();
        let adapter = start(&machine, dma);
        let config = LoopbackConfig {
            format: request(48_000, 16, 2, false),
            period_ms: 2,
            notification_count: 2,
            ..LoopbackConfig::default()
        };
        let (result, rendered) = loopback(&adapter, &config, 0.25);
        assert_eq!(result.capture_buffer, 768, "4 ms at 48 kHz stereo 16-bit");
        assert_bit_exact(&result, &rendered, &config);
        let (_, dma_trouble) = signals_and_dma_trouble(&adapter);
        assert!(!dma_trouble, "{dma:?}");
        adapter.remove();
        assert_clean(&machine, &format!("{dma:?} 2 ms packets"));
    }
}

// ---- packet mode ------------------------------------------------------
//
// Every loopback above runs in packet mode where the Windows port would
// (`assert_bit_exact_under`); these tests drive what a session in time
// does not: an end of stream, a client late by several packets, and packet
// numbers out of order. Each answer also passes the engine's packet rules
// (`wavert_emulator::packets`), which `crates/wavert-emulator/tests/
// packet_rules.rs` shows failing on a tampered answer.

/// A 48 kHz 16-bit stereo stream on `adapter`'s render or capture host pin
/// with a 40 ms buffer of two 20 ms packets and its event, in packet mode.
fn packet_stream(machine: &Arc<Machine>, adapter: &CableAdapter, capture: bool) -> Stream {
    let name = if capture { "WaveCapture" } else { "WaveRender" };
    let filter = adapter.wave_filter(name).unwrap();
    let pin = streaming_pin(filter.description, capture).unwrap();
    let format = request(48_000, 16, 2, false);
    let (_, bytes) = negotiate_format(&filter.miniport, filter.description, pin, &format).unwrap();
    let mut stream = Stream::open(machine, &filter.miniport, pin, capture, &bytes).unwrap();
    assert_eq!(stream.allocate(7_680, Some(2)).unwrap(), 7_680);
    stream.register_event().unwrap();
    assert!(stream.uses_packets(), "{name} offers packet mode");
    stream
}

#[test]
fn an_end_of_stream_is_followed_by_silence_and_the_counters_go_on() {
    for dma in dma_modes() {
        let what = format!("{dma:?}");
        let machine = new_machine();
        let adapter = start(&machine, dma);
        // 0.31 s: the signal ends half-way through its last packet, whose
        // tail the engine fills with stale bytes; the buffer still holds
        // the packet before it. The session fails unless every captured
        // byte after the end of stream is silence.
        let config = LoopbackConfig {
            end_of_stream: true,
            ..LoopbackConfig::default()
        };
        let (result, rendered) = loopback(&adapter, &config, 0.31);
        assert_eq!(rendered.len() % 3_840, 1_920, "{what}: half a packet");
        assert_eq!(
            result.end_of_stream_at,
            Some(rendered.len() as u64),
            "{what}"
        );
        let block = result.format.block_align() as usize;
        assert_eq!(result.reported_latency_frames, 0, "{what}");
        let (mismatches, first) = signal::mismatched_frames(&rendered, &result.captured, block, 0);
        assert_eq!(mismatches, 0, "{what}: first differing frame {first:?}");
        assert!(
            result.captured[rendered.len()..].iter().all(|&b| b == 0),
            "{what}: silence after the end"
        );
        assert!(
            result.captured.len() >= rendered.len() + 2 * 7_680,
            "{what}: two buffers recorded after the end"
        );
        // Events and packet counts kept coming after the last packet: every
        // render event after it still read (and checked) the count and the
        // presentation position.
        let after_end = result.render.notifications - result.render.packets;
        assert!(after_end >= 4, "{what}: {:?}", result.render);
        assert!(
            result.render.packet_calls >= 3 * result.render.packets + 2 * after_end,
            "{what}: {:?}",
            result.render
        );
        assert_eq!(result.render.glitches, 0, "{what}");
        assert_eq!(result.capture.glitches, 0, "{what}");
        adapter.remove();
        assert_clean(&machine, &what);
    }
}

#[test]
fn a_late_render_client_is_told_late_and_the_counter_keeps_the_nominal_rate() {
    use portcls_sys::{
        KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM as EOS, STATUS_DATA_LATE_ERROR, STATUS_DATA_OVERRUN,
        STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
    };
    use wavert_emulator::machine::QPC_PER_MS;
    for dma in dma_modes() {
        let what = format!("{dma:?}");
        let machine = new_machine();
        let adapter = start(&machine, dma);
        let mut stream = packet_stream(&machine, &adapter, false);
        // Before RUN the whole buffer is the client's: packets 0 and 1.
        stream.prefill(&mut |out| out.fill(0x11)).unwrap();
        assert_eq!(stream.packet_count().unwrap(), 0, "{what}");
        stream.set_state(portcls_sys::KSSTATE_RUN).unwrap();
        // The client sleeps through three packet ends.
        machine.advance(65 * QPC_PER_MS);
        assert_eq!(stream.packet_count().unwrap(), 3, "{what}: 60 ms done");
        // Its next packet in sequence, 2, is late; the engine resyncs to 4
        // (the count is 3: packet 3 is in transfer).
        let play = stream.position().unwrap();
        stream
            .write_packet(play, &mut |out| out.fill(0x22))
            .unwrap();
        assert_eq!(stream.stats.late_writes, 1, "{what}");
        // Out of order: a packet behind the one in transfer, the one in
        // transfer, one past what the buffer holds; the same packet again.
        for (packet, status) in [
            (2, STATUS_DATA_LATE_ERROR),
            (3, STATUS_DATA_LATE_ERROR),
            (5, STATUS_DATA_OVERRUN),
            (1 << 31, STATUS_DATA_OVERRUN),
            (4, STATUS_SUCCESS),
        ] {
            assert_eq!(
                stream.set_write_packet(packet, 0, 0).unwrap(),
                status,
                "{what}: packet {packet}"
            );
        }
        // Bad parameters: an unknown flag, an end-of-stream length that is
        // no whole frame or longer than the packet.
        for (flags, length) in [(1, 0), (EOS, 6), (EOS, 3_844)] {
            assert_eq!(
                stream.set_write_packet(4, flags, length).unwrap(),
                STATUS_INVALID_PARAMETER,
                "{what}: flags {flags:#x} length {length}"
            );
        }
        // The end of stream, then nothing more.
        assert_eq!(
            stream.set_write_packet(4, EOS, 1_000).unwrap(),
            STATUS_SUCCESS,
            "{what}"
        );
        assert_eq!(
            stream.set_write_packet(5, 0, 0).unwrap(),
            STATUS_INVALID_DEVICE_STATE,
            "{what}: after the end of stream"
        );
        // Ten seconds without a single write: the count goes on.
        machine.advance(10_000 * QPC_PER_MS);
        assert_eq!(
            stream.packet_count().unwrap(),
            (10_065 / 20) as u64,
            "{what}"
        );
        let presented = stream.presentation_position().unwrap();
        assert_eq!(presented.u64PositionInBlocks, 48 * 10_065, "{what}");
        // STOP resets the count and forgets the end of stream.
        stream.set_state(portcls_sys::KSSTATE_STOP).unwrap();
        assert_eq!(stream.packet_count().unwrap(), 0, "{what}");
        assert_eq!(
            stream.set_write_packet(0, 0, 0).unwrap(),
            STATUS_SUCCESS,
            "{what}"
        );
        stream.close().unwrap();
        adapter.remove();
        assert_clean(&machine, &what);
    }
}

#[test]
fn a_late_capture_reader_gets_the_newest_whole_packet() {
    use wavert_emulator::machine::QPC_PER_MS;
    for dma in dma_modes() {
        let what = format!("{dma:?}");
        let machine = new_machine();
        let adapter = start(&machine, dma);
        let mut stream = packet_stream(&machine, &adapter, true);
        stream.set_state(portcls_sys::KSSTATE_RUN).unwrap();
        assert_eq!(
            stream.get_read_packet().unwrap(),
            None,
            "{what}: nothing yet"
        );
        machine.advance(10 * QPC_PER_MS);
        assert_eq!(
            stream.get_read_packet().unwrap(),
            None,
            "{what}: half a packet"
        );
        // Three packet ends later packet 3 overwrites packet 1: only packet
        // 2 is whole, and the reader is told so (MoreData FALSE).
        machine.advance(55 * QPC_PER_MS);
        let mut sink = Vec::new();
        let recorded = stream.position().unwrap();
        stream.read_packet(recorded, &mut sink).unwrap();
        assert_eq!(sink.len(), 3_840, "{what}");
        assert_eq!(stream.stats.dropped_packets, 2, "{what}");
        assert_eq!(stream.get_read_packet().unwrap(), None, "{what}: read");
        machine.advance(20 * QPC_PER_MS);
        assert_eq!(
            stream.get_read_packet().unwrap(),
            Some((3, false)),
            "{what}: the next"
        );
        // PAUSE keeps the count; STOP starts it again from 0.
        stream.set_state(portcls_sys::KSSTATE_PAUSE).unwrap();
        machine.advance(100 * QPC_PER_MS);
        assert_eq!(stream.get_read_packet().unwrap(), None, "{what}: paused");
        stream.set_state(portcls_sys::KSSTATE_STOP).unwrap();
        stream.set_state(portcls_sys::KSSTATE_RUN).unwrap();
        machine.advance(20 * QPC_PER_MS);
        assert_eq!(
            stream.get_read_packet().unwrap(),
            Some((0, false)),
            "{what}: after STOP"
        );
        stream.close().unwrap();
        adapter.remove();
        assert_clean(&machine, &what);
    }
}

// ---- Power management (issue 18) -----------------------------------------
//
// The emulated PortCls sends the adapter's registered IAdapterPowerManagement
// D-state changes in the middle of a loopback session
// (`wavert_emulator::power`): out of D0 nothing may move or be signalled,
// and after D0 the session's own checks (bit-exact capture at the reported
// latency, packets and notifications in step) hold the resume.

/// One loopback session with `plan`'s power cycles between its polls.
fn power_session(
    machine: &Arc<Machine>,
    adapter: &CableAdapter,
    plan: PowerPlan,
    config: &LoopbackConfig,
) -> (Result<LoopbackResult, String>, Vec<u8>, Vec<PowerCycle>) {
    let mut cycler = PowerCycler::new(machine, adapter.portcls(), plan);
    let (result, rendered) =
        adapter.loopback_test_signal_with(config, 0.8, &mut |r, c| cycler.between(r, c));
    (
        result.map_err(|e| e.to_string()),
        rendered,
        cycler.cycles().to_vec(),
    )
}

fn power_config(notification_count: u32) -> LoopbackConfig {
    LoopbackConfig {
        format: request(48_000, 16, 2, false),
        period_ms: 10,
        notification_count,
        ..LoopbackConfig::default()
    }
}

/// A render position trace that never goes back.
fn assert_monotonic(result: &LoopbackResult, what: &str) {
    for trace in [&result.render_trace, &result.capture_trace] {
        let back = trace
            .windows(2)
            .find(|w| w[1].linear_bytes < w[0].linear_bytes);
        assert!(back.is_none(), "{what}: position went back: {back:?}");
    }
}

#[test]
fn power_cycles_while_streaming_stay_bit_exact() {
    for (plan, dma) in [
        (PowerPlan::d3(4, 7), DmaMode::Looping),
        (PowerPlan::every_state(11), DmaMode::Looping),
        (PowerPlan::every_state(23), *dma_modes().last().unwrap()),
        (PowerPlan::d3(3, 31).with_port_pausing(), DmaMode::Looping),
    ] {
        for notification_count in [1, 2] {
            let machine = new_machine();
            let adapter = start(&machine, dma);
            assert!(
                adapter.portcls().has_power_management(),
                "StartDevice registered no power management"
            );
            let config = power_config(notification_count);
            let what = format!("{plan:?} {dma:?} {notification_count}");
            let (result, rendered, cycles) =
                power_session(&machine, &adapter, plan.clone(), &config);
            let result = result.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(cycles.len(), plan.cycles as usize, "{what}: {cycles:?}");
            // Random phases: not all cycles at one place in the buffer.
            let phases: std::collections::BTreeSet<u32> =
                cycles.iter().map(|c| c.render_phase).collect();
            assert!(phases.len() > 1, "{what}: one phase {phases:?}");
            assert!(cycles.iter().all(|c| c.polls >= 40), "{what}: {cycles:?}");
            assert_monotonic(&result, &what);
            // No gap at all: the cable's two sides stop and resume at the
            // same instant, so the capture is the render at the reported
            // latency throughout.
            assert_bit_exact(&result, &rendered, &config);
            adapter.remove();
            assert_clean(&machine, &what);
        }
    }
}

#[test]
fn each_power_rule_fails_on_a_broken_power_implementation() {
    if image().is_some() {
        return; // The faults wrap the host-built cable.
    }
    let config = power_config(2);
    for (fault, expected) in [
        // The control: the product's hooks through the same harness.
        (None, "0 frames differ"),
        (Some(PowerFault::NoQuiesce), "moved out of D0"),
        (Some(PowerFault::NoResume), "must keep the nominal rate"),
        (Some(PowerFault::RenderResumesLate(15)), "frames differ"),
    ] {
        let machine = new_machine();
        let adapter = start(&machine, DmaMode::Looping);
        let cable = Arc::clone(adapter.cable().unwrap());
        match fault {
            Some(fault) => register_power(
                adapter.portcls(),
                Arc::new(FaultyPower::new(cable, Arc::clone(&machine), fault)),
            ),
            None => register_power(adapter.portcls(), cable),
        }
        .unwrap();
        let (result, rendered, _) = power_session(&machine, &adapter, PowerPlan::d3(3, 5), &config);
        // A session that ends is held to the gap rule: every rendered frame
        // at the reported latency (the cable's two sides stop and resume
        // together, so the gap allowed is none).
        let failure = match result {
            Err(e) => e,
            Ok(result) => {
                let block = result.format.block_align() as usize;
                let lag = result.reported_latency_frames as usize;
                let (mismatches, first) =
                    signal::mismatched_frames(&rendered, &result.captured, block, lag);
                format!("{mismatches} frames differ, the first at {first:?}")
            }
        };
        let broke = !failure.starts_with("0 frames");
        assert!(
            failure.contains(expected) && broke == fault.is_some(),
            "{fault:?}: expected {expected:?}, got {failure:?}"
        );
        adapter.remove();
    }
}

#[test]
fn power_bad_input_has_documented_answers() {
    use portcls_sys::{
        PowerDeviceD0, PowerDeviceD3, PowerDeviceMaximum, PowerDeviceUnspecified,
        DEVICE_CAPABILITIES, STATUS_DEVICE_NOT_READY, STATUS_INVALID_PARAMETER,
    };
    let machine = new_machine();
    let adapter = start(&machine, DmaMode::Looping);
    let portcls = adapter.portcls();
    // An unknown state is vetoed by the query and ignored by the change.
    for bad in [PowerDeviceUnspecified, PowerDeviceMaximum, 99] {
        assert_eq!(
            portcls
                .query_device_power(bad)
                .map_err(wavert_com::NtStatus::code),
            Err(STATUS_INVALID_PARAMETER)
        );
        portcls.set_device_power(bad, None).unwrap();
    }
    // Capabilities: a short structure is refused; a whole one maps S0 to
    // D0 and every sleep state to D3, no D1/D2, no wake.
    let mut caps = DEVICE_CAPABILITIES {
        Size: 8,
        ..DEVICE_CAPABILITIES::default()
    };
    assert_eq!(
        portcls
            .query_capabilities(&mut caps)
            .map_err(wavert_com::NtStatus::code),
        Err(STATUS_INVALID_PARAMETER)
    );
    caps.Size = u16::try_from(std::mem::size_of::<DEVICE_CAPABILITIES>()).unwrap();
    caps.Flags = 0b11 | (0b1111 << 10);
    portcls.query_capabilities(&mut caps).unwrap();
    assert_eq!(caps.DeviceState, [0, 1, 4, 4, 4, 4, 4]);
    assert_eq!(caps.Flags, 0);

    // A stream open before the device sleeps; a second one opened, and a
    // buffer allocated, in D3 are refused and change nothing.
    let mut render = packet_stream(&machine, &adapter, false);
    let filter = adapter.wave_filter("WaveCapture").unwrap();
    let pin = streaming_pin(filter.description, true).unwrap();
    let (_, bytes) = negotiate_format(
        &filter.miniport,
        filter.description,
        pin,
        &request(48_000, 16, 2, false),
    )
    .unwrap();
    render.set_state(portcls_sys::KSSTATE_RUN).unwrap();
    machine.advance(15 * wavert_emulator::machine::QPC_PER_MS);
    portcls.set_device_power(PowerDeviceD3, None).unwrap();
    let held = render.position().unwrap();
    // The same state again: nothing happens (still held).
    portcls.set_device_power(PowerDeviceD3, None).unwrap();
    let refused = Stream::open(&machine, &filter.miniport, pin, true, &bytes);
    assert!(
        refused.as_ref().is_err_and(|e| e
            .to_string()
            .contains(&format!("{STATUS_DEVICE_NOT_READY:#x}"))),
        "{:?}",
        refused.map(|_| ())
    );
    machine.advance(30 * wavert_emulator::machine::QPC_PER_MS);
    assert_eq!(render.position().unwrap(), held);
    assert_eq!(render.take_notifications(), 0);
    portcls.set_device_power(PowerDeviceD0, None).unwrap();
    // D0 twice: the second does nothing either.
    portcls.set_device_power(PowerDeviceD0, None).unwrap();
    machine.advance(15 * wavert_emulator::machine::QPC_PER_MS);
    assert!(render.position().unwrap() > held);
    assert!(render.take_notifications() > 0);
    // In D0 the capture side opens.
    let capture = Stream::open(&machine, &filter.miniport, pin, true, &bytes).unwrap();
    capture.close().unwrap();
    render.close().unwrap();
    // The filter's miniport reference goes before the removal, as the
    // engine's handles do.
    drop(filter);
    adapter.remove();
    assert_clean(&machine, "power bad input");
}

/// 16-bit stereo samples of `bytes`.
fn samples_i16(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A cable (looping DMA) with both topology filters, and a 48 kHz 16-bit
/// stereo session configuration: what the node tests below act on.
fn topology_session() -> (
    Arc<Machine>,
    CableAdapter,
    wavert_emulator::ks::KsFilter,
    wavert_emulator::ks::KsFilter,
    LoopbackConfig,
) {
    let machine = new_machine();
    let adapter = start(&machine, DmaMode::Looping);
    let render = adapter.ks_filter("TopologyRender").unwrap();
    let capture = adapter.ks_filter("TopologyCapture").unwrap();
    let config = LoopbackConfig {
        format: request(48_000, 16, 2, false),
        ..LoopbackConfig::default()
    };
    (machine, adapter, render, capture, config)
}

/// Volume and mute act on the audio: with the render side at -6 dB on
/// every channel and the capture side's right channel at -3.5 dB, each
/// captured sample is the rendered one times the two sides' gain for its
/// channel, within the one step of rounding (checked against the decibel
/// values in floating point here, not against the driver's table); a mute
/// on either side is silence; back at 0 dB and unmuted the cable is
/// bit-exact again.
#[test]
fn volume_and_mute_nodes_scale_what_the_capture_hears() {
    use wavert_emulator::ks_topology::{set_mute, set_volume};
    const DB: i32 = 65_536;
    let (machine, adapter, render, capture, config) = topology_session();

    assert_eq!(set_volume(&render, -1, -6 * DB), Ok(-6 * DB));
    assert_eq!(set_volume(&capture, 1, -7 * DB / 2), Ok(-7 * DB / 2));
    let (result, rendered) = loopback(&adapter, &config, 0.3);
    let lag = result.reported_latency_frames as usize * 4;
    let (played, heard) = (samples_i16(&rendered), samples_i16(&result.captured[lag..]));
    let gains = [10f64.powf(-6.0 / 20.0), 10f64.powf(-9.5 / 20.0)];
    let mut loud = 0;
    for (index, (&played, &heard)) in played.iter().zip(&heard).enumerate() {
        let want = f64::from(played) * gains[index % 2];
        assert!(
            (f64::from(heard) - want).abs() <= 1.0,
            "sample {index}: heard {heard}, {played} scaled is {want:.2}"
        );
        loud += usize::from(played.unsigned_abs() > 1_000);
    }
    assert!(loud > played.len() / 4, "the test signal is not quiet");
    assert!(heard.len() >= played.len(), "the whole signal came back");

    assert_eq!(set_volume(&render, -1, 0), Ok(0));
    assert_eq!(set_volume(&capture, 1, 0), Ok(0));
    for muted in [&render, &capture] {
        set_mute(muted, true).unwrap();
        let (result, _) = loopback(&adapter, &config, 0.2);
        assert!(
            result.captured.iter().all(|&b| b == 0),
            "a muted side is silence"
        );
        set_mute(muted, false).unwrap();
    }
    let (result, rendered) = loopback(&adapter, &config, 0.3);
    assert_bit_exact(&result, &rendered, &config);
    // The topology miniports go back before the device does (a client
    // holding a filter past the removal would keep the driver's objects).
    drop((render, capture));
    adapter.remove();
    assert_clean(&machine, "after the volume session");
}

/// The peak meters read what each side carries: the render meter the
/// frames played times the render volume (it sits after the volume and
/// mute), the capture meter the frames the capture client gets, channel by
/// channel on `KSPROPERTY_AUDIO_PEAKMETER2`'s scale (a 16-bit sample `s`
/// reads `|s| << 16`). Read before the session (which arms them) and after
/// every poll, as a level bar polls; a mute reads 0; a read resets.
#[test]
fn peak_meters_read_the_level_each_side_hears() {
    use wavert_emulator::engine::EngineError;
    use wavert_emulator::ks_topology::{read_peak_meter, set_mute, set_volume};
    const DB: i32 = 65_536;
    let (machine, adapter, render, capture, config) = topology_session();
    let q31 = |s: i16| (i64::from(s).abs() << 16).min(i64::from(i32::MAX));
    // The largest reading of each side's two channels over a session.
    let metered = |adapter: &CableAdapter| {
        let mut most = [[0i32; 2]; 2];
        let read_all = |most: &mut [[i32; 2]; 2]| -> Result<(), String> {
            for (side, filter) in most.iter_mut().zip([&render, &capture]) {
                for (channel, held) in side.iter_mut().enumerate() {
                    *held = (*held).max(read_peak_meter(filter, channel)?);
                }
            }
            Ok(())
        };
        read_all(&mut most).unwrap();
        let (result, rendered) = adapter.loopback_test_signal_with(&config, 0.3, &mut |_, _| {
            read_all(&mut most).map_err(EngineError::Protocol)
        });
        (result.unwrap(), rendered, most)
    };

    assert_eq!(set_volume(&render, -1, -6 * DB), Ok(-6 * DB));
    let (result, rendered, most) = metered(&adapter);
    let (played, heard) = (samples_i16(&rendered), samples_i16(&result.captured));
    let gain = 10f64.powf(-6.0 / 20.0);
    let [render_most, capture_most] = most;
    for (channel, (&render_read, &capture_read)) in
        render_most.iter().zip(&capture_most).enumerate()
    {
        let played_peak = played
            .iter()
            .skip(channel)
            .step_by(2)
            .map(|&s| q31(s))
            .max();
        let heard_peak = heard.iter().skip(channel).step_by(2).map(|&s| q31(s)).max();
        #[allow(clippy::cast_precision_loss, reason = "a test's tolerance")]
        let want = played_peak.unwrap() as f64 * gain;
        assert!(
            (f64::from(render_read) - want).abs() <= 64.0,
            "render meter channel {channel}: read {render_read}, the played peak at -6 dB is {want:.0}"
        );
        assert_eq!(
            i64::from(capture_read),
            heard_peak.unwrap(),
            "capture meter channel {channel}"
        );
        assert!(capture_read > 1 << 28, "the signal is not quiet");
    }

    set_mute(&render, true).unwrap();
    let (_, _, most) = metered(&adapter);
    assert_eq!(most, [[0; 2]; 2], "a muted render side meters silence");
    set_mute(&render, false).unwrap();
    assert_eq!(set_volume(&render, -1, 0), Ok(0));

    // A read resets: a second read with no audio in between is 0.
    let (_, _, most) = metered(&adapter);
    assert!(most[0][0] > 0);
    let _ = read_peak_meter(&capture, 0).unwrap();
    assert_eq!(read_peak_meter(&capture, 0), Ok(0));
    drop((render, capture));
    adapter.remove();
    assert_clean(&machine, "after the peak-meter sessions");
}

/// Unsigned 8-bit PCM is silent at 0x80, not 0: a capture with no render
/// stream (the cable's silence), its freshly allocated buffer, and the same
/// capture at 16 bits (zero bytes) for contrast.
#[test]
fn an_8_bit_capture_without_render_is_0x80_silence() {
    let machine = new_machine();
    let adapter = start(&machine, DmaMode::Looping);
    let filter = adapter.wave_filter("WaveCapture").unwrap();
    let pin = streaming_pin(filter.description, true).unwrap();
    for (bits, silence) in [(8, 0x80u8), (16, 0)] {
        let format = request(48_000, bits, 2, false);
        let (_, bytes) =
            negotiate_format(&filter.miniport, filter.description, pin, &format).unwrap();
        let mut stream = Stream::open(&machine, &filter.miniport, pin, true, &bytes).unwrap();
        let size = stream.allocate(1_920, Some(2)).unwrap();
        let mut recorded = Vec::new();
        stream.set_state(portcls_sys::KSSTATE_RUN).unwrap();
        for _ in 0..8 {
            machine.advance(5 * wavert_emulator::machine::QPC_PER_MS);
            let position = stream.position().unwrap();
            stream.read_packet(position, &mut recorded).unwrap();
        }
        stream.set_state(portcls_sys::KSSTATE_STOP).unwrap();
        stream.close().unwrap();
        assert!(
            recorded.len() >= size as usize,
            "{bits}-bit: {} bytes",
            recorded.len()
        );
        assert!(
            recorded.iter().all(|&b| b == silence),
            "{bits}-bit capture without render: {:?}",
            &recorded[..16]
        );
    }
    drop(filter);
    adapter.remove();
    assert_clean(&machine, "8-bit silence");
}

/// A loopback whose engine thread is woken late once, by `stall_ms`
/// without a wake (in real time, a sleep of the engine's thread), starting
/// within a millisecond before a render packet end (so the notification of
/// that end and the next both wait for the late wake).
fn late_engine_session(machine: &Arc<Machine>, stall_ms: u64) -> LoopbackResult {
    let adapter = start(machine, DmaMode::Looping);
    let config = power_config(2);
    let stall_after = machine.qpc() + 300 * wavert_emulator::machine::QPC_PER_MS;
    let mut stalled = false;
    let (result, _rendered) = adapter.loopback_test_signal_with(&config, 1.0, &mut |render, _| {
        if stalled || machine.qpc() < stall_after {
            return Ok(());
        }
        let packet = u64::from(render.packet_bytes());
        let to_packet_end = packet - render.position()? % packet;
        // 48 kHz 16-bit stereo: 192 bytes a millisecond.
        if to_packet_end <= 192 {
            stalled = true;
            match machine.clock_mode() {
                ClockMode::Virtual => {
                    machine.advance(stall_ms * wavert_emulator::machine::QPC_PER_MS);
                }
                ClockMode::RealTime => {
                    std::thread::sleep(std::time::Duration::from_millis(stall_ms));
                }
            }
        }
        Ok(())
    });
    let result = result.unwrap();
    assert!(stalled);
    println!(
        "late engine ({stall_ms} ms, {:?}): render glitches {}, late writes {}, coalesced {}, \
         laps {}; capture glitches {}, dropped {}",
        machine.clock_mode(),
        result.render.glitches,
        result.render.late_writes,
        result.render.coalesced,
        result.render.laps_missed,
        result.capture.glitches,
        result.capture.dropped_packets
    );
    assert_monotonic(&result, "late engine");
    adapter.remove();
    assert_clean(machine, "late engine");
    result
}

/// One late wake costs one glitch a side (the render packet in transfer
/// was missed; the capture loses what the device overwrote meanwhile), not
/// a glitch at every packet after. `slack`: glitches a real-time run may
/// add at the host's own preemptions (0 in virtual time).
fn assert_recovered(result: &LoopbackResult, slack: u64) {
    assert!(result.render.glitches <= 2 + slack, "{:?}", result.render);
    assert!(
        result.capture.glitches <= result.capture.dropped_packets + 1 + slack,
        "{:?}",
        result.capture
    );
}

/// An engine woken 18 ms late just before a packet end (more than the
/// 10 ms packet, reads still less than the 20 ms buffer apart): the two
/// notifications that piled up are one wake, not one write each (that
/// overwrote the packet being played and left the engine a packet ahead,
/// glitching at every packet after).
#[test]
fn an_engine_woken_late_glitches_once_and_recovers() {
    let result = late_engine_session(&new_machine(), 18);
    assert!(result.render.coalesced >= 1, "{:?}", result.render);
    assert_recovered(&result, 0);
}

/// In real time, an engine thread asleep for 35 ms (more than the 20 ms
/// buffer): besides the coalesced wake, the wrap the position reads could
/// not see is counted from the nominal clock, so the position does not
/// fall a buffer behind.
#[test]
fn a_real_time_engine_asleep_past_a_buffer_recovers() {
    let machine = machine_clocked(
        MemoryConfig {
            size_bytes: 32 << 20,
            ..MemoryConfig::default()
        },
        ClockMode::RealTime,
    );
    let result = late_engine_session(&machine, 35);
    assert!(result.render.laps_missed >= 1, "{:?}", result.render);
    assert_recovered(&result, 3);
    // The render position after the stall is where the clock says.
    let last = result.render_trace.last().unwrap();
    let elapsed_frames = (last.qpc_before - result.render_run_qpc) * 48_000
        / wavert_emulator::machine::QPC_FREQUENCY;
    assert!(
        (last.linear_bytes / 4).abs_diff(elapsed_frames) <= 480,
        "position {} frames, clock {elapsed_frames}",
        last.linear_bytes / 4
    );
}
