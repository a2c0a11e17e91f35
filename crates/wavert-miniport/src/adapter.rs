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

use portcls_sys::{
    CLSID_PortTopology, CLSID_PortWaveRT, DEVPKEY_KsAudio_PacketSize_Constraints2, IInterruptSync,
    IPort, IResourceList, IUnknown, IUnregisterPhysicalConnection, IUnregisterSubdevice,
    DEVICE_OBJECT, DEVPROPKEY, GUID, KSCATEGORY_AUDIO, KSCATEGORY_CAPTURE, KSCATEGORY_REALTIME,
    KSCATEGORY_RENDER, KSCATEGORY_TOPOLOGY,
};
use wavert_com::{new_topology_miniport, new_wave_rt_miniport, ComPtr, NtResult, NtStatus};

use crate::ac97::interrupt::InterruptSync;
use crate::ac97::{Ac97Device, Ac97Resources, MixerNode, PortIo};
use crate::cable::VirtualCable;
use crate::direction::Direction;
use crate::filters::{TOPO_CAPTURE_TO_WAVE_PIN, TOPO_RENDER_FROM_WAVE_PIN, WAVE_BRIDGE_PIN};
use crate::modes::constraints_value;
use crate::platform::{LogLevel, Platform};
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
    /// Sets a binary property on the `KSCATEGORY_AUDIO` device interface
    /// that the subdevice `name` (NUL-terminated UTF-16) is registered
    /// under, before it is registered: `PcGetPhysicalDeviceObject`,
    /// `IoRegisterDeviceInterface(pdo, &KSCATEGORY_AUDIO, name, &link)`,
    /// `IoSetDeviceInterfacePropertyData(&link, key, LOCALE_NEUTRAL,
    /// PLUGPLAY_PROPERTY_PERSISTENT, DEVPROP_TYPE_BINARY, value)`, as
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

static WAVE_RENDER_W: [u16; 11] = utf16z("WaveRender");
static TOPOLOGY_RENDER_W: [u16; 15] = utf16z("TopologyRender");
static WAVE_CAPTURE_W: [u16; 12] = utf16z("WaveCapture");
static TOPOLOGY_CAPTURE_W: [u16; 16] = utf16z("TopologyCapture");

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

/// How many subdevices a device registers (the cable's or the AC'97's four):
/// what the driver's `AddDevice` asks `PcAddAdapterDevice` to make room for.
pub const MAX_SUBDEVICES: u32 = 4;

/// The cable's four subdevices, in registration order.
pub const SUBDEVICES: [Subdevice; 4] = four_subdevices([
    ("WaveRender", &WAVE_RENDER_W),
    ("TopologyRender", &TOPOLOGY_RENDER_W),
    ("WaveCapture", &WAVE_CAPTURE_W),
    ("TopologyCapture", &TOPOLOGY_CAPTURE_W),
]);

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
    topology: &dyn Fn(Direction) -> TopologyMiniport,
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
                &constraints,
            )?;
            let miniport = new_wave_rt_miniport(WaveMiniport::new(backend.clone(), direction))?;
            let port = services.new_port(&CLSID_PortWaveRT)?;
            services.init_port(&port, &miniport.query::<IUnknown>()?)?;
            port
        }
        SubdeviceKind::Topology(direction) => {
            let miniport = new_topology_miniport(topology(direction))?;
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

/// The functional device object, kept for the unregister calls.
#[derive(Clone, Copy, Debug)]
struct DeviceObject(*mut DEVICE_OBJECT);

// SAFETY: a device object is a kernel object, valid on every thread while
// the device exists; we only hand the pointer back to PortCls.
unsafe impl Send for DeviceObject {}
// SAFETY: as above; nothing is reached through `&DeviceObject`.
unsafe impl Sync for DeviceObject {}

/// What one start registered, for [`Registration::unregister`] to undo.
///
/// The port of each subdevice (one reference each, in [`SUBDEVICES`]
/// order) and which of [`PHYSICAL_CONNECTIONS`] are registered.
///
/// SYSVAD and simpleaudiosample keep the same in their adapter common object,
/// stored in the device extension for their `IRP_MJ_PNP` handler; the
/// driver keeps this one there.
#[derive(Debug)]
pub struct Registration {
    device: DeviceObject,
    subdevices: &'static [Subdevice; 4],
    /// A port is `Some` while its subdevice is registered.
    ports: [Option<ComPtr<IPort>>; 4],
    /// Indexed like [`PHYSICAL_CONNECTIONS`].
    connections: [bool; PHYSICAL_CONNECTIONS.len()],
}

impl Registration {
    const fn new(device: *mut DEVICE_OBJECT, subdevices: &'static [Subdevice; 4]) -> Self {
        Self {
            device: DeviceObject(device),
            subdevices,
            ports: [None, None, None, None],
            connections: [false; PHYSICAL_CONNECTIONS.len()],
        }
    }

    /// How many subdevices are registered.
    #[must_use]
    pub fn subdevice_count(&self) -> usize {
        self.ports.iter().filter(|p| p.is_some()).count()
    }

    /// How many physical connections are registered.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.connections.iter().filter(|c| **c).count()
    }

    /// The port registered as subdevice `index` ([`SUBDEVICES`] order).
    #[must_use]
    pub fn port(&self, index: usize) -> Option<&ComPtr<IPort>> {
        self.ports.get(index).and_then(Option::as_ref)
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
        for (index, connection) in PHYSICAL_CONNECTIONS.iter().enumerate().rev() {
            let Some(registered) = self.connections.get_mut(index) else {
                continue;
            };
            if !*registered {
                continue;
            }
            *registered = false;
            let name = self.subdevices.get(connection.from).map_or("?", |s| s.name);
            if let Err(status) = self.unregister_connection(connection) {
                note("the physical connection from", name, status);
            }
        }
        for (subdevice, slot) in self.subdevices.iter().zip(self.ports.iter_mut()).rev() {
            let Some(port) = slot.take() else {
                continue;
            };
            if let Err(status) = unregister_subdevice(self.device, &port) {
                note("subdevice", subdevice.name, status);
            }
            // Our reference goes here, as SYSVAD releases its port after
            // `UnregisterSubdevice`.
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `IUnregisterPhysicalConnection::UnregisterPhysicalConnection` of one
    /// registered connection, through its topology-side port.
    fn unregister_connection(&self, connection: &PhysicalConnection) -> NtResult<()> {
        let (Some(from), Some(to)) = (self.port(connection.from), self.port(connection.to)) else {
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
                self.device.0,
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
    topology: &dyn Fn(Direction) -> TopologyMiniport,
) -> NtResult<Registration> {
    let mut registration = Registration::new(services.device_object(), subdevices);
    let log = |level, message: core::fmt::Arguments<'_>| backend.log(level, message);
    let result = register_into(services, backend, topology, &mut registration);
    if let Err(e) = result {
        // The failure itself was logged; the undo is best effort.
        let _ = registration.unregister(&log);
        return Err(e);
    }
    Ok(registration)
}

fn register_into<S: PortClsServices, B: Backend>(
    services: &S,
    backend: &Arc<B>,
    topology: &dyn Fn(Direction) -> TopologyMiniport,
    registration: &mut Registration,
) -> NtResult<()> {
    for (subdevice, slot) in registration
        .subdevices
        .iter()
        .zip(registration.ports.iter_mut())
    {
        match install_one(services, backend, subdevice, topology) {
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
        .zip(registration.connections.iter_mut())
    {
        let (Some(Some(from)), Some(Some(to))) =
            (registration.ports.get(c.from), registration.ports.get(c.to))
        else {
            return Err(NtStatus::INVALID_PARAMETER);
        };
        services.register_physical_connection(from, c.from_pin, to, c.to_pin)?;
        *registered = true;
    }
    Ok(())
}

/// Registers the whole cable (its four subdevices and two connections).
///
/// # Errors
///
/// The first failing PortCls call's status (what was registered before it
/// is unregistered again).
pub fn install<S: PortClsServices, P: Platform>(
    services: &S,
    cable: &Arc<VirtualCable<P>>,
) -> NtResult<Registration> {
    let registration = register_subdevices(services, cable, &SUBDEVICES, &|direction| {
        TopologyMiniport::new(direction, crate::cable::endpoints::endpoint(direction))
    })?;
    cable.log(LogLevel::Info, format_args!("virtual cable registered"));
    Ok(registration)
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
    // Volume and mute act on the codec's mixer registers.
    let mixer = |direction| {
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
