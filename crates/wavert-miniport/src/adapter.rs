//! The adapter logic: ports, miniports, subdevices, physical connections.
//!
//! It creates the ports and miniports and registers the four subdevices and
//! their physical connections. Runs at `PASSIVE_LEVEL` from
//! the driver's `StartDevice`, over a [`PortClsServices`] implementation
//! (the real PortCls in the driver, a fake in tests and the emulator).

use alloc::sync::Arc;

use portcls_sys::{
    CLSID_PortTopology, CLSID_PortWaveRT, IInterruptSync, IPort, IResourceList, IUnknown, GUID,
    KSCATEGORY_AUDIO, KSCATEGORY_CAPTURE, KSCATEGORY_REALTIME, KSCATEGORY_RENDER,
    KSCATEGORY_TOPOLOGY,
};
use wavert_com::{new_topology_miniport, new_wave_rt_miniport, ComPtr, NtResult};

use crate::ac97::interrupt::InterruptSync;
use crate::ac97::{Ac97Device, Ac97Resources, MixerNode, PortIo};
use crate::cable::VirtualCable;
use crate::direction::Direction;
use crate::filters::{TOPO_CAPTURE_TO_WAVE_PIN, TOPO_RENDER_FROM_WAVE_PIN, WAVE_BRIDGE_PIN};
use crate::platform::{LogLevel, Platform};
use crate::stream::Backend;
use crate::topology::TopologyMiniport;
use crate::wave::WaveMiniport;

/// The PortCls calls the adapter logic makes.
pub trait PortClsServices {
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
/// it and registers it. The port is returned for the connections.
fn install_one<S: PortClsServices, B: Backend>(
    services: &S,
    backend: &Arc<B>,
    subdevice: &Subdevice,
    topology: &dyn Fn(Direction) -> TopologyMiniport,
) -> NtResult<ComPtr<IPort>> {
    let port = match subdevice.kind {
        SubdeviceKind::Wave(direction) => {
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

/// Registers a device's four subdevices and the two physical connections.
///
/// Wave miniports over `backend`, topology miniports from `topology`.
/// PortCls keeps the ports (and through them the miniports and the device)
/// alive; the references taken here are released on return, as
/// Microsoft's samples do.
///
/// # Errors
///
/// The first failing PortCls call's status (subdevices registered before it
/// stay registered: PortCls tears them down with the device).
pub fn register_subdevices<S: PortClsServices, B: Backend>(
    services: &S,
    backend: &Arc<B>,
    subdevices: &[Subdevice; 4],
    topology: &dyn Fn(Direction) -> TopologyMiniport,
) -> NtResult<()> {
    let mut ports: [Option<ComPtr<IPort>>; 4] = [None, None, None, None];
    for (subdevice, slot) in subdevices.iter().zip(ports.iter_mut()) {
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
    for c in &PHYSICAL_CONNECTIONS {
        let (Some(Some(from)), Some(Some(to))) = (ports.get(c.from), ports.get(c.to)) else {
            return Err(wavert_com::NtStatus::INVALID_PARAMETER);
        };
        services.register_physical_connection(from, c.from_pin, to, c.to_pin)?;
    }
    Ok(())
}

/// Registers the whole cable (its four subdevices and two connections).
///
/// # Errors
///
/// The first failing PortCls call's status (subdevices registered before it
/// stay registered: PortCls tears them down with the device).
pub fn install<S: PortClsServices, P: Platform>(
    services: &S,
    cable: &Arc<VirtualCable<P>>,
) -> NtResult<()> {
    register_subdevices(services, cable, &SUBDEVICES, &|direction| {
        TopologyMiniport::new(direction, crate::cable::endpoints::endpoint(direction))
    })?;
    cable.log(LogLevel::Info, format_args!("virtual cable registered"));
    Ok(())
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
/// device (PortCls' references keep it alive; the caller may drop its own).
/// IRQL: `PASSIVE_LEVEL`.
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
) -> NtResult<Arc<Ac97Device<P, IO>>> {
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
    register_subdevices(services, &device, &AC97_SUBDEVICES, &mixer)?;
    device.log(
        LogLevel::Info,
        format_args!(
            "AC'97 registered (mixer {:#x}, bus master {:#x})",
            windows.mixer_port, windows.bus_master_port
        ),
    );
    Ok(device)
}
