//! The shipped driver image executed: `rswavert.sys` loaded into this
//! process and run through the Windows life cycle, as the kernel and PortCls
//! run it.
//!
//! * [`pe`] maps the PE32+ image (sections at their RVAs with their own
//!   protections, base relocations, imports bound by module and name).
//! * [`kernel`] implements the `ntoskrnl.exe` and `hal.dll` functions the
//!   image imports, with Driver Verifier's rules and per-thread IRQL.
//! * [`portcls`] implements its `portcls.sys` imports over the same
//!   [`EmuPortCls`] the host-built driver's `StartDevice` uses.
//! * [`device_interfaces`] implements the device-interface routines
//!   (`IoRegisterDeviceInterface`, `IoSetDeviceInterfacePropertyData`,
//!   `RtlFreeUnicodeString`) over the machine's interface properties.
//! * [`ImageDriver`] walks the life cycle: `DriverEntry` with a driver
//!   object and registry path, `AddDevice` with a physical device object,
//!   `StartDevice` with the device's resource list, and at the end device
//!   removal and driver unload with nothing left behind
//!   ([`start_image_adapter`] does the first three and returns the same
//!   [`CableAdapter`] the host build gives, so the engine, the sessions and
//!   the HLK rules drive the image exactly as they drive the host build).
//!
//! Both builds share every vtable (the Windows x64 convention on x86_64
//! hosts, `portcls_sys::windows_fn!`), so the port objects serve both.

/// A stand-in export table: each function under its own name (the name an
/// image imports it by is the function's identifier, so the two cannot drift).
macro_rules! exports {
    ($($module:literal: [$($function:ident),* $(,)?]),* $(,)?) => {
        vec![$($(($module, stringify!($function), $function as *const () as usize)),*),*]
    };
}

pub mod device_interfaces;
pub mod kernel;
pub mod pe;
pub mod portcls;
pub mod registry;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod io_trap;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod mmio_trap;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcls_sys::{
    windows_fn, DRIVER_OBJECT_MajorFunction_OFFSET, IO_STACK_LOCATION_MajorFunction_OFFSET,
    IO_STACK_LOCATION_MinorFunction_OFFSET, IRP_CurrentStackLocation_OFFSET, IResourceList,
    DEVICE_OBJECT, DRIVER_OBJECT, IO_STACK_LOCATION_SIZE, IRP, IRP_MJ_PNP, IRP_MN_REMOVE_DEVICE,
    IRP_MN_START_DEVICE, IRP_MN_STOP_DEVICE, IRP_MN_SURPRISE_REMOVAL, IRP_SIZE, NTSTATUS,
    NT_SUCCESS, UNICODE_STRING,
};
use wavert_com::{ComPtr, NtStatus};

use crate::cable::{CableAdapter, EmuPortCls, PnpRequest};
use crate::irql;
use crate::machine::Machine;
use crate::port::{new_resource_list, InterruptLine, ResourceDescriptor};
use kernel::{Installed, Kernel};
use pe::{ImageError, LoadedImage};
pub use registry::RegistryData;

/// `DriverEntry` (`DRIVER_INITIALIZE`).
type DriverEntry = windows_fn!(
    unsafe fn(driver: *mut DRIVER_OBJECT, registry_path: *mut UNICODE_STRING) -> NTSTATUS
);

/// Bytes of a kernel object the driver passes along or reads a field of:
/// `sizeof(DRIVER_OBJECT)` and the WDK's `sizeof(DEVICE_OBJECT)` on x64 are
/// 0x150, `sizeof(IRP)` 0xD0; a block of the largest, zeroed, stands for
/// each. (The FDO, with its device extension, is PortCls's: see
/// `portcls::FunctionalDevice`.)
const KERNEL_OBJECT_BYTES: usize = 0x150;

/// Why an image run did not get as far as streaming.
#[derive(Debug)]
pub enum ImageRunError {
    /// The file could not be read.
    Read(String),
    /// The loader refused the image.
    Load(ImageError),
    /// A life-cycle step returned a failure status.
    Status {
        /// `DriverEntry`, `AddDevice` or `StartDevice`.
        step: &'static str,
        /// What it returned.
        status: NTSTATUS,
    },
    /// The driver skipped a step PortCls needs (e.g. never called
    /// `PcInitializeAdapterDriver`).
    Protocol(String),
}

impl std::fmt::Display for ImageRunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(why) | Self::Protocol(why) => f.write_str(why),
            Self::Load(error) => error.fmt(f),
            Self::Status { step, status } => {
                write!(
                    f,
                    "{step} returned {:#010x}",
                    u32::from_ne_bytes(status.to_ne_bytes())
                )
            }
        }
    }
}

impl std::error::Error for ImageRunError {}

/// A zeroed block standing for a kernel object.
struct KernelObject(Box<[u64]>);

impl KernelObject {
    fn new() -> Self {
        Self(vec![0u64; KERNEL_OBJECT_BYTES / 8].into_boxed_slice())
    }

    fn as_ptr<T>(&mut self) -> *mut T {
        self.0.as_mut_ptr().cast()
    }
}

/// Finds the stand-in for an import (module names compare case-insensitively).
#[must_use]
pub fn resolve(module: &str, name: &str) -> Option<usize> {
    kernel::exports()
        .into_iter()
        .chain(portcls::exports())
        .chain(device_interfaces::exports())
        .chain(registry::exports())
        .find(|(m, n, _)| m.eq_ignore_ascii_case(module) && *n == name)
        .map(|(_, _, address)| address)
}

/// The driver image, loaded and bound, with its kernel installed.
pub struct ImageDriver {
    path: PathBuf,
    image: LoadedImage,
    installed: Installed,
    driver_object: KernelObject,
    registry_path: KernelObject,
    physical_device: KernelObject,
    /// The resources `IRP_MN_START_DEVICE` carries.
    resources: Option<ComPtr<IResourceList>>,
    /// Whether this run routes trapped port I/O (cleared on drop).
    traps_port_io: bool,
    /// Whether this run routes trapped MMIO (cleared on drop).
    traps_mmio: bool,
}

impl Drop for ImageDriver {
    /// The port I/O route goes before the kernel does (fields drop after this).
    fn drop(&mut self) {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if self.traps_port_io {
            let _ = io_trap::set_handler(None);
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if self.traps_mmio {
            let _ = mmio_trap::set_handler(None);
        }
    }
}

impl std::fmt::Debug for ImageDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDriver")
            .field("path", &self.path)
            .field("base", &format_args!("{:#x}", self.image.base()))
            .finish_non_exhaustive()
    }
}

impl ImageDriver {
    /// Reads and loads the image at `path`, with a kernel over `machine`
    /// and PortCls over `services`. Nothing of the image runs yet.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or the loader refuses it (every missing
    /// import is named).
    pub fn load(
        machine: &Arc<Machine>,
        path: &Path,
        services: Arc<EmuPortCls>,
    ) -> Result<Self, ImageRunError> {
        // The caller names the file; the error says what went wrong with it.
        let bytes = std::fs::read(path).map_err(|e| ImageRunError::Read(e.to_string()))?;
        let name = path
            .file_name()
            .map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned());
        let installed = Kernel::install(machine, &name, portcls::PortClsState::new(services));
        let image = pe::load(&bytes, &resolve).map_err(ImageRunError::Load)?;
        installed
            .kernel()
            .set_image_range(image.base(), image.size());
        Ok(Self {
            path: path.to_owned(),
            image,
            installed,
            driver_object: KernelObject::new(),
            registry_path: KernelObject::new(),
            physical_device: KernelObject::new(),
            resources: None,
            traps_port_io: false,
            traps_mmio: false,
        })
    }

    /// The loaded image.
    #[must_use]
    pub const fn image(&self) -> &LoadedImage {
        &self.image
    }

    /// The kernel it runs on.
    #[must_use]
    pub const fn kernel(&self) -> &Arc<Kernel> {
        self.installed.kernel()
    }

    /// `DriverEntry`, as the I/O manager calls it at `PASSIVE_LEVEL`.
    pub fn driver_entry(&mut self) -> NTSTATUS {
        // SAFETY: the image's entry point is its DriverEntry (the image check
        // requires entry == the exported DriverEntry), with this signature.
        let entry: DriverEntry = unsafe { std::mem::transmute(self.image.entry()) };
        let driver = self.driver_object.as_ptr();
        let registry = self.registry_path.as_ptr();
        // SAFETY: a driver object and a (zeroed, empty) registry path that
        // live as long as the driver; the image is mapped and bound.
        unsafe { entry(driver, registry) }
    }

    /// `AddDevice`, through the routine `PcInitializeAdapterDriver` was given.
    ///
    /// # Errors
    ///
    /// The driver never registered `AddDevice`.
    pub fn add_device(&mut self) -> Result<NTSTATUS, ImageRunError> {
        let add_device = self.kernel().portcls.add_device().ok_or_else(|| {
            ImageRunError::Protocol("DriverEntry never called PcInitializeAdapterDriver".to_owned())
        })?;
        let driver = self.driver_object.as_ptr();
        let pdo = self.physical_device.as_ptr::<DEVICE_OBJECT>();
        // SAFETY: the image's AddDevice, with its driver object and a PDO
        // that lives as long as the driver.
        Ok(unsafe { add_device(driver, pdo) })
    }

    /// `IRP_MN_START_DEVICE` with `resources`, through the driver's own
    /// `IRP_MJ_PNP` dispatch ([`ImageDriver::pnp`]); PortCls's
    /// `PcDispatchIrp` then calls the `StartDevice` given to
    /// `PcAddAdapterDevice` with the FDO, the IRP and the resources.
    ///
    /// # Errors
    ///
    /// The driver never registered `StartDevice` or has no PnP dispatch.
    pub fn start_device(
        &mut self,
        resources: &ComPtr<IResourceList>,
    ) -> Result<NTSTATUS, ImageRunError> {
        if self.kernel().portcls.start_device().is_none() {
            return Err(ImageRunError::Protocol(
                "AddDevice never called PcAddAdapterDevice".to_owned(),
            ));
        }
        self.resources = Some(resources.clone());
        self.send_pnp(IRP_MN_START_DEVICE)
    }

    /// One PnP IRP as the PnP manager sends it: a fresh IRP whose current
    /// stack location is `IRP_MJ_PNP` / `request`'s minor code, given to
    /// the routine in the driver object's `MajorFunction[IRP_MJ_PNP]` with
    /// the FDO, at `PASSIVE_LEVEL`. PortCls put its own routine there in
    /// `PcInitializeAdapterDriver`; the driver's `DriverEntry` replaces it
    /// with its handler, which must pass the IRP on to `PcDispatchIrp` (a
    /// handler that does not is a violation).
    ///
    /// # Errors
    ///
    /// The status the IRP completed with.
    pub fn pnp(&mut self, request: PnpRequest) -> Result<(), NtStatus> {
        let minor = match request {
            PnpRequest::Start => IRP_MN_START_DEVICE,
            PnpRequest::Stop => IRP_MN_STOP_DEVICE,
            PnpRequest::SurpriseRemoval => IRP_MN_SURPRISE_REMOVAL,
        };
        let status = self.send_pnp(minor).map_err(|error| {
            self.kernel().violation("PnP", &error.to_string());
            NtStatus::UNSUCCESSFUL
        })?;
        NtStatus::check(status)
    }

    /// `IRP_MN_REMOVE_DEVICE` through the driver's dispatch (PortCls's part
    /// releases the ports); [`ImageDriver::unload`] follows.
    ///
    /// # Errors
    ///
    /// The status the IRP completed with.
    pub fn remove_device(&mut self) -> Result<(), NtStatus> {
        if self.kernel().portcls.device_object().is_null() {
            // No device was ever added: nothing to remove.
            return Ok(());
        }
        let status = self.send_pnp(IRP_MN_REMOVE_DEVICE).map_err(|error| {
            self.kernel().violation("PnP", &error.to_string());
            NtStatus::UNSUCCESSFUL
        })?;
        NtStatus::check(status)
    }

    /// Replaces the driver object's `IRP_MJ_PNP` routine, as a broken driver
    /// would leave it (for the tests that the PnP checks fire): `None` puts
    /// PortCls's own routine back (a driver whose handler was installed
    /// before `PcInitializeAdapterDriver`, which overwrote it), `Some` any
    /// other routine.
    pub fn set_pnp_dispatch(&mut self, dispatch: Option<portcls::DriverDispatch>) {
        let routine = dispatch.unwrap_or(portcls::portcls_dispatch_pnp);
        if let Some(entry) = self
            .driver_object
            .0
            .get_mut((DRIVER_OBJECT_MajorFunction_OFFSET + usize::from(IRP_MJ_PNP) * 8) / 8)
        {
            *entry = routine as usize as u64;
        }
    }

    /// Builds a PnP IRP with minor code `minor`, sends it to the driver
    /// object's `IRP_MJ_PNP` routine and checks PortCls saw it.
    fn send_pnp(&self, minor: u8) -> Result<NTSTATUS, ImageRunError> {
        let device = self.kernel().portcls.device_object();
        if device.is_null() {
            return Err(ImageRunError::Protocol(
                "AddDevice never called PcAddAdapterDevice".to_owned(),
            ));
        }
        let entry = self
            .driver_object
            .0
            .get((DRIVER_OBJECT_MajorFunction_OFFSET + usize::from(IRP_MJ_PNP) * 8) / 8)
            .copied()
            .unwrap_or(0);
        if entry == 0 {
            return Err(ImageRunError::Protocol(
                "no IRP_MJ_PNP routine in the driver object (PcInitializeAdapterDriver installs one)"
                    .to_owned(),
            ));
        }
        // SAFETY: a non-null entry of the dispatch table: PortCls's routine
        // or the driver's (`DRIVER_DISPATCH`), with the Windows convention.
        let dispatch: portcls::DriverDispatch = unsafe { std::mem::transmute(entry) };
        let mut irp = vec![0u64; IRP_SIZE / 8].into_boxed_slice();
        let mut stack = vec![0u8; IO_STACK_LOCATION_SIZE].into_boxed_slice();
        if let Some(byte) = stack.get_mut(IO_STACK_LOCATION_MajorFunction_OFFSET) {
            *byte = IRP_MJ_PNP;
        }
        if let Some(byte) = stack.get_mut(IO_STACK_LOCATION_MinorFunction_OFFSET) {
            *byte = minor;
        }
        if let Some(slot) = irp.get_mut(IRP_CurrentStackLocation_OFFSET / 8) {
            *slot = stack.as_mut_ptr() as u64;
        }
        self.kernel().portcls.set_resources(
            self.resources
                .clone()
                .filter(|_| minor == IRP_MN_START_DEVICE),
        );
        let seen = self.kernel().portcls.dispatched().len();
        let before = irql::current();
        // SAFETY: the driver's (or PortCls's) IRP_MJ_PNP routine with the
        // FDO and an IRP whose stack location lives for the call.
        let status = unsafe { dispatch(device, irp.as_mut_ptr().cast::<IRP>()) };
        self.kernel().portcls.set_resources(None);
        let after = irql::current();
        if after != before {
            self.kernel().violation(
                "IRQL",
                &format!(
                    "the IRP_MJ_PNP dispatch returned at {} (entered at {})",
                    irql::name(after),
                    irql::name(before)
                ),
            );
        }
        let dispatched = self.kernel().portcls.dispatched();
        if dispatched.len() != seen + 1 || dispatched.last() != Some(&minor) {
            self.kernel().violation(
                "PnP",
                &format!(
                    "the driver's IRP_MJ_PNP dispatch did not pass minor {minor:#04x} to PcDispatchIrp exactly once (PortCls saw {:?})",
                    dispatched.get(seen..).unwrap_or_default()
                ),
            );
        }
        Ok(status)
    }

    /// Driver unload (after device removal released every object): checks
    /// that the image left no pool, timer or DPC behind; returns how many
    /// it left (each reported as a violation).
    #[must_use]
    pub fn unload(self) -> usize {
        self.kernel().run_dpcs();
        self.kernel().check_unload()
    }

    /// One line for a report: which build ran.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "shipped image {} (mapped at {:#x}, linked for {:#x}; stored checksum {:#010x}; {} imports bound; sections {})",
            self.path.display(),
            self.image.base(),
            self.image.preferred_base(),
            self.image.stored_checksum(),
            self.image.imports().len(),
            self.image
                .sections()
                .iter()
                .map(|s| format!("{} {}", s.name, s.protection))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// What the image's device has: none (the root-enumerated cable) or the
/// resources of a PCI device and its interrupt line.
#[derive(Default)]
pub struct ImageDevice {
    /// The resource list `StartDevice` gets (empty for the cable).
    pub resources: Vec<ResourceDescriptor>,
    /// The line `PcNewInterruptSync` hands out, for an interrupting device.
    pub interrupt: Option<Arc<InterruptLine>>,
    /// Fail this PortCls call (0-based, in call order) of `StartDevice`
    /// with `STATUS_INSUFFICIENT_RESOURCES`, as the host build's tests do.
    pub fail_portcls_call: Option<usize>,
    /// What `KeStallExecutionProcessor` also does (a device model's clock
    /// runs for the stall), installed before `DriverEntry`.
    pub stall: Option<kernel::StallHook>,
    /// Where the image's `in`/`out` instructions go (trapped, see
    /// [`io_trap`]), for a device with I/O ports; installed with the kernel
    /// and removed with it, so that runs in other threads never share it.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    pub port_io: Option<Arc<dyn io_trap::PortIoHandler>>,
    /// The device's memory BAR and where the image's register accesses to
    /// it go (trapped, see [`mmio_trap`]), for a device with one: what its
    /// `MmMapIoSpaceEx` may map. Installed with the kernel and removed with
    /// it.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    pub mmio: Option<ImageMmio>,
    /// The values of the device's hardware key (`Device Parameters`) the
    /// image's `IoOpenDeviceRegistryKey` / `ZwQueryValueKey` find, as the
    /// INF's `AddReg` or a user left them (none: an empty key, so every
    /// parameter takes its default).
    pub registry: Vec<(String, RegistryData)>,
}

/// A device's memory BAR as the image's kernel sees it.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub struct ImageMmio {
    /// The BAR's physical address (its memory resource's start).
    pub base: u64,
    /// Its length in bytes.
    pub length: u64,
    /// Where trapped accesses go, at offsets from `base`.
    pub handler: Arc<dyn mmio_trap::MmioHandler>,
}

impl std::fmt::Debug for ImageDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDevice")
            .field("resources", &self.resources.len())
            .field("interrupt", &self.interrupt.is_some())
            .field("fail_portcls_call", &self.fail_portcls_call)
            .field("stall", &self.stall.is_some())
            .finish_non_exhaustive()
    }
}

/// `DriverEntry`, `AddDevice` and `StartDevice` of the shipped image on `machine`.
///
/// Returns the same [`CableAdapter`] the host build's `start_cable_adapter`
/// returns, with the image inside: its [`CableAdapter::remove`] then also
/// unloads the driver and checks it left nothing behind.
///
/// # Errors
///
/// The image could not be loaded, or a step failed (the status it
/// returned); what was made is torn down and the driver unloaded first.
pub fn start_image_adapter(
    machine: &Arc<Machine>,
    path: &Path,
    device: ImageDevice,
) -> Result<CableAdapter, ImageRunError> {
    let mut services = EmuPortCls::new(Arc::clone(machine), device.fail_portcls_call);
    if let Some(line) = device.interrupt {
        services = services.with_interrupt_line(line);
    }
    let services = Arc::new(services);
    let mut driver = ImageDriver::load(machine, path, Arc::clone(&services))?;
    driver.kernel().set_stall(device.stall);
    for (name, data) in device.registry {
        driver.kernel().registry.set(&name, data);
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if let Some(port_io) = device.port_io {
        io_trap::install().map_err(ImageRunError::Protocol)?;
        let _ = io_trap::set_handler(Some(port_io));
        driver.traps_port_io = true;
    }
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if let Some(mmio) = device.mmio {
        io_trap::install().map_err(ImageRunError::Protocol)?;
        driver.kernel().set_mmio_bar(Some((mmio.base, mmio.length)));
        let _ = mmio_trap::set_handler(Some(mmio.handler));
        driver.traps_mmio = true;
    }
    let resources = new_resource_list(machine, &device.resources);
    let started = (|| {
        let status = driver.driver_entry();
        if !NT_SUCCESS(status) {
            return Err(ImageRunError::Status {
                step: "DriverEntry",
                status,
            });
        }
        let status = driver.add_device()?;
        if !NT_SUCCESS(status) {
            return Err(ImageRunError::Status {
                step: "AddDevice",
                status,
            });
        }
        let status = driver.start_device(&resources)?;
        if !NT_SUCCESS(status) {
            return Err(ImageRunError::Status {
                step: "StartDevice",
                status,
            });
        }
        Ok(())
    })();
    drop(resources);
    let adapter = CableAdapter::from_image(machine, services, driver);
    match started {
        Ok(()) => Ok(adapter),
        Err(error) => {
            adapter.remove();
            Err(error)
        }
    }
}
