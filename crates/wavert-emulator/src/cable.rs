//! The product's virtual loopback cable (`wavert-miniport`) loaded the way
//! PortCls loads it.
//!
//! * [`EmuPlatform`] is the miniport's [`Platform`] over the [`Machine`]:
//!   QPC, [`EmuLock`] as the spinlock (it raises to `DISPATCH_LEVEL`, see
//!   [`crate::irql`]), `KeSetEvent` on the machine's events (an event the
//!   engine never made, or one unregistered, is a protocol violation), a
//!   periodic machine timer whose callback calls [`VirtualCable::on_timer`]
//!   at `DISPATCH_LEVEL`, and the driver log. Each service runs as kernel
//!   code ([`crate::irql::as_kernel`]).
//! * [`EmuPortCls`] is the adapter's [`PortClsServices`] over [`Port`]:
//!   `PcNewPort` makes a port object, `IPort::Init` is called through the
//!   port's vtable (which calls the miniport's `Init` and `GetDescription`
//!   through theirs), and `PcRegisterSubdevice` / `PcRegisterPhysicalConnection`
//!   are recorded on the machine.
//! * [`start_cable_adapter`] is `StartDevice`: it runs the miniport crate's
//!   own [`adapter::install`]. The engine then finds the wave filters only by
//!   their registered subdevice names ([`CableAdapter::wave_filter`]) and
//!   drives them through their vtables.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use portcls_sys::{
    CLSID_PortTopology, CLSID_PortWaveRT, IAdapterPowerManagement, IAdapterPowerManagement2,
    IInterruptSync, IMiniportTopology, IMiniportWaveRT, IPort, IResourceList, IUnknown,
    DEVICE_CAPABILITIES, DEVICE_OBJECT, DEVPROPKEY, DEVPROPTYPE, GUID, PCFILTER_DESCRIPTOR,
    POWER_STATE, STATUS_ALLOTTED_SPACE_EXCEEDED,
};
use wavert_com::{ComPtr, KernelEvent, NtResult, NtStatus};
use wavert_miniport::adapter::{self, PortClsServices, MAX_SUBDEVICES as HOST_MAX_SUBDEVICES};
use wavert_miniport::parameters::{CableName, DeviceParameters};
use wavert_miniport::{Backend, DmaMode, LogLevel, Platform, VirtualCable};

use crate::engine::pins;
use crate::engine::EngineError;
use crate::image::registry::{HostKey, RegistryData};
use crate::image::ImageDriver;
use crate::irql;
use crate::ks::KsFilter;
use crate::machine::{lock, Machine, TimerCallback, QPC_FREQUENCY};
use crate::port::{new_resource_list, InterruptLine, Port, PortKind, PortList, ResourceDescriptor};
use crate::session::{run_loopback_with, BetweenPolls, LoopbackConfig, LoopbackResult, WaveFilter};
use crate::signal;

/// The kernel spinlock in the emulator (raises the holder's IRQL).
pub use crate::irql::EmuLock;

/// Counters of what the cable asked of its platform.
#[derive(Debug, Default)]
pub struct PlatformCounters {
    /// `start_timer` calls.
    pub timer_starts: AtomicU64,
    /// `stop_timer` calls.
    pub timer_stops: AtomicU64,
    /// Timer callbacks delivered to the cable.
    pub timer_ticks: AtomicU64,
    /// `KeSetEvent` calls.
    pub signals: AtomicU64,
    /// Error log lines.
    pub errors: AtomicU64,
}

/// Where the timer callback finds the cable that owns the platform.
type CableSlot = Arc<OnceLock<Weak<VirtualCable<EmuPlatform>>>>;

/// The miniport's [`Platform`] over the emulated machine.
pub struct EmuPlatform {
    machine: Arc<Machine>,
    /// The timer's routine, made once, as the glue's `ExAllocateTimer`
    /// names its callback once: `set_timer` only moves the due time.
    callback: TimerCallback,
    timer: Mutex<Option<u64>>,
    counters: Arc<PlatformCounters>,
}

impl fmt::Debug for EmuPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmuPlatform")
            .field("timer", &*lock(&self.timer))
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl EmuPlatform {
    /// The machine.
    #[must_use]
    pub const fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    /// The counters.
    #[must_use]
    pub fn counters(&self) -> Arc<PlatformCounters> {
        Arc::clone(&self.counters)
    }

    /// Whether the periodic timer is running.
    #[must_use]
    pub fn timer_running(&self) -> bool {
        lock(&self.timer).is_some()
    }

    fn cancel(&self) {
        let running = lock(&self.timer).take();
        if let Some(id) = running {
            self.machine.cancel_timer(id);
        }
    }
}

impl Drop for EmuPlatform {
    /// The driver deletes its timer when the cable goes; so does the emulator.
    fn drop(&mut self) {
        self.cancel();
    }
}

impl Platform for EmuPlatform {
    type Lock<T: Send> = EmuLock<T>;

    fn new_lock<T: Send>(&self, value: T) -> EmuLock<T> {
        EmuLock::on(&self.machine, value)
    }

    fn qpc(&self) -> u64 {
        self.machine.qpc()
    }

    fn qpc_frequency(&self) -> u64 {
        QPC_FREQUENCY
    }

    fn signal_event(&self, event: KernelEvent) {
        irql::as_kernel(|| {
            irql::require_at_most(&self.machine, "KeSetEvent", irql::DISPATCH_LEVEL);
            self.counters.signals.fetch_add(1, Ordering::Relaxed);
            self.machine.set_event(event.as_raw());
        });
    }

    /// `ExSetTimer` on the cable's one timer: the machine's timer is
    /// replaced, under the platform's own lock, so two processors that
    /// start it at once still leave exactly one running.
    fn set_timer(&self, due_in_100ns: u64) {
        irql::as_kernel(|| {
            irql::require_at_most(&self.machine, "ExSetTimer", irql::DISPATCH_LEVEL);
            irql::preemption_point();
            self.counters.timer_starts.fetch_add(1, Ordering::Relaxed);
            // 100 ns units to QPC ticks (the same unit at 10 MHz); a
            // one-shot that replaces the due time set before.
            let due = u128::from(due_in_100ns) * u128::from(QPC_FREQUENCY) / 10_000_000;
            let due = u64::try_from(due).unwrap_or(u64::MAX).max(1);
            let mut timer = lock(&self.timer);
            // The same machine timer moved while it is set; a new one once
            // the last has fired (a fired one-shot leaves the table).
            let moved = timer.is_some_and(|id| self.machine.reset_timer_due(id, due, 0));
            if !moved {
                *timer = Some(
                    self.machine
                        .start_timer_due(due, 0, Arc::clone(&self.callback)),
                );
            }
        });
    }

    fn stop_timer(&self) {
        irql::as_kernel(|| {
            irql::require_at_most(&self.machine, "ExCancelTimer", irql::DISPATCH_LEVEL);
            irql::preemption_point();
            self.counters.timer_stops.fetch_add(1, Ordering::Relaxed);
            self.cancel();
        });
    }

    fn log(&self, level: LogLevel, message: fmt::Arguments<'_>) {
        irql::as_kernel(|| {
            if level == LogLevel::Error {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            self.machine.log(format!("{level:?}: {message}"));
        });
    }
}

/// The PortCls calls of `StartDevice`, over the emulator's port objects.
#[derive(Debug)]
pub struct EmuPortCls {
    machine: Arc<Machine>,
    /// The ports PortCls holds for the device (an unregistered subdevice's
    /// port leaves the list: see `port::unregister_subdevice`).
    ports: PortList,
    calls: AtomicUsize,
    fail_call: Option<usize>,
    /// How many subdevices `PcAddAdapterDevice` made room for.
    max_subdevices: AtomicU32,
    /// The line `PcNewInterruptSync` hands out (interrupting devices only).
    interrupt: Option<Arc<InterruptLine>>,
    /// The device's resources, as `StartDevice` got them and `IPort::Init`
    /// passes them on (none for the root-enumerated cable: an empty list).
    resources: Vec<ResourceDescriptor>,
    /// What `PcRegisterAdapterPowerManagement` was given, queried for
    /// `IAdapterPowerManagement` as PortCls does (ReactOS portcls
    /// `power.cpp`), for [`EmuPortCls::set_device_power`] and friends.
    adapter_power: Mutex<Option<ComPtr<IAdapterPowerManagement>>>,
    /// What sets this device's registrations apart from another device's
    /// on the machine (empty for the first device; `#N\` for instance N):
    /// Windows keeps each device's interfaces under its own instance path,
    /// so two devices register the same subdevice names.
    device_prefix: String,
}

/// Reads a NUL-terminated UTF-16 name (the whole slice if it has no NUL).
fn name_of(name: &[u16]) -> String {
    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    String::from_utf16_lossy(name.get(..end).unwrap_or(name))
}

impl EmuPortCls {
    /// Services on `machine`; `fail_call` makes the PortCls call with that
    /// index (0-based, in call order) fail with
    /// `STATUS_INSUFFICIENT_RESOURCES`.
    ///
    /// The device has room for `adapter::MAX_SUBDEVICES` subdevices, as the
    /// driver's `AddDevice` asks `PcAddAdapterDevice` for; the image's
    /// `PcAddAdapterDevice` sets its own figure ([`EmuPortCls::set_max_subdevices`]).
    #[must_use]
    pub fn new(machine: Arc<Machine>, fail_call: Option<usize>) -> Self {
        Self {
            machine,
            ports: Arc::new(Mutex::new(Vec::new())),
            calls: AtomicUsize::new(0),
            fail_call,
            max_subdevices: AtomicU32::new(HOST_MAX_SUBDEVICES),
            interrupt: None,
            resources: Vec::new(),
            adapter_power: Mutex::new(None),
            device_prefix: String::new(),
        }
    }

    /// The same services for device instance `instance` of the driver (0:
    /// the first, whose names the machine records as registered; N > 0:
    /// recorded as `#N\name`).
    #[must_use]
    pub fn for_device(mut self, instance: u32) -> Self {
        self.device_prefix = if instance == 0 {
            String::new()
        } else {
            format!("#{instance}\\")
        };
        self
    }

    /// PortCls handled this device's stop or removal (`true`) or start.
    pub fn set_stopped(&self, stopped: bool) {
        self.machine
            .set_instance_stopped(&self.device_prefix, stopped);
    }

    /// `name` as the machine records it for this device.
    fn scoped(&self, name: &str) -> String {
        format!("{}{name}", self.device_prefix)
    }

    /// Whether the machine's record `name` is this device's.
    fn owns(&self, name: &str) -> bool {
        name.strip_prefix(self.device_prefix.as_str())
            .is_some_and(|rest| !rest.starts_with('#'))
    }

    /// The same services for a device with these resources, which
    /// `IPort::Init` passes to the miniports' `Init` as PortCls does.
    #[must_use]
    pub fn with_resources(mut self, resources: &[ResourceDescriptor]) -> Self {
        self.resources = resources.to_vec();
        self
    }

    /// `PcAddAdapterDevice`'s `MaxObjects`: the subdevice slots of the device.
    pub fn set_max_subdevices(&self, slots: u32) {
        self.max_subdevices.store(slots, Ordering::Relaxed);
    }

    /// The same services for a device with an interrupt:
    /// `PcNewInterruptSync` (resource index 0) hands out `line`.
    #[must_use]
    pub fn with_interrupt_line(mut self, line: Arc<InterruptLine>) -> Self {
        self.interrupt = Some(line);
        self
    }

    /// PortCls calls made so far.
    #[must_use]
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// The ports made, handed over (for callers that keep them themselves
    /// rather than asking these services).
    #[must_use]
    pub fn into_ports(self) -> Vec<Port> {
        self.take_ports()
    }

    /// The ports held so far, handed over.
    #[must_use]
    pub fn take_ports(&self) -> Vec<Port> {
        std::mem::take(&mut *lock(&self.ports))
    }

    /// How many ports PortCls holds for the device.
    #[must_use]
    pub fn port_count(&self) -> usize {
        lock(&self.ports).len()
    }

    /// Runs `f` on the port registered as `name`, if any.
    pub fn with_registered_port<R>(&self, name: &str, f: impl FnOnce(&Port) -> R) -> Option<R> {
        let address = self
            .machine
            .registrations()
            .subdevices
            .iter()
            .find(|(n, _)| *n == self.scoped(name))
            .map(|(_, a)| *a)?;
        lock(&self.ports)
            .iter()
            .find(|p| p.address() == address)
            .map(f)
    }

    /// PortCls's own part of device removal: whatever is still registered
    /// is forgotten and every port it holds lets go of its miniport and is
    /// released (outside the lock: the last miniport reference may run
    /// driver code).
    pub fn release_all(&self) {
        drop(lock(&self.adapter_power).take());
        let ports = self.take_ports();
        for port in &ports {
            self.machine.unregister_port(port.address());
            port.unbind();
        }
        drop(ports);
    }

    /// The registered power management, if any.
    fn adapter_power(&self) -> Option<ComPtr<IAdapterPowerManagement>> {
        lock(&self.adapter_power).clone()
    }

    /// Whether the adapter registered power management.
    #[must_use]
    pub fn has_power_management(&self) -> bool {
        self.adapter_power().is_some()
    }

    /// PortCls' `IRP_MN_SET_POWER` for a device state: `PowerChangeState2`
    /// when the object answers `IID_IAdapterPowerManagement2` and a system
    /// state is given (a system sleep or wake), else `PowerChangeState`, as
    /// kernel code at `PASSIVE_LEVEL` (PortCls calls from a work item).
    ///
    /// # Errors
    ///
    /// `STATUS_NOT_SUPPORTED` when no power management is registered.
    pub fn set_device_power(&self, device: i32, system: Option<i32>) -> NtResult<()> {
        let power = self.adapter_power().ok_or(NtStatus::NOT_SUPPORTED)?;
        let second = system.and_then(|system| {
            power
                .query::<IAdapterPowerManagement2>()
                .ok()
                .map(|p| (p, system))
        });
        irql::as_kernel(|| {
            if let Some((power2, system)) = second {
                let call = power2.vtbl().PowerChangeState2;
                // SAFETY: a live interface (we hold a reference).
                unsafe { call(power2.this(), device, system) };
            } else {
                let call = power.vtbl().PowerChangeState;
                let state = POWER_STATE {
                    DeviceState: device,
                };
                // SAFETY: a live interface; POWER_STATE is passed by value.
                unsafe { call(power.this(), state) };
            }
        });
        Ok(())
    }

    /// PortCls' `IRP_MN_QUERY_POWER` for a device state: the adapter's
    /// `QueryPowerChangeState` answer.
    ///
    /// # Errors
    ///
    /// The adapter's veto; `STATUS_NOT_SUPPORTED` without power management.
    pub fn query_device_power(&self, device: i32) -> NtResult<()> {
        let power = self.adapter_power().ok_or(NtStatus::NOT_SUPPORTED)?;
        let call = power.vtbl().QueryPowerChangeState;
        // SAFETY: a live interface; POWER_STATE is passed by value.
        NtStatus::check(irql::as_kernel(|| unsafe {
            call(
                power.this(),
                POWER_STATE {
                    DeviceState: device,
                },
            )
        }))
    }

    /// PortCls' `IRP_MN_QUERY_CAPABILITIES`: the adapter adjusts `caps`.
    ///
    /// # Errors
    ///
    /// The adapter's status; `STATUS_NOT_SUPPORTED` without power management.
    pub fn query_capabilities(&self, caps: &mut DEVICE_CAPABILITIES) -> NtResult<()> {
        let power = self.adapter_power().ok_or(NtStatus::NOT_SUPPORTED)?;
        let call = power.vtbl().QueryDeviceCapabilities;
        // SAFETY: a live interface; `caps` is writable for the call.
        NtStatus::check(irql::as_kernel(|| unsafe { call(power.this(), caps) }))
    }

    fn call(&self) -> NtResult<()> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if self.fail_call == Some(n) {
            Err(NtStatus::INSUFFICIENT_RESOURCES)
        } else {
            Ok(())
        }
    }

    /// The port object behind an `IPort` pointer, if we made it.
    fn find<R>(&self, port: &ComPtr<IPort>, f: impl FnOnce(&Port) -> R) -> Option<R> {
        let address = port.as_raw().addr();
        lock(&self.ports)
            .iter()
            .find(|p| p.address() == address)
            .map(f)
    }

    /// The pin count of an initialised port's filter.
    fn pin_count(&self, port: &ComPtr<IPort>) -> NtResult<usize> {
        self.find(port, |p| p.description().map(|d| pins(d).len()))
            .flatten()
            .ok_or(NtStatus::INVALID_PARAMETER)
    }
}

impl PortClsServices for EmuPortCls {
    /// Not one of the counted calls (`fail_call` indices stay as they
    /// were); a second registration replaces the first, as ReactOS's
    /// `PcRegisterAdapterPowerManagement` overwrites its pointer.
    fn register_adapter_power_management(&self, power: &ComPtr<IUnknown>) -> NtResult<()> {
        let power = power.query::<IAdapterPowerManagement>()?;
        *lock(&self.adapter_power) = Some(power);
        Ok(())
    }

    /// The host build has no device object (the emulated PortCls never
    /// reads it).
    fn device_object(&self) -> *mut DEVICE_OBJECT {
        std::ptr::null_mut()
    }

    fn new_port(&self, class_id: &GUID) -> NtResult<ComPtr<IPort>> {
        self.call()?;
        let kind = if *class_id == CLSID_PortWaveRT {
            PortKind::WaveRt
        } else if *class_id == CLSID_PortTopology {
            PortKind::Topology
        } else {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        };
        let port = Port::new(&self.machine, kind, &self.ports);
        let interface = port.interface().clone();
        lock(&self.ports).push(port);
        Ok(interface)
    }

    fn init_port(&self, port: &ComPtr<IPort>, miniport: &ComPtr<IUnknown>) -> NtResult<()> {
        self.call()?;
        if self.find(port, |_| ()).is_none() {
            return Err(NtStatus::INVALID_PARAMETER);
        }
        // The device's own resource list, as StartDevice got it (an empty
        // one for a root-enumerated device), not NULL.
        let resources = new_resource_list(&self.machine, &self.resources);
        // SAFETY: the port is live (the caller holds it) and ours; the
        // miniport and the resource list are live (references held for the
        // call).
        unsafe { Port::init_raw(port, miniport.as_raw(), resources.as_raw()) }
            .map_err(NtStatus::from_failure)
    }

    fn register_subdevice(&self, name: &'static [u16], port: &ComPtr<IPort>) -> NtResult<()> {
        self.call()?;
        // PortCls builds the filter factory from the descriptor `Init` got.
        let described = self.find(port, |p| p.description().is_some());
        if described != Some(true) {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let name = self.scoped(&name_of(name));
        let mut registered = self.machine.registrations().subdevices;
        // The slots and names of this device only.
        registered.retain(|(n, _)| self.owns(n));
        // PortCls adds a KS create item per subdevice to the table
        // `PcAddAdapterDevice` sized with `MaxObjects`;
        // `KsAddObjectCreateItemToDeviceHeader` refuses a full table with
        // STATUS_ALLOTTED_SPACE_EXCEEDED (Learn, ks.h; ReactOS's
        // `PcRegisterSubdevice` does exactly this), and only
        // `IUnregisterSubdevice` frees a slot. So a restart after a stop
        // that unregistered nothing is refused here.
        let slots = self.max_subdevices.load(Ordering::Relaxed) as usize;
        if registered.len() >= slots {
            self.machine.violation(format!(
                "PcRegisterSubdevice({name}): all {slots} subdevice slots of \
                 PcAddAdapterDevice are taken by {:?} (a start after a stop that \
                 did not unregister them?)",
                registered
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
            ));
            return Err(NtStatus::from_failure(STATUS_ALLOTTED_SPACE_EXCEEDED));
        }
        // The emulator is stricter than KS about one case: a second
        // registration of a name still registered would give two create
        // items of one name, the second unreachable (ReactOS's
        // `PcRegisterSubdevice` leaves that check as a FIXME).
        if registered.iter().any(|(n, _)| *n == name) {
            return Err(NtStatus::OBJECT_NAME_COLLISION);
        }
        self.machine.register_subdevice(&name, port.as_raw().addr());
        Ok(())
    }

    /// Recorded on the machine (not one of the counted PortCls calls: it is
    /// the kernel's `IoSetDeviceInterfacePropertyData`), with the order
    /// against the subdevice's registration.
    fn set_filter_interface_property(
        &self,
        name: &'static [u16],
        key: &DEVPROPKEY,
        kind: DEVPROPTYPE,
        value: &[u8],
    ) -> NtResult<()> {
        self.machine
            .set_typed_interface_property(&self.scoped(&name_of(name)), key, kind, value);
        Ok(())
    }

    fn register_physical_connection(
        &self,
        from: &ComPtr<IPort>,
        from_pin: u32,
        to: &ComPtr<IPort>,
        to_pin: u32,
    ) -> NtResult<()> {
        self.call()?;
        let registered = self.machine.registrations();
        for (port, pin) in [(from, from_pin), (to, to_pin)] {
            if registered.name_of(port.as_raw().addr()).is_none() {
                return Err(NtStatus::INVALID_DEVICE_REQUEST);
            }
            if pin as usize >= self.pin_count(port)? {
                return Err(NtStatus::INVALID_PARAMETER);
            }
        }
        self.machine.register_physical_connection(
            from.as_raw().addr(),
            from_pin,
            to.as_raw().addr(),
            to_pin,
        );
        Ok(())
    }

    fn new_interrupt_sync(
        &self,
        _resources: &ComPtr<IResourceList>,
        index: u32,
    ) -> NtResult<ComPtr<IInterruptSync>> {
        self.call()?;
        match (&self.interrupt, index) {
            (Some(line), 0) => Ok(line.interface().clone()),
            _ => Err(NtStatus::NOT_SUPPORTED),
        }
    }
}

/// A wave filter found by its subdevice name: its miniport and descriptor.
#[derive(Debug, Clone)]
pub struct RegisteredWaveFilter {
    /// The subdevice name.
    pub name: String,
    /// The miniport the port was initialised with.
    pub miniport: ComPtr<IMiniportWaveRT>,
    /// Its filter descriptor (from `GetDescription`).
    pub description: &'static PCFILTER_DESCRIPTOR,
}

impl RegisteredWaveFilter {
    /// The session's view.
    #[must_use]
    pub const fn as_filter(&self) -> WaveFilter<'_> {
        WaveFilter {
            miniport: &self.miniport,
            description: self.description,
        }
    }
}

/// The host-built driver's state between PnP IRPs: what the glue keeps in
/// the device extension (the registration) and the cable it made.
struct HostStarted {
    /// Cable 1 first; each its own state and timer.
    cables: Vec<Arc<VirtualCable<EmuPlatform>>>,
    registration: adapter::Registration,
}

/// Which driver the adapter runs.
enum DriverUnderTest {
    /// The host build: `StartDevice` is [`adapter::install`], the `IRP_MJ_PNP`
    /// handler [`CableAdapter::stop`] and friends (the same calls as the
    /// glue's `pnp_dispatch` in `src/adapter.rs`).
    Host {
        options: CableOptions,
        started: Option<HostStarted>,
    },
    /// The shipped image: every PnP IRP goes through its own `IRP_MJ_PNP`
    /// dispatch ([`ImageDriver::pnp`]).
    Image(ImageDriver),
}

/// A started device: its PortCls and the driver behind it.
///
/// PortCls holds the ports and registrations; the driver is the host build
/// or the shipped image. PnP stop, start,
/// surprise removal and removal are sent to the driver as Windows sends
/// them (see [`CableAdapter::stop`]).
pub struct CableAdapter {
    machine: Arc<Machine>,
    services: Arc<EmuPortCls>,
    driver: DriverUnderTest,
}

impl fmt::Debug for CableAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CableAdapter")
            .field("ports", &self.services.port_count())
            .field("cable", &self.cable().map(|c| c.platform()))
            .finish_non_exhaustive()
    }
}

/// Which PnP IRP a [`CableAdapter`] sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PnpRequest {
    /// `IRP_MN_START_DEVICE` (after a stop).
    Start,
    /// `IRP_MN_STOP_DEVICE`.
    Stop,
    /// `IRP_MN_SURPRISE_REMOVAL`.
    SurpriseRemoval,
}

impl CableAdapter {
    /// One loopback session of the generated test signal (`seconds` of it)
    /// through the `WaveRender` and `WaveCapture` filters; returns the
    /// session's result and the signal that was played.
    ///
    /// # Errors
    ///
    /// A missing filter or the session's first engine error.
    pub fn loopback_test_signal(
        &self,
        config: &LoopbackConfig,
        seconds: f64,
    ) -> (Result<LoopbackResult, EngineError>, Vec<u8>) {
        self.loopback_test_signal_with(config, seconds, &mut |_, _| Ok(()))
    }

    /// [`CableAdapter::loopback_test_signal`] with `between` run after every
    /// poll of the session ([`run_loopback_with`]).
    ///
    /// # Errors
    ///
    /// A missing filter, the session's first engine error or `between`'s.
    pub fn loopback_test_signal_with(
        &self,
        config: &LoopbackConfig,
        seconds: f64,
        between: &mut BetweenPolls<'_>,
    ) -> (Result<LoopbackResult, EngineError>, Vec<u8>) {
        let (Some(render), Some(capture)) = (
            self.wave_filter("WaveRender"),
            self.wave_filter("WaveCapture"),
        ) else {
            let missing = EngineError::Protocol("no WaveRender/WaveCapture filter".to_owned());
            return (Err(missing), Vec::new());
        };
        let mut rendered = Vec::new();
        let result = run_loopback_with(
            &self.machine,
            render.as_filter(),
            capture.as_filter(),
            config,
            &mut |format| {
                rendered = signal::test_signal(format, seconds);
                rendered.clone()
            },
            &mut |_| {},
            between,
        );
        (result, rendered)
    }

    /// The wave filter registered as `name` (e.g. `"WaveRender"`).
    #[must_use]
    pub fn wave_filter(&self, name: &str) -> Option<RegisteredWaveFilter> {
        self.services
            .with_registered_port(name, |port| {
                Some(RegisteredWaveFilter {
                    name: name.to_owned(),
                    miniport: port.wave_miniport()?,
                    description: port.description()?,
                })
            })
            .flatten()
    }

    /// The topology miniport registered as `name`, with its descriptor.
    #[must_use]
    pub fn topology_filter(
        &self,
        name: &str,
    ) -> Option<(ComPtr<IMiniportTopology>, &'static PCFILTER_DESCRIPTOR)> {
        self.services
            .with_registered_port(name, |port| {
                Some((port.topology_miniport()?, port.description()?))
            })
            .flatten()
    }

    /// The filter registered as `name` (wave or topology) as a KS client
    /// sees it, for property requests.
    #[must_use]
    pub fn ks_filter(&self, name: &str) -> Option<KsFilter> {
        self.services
            .with_registered_port(name, KsFilter::of_port)
            .flatten()
    }

    /// The host-built cables (cable 1 first) while the device is started.
    #[must_use]
    pub fn cables(&self) -> &[Arc<VirtualCable<EmuPlatform>>] {
        match &self.driver {
            DriverUnderTest::Host {
                started: Some(started),
                ..
            } => &started.cables,
            _ => &[],
        }
    }

    /// The host-built cable 1 (for its counters) while the device is started.
    #[must_use]
    pub fn cable(&self) -> Option<&Arc<VirtualCable<EmuPlatform>>> {
        match &self.driver {
            DriverUnderTest::Host {
                started: Some(started),
                ..
            } => started.cables.first(),
            _ => None,
        }
    }

    /// How many ports PortCls holds for the device.
    #[must_use]
    pub fn port_count(&self) -> usize {
        self.services.port_count()
    }

    /// The device's emulated PortCls (to send it power IRPs).
    #[must_use]
    pub fn portcls(&self) -> &EmuPortCls {
        &self.services
    }

    /// The adapter of a started driver image (see [`crate::image`]).
    #[must_use]
    pub(crate) fn from_image(
        machine: &Arc<Machine>,
        services: Arc<EmuPortCls>,
        driver: ImageDriver,
    ) -> Self {
        Self {
            machine: Arc::clone(machine),
            services,
            driver: DriverUnderTest::Image(driver),
        }
    }

    /// The shipped image, if it is what runs (`None` for the host build).
    #[must_use]
    pub const fn image(&self) -> Option<&ImageDriver> {
        match &self.driver {
            DriverUnderTest::Image(driver) => Some(driver),
            DriverUnderTest::Host { .. } => None,
        }
    }

    /// The shipped image, to break it on purpose in a test.
    pub const fn image_mut(&mut self) -> Option<&mut ImageDriver> {
        match &mut self.driver {
            DriverUnderTest::Image(driver) => Some(driver),
            DriverUnderTest::Host { .. } => None,
        }
    }

    /// `IRP_MN_STOP_DEVICE`: the driver's `IRP_MJ_PNP` handler unregisters
    /// its physical connections and subdevices and lets go of its ports,
    /// then PortCls handles the IRP (its stop keeps what is still
    /// registered: only `IUnregister*` removes a registration).
    ///
    /// # Errors
    ///
    /// The status the IRP completed with.
    pub fn stop(&mut self) -> Result<(), NtStatus> {
        self.pnp(PnpRequest::Stop)
    }

    /// `IRP_MN_START_DEVICE` after a stop: PortCls calls the driver's
    /// `StartDevice` again, which registers the subdevices afresh.
    ///
    /// # Errors
    ///
    /// The status `StartDevice` returned (e.g. `STATUS_ALLOTTED_SPACE_EXCEEDED`
    /// when the stop left the subdevices registered).
    pub fn start(&mut self) -> Result<(), NtStatus> {
        self.pnp(PnpRequest::Start)
    }

    /// `IRP_MN_SURPRISE_REMOVAL`: handled like a stop by the driver.
    ///
    /// # Errors
    ///
    /// The status the IRP completed with.
    pub fn surprise_remove(&mut self) -> Result<(), NtStatus> {
        self.pnp(PnpRequest::SurpriseRemoval)
    }

    /// One PnP IRP, through the driver's own dispatch.
    ///
    /// # Errors
    ///
    /// The status the IRP completed with.
    pub fn pnp(&mut self, request: PnpRequest) -> Result<(), NtStatus> {
        match &mut self.driver {
            DriverUnderTest::Image(driver) => driver.pnp(request),
            DriverUnderTest::Host { options, started } => match request {
                PnpRequest::Stop | PnpRequest::SurpriseRemoval => {
                    if let Some(mut done) = started.take() {
                        if !options.skip_unregister_on_stop {
                            let log = |level, message: fmt::Arguments<'_>| {
                                log_first(&done.cables, level, message);
                            };
                            // The glue logs failures and passes the IRP on
                            // all the same; so does this.
                            let _ = done.registration.unregister(&log);
                        }
                        // Without the unregister (the broken driver), the
                        // registration just goes: our port references are
                        // released, the subdevices stay registered.
                        drop(done);
                    }
                    // PortCls's part: it keeps what is still registered.
                    self.services.set_stopped(true);
                    Ok(())
                }
                PnpRequest::Start => {
                    if started.is_some() {
                        return Err(NtStatus::INVALID_DEVICE_STATE);
                    }
                    self.services.set_stopped(false);
                    let (cables, names) = new_cables(&self.machine, options);
                    let registration = adapter::install_cables(&*self.services, &cables, &names)?;
                    *started = Some(HostStarted {
                        cables,
                        registration,
                    });
                    Ok(())
                }
            },
        }
    }

    /// `IRP_MN_REMOVE_DEVICE`: the driver's handler unregisters what is
    /// still registered (nothing after a stop), then PortCls removes the
    /// device: it forgets any registration left and releases its ports and
    /// miniports, and the last miniport reference takes the cable (and its
    /// timer) with it. For the shipped image, the driver is then unloaded
    /// and whatever it left behind is reported as a violation.
    pub fn remove(mut self) {
        match &mut self.driver {
            DriverUnderTest::Image(driver) => {
                let _ = driver.remove_device();
            }
            DriverUnderTest::Host { started, .. } => {
                if let Some(mut done) = started.take() {
                    let log = |level, message: fmt::Arguments<'_>| {
                        log_first(&done.cables, level, message);
                    };
                    let _ = done.registration.unregister(&log);
                }
                self.services.set_stopped(true);
            }
        }
        self.services.release_all();
        if let DriverUnderTest::Image(driver) = self.driver {
            let _leaks = driver.unload();
        }
    }
}

/// Options of [`start_cable_adapter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CableOptions {
    /// How the virtual DMA engine walks its descriptors.
    pub dma: DmaMode,
    /// Fail this PortCls call (0-based) of `StartDevice`.
    pub fail_portcls_call: Option<usize>,
    /// A broken driver: its PnP handler does not unregister anything on
    /// stop or surprise removal (for the test that the emulated PortCls
    /// then refuses the restart).
    pub skip_unregister_on_stop: bool,
    /// The device's hardware key (`CableCount`, `CableNName`, see
    /// `wavert_miniport::parameters`): the host build reads it through the
    /// same parser the image runs over its `ZwQueryValueKey` (empty: every
    /// parameter takes its default, one cable).
    pub registry: Vec<(String, RegistryData)>,
    /// Which root device of the driver this is (0: the first; a second
    /// device is instance 1, with its own cables and registrations).
    pub instance: u32,
}

impl CableOptions {
    /// The default options for a device whose parameters ask for `count`
    /// cables.
    #[must_use]
    pub fn with_cables(count: u32) -> Self {
        Self {
            registry: vec![("CableCount".to_owned(), RegistryData::Dword(count))],
            ..Self::default()
        }
    }
}

impl Default for CableOptions {
    fn default() -> Self {
        Self {
            dma: DmaMode::Looping,
            fail_portcls_call: None,
            skip_unregister_on_stop: false,
            registry: Vec::new(),
            instance: 0,
        }
    }
}

/// `StartDevice` of the real driver, in the emulator: makes the cable over
/// [`EmuPlatform`] and runs [`adapter::install`] over [`EmuPortCls`].
///
/// # Errors
///
/// The status `install` returned; everything it made is torn down first.
pub fn start_cable_adapter(
    machine: &Arc<Machine>,
    options: CableOptions,
) -> Result<CableAdapter, NtStatus> {
    let (cables, names) = new_cables(machine, &options);
    let services = EmuPortCls::new(Arc::clone(machine), options.fail_portcls_call)
        .for_device(options.instance);
    services.set_stopped(false);
    let installed = adapter::install_cables(&services, &cables, &names);
    finish_start(machine, services, cables, installed, options)
}

/// The host build's `StartDevice` before the registration, as the glue's
/// `start_cable`: the device's parameters read from `options.registry`
/// (refusals in the driver log), then one cable per configured cable, each
/// over its own platform and timer, with its name.
fn new_cables(
    machine: &Arc<Machine>,
    options: &CableOptions,
) -> (Vec<Arc<VirtualCable<EmuPlatform>>>, Vec<CableName>) {
    let parameters = DeviceParameters::read(&HostKey(&options.registry), &|level, message| {
        machine.log(format!("{level:?}: {message}"));
    });
    parameters
        .cables()
        .iter()
        .map(|cable| (new_cable(machine, options.dma), cable.name))
        .unzip()
}

/// Logs through the first cable's platform (the driver log), as the glue
/// logs through its platform.
fn log_first(
    cables: &[Arc<VirtualCable<EmuPlatform>>],
    level: LogLevel,
    message: fmt::Arguments<'_>,
) {
    if let Some(cable) = cables.first() {
        cable.log(level, message);
    }
}

/// The routine the cable's timer runs: the glue's `EXT_CALLBACK`, at
/// `DISPATCH_LEVEL`, on the cable that owns the platform (none once it is
/// gone).
fn timer_routine(
    slot: CableSlot,
    counters: Arc<PlatformCounters>,
    machine: &Arc<Machine>,
) -> TimerCallback {
    let machine = Arc::downgrade(machine);
    Arc::new(move |now| {
        let (Some(cable), Some(machine)) = (slot.get().and_then(Weak::upgrade), machine.upgrade())
        else {
            return;
        };
        counters.timer_ticks.fetch_add(1, Ordering::Relaxed);
        irql::run_driver_routine(
            &machine,
            irql::DISPATCH_LEVEL,
            "the cable's timer callback",
            || cable.on_timer(now),
        );
    })
}

/// The product's cable over the machine, its timer routed to it.
pub(crate) fn new_cable(machine: &Arc<Machine>, dma: DmaMode) -> Arc<VirtualCable<EmuPlatform>> {
    let slot: CableSlot = Arc::new(OnceLock::new());
    let counters = Arc::new(PlatformCounters::default());
    let platform = EmuPlatform {
        machine: Arc::clone(machine),
        callback: timer_routine(Arc::clone(&slot), Arc::clone(&counters), machine),
        timer: Mutex::new(None),
        counters,
    };
    let cable = Arc::new(VirtualCable::new(platform, dma));
    // The slot is new: it cannot be set already.
    let _ = slot.set(Arc::downgrade(&cable));
    cable
}

/// The adapter after `StartDevice` returned `installed`: kept, or torn down
/// (what was registered unregistered) on failure.
pub(crate) fn finish_start(
    machine: &Arc<Machine>,
    services: EmuPortCls,
    cables: Vec<Arc<VirtualCable<EmuPlatform>>>,
    installed: NtResult<adapter::Registration>,
    options: CableOptions,
) -> Result<CableAdapter, NtStatus> {
    let (started, result) = match installed {
        Ok(registration) => (
            Some(HostStarted {
                cables,
                registration,
            }),
            Ok(()),
        ),
        Err(status) => (None, Err(status)),
    };
    let adapter = CableAdapter {
        machine: Arc::clone(machine),
        services: Arc::new(services),
        driver: DriverUnderTest::Host { options, started },
    };
    match result {
        Ok(()) => Ok(adapter),
        Err(status) => {
            adapter.remove();
            Err(status)
        }
    }
}
