//! The adapter logic: ports, miniports, subdevices, physical connections.
//!
//! It creates the ports and miniports, registers the four subdevices and
//! their physical connections, and keeps what it registered (a
//! [`Registration`]) so that a PnP stop, surprise removal or removal can
//! unregister it again before PortCls handles the IRP, and a later start
//! registers the same names afresh. Runs at `PASSIVE_LEVEL` from the
//! driver's `StartDevice` and `IRP_MJ_PNP` dispatch, over a
//! [`PortClsServices`] implementation (the real PortCls in the driver, a
//! fake in tests and the emulator).

use alloc::sync::Arc;
use alloc::vec::Vec;

use portcls_sys::{
    CLSID_PortTopology, CLSID_PortWaveRT, DEVPKEY_DeviceInterface_FriendlyName,
    DEVPKEY_KsAudio_PacketSize_Constraints2, IInterruptSync, IPort, IResourceList, IUnknown,
    IUnregisterPhysicalConnection, IUnregisterSubdevice, DEVICE_OBJECT, DEVPROPKEY, DEVPROPTYPE,
    DEVPROP_TYPE_BINARY, DEVPROP_TYPE_STRING, GUID, KSCATEGORY_AUDIO, KSCATEGORY_CAPTURE,
    KSCATEGORY_REALTIME, KSCATEGORY_RENDER, KSCATEGORY_TOPOLOGY,
};
use wavert_com::{
    new_adapter_power_management, new_topology_miniport, new_wave_rt_miniport, ComPtr, NtResult,
    NtStatus,
};

use crate::ac97::{Ac97Device, Ac97Resources, MixerNode, PortIo};
use crate::cable::VirtualCable;
use crate::direction::Direction;
use crate::filters::{TOPO_CAPTURE_TO_WAVE_PIN, TOPO_RENDER_FROM_WAVE_PIN, WAVE_BRIDGE_PIN};
use crate::hda::{AmplifierNode, HdaDevice, HdaResources, Mmio};
use crate::interrupt::InterruptSync;
use crate::modes::constraints_value;
use crate::parameters::{CableName, MAX_NAME_UNITS};
use crate::platform::{LogLevel, Platform};
use crate::power::{AdapterPowerPolicy, DevicePower, PowerBackend};
use crate::stream::Backend;
use crate::topology::TopologyMiniport;
use crate::wave::WaveMiniport;

/// The PortCls calls the adapter logic makes.
pub trait PortClsServices {
    /// The functional device object the subdevices are registered on (what
    /// `IUnregisterSubdevice` and `IUnregisterPhysicalConnection` take
    /// later). Null where there is none (fakes, the host-built emulator).
    fn device_object(&self) -> *mut DEVICE_OBJECT;
    /// `PcNewPort(&port, class_id)`.
    ///
    /// # Errors
    ///
    /// PortCls' status.
    fn new_port(&self, class_id: &GUID) -> NtResult<ComPtr<IPort>>;
    /// `port->Init(DeviceObject, Irp, miniport, NULL, ResourceList)`.
    ///
    /// # Errors
    ///
    /// The port's status (it calls the miniport's `Init` and
    /// `GetDescription` from here).
    fn init_port(&self, port: &ComPtr<IPort>, miniport: &ComPtr<IUnknown>) -> NtResult<()>;
    /// `PcRegisterSubdevice(DeviceObject, name, port)`; `name` is
    /// NUL-terminated UTF-16.
    ///
    /// # Errors
    ///
    /// PortCls' status.
    fn register_subdevice(&self, name: &'static [u16], port: &ComPtr<IPort>) -> NtResult<()>;
    /// Sets a property (of type `kind`, `DEVPROP_TYPE_BINARY` or
    /// `DEVPROP_TYPE_STRING`) on the `KSCATEGORY_AUDIO` device interface
    /// that the subdevice `name` (NUL-terminated UTF-16) is registered
    /// under, before it is registered: `PcGetPhysicalDeviceObject`,
    /// `IoRegisterDeviceInterface(pdo, &KSCATEGORY_AUDIO, name, &link)`,
    /// `IoSetDeviceInterfacePropertyData(&link, key, LOCALE_NEUTRAL,
    /// PLUGPLAY_PROPERTY_PERSISTENT, kind, value)`, as
    /// SYSVAD's `CAdapterCommon::CreateAudioInterfaceWithProperties` does
    /// (`PcRegisterSubdevice` then finds the interface registered and
    /// enables it with the property in place).
    ///
    /// # Errors
    ///
    /// The kernel's status.
    fn set_filter_interface_property(
        &self,
        name: &'static [u16],
        key: &DEVPROPKEY,
        kind: DEVPROPTYPE,
        value: &[u8],
    ) -> NtResult<()>;
    /// `PcRegisterPhysicalConnection(DeviceObject, from, from_pin, to, to_pin)`.
    ///
    /// # Errors
    ///
    /// PortCls' status.
    fn register_physical_connection(
        &self,
        from: &ComPtr<IPort>,
        from_pin: u32,
        to: &ComPtr<IPort>,
        to_pin: u32,
    ) -> NtResult<()>;
    /// `PcNewInterruptSync(&sync, NULL, resources, index,
    /// InterruptSyncModeNormal)`: the interrupt object over the `index`-th
    /// interrupt of `resources`. The default (for services that never start
    /// real hardware, like the cable's) refuses with `STATUS_NOT_SUPPORTED`.
    ///
    /// # Errors
    ///
    /// PortCls' status.
    fn new_interrupt_sync(
        &self,
        resources: &ComPtr<IResourceList>,
        index: u32,
    ) -> NtResult<ComPtr<IInterruptSync>> {
        let _ = (resources, index);
        Err(wavert_com::NtStatus::NOT_SUPPORTED)
    }
    /// `PcRegisterAdapterPowerManagement(power, DeviceObject)`: PortCls
    /// queries `power` for `IAdapterPowerManagement(2)` and keeps it for its
    /// power IRPs. The default (services with no power IRPs to send)
    /// refuses with `STATUS_NOT_SUPPORTED`.
    ///
    /// # Errors
    ///
    /// PortCls' status.
    fn register_adapter_power_management(&self, power: &ComPtr<IUnknown>) -> NtResult<()> {
        let _ = power;
        Err(wavert_com::NtStatus::NOT_SUPPORTED)
    }
}

/// Registers `device`'s power management with PortCls (an
/// [`AdapterPowerPolicy`] over it), before its subdevices, as
/// simpleaudiosample's `StartDevice` does. A refusal is logged and the
/// start goes on: the device then works as before, never told of a power
/// change (what every start did before power management existed).
fn register_power<S: PortClsServices, D: PowerBackend>(services: &S, device: &Arc<D>) {
    let registered = new_adapter_power_management(AdapterPowerPolicy::new(device.clone()))
        .and_then(|power| power.query::<IUnknown>())
        .and_then(|unknown| services.register_adapter_power_management(&unknown));
    if let Err(status) = registered {
        device.power_platform().log(
            LogLevel::Error,
            format_args!(
                "{}power management not registered: {:#x}",
                device.power_log_prefix(),
                status.code()
            ),
        );
    }
}

/// What kind of filter a subdevice is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubdeviceKind {
    /// WaveRT port + [`WaveMiniport`].
    Wave(Direction),
    /// Topology port + [`TopologyMiniport`].
    Topology(Direction),
}

/// One subdevice of the cable.
///
/// The name is both the `PcRegisterSubdevice` name and the INF
/// `AddInterface` reference string; the categories are the interfaces
/// the INF must add for it (the filter descriptor lists the same ones).
#[derive(Clone, Copy, Debug)]
pub struct Subdevice {
    /// Reference string.
    pub name: &'static str,
    /// The same, NUL-terminated UTF-16, for PortCls.
    pub name_utf16: &'static [u16],
    /// Interface categories.
    pub categories: &'static [GUID],
    /// Filter kind.
    pub kind: SubdeviceKind,
}

/// ASCII to NUL-terminated UTF-16 at compile time; `N` = length + 1.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time for `static`s only: a bad index fails the build"
)]
const fn utf16z<const N: usize>(s: &str) -> [u16; N] {
    let bytes = s.as_bytes();
    assert!(bytes.len() + 1 == N, "N must be the length plus the NUL");
    let mut out = [0u16; N];
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii(), "subdevice names are ASCII");
        out[i] = bytes[i] as u16;
        i += 1;
    }
    out
}

/// The four subdevices of a device with the shared filter layout (wave
/// render, topology render, wave capture, topology capture), in
/// registration order, under the names given (each as text and as
/// NUL-terminated UTF-16).
const fn four_subdevices(names: [(&'static str, &'static [u16]); 4]) -> [Subdevice; 4] {
    let [wave_render, topology_render, wave_capture, topology_capture] = names;
    [
        Subdevice {
            name: wave_render.0,
            name_utf16: wave_render.1,
            categories: &[KSCATEGORY_AUDIO, KSCATEGORY_RENDER, KSCATEGORY_REALTIME],
            kind: SubdeviceKind::Wave(Direction::Render),
        },
        Subdevice {
            name: topology_render.0,
            name_utf16: topology_render.1,
            categories: &[KSCATEGORY_AUDIO, KSCATEGORY_TOPOLOGY],
            kind: SubdeviceKind::Topology(Direction::Render),
        },
        Subdevice {
            name: wave_capture.0,
            name_utf16: wave_capture.1,
            categories: &[KSCATEGORY_AUDIO, KSCATEGORY_CAPTURE, KSCATEGORY_REALTIME],
            kind: SubdeviceKind::Wave(Direction::Capture),
        },
        Subdevice {
            name: topology_capture.0,
            name_utf16: topology_capture.1,
            categories: &[KSCATEGORY_AUDIO, KSCATEGORY_TOPOLOGY],
            kind: SubdeviceKind::Topology(Direction::Capture),
        },
    ]
}

/// The most cables one device registers (issue 16: 1 to 8), each its own
/// pair of wave + topology filters over its own [`VirtualCable`].
pub const MAX_CABLES: usize = 8;

/// How many subdevices a device registers at most (four per cable, the
/// AC'97's four): what the driver's `AddDevice` asks `PcAddAdapterDevice`
/// to make room for.
#[allow(clippy::cast_possible_truncation, reason = "4 * 8 subdevices")]
pub const MAX_SUBDEVICES: u32 = 4 * MAX_CABLES as u32;

/// The statics of one cable's four subdevice names: the reference strings
/// as text and as NUL-terminated UTF-16, and the table over them.
macro_rules! cable_subdevices {
    ($wave_render:literal, $topology_render:literal, $wave_capture:literal, $topology_capture:literal) => {{
        static WAVE_RENDER: [u16; $wave_render.len() + 1] = utf16z($wave_render);
        static TOPOLOGY_RENDER: [u16; $topology_render.len() + 1] = utf16z($topology_render);
        static WAVE_CAPTURE: [u16; $wave_capture.len() + 1] = utf16z($wave_capture);
        static TOPOLOGY_CAPTURE: [u16; $topology_capture.len() + 1] = utf16z($topology_capture);
        four_subdevices([
            ($wave_render, &WAVE_RENDER),
            ($topology_render, &TOPOLOGY_RENDER),
            ($wave_capture, &WAVE_CAPTURE),
            ($topology_capture, &TOPOLOGY_CAPTURE),
        ])
    }};
}

/// Every cable's four subdevices, cable by cable, each in registration
/// order.
///
/// Cable 1 keeps the names a one-cable device always had; cable `n`
/// (2 to 8) appends `n` to each, as SYSVAD tells its endpoint pairs apart by
/// their reference strings (`WaveSpeaker`, `TopologySpeaker`, ...). The INF
/// adds an interface for every one of them (`tests/inf_matches_subdevices.rs`);
/// only the configured cables are registered, so the others stay disabled.
pub static CABLE_SUBDEVICES: [[Subdevice; 4]; MAX_CABLES] = CABLE_TABLES;

/// [`CABLE_SUBDEVICES`] as a constant, for [`SUBDEVICES`].
const CABLE_TABLES: [[Subdevice; 4]; MAX_CABLES] = [
    cable_subdevices!(
        "WaveRender",
        "TopologyRender",
        "WaveCapture",
        "TopologyCapture"
    ),
    cable_subdevices!(
        "WaveRender2",
        "TopologyRender2",
        "WaveCapture2",
        "TopologyCapture2"
    ),
    cable_subdevices!(
        "WaveRender3",
        "TopologyRender3",
        "WaveCapture3",
        "TopologyCapture3"
    ),
    cable_subdevices!(
        "WaveRender4",
        "TopologyRender4",
        "WaveCapture4",
        "TopologyCapture4"
    ),
    cable_subdevices!(
        "WaveRender5",
        "TopologyRender5",
        "WaveCapture5",
        "TopologyCapture5"
    ),
    cable_subdevices!(
        "WaveRender6",
        "TopologyRender6",
        "WaveCapture6",
        "TopologyCapture6"
    ),
    cable_subdevices!(
        "WaveRender7",
        "TopologyRender7",
        "WaveCapture7",
        "TopologyCapture7"
    ),
    cable_subdevices!(
        "WaveRender8",
        "TopologyRender8",
        "WaveCapture8",
        "TopologyCapture8"
    ),
];

/// The first cable's four subdevices, in registration order.
pub const SUBDEVICES: [Subdevice; 4] = CABLE_TABLES[0];

/// One physical connection, by index into [`SUBDEVICES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysicalConnection {
    /// Source subdevice index.
    pub from: usize,
    /// Its pin.
    pub from_pin: u32,
    /// Sink subdevice index.
    pub to: usize,
    /// Its pin.
    pub to_pin: u32,
}

/// Render: wave bridge pin to topology; capture: topology to wave bridge pin.
pub const PHYSICAL_CONNECTIONS: [PhysicalConnection; 2] = [
    PhysicalConnection {
        from: 0,
        from_pin: WAVE_BRIDGE_PIN,
        to: 1,
        to_pin: TOPO_RENDER_FROM_WAVE_PIN,
    },
    PhysicalConnection {
        from: 3,
        from_pin: TOPO_CAPTURE_TO_WAVE_PIN,
        to: 2,
        to_pin: WAVE_BRIDGE_PIN,
    },
];

/// Creates the port and miniport of `subdevice`, initialises the port with
/// it and registers it. The port is returned for the connections and for
/// [`Registration::unregister`].
fn install_one<S: PortClsServices, B: Backend>(
    services: &S,
    backend: &Arc<B>,
    subdevice: &Subdevice,
    friendly_name: Option<&CableName>,
    topology: &dyn Fn(&Arc<B>, Direction) -> TopologyMiniport,
) -> NtResult<ComPtr<IPort>> {
    let port = match subdevice.kind {
        SubdeviceKind::Wave(direction) => {
            // The audio engine reads the constraints when the interface
            // arrives, so they go on it before PcRegisterSubdevice enables
            // it (Learn: KSAUDIO_PACKETSIZE_CONSTRAINTS2).
            let constraints = constraints_value(&backend.packet_size_constraints(direction))?;
            services.set_filter_interface_property(
                subdevice.name_utf16,
                &DEVPKEY_KsAudio_PacketSize_Constraints2,
                DEVPROP_TYPE_BINARY,
                &constraints,
            )?;
            let miniport = new_wave_rt_miniport(WaveMiniport::new(backend.clone(), direction))?;
            let port = services.new_port(&CLSID_PortWaveRT)?;
            services.init_port(&port, &miniport.query::<IUnknown>()?)?;
            port
        }
        SubdeviceKind::Topology(direction) => {
            if let Some(name) = friendly_name {
                // The endpoint's name in sound settings, in place of the
                // INF's FriendlyName, as SYSVAD names a topology interface
                // before enabling it (DEVPROP_TYPE_STRING: UTF-16 with its
                // NUL).
                with_string_value(name, |value| {
                    services.set_filter_interface_property(
                        subdevice.name_utf16,
                        &DEVPKEY_DeviceInterface_FriendlyName,
                        DEVPROP_TYPE_STRING,
                        value,
                    )
                })?;
            }
            let miniport = new_topology_miniport(topology(backend, direction))?;
            let port = services.new_port(&CLSID_PortTopology)?;
            services.init_port(&port, &miniport.query::<IUnknown>()?)?;
            port
        }
    };
    // The port holds its own reference to the miniport from here on; ours
    // goes when `miniport` drops above.
    services.register_subdevice(subdevice.name_utf16, &port)?;
    Ok(port)
}

/// `name` with its NUL as the little-endian UTF-16 bytes a
/// `DEVPROP_TYPE_STRING` value is, handed to `f` (on the stack: no
/// allocation).
fn with_string_value<R>(name: &CableName, f: impl FnOnce(&[u8]) -> R) -> R {
    let units = name.units_with_nul();
    let mut bytes = [0u8; 2 * (MAX_NAME_UNITS + 1)];
    for (pair, unit) in bytes.chunks_exact_mut(2).zip(units) {
        pair.copy_from_slice(&unit.to_le_bytes());
    }
    f(bytes.get(..2 * units.len()).unwrap_or(&[]))
}

/// The functional device object, kept for the unregister calls.
#[derive(Clone, Copy, Debug)]
struct DeviceObject(*mut DEVICE_OBJECT);

// SAFETY: a device object is a kernel object, valid on every thread while
// the device exists; we only hand the pointer back to PortCls.
unsafe impl Send for DeviceObject {}
// SAFETY: as above; nothing is reached through `&DeviceObject`.
unsafe impl Sync for DeviceObject {}

/// One set of four subdevices and their two connections (a cable's, the
/// AC'97's) as registered.
#[derive(Debug)]
struct Group {
    subdevices: &'static [Subdevice; 4],
    /// The name its topology interfaces get (none: the INF's).
    friendly_name: Option<CableName>,
    /// A port is `Some` while its subdevice is registered.
    ports: [Option<ComPtr<IPort>>; 4],
    /// Indexed like [`PHYSICAL_CONNECTIONS`].
    connections: [bool; PHYSICAL_CONNECTIONS.len()],
}

impl Group {
    const fn new(subdevices: &'static [Subdevice; 4], friendly_name: Option<CableName>) -> Self {
        Self {
            subdevices,
            friendly_name,
            ports: [None, None, None, None],
            connections: [false; PHYSICAL_CONNECTIONS.len()],
        }
    }
}

/// What one start registered, for [`Registration::unregister`] to undo.
///
/// Per group of four subdevices (one per cable, or the AC'97's): the port
/// of each subdevice (one reference each, in the table's order) and which
/// of [`PHYSICAL_CONNECTIONS`] are registered.
///
/// SYSVAD and simpleaudiosample keep the same in their adapter common object,
/// stored in the device extension for their `IRP_MJ_PNP` handler; the
/// driver keeps this one there.
#[derive(Debug)]
pub struct Registration {
    device: DeviceObject,
    groups: Vec<Group>,
}

impl Registration {
    /// Room for `tables`, nothing registered yet. The only allocation
    /// (`PASSIVE_LEVEL`), refused without a panic when pool is short.
    fn new(
        device: *mut DEVICE_OBJECT,
        tables: impl ExactSizeIterator<Item = (&'static [Subdevice; 4], Option<CableName>)>,
    ) -> NtResult<Self> {
        let mut groups = Vec::new();
        groups
            .try_reserve_exact(tables.len())
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        groups.extend(tables.map(|(table, name)| Group::new(table, name)));
        Ok(Self {
            device: DeviceObject(device),
            groups,
        })
    }

    /// How many subdevices are registered.
    #[must_use]
    pub fn subdevice_count(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.ports.iter().filter(|p| p.is_some()).count())
            .sum()
    }

    /// How many physical connections are registered.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.groups
            .iter()
            .map(|g| g.connections.iter().filter(|c| **c).count())
            .sum()
    }

    /// The port registered as subdevice `index`, counted over the groups
    /// in registration order (cable 1's four first, in [`SUBDEVICES`]
    /// order, then cable 2's, ...).
    #[must_use]
    pub fn port(&self, index: usize) -> Option<&ComPtr<IPort>> {
        self.groups
            .get(index / 4)
            .and_then(|g| g.ports.get(index % 4))
            .and_then(Option::as_ref)
    }

    /// The subdevice names registered, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.groups.iter().flat_map(|g| {
            g.subdevices
                .iter()
                .zip(&g.ports)
                .filter(|(_, port)| port.is_some())
                .map(|(s, _)| s.name)
        })
    }

    /// Unregisters what this start registered, in the reverse order: the
    /// physical connections first (last registered first), then the
    /// subdevices (last registered first), and releases our port
    /// references. This is SYSVAD's order (`CAdapterCommon::RemoveEndpointFilters`:
    /// `DisconnectTopologies`, then `UnregisterSubdevice` of each port), and
    /// the one Microsoft Learn's `IUnregisterPhysicalConnection` page asks
    /// for ("when deleting a subdevice ... the driver must unregister the
    /// subdevice's physical connections").
    ///
    /// Each interface is obtained as SYSVAD obtains it:
    /// `IUnregisterPhysicalConnection` from the connection's topology-filter
    /// port (Learn lists the topology port among those that implement it;
    /// SYSVAD's `DisconnectTopologies` queries that one), and
    /// `IUnregisterSubdevice` from the port being unregistered.
    ///
    /// Idempotent: what is unregistered is forgotten, so a second call (a
    /// surprise removal followed by a removal) does nothing. A failing call
    /// is logged and the rest still run; a subdevice whose unregistration
    /// failed is forgotten too (its port reference released), as SYSVAD
    /// does. IRQL: `PASSIVE_LEVEL`.
    ///
    /// # Errors
    ///
    /// The first failing status (a `QueryInterface` or an unregister call).
    pub fn unregister(&mut self, log: &dyn Fn(LogLevel, core::fmt::Arguments<'_>)) -> NtResult<()> {
        let mut first_error: Option<NtStatus> = None;
        let mut note = |what: &str, name: &str, status: NtStatus| {
            log(
                LogLevel::Error,
                format_args!("unregistering {what} {name} failed: {:#x}", status.code()),
            );
            first_error.get_or_insert(status);
        };
        let device = self.device;
        for group in self.groups.iter_mut().rev() {
            for (index, connection) in PHYSICAL_CONNECTIONS.iter().enumerate().rev() {
                let Some(registered) = group.connections.get_mut(index) else {
                    continue;
                };
                if !*registered {
                    continue;
                }
                *registered = false;
                let name = group
                    .subdevices
                    .get(connection.from)
                    .map_or("?", |s| s.name);
                if let Err(status) = group.unregister_connection(device, connection) {
                    note("the physical connection from", name, status);
                }
            }
        }
        for group in self.groups.iter_mut().rev() {
            for (subdevice, slot) in group.subdevices.iter().zip(group.ports.iter_mut()).rev() {
                let Some(port) = slot.take() else {
                    continue;
                };
                if let Err(status) = unregister_subdevice(device, &port) {
                    note("subdevice", subdevice.name, status);
                }
                // Our reference goes here, as SYSVAD releases its port after
                // `UnregisterSubdevice`.
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Group {
    /// `IUnregisterPhysicalConnection::UnregisterPhysicalConnection` of one
    /// registered connection, through its topology-side port.
    fn unregister_connection(
        &self,
        device: DeviceObject,
        connection: &PhysicalConnection,
    ) -> NtResult<()> {
        let port = |index: usize| self.ports.get(index).and_then(Option::as_ref);
        let (Some(from), Some(to)) = (port(connection.from), port(connection.to)) else {
            return Err(NtStatus::INVALID_PARAMETER);
        };
        let topology_side = match self.subdevices.get(connection.from).map(|s| s.kind) {
            Some(SubdeviceKind::Topology(_)) => from,
            _ => to,
        };
        let unregister = topology_side.query::<IUnregisterPhysicalConnection>()?;
        let call = unregister.vtbl().UnregisterPhysicalConnection;
        // SAFETY: a live interface (we hold a reference); both ports are
        // live and were registered on `device` with these pins.
        NtStatus::check(unsafe {
            call(
                unregister.this(),
                device.0,
                from.as_raw().cast(),
                connection.from_pin,
                to.as_raw().cast(),
                connection.to_pin,
            )
        })
    }
}

/// `IUnregisterSubdevice::UnregisterSubdevice(device, port)`, the interface
/// queried from the port itself.
fn unregister_subdevice(device: DeviceObject, port: &ComPtr<IPort>) -> NtResult<()> {
    let unregister = port.query::<IUnregisterSubdevice>()?;
    let call = unregister.vtbl().UnregisterSubdevice;
    // SAFETY: a live interface (we hold a reference); the port is live and
    // was registered on `device`.
    NtStatus::check(unsafe { call(unregister.this(), device.0, port.as_raw().cast()) })
}

/// Registers a device's four subdevices and the two physical connections,
/// and returns what it registered.
///
/// Wave miniports over `backend`, topology miniports from `topology`.
/// The ports keep the miniports (and through them the device) alive; the
/// returned [`Registration`] keeps one reference to each port until it is
/// unregistered.
///
/// # Errors
///
/// The first failing PortCls call's status. What was registered before it
/// is unregistered again first (as SYSVAD's `InstallEndpointFilters` does
/// on failure), so a failed start leaves nothing registered.
pub fn register_subdevices<S: PortClsServices, B: Backend>(
    services: &S,
    backend: &Arc<B>,
    subdevices: &'static [Subdevice; 4],
    topology: &dyn Fn(&Arc<B>, Direction) -> TopologyMiniport,
) -> NtResult<Registration> {
    register_groups(services, &[(backend, subdevices, None)], topology)
}

/// [`register_subdevices`] for several groups of four (one per cable), each
/// over its own back-end and with the friendly name its topology
/// interfaces get (none: the INF's), in order; all or nothing.
///
/// # Errors
///
/// As [`register_subdevices`]: what was registered before a failure is
/// unregistered again.
pub fn register_groups<S: PortClsServices, B: Backend>(
    services: &S,
    groups: &[(&Arc<B>, &'static [Subdevice; 4], Option<&CableName>)],
    topology: &dyn Fn(&Arc<B>, Direction) -> TopologyMiniport,
) -> NtResult<Registration> {
    let Some((first, _, _)) = groups.first() else {
        return Err(NtStatus::INVALID_PARAMETER);
    };
    let log = |level, message: core::fmt::Arguments<'_>| first.log(level, message);
    let tables = groups
        .iter()
        .map(|(_, table, name)| (*table, name.copied()));
    let mut registration = Registration::new(services.device_object(), tables)?;
    for ((backend, _, _), group) in groups.iter().zip(registration.groups.iter_mut()) {
        if let Err(e) = register_group(services, backend, topology, group) {
            // The failure itself was logged; the undo is best effort.
            let _ = registration.unregister(&log);
            return Err(e);
        }
    }
    Ok(registration)
}

fn register_group<S: PortClsServices, B: Backend>(
    services: &S,
    backend: &Arc<B>,
    topology: &dyn Fn(&Arc<B>, Direction) -> TopologyMiniport,
    group: &mut Group,
) -> NtResult<()> {
    for (subdevice, slot) in group.subdevices.iter().zip(group.ports.iter_mut()) {
        match install_one(
            services,
            backend,
            subdevice,
            group.friendly_name.as_ref(),
            topology,
        ) {
            Ok(port) => *slot = Some(port),
            Err(e) => {
                backend.log(
                    LogLevel::Error,
                    format_args!("subdevice {} failed: {:#x}", subdevice.name, e.code()),
                );
                return Err(e);
            }
        }
    }
    for (c, registered) in PHYSICAL_CONNECTIONS
        .iter()
        .zip(group.connections.iter_mut())
    {
        let (Some(Some(from)), Some(Some(to))) = (group.ports.get(c.from), group.ports.get(c.to))
        else {
            return Err(NtStatus::INVALID_PARAMETER);
        };
        if let Err(e) = services.register_physical_connection(from, c.from_pin, to, c.to_pin) {
            let name = |index: usize| group.subdevices.get(index).map_or("?", |s| s.name);
            backend.log(
                LogLevel::Error,
                format_args!(
                    "physical connection {} -> {} failed: {:#x}",
                    name(c.from),
                    name(c.to),
                    e.code()
                ),
            );
            return Err(e);
        }
        *registered = true;
    }
    Ok(())
}

/// Registers one cable (its four subdevices and two connections).
///
/// # Errors
///
/// The first failing PortCls call's status (what was registered before it
/// is unregistered again).
pub fn install<S: PortClsServices, P: Platform>(
    services: &S,
    cable: &Arc<VirtualCable<P>>,
) -> NtResult<Registration> {
    install_cables(services, core::slice::from_ref(cable), &[])
}

/// One cable's back-end, subdevice names and friendly name.
type CableGroup<'a, P> = (
    &'a Arc<VirtualCable<P>>,
    &'static [Subdevice; 4],
    Option<&'a CableName>,
);

/// Registers `cables` (1 to [`MAX_CABLES`]), each with its own names.
///
/// The `n`-th goes under the `n`-th names of [`CABLE_SUBDEVICES`], each over its own [`VirtualCable`] (its own
/// streams, buffers and timer), its topology interfaces named `names[n]`
/// (the cable's name parameter, [`crate::parameters`]; where `names` has
/// none, the INF's `FriendlyName` stays). IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
///
/// `STATUS_INVALID_PARAMETER` for no cables or more than [`MAX_CABLES`]
/// (the parameters were validated before, see [`crate::parameters`]);
/// otherwise the first failing PortCls call's status, with everything
/// registered before it unregistered again.
pub fn install_cables<S: PortClsServices, P: Platform>(
    services: &S,
    cables: &[Arc<VirtualCable<P>>],
    names: &[CableName],
) -> NtResult<Registration> {
    if cables.is_empty() || cables.len() > MAX_CABLES {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let mut groups: Vec<CableGroup<'_, P>> = Vec::new();
    groups
        .try_reserve_exact(cables.len())
        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
    groups.extend(
        cables
            .iter()
            .zip(CABLE_SUBDEVICES.iter())
            .enumerate()
            .map(|(index, (cable, table))| (cable, table, names.get(index))),
    );
    if let Some(power) = CablePower::of(cables) {
        register_power(services, &Arc::new(power));
    }
    let registration = register_groups(services, &groups, &|cable, direction| {
        TopologyMiniport::with_hardware(
            direction,
            crate::cable::endpoints::endpoint(direction),
            cable.volume(direction),
        )
    })?;
    for (index, cable) in cables.iter().enumerate() {
        cable.log(
            LogLevel::Info,
            format_args!("virtual cable {} of {} registered", index + 1, cables.len()),
        );
    }
    Ok(registration)
}

/// A device's cables as the one device PortCls powers: each cable held
/// and resumed in turn (each has its own streams and timer).
struct CablePower<P: Platform> {
    first: Arc<VirtualCable<P>>,
    rest: Vec<Arc<VirtualCable<P>>>,
}

impl<P: Platform> CablePower<P> {
    /// `None` for no cables, or when the list cannot be allocated (the
    /// device then starts without power management, logged as a refusal
    /// would be).
    fn of(cables: &[Arc<VirtualCable<P>>]) -> Option<Self> {
        let (first, rest) = cables.split_first()?;
        let mut others = Vec::new();
        if others.try_reserve_exact(rest.len()).is_err() {
            first.log(
                LogLevel::Error,
                format_args!("power management not registered: no memory for the cable list"),
            );
            return None;
        }
        others.extend(rest.iter().cloned());
        Some(Self {
            first: first.clone(),
            rest: others,
        })
    }

    fn each(&self) -> impl Iterator<Item = &Arc<VirtualCable<P>>> {
        core::iter::once(&self.first).chain(self.rest.iter())
    }
}

impl<P: Platform> PowerBackend for CablePower<P> {
    type Platform = P;

    fn power_platform(&self) -> &P {
        self.first.power_platform()
    }

    fn power_down(&self, to: DevicePower) {
        for cable in self.each() {
            cable.power_down(to);
        }
    }

    fn power_up(&self, from: DevicePower, system: Option<portcls_sys::SYSTEM_POWER_STATE>) {
        for cable in self.each() {
            cable.power_up(from, system);
        }
    }
}

// ---- AC'97 ----------------------------------------------------------------

static AC97_WAVE_RENDER_W: [u16; 15] = utf16z("Ac97WaveRender");
static AC97_TOPOLOGY_RENDER_W: [u16; 19] = utf16z("Ac97TopologyRender");
static AC97_WAVE_CAPTURE_W: [u16; 16] = utf16z("Ac97WaveCapture");
static AC97_TOPOLOGY_CAPTURE_W: [u16; 20] = utf16z("Ac97TopologyCapture");

/// The AC'97's four subdevices, in registration order (the same order and
/// filter shapes as [`SUBDEVICES`], so [`PHYSICAL_CONNECTIONS`] applies).
pub const AC97_SUBDEVICES: [Subdevice; 4] = four_subdevices([
    ("Ac97WaveRender", &AC97_WAVE_RENDER_W),
    ("Ac97TopologyRender", &AC97_TOPOLOGY_RENDER_W),
    ("Ac97WaveCapture", &AC97_WAVE_CAPTURE_W),
    ("Ac97TopologyCapture", &AC97_TOPOLOGY_CAPTURE_W),
]);

/// `StartDevice` for a PCI AC'97.
///
/// Reads the two I/O windows and the interrupt from `resources`, makes the interrupt sync, brings the codec
/// up, connects the ISR, and registers the four subdevices and their two
/// physical connections. `io` is the platform's port I/O. Returns the
/// device (PortCls' references keep it alive; the caller may drop its own)
/// and what was registered. IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
///
/// `STATUS_DEVICE_CONFIGURATION_ERROR` for resources that are not an
/// AC'97's, `STATUS_DEVICE_NOT_READY` when the codec does not answer, or
/// the first failing PortCls call's status.
pub fn install_ac97<S: PortClsServices, P: Platform, IO: PortIo>(
    services: &S,
    platform: P,
    io: IO,
    resources: &ComPtr<IResourceList>,
) -> NtResult<(Arc<Ac97Device<P, IO>>, Registration)> {
    install_ac97_as(services, platform, io, resources, Arc::clone)
}

/// [`install_ac97`] with the wave subdevices over a wrapper of the device.
///
/// `backend(&device)` is a [`Backend`] that wraps the device (a test
/// harness's decorator that breaks one rule on purpose). The device itself
/// keeps the interrupt, the codec and the mixer. IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
///
/// As [`install_ac97`].
pub fn install_ac97_as<S: PortClsServices, P: Platform, IO: PortIo, B: Backend>(
    services: &S,
    platform: P,
    io: IO,
    resources: &ComPtr<IResourceList>,
    backend: impl FnOnce(&Arc<Ac97Device<P, IO>>) -> Arc<B>,
) -> NtResult<(Arc<Ac97Device<P, IO>>, Registration)> {
    let windows = Ac97Resources::from_list(resources)?;
    let sync = services.new_interrupt_sync(resources, 0)?;
    let device = Arc::new(Ac97Device::new(
        platform,
        io,
        windows,
        InterruptSync::new(sync),
    )?);
    device.connect()?;
    register_power(services, &device);
    // Volume and mute act on the codec's mixer registers.
    let mixer = |_: &Arc<B>, direction| {
        let hardware = Arc::new(MixerNode::new(device.clone(), direction));
        TopologyMiniport::with_hardware(
            direction,
            crate::ac97::endpoints::endpoint(direction),
            hardware,
        )
    };
    let registration = register_subdevices(services, &backend(&device), &AC97_SUBDEVICES, &mixer)?;
    device.log(
        LogLevel::Info,
        format_args!(
            "AC'97 registered (mixer {:#x}, bus master {:#x})",
            windows.mixer_port, windows.bus_master_port
        ),
    );
    Ok((device, registration))
}

// ---- HD Audio --------------------------------------------------------------

static HDA_WAVE_RENDER_W: [u16; 14] = utf16z("HdaWaveRender");
static HDA_TOPOLOGY_RENDER_W: [u16; 18] = utf16z("HdaTopologyRender");
static HDA_WAVE_CAPTURE_W: [u16; 15] = utf16z("HdaWaveCapture");
static HDA_TOPOLOGY_CAPTURE_W: [u16; 19] = utf16z("HdaTopologyCapture");

/// The HD Audio controller's four subdevices, in registration order (the
/// same order and filter shapes as [`SUBDEVICES`], so
/// [`PHYSICAL_CONNECTIONS`] applies).
pub const HDA_SUBDEVICES: [Subdevice; 4] = four_subdevices([
    ("HdaWaveRender", &HDA_WAVE_RENDER_W),
    ("HdaTopologyRender", &HDA_TOPOLOGY_RENDER_W),
    ("HdaWaveCapture", &HDA_WAVE_CAPTURE_W),
    ("HdaTopologyCapture", &HDA_TOPOLOGY_CAPTURE_W),
]);

/// `StartDevice` for a PCI HD Audio controller.
///
/// Reads the memory BAR and the interrupt from `resources`, makes the
/// interrupt sync, brings the controller and codec up, connects the ISR,
/// and registers the four subdevices and their two physical connections.
/// `mmio` is the platform's view of the mapped BAR (and its common-buffer
/// allocator). The topology filters' jacks come from the codec's pin
/// configuration defaults, their volume and mute from the converters'
/// amplifiers. Returns the device and what was registered. No power
/// management is registered yet (see `docs/architecture.md`).
/// IRQL: `PASSIVE_LEVEL`.
///
/// # Errors
///
/// `STATUS_DEVICE_CONFIGURATION_ERROR` for resources that are not an HD
/// Audio controller's, what [`HdaDevice::new`] refuses, or the first
/// failing PortCls call's status.
pub fn install_hda<S: PortClsServices, P: Platform, M: Mmio>(
    services: &S,
    platform: P,
    mmio: M,
    resources: &ComPtr<IResourceList>,
) -> NtResult<(Arc<HdaDevice<P, M>>, Registration)> {
    let block = HdaResources::from_list(resources)?;
    let sync = services.new_interrupt_sync(resources, 0)?;
    let device = Arc::new(HdaDevice::new(
        platform,
        mmio,
        block,
        InterruptSync::new(sync),
    )?);
    device.connect()?;
    register_power(services, &device);
    let topology = |_: &Arc<HdaDevice<P, M>>, direction| {
        let endpoint = crate::hda::endpoints::endpoint(device.path(direction).map(|p| p.pin));
        AmplifierNode::new(device.clone(), direction).map_or_else(
            || TopologyMiniport::new(direction, endpoint),
            |node| TopologyMiniport::with_hardware(direction, endpoint, Arc::new(node)),
        )
    };
    let registration = register_subdevices(services, &device, &HDA_SUBDEVICES, &topology)?;
    let info = device.codec_info();
    device.log(
        LogLevel::Info,
        format_args!(
            "HD Audio registered (BAR {:#x}, codec {} vendor {:#010x}, render {}, capture {})",
            block.mmio_base,
            info.address,
            info.vendor_id,
            info.render.is_some(),
            info.capture.is_some()
        ),
    );
    Ok((device, registration))
}
