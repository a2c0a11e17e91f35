//! Several cables on one device (issue 16 item 4): `StartDevice` registers
//! four subdevices and two connections per cable under each cable's own
//! names, and all cables stream at once, each its own loopback, each
//! bit-exact, none hearing another.
//!
//! The parameters come from the device's hardware key (`CableCount`,
//! `CableNName`), which both builds read through the same parser: the host
//! build straight from `CableOptions::registry`, the shipped image (with
//! `RSWAVERT_IMAGE` set, `cargo xtask test`'s image stage) through its own
//! `IoOpenDeviceRegistryKey` / `ZwQueryValueKey` against the emulator's
//! kernel stand-ins.
#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use portcls_sys::{DEVPKEY_DeviceInterface_FriendlyName, DEVPROP_TYPE_STRING};
use wavert_core::format::AudioFormat;
use wavert_emulator::cable::{
    start_cable_adapter, CableAdapter, CableOptions, RegisteredWaveFilter,
};
use wavert_emulator::image::{start_image_adapter, ImageDevice, ImageRunError, RegistryData};
use wavert_emulator::machine::{ClockMode, Machine};
use wavert_emulator::memory::{MemoryConfig, PhysicalMemory};
use wavert_emulator::session::{run_loopbacks, LoopbackConfig, LoopbackResult, WaveFilter};
use wavert_emulator::signal;
use wavert_miniport::adapter::{SubdeviceKind, CABLE_SUBDEVICES, MAX_CABLES};
use wavert_miniport::Direction;

const CABLES: usize = 4;

fn new_machine() -> Arc<Machine> {
    Machine::new(
        PhysicalMemory::anonymous(MemoryConfig {
            size_bytes: 32 << 20,
            ..MemoryConfig::default()
        })
        .unwrap(),
        ClockMode::Virtual,
    )
}

/// The shipped image under test, if the image stage named one.
fn image() -> Option<PathBuf> {
    std::env::var_os("RSWAVERT_IMAGE").map(PathBuf::from)
}

/// `StartDevice` of the driver under test with `registry` as the device's
/// hardware key, failing PortCls call `fail`.
fn start_with(
    machine: &Arc<Machine>,
    registry: Vec<(String, RegistryData)>,
    fail: Option<usize>,
) -> Result<CableAdapter, i32> {
    if let Some(path) = image() {
        let device = ImageDevice {
            registry,
            fail_portcls_call: fail,
            ..ImageDevice::default()
        };
        return start_image_adapter(machine, &path, device).map_err(|e| match e {
            ImageRunError::Status { status, .. } => status,
            other => panic!("{}: {other}", path.display()),
        });
    }
    start_cable_adapter(
        machine,
        CableOptions {
            registry,
            fail_portcls_call: fail,
            ..CableOptions::default()
        },
    )
    .map_err(wavert_com::NtStatus::code)
}

fn count(cables: usize) -> Vec<(String, RegistryData)> {
    vec![(
        "CableCount".to_owned(),
        RegistryData::Dword(u32::try_from(cables).unwrap()),
    )]
}

fn start(machine: &Arc<Machine>, cables: usize) -> Result<CableAdapter, i32> {
    start_with(machine, count(cables), None)
}

/// The friendly name the driver set on interface `name` (a
/// `DEVPROP_TYPE_STRING` before the interface was enabled), if any.
fn friendly_name(machine: &Machine, name: &str) -> Option<String> {
    let registrations = machine.registrations();
    let property = registrations
        .interface_properties
        .iter()
        .find(|p| p.name == name && p.key == DEVPKEY_DeviceInterface_FriendlyName)?;
    assert_eq!(property.kind, DEVPROP_TYPE_STRING, "{name}");
    assert!(
        property.before_registration,
        "{name}: set after it was enabled"
    );
    let units: Vec<u16> = property
        .value
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    assert_eq!(units.last(), Some(&0), "{name}: no NUL");
    Some(String::from_utf16(&units[..units.len() - 1]).unwrap())
}

/// The wave filter names of cable `index` (0-based): render, capture.
fn wave_names(index: usize) -> (&'static str, &'static str) {
    let name = |kind| {
        CABLE_SUBDEVICES[index]
            .iter()
            .find(|s| s.kind == kind)
            .unwrap()
            .name
    };
    (
        name(SubdeviceKind::Wave(Direction::Render)),
        name(SubdeviceKind::Wave(Direction::Capture)),
    )
}

/// Cable `index`'s own signal: the test signal with its frames rotated, so
/// that no two cables carry the same bytes at the same time.
fn own_signal(format: &AudioFormat, index: usize) -> Vec<u8> {
    let mut data = signal::test_signal(format, 0.5);
    let block = format.block_align() as usize;
    data.rotate_left(index * 997 * block);
    data
}

/// The wave filters (render, capture) of `adapter`'s first `count` cables.
fn cable_filters(
    adapter: &CableAdapter,
    count: usize,
) -> Vec<(RegisteredWaveFilter, RegisteredWaveFilter)> {
    (0..count)
        .map(|index| {
            let (render, capture) = wave_names(index);
            (
                adapter.wave_filter(render).unwrap(),
                adapter.wave_filter(capture).unwrap(),
            )
        })
        .collect()
}

/// Streams every pair of `filters` at once, each with its own signal;
/// returns what each rendered and its session.
fn stream_pairs(
    machine: &Arc<Machine>,
    filters: &[(RegisteredWaveFilter, RegisteredWaveFilter)],
) -> Vec<(Vec<u8>, LoopbackResult)> {
    let pairs: Vec<(WaveFilter<'_>, WaveFilter<'_>)> = filters
        .iter()
        .map(|(r, c)| (r.as_filter(), c.as_filter()))
        .collect();
    let mut rendered = Vec::new();
    let results = run_loopbacks(
        machine,
        &pairs,
        &LoopbackConfig::default(),
        &mut |index, format| {
            let data = own_signal(format, index);
            rendered.push(data.clone());
            data
        },
        &mut |_| {},
    )
    .unwrap();
    rendered.into_iter().zip(results).collect()
}

/// Streams the first `count` cables of `adapter` at once.
fn stream_all(
    machine: &Arc<Machine>,
    adapter: &CableAdapter,
    count: usize,
) -> Vec<(Vec<u8>, LoopbackResult)> {
    stream_pairs(machine, &cable_filters(adapter, count))
}

/// Nothing left after a removal: pages, port objects, timers, violations.
fn assert_clean(machine: &Machine) {
    assert_eq!(machine.memory.pages_in_use(), 0, "pages leaked");
    assert_eq!(machine.live_objects(), 0, "port objects leaked");
    assert_eq!(machine.running_timers(), 0, "timers left running");
    assert!(
        machine.violations().is_empty(),
        "{:?}",
        machine.violations()
    );
}

/// Where `captured` repeats `rendered` and how many frames differ there.
fn compare(rendered: &[u8], session: &LoopbackResult) -> (Option<usize>, usize) {
    let block = session.format.block_align() as usize;
    let max_lag = session.capture_buffer as usize / block * 4 + 4800;
    let lag = signal::find_alignment(rendered, &session.captured, block, max_lag);
    let bad = lag.map_or(rendered.len() / block, |l| {
        signal::mismatched_frames(rendered, &session.captured, block, l).0
    });
    (lag, bad)
}

#[test]
fn four_cables_register_their_own_subdevices_and_connections() {
    let machine = new_machine();
    let adapter = start(&machine, CABLES).unwrap();
    let r = machine.registrations();
    let names: Vec<&str> = r.subdevices.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<&str> = CABLE_SUBDEVICES[..CABLES]
        .iter()
        .flatten()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, expected, "cable by cable, in the tables' order");
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), 4 * CABLES);
    let ports: HashSet<usize> = r.subdevices.iter().map(|(_, p)| *p).collect();
    assert_eq!(ports.len(), 4 * CABLES, "one port per subdevice");
    // Each cable's two connections stay within the cable.
    assert_eq!(r.connections.len(), 2 * CABLES);
    for (index, pair) in r.connections.chunks(2).enumerate() {
        let own: HashSet<&str> = CABLE_SUBDEVICES[index].iter().map(|s| s.name).collect();
        for c in pair {
            assert!(
                own.contains(c.from.as_str()) && own.contains(c.to.as_str()),
                "cable {} connection {} -> {} leaves the cable",
                index + 1,
                c.from,
                c.to
            );
        }
    }
    // Each cable is its own VirtualCable (own state and timer): the host
    // build shows them; the image's are behind its own pointers.
    if image().is_none() {
        let cables = adapter.cables();
        assert_eq!(cables.len(), CABLES);
        for (i, a) in cables.iter().enumerate() {
            for b in &cables[i + 1..] {
                assert!(!Arc::ptr_eq(a, b));
            }
        }
    }
    // Each cable's endpoints carry its default name.
    for (index, table) in CABLE_SUBDEVICES[..CABLES].iter().enumerate() {
        for s in table
            .iter()
            .filter(|s| matches!(s.kind, SubdeviceKind::Topology(_)))
        {
            assert_eq!(
                friendly_name(&machine, s.name).as_deref(),
                Some(format!("rswavert cable {}", index + 1).as_str())
            );
        }
    }
    // The names of cables not configured are not registered.
    assert!(adapter.wave_filter(wave_names(CABLES).0).is_none());
    adapter.remove();
    assert_clean(&machine);
}

#[test]
fn four_cables_stream_at_once_each_bit_exact() {
    let machine = new_machine();
    let adapter = start(&machine, CABLES).unwrap();
    let results = stream_all(&machine, &adapter, CABLES);
    assert_eq!(results.len(), CABLES);
    for (index, (rendered, session)) in results.iter().enumerate() {
        let (lag, bad) = compare(rendered, session);
        let lag = lag.unwrap_or_else(|| panic!("cable {}: no alignment", index + 1));
        assert!(
            session.lag_is_reported_latency(lag as u64),
            "cable {}: lag {lag}",
            index + 1
        );
        assert_eq!(bad, 0, "cable {}: frames differ", index + 1);
        assert_eq!(session.render.glitches + session.capture.glitches, 0);
    }
    // Every cable moved its own bytes (the host build's counters).
    for (index, cable) in adapter.cables().iter().enumerate() {
        let stats = cable.stats();
        assert!(stats.copied_bytes > 0, "cable {} copied nothing", index + 1);
    }
    // The fault variant: a capture compared against another cable's
    // render is caught (the check can tell the cables apart).
    let (_, crossed) = compare(&results[1].0, &results[2].1);
    assert!(crossed > 0, "cable 3's capture matched cable 2's render");
    adapter.remove();
    assert_clean(&machine);
}

#[test]
fn a_stop_and_start_registers_every_cable_again() {
    let machine = new_machine();
    let mut adapter = start(&machine, CABLES).unwrap();
    adapter.stop().unwrap();
    assert!(machine.registrations().subdevices.is_empty());
    adapter.start().unwrap();
    assert_eq!(machine.registrations().subdevices.len(), 4 * CABLES);
    assert_eq!(machine.registrations().connections.len(), 2 * CABLES);
    let results = stream_all(&machine, &adapter, CABLES);
    for (rendered, session) in &results {
        assert_eq!(compare(rendered, session).1, 0);
    }
    adapter.remove();
    assert_eq!(machine.live_objects(), 0);
}

#[test]
fn a_failure_in_a_later_cable_unregisters_the_earlier_ones() {
    // Call 28 of StartDevice's PortCls calls: in cable 3 for both builds
    // (the host build's counting makes it WaveRender3's PcNewPort; the
    // image also counts the PcGetPhysicalDeviceObject calls, which moves it
    // to one of cable 3's connections).
    let machine = new_machine();
    let failed = start_with(&machine, count(CABLES), Some(28));
    assert!(failed.is_err());
    let log = machine.log_lines().join("\n");
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("failed")).collect();
    assert!(
        failed.len() == 1
            && ["WaveRender3 ", "WaveCapture3 "]
                .iter()
                .any(|n| failed[0].contains(n)),
        "the failure was not in cable 3: {log}"
    );
    let r = machine.registrations();
    assert!(r.subdevices.is_empty() && r.connections.is_empty(), "{r:?}");
    assert_eq!(machine.live_objects(), 0);
    assert_eq!(machine.running_timers(), 0);
}

#[test]
fn every_count_from_one_to_eight_starts() {
    for count in 1..=MAX_CABLES {
        let machine = new_machine();
        let adapter = start(&machine, count).unwrap();
        assert_eq!(machine.registrations().subdevices.len(), 4 * count);
        adapter.remove();
        assert_clean(&machine);
    }
}

#[test]
fn bad_parameters_are_refused_with_a_logged_reason_and_the_start_goes_on() {
    let too_long = "x".repeat(40);
    for (registry, cables, reason) in [
        (count(0), 1, "CableCount refused (0 is not 1 to 8)"),
        (count(99), 1, "CableCount refused (99 is not 1 to 8)"),
        (
            vec![("CableCount".to_owned(), RegistryData::String("4".into()))],
            1,
            "CableCount refused (a REG_SZ, not a REG_DWORD)",
        ),
        (
            vec![
                ("CableCount".to_owned(), RegistryData::Dword(2)),
                ("Cable2Name".to_owned(), RegistryData::String(too_long)),
            ],
            2,
            "Cable2Name refused (longer than 31 UTF-16 units)",
        ),
        (
            vec![("Cable1Name".to_owned(), RegistryData::Other(3, vec![1, 2]))],
            1,
            "Cable1Name refused (registry type 3",
        ),
    ] {
        let machine = new_machine();
        let adapter = start_with(&machine, registry, None).unwrap();
        assert_eq!(machine.registrations().subdevices.len(), 4 * cables);
        let log = machine.log_lines().join("\n");
        assert!(log.contains(reason), "no {reason:?} in {log}");
        // The refused name falls back to the default.
        assert_eq!(
            friendly_name(&machine, "TopologyRender").as_deref(),
            Some("rswavert cable 1")
        );
        adapter.remove();
    }
    // The control: good parameters are not refused.
    let machine = new_machine();
    let adapter = start(&machine, 3).unwrap();
    assert!(!machine.log_lines().join("\n").contains("refused"));
    adapter.remove();
}

#[test]
fn each_cable_takes_its_configured_name() {
    let machine = new_machine();
    let registry = vec![
        ("cablecount".to_owned(), RegistryData::Dword(3)),
        (
            "Cable2Name".to_owned(),
            RegistryData::String("Game chat".into()),
        ),
        (
            "Cable3Name".to_owned(),
            RegistryData::String("Stream mix ü".into()),
        ),
        // Beyond the count: read, but no cable to name.
        (
            "Cable4Name".to_owned(),
            RegistryData::String("unused".into()),
        ),
    ];
    let adapter = start_with(&machine, registry, None).unwrap();
    let names: Vec<Option<String>> = ["TopologyRender", "TopologyCapture2", "TopologyRender3"]
        .iter()
        .map(|n| friendly_name(&machine, n))
        .collect();
    assert_eq!(
        names,
        [
            Some("rswavert cable 1".to_owned()),
            Some("Game chat".to_owned()),
            Some("Stream mix ü".to_owned())
        ]
    );
    assert_eq!(friendly_name(&machine, "TopologyRender4"), None);
    // Wave filters keep the INF's names (the endpoint takes the topology's).
    assert_eq!(friendly_name(&machine, "WaveRender2"), None);
    adapter.remove();
}

#[test]
fn a_second_root_device_has_its_own_cables() {
    // The host build: two root devices of the driver on one machine (the
    // image's PortCls stand-in serves one device per load). Windows keeps
    // each device's interfaces under its own instance path, so both
    // register the same subdevice names, each over its own cables.
    let machine = new_machine();
    let first = start_cable_adapter(&machine, CableOptions::with_cables(2)).unwrap();
    let second = start_cable_adapter(
        &machine,
        CableOptions {
            instance: 1,
            registry: vec![
                ("CableCount".to_owned(), RegistryData::Dword(3)),
                (
                    "Cable1Name".to_owned(),
                    RegistryData::String("Second device".into()),
                ),
            ],
            ..CableOptions::default()
        },
    )
    .unwrap();
    let r = machine.registrations();
    assert_eq!(r.subdevices.len(), 4 * (2 + 3));
    assert_eq!(r.connections.len(), 2 * (2 + 3));
    assert_eq!(
        r.subdevices
            .iter()
            .filter(|(n, _)| n.starts_with("#1\\"))
            .count(),
        12,
        "the second device's three cables"
    );
    // Its own cable objects, its own names.
    assert_eq!((first.cables().len(), second.cables().len()), (2, 3));
    for a in first.cables() {
        assert!(second.cables().iter().all(|b| !Arc::ptr_eq(a, b)));
    }
    assert_eq!(
        friendly_name(&machine, "TopologyRender").as_deref(),
        Some("rswavert cable 1")
    );
    assert_eq!(
        friendly_name(&machine, "#1\\TopologyRender").as_deref(),
        Some("Second device")
    );
    // Both devices stream at once: the first's two cables and the
    // second's three, each bit-exact.
    let mut filters = cable_filters(&first, 2);
    filters.extend(cable_filters(&second, 3));
    let results = stream_pairs(&machine, &filters);
    for (index, (data, session)) in results.iter().enumerate() {
        let (lag, bad) = compare(data, session);
        assert!(
            lag.is_some() && bad == 0,
            "pair {index}: lag {lag:?}, {bad} frames differ"
        );
    }
    drop(filters);
    // Removing one device leaves the other's registrations alone.
    first.remove();
    let left = machine.registrations();
    assert_eq!(left.subdevices.len(), 12);
    assert!(left.subdevices.iter().all(|(n, _)| n.starts_with("#1\\")));
    second.remove();
    assert_clean(&machine);
}
