//! The AC'97's PCI resources from PortCls' `IResourceList`.
//!
//! An ICH AC'97 function has two I/O BARs, listed in BAR order: BAR0 the
//! native audio mixer (NAMBAR, 256 bytes on ICH, 1 KiB on QEMU), BAR1 the
//! native audio bus master (NABMBAR, 64 bytes on ICH, 256 on QEMU), and
//! one interrupt (INTA). The root-enumerated virtual cable has no
//! resources at all, which is how `StartDevice` tells the two apart
//! ([`DeviceKind::of`]).

use portcls_sys::{CmResourceTypeInterrupt, CmResourceTypePort, IResourceList, CM_RESOURCE_TYPE};
use wavert_com::{ComPtr, NtResult, NtStatus};

/// Which device a `StartDevice` is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// No resources: the root-enumerated virtual cable.
    VirtualCable,
    /// At least two I/O ranges and an interrupt: a PCI AC'97.
    Ac97,
    /// Some resources, but not an AC'97's: refuse to start.
    Unknown,
}

impl DeviceKind {
    /// Classifies a start request by its resources (`None`: no list).
    #[must_use]
    pub fn of(resources: Option<&ComPtr<IResourceList>>) -> Self {
        let Some(list) = resources else {
            return Self::VirtualCable;
        };
        let ports = count(list, CmResourceTypePort);
        let interrupts = count(list, CmResourceTypeInterrupt);
        let all = {
            let f = list.vtbl().NumberOfEntries;
            // SAFETY: a live resource list (the caller holds a reference).
            unsafe { f(list.this()) }
        };
        match (ports, interrupts, all) {
            (_, _, 0) => Self::VirtualCable,
            (p, i, _) if p >= 2 && i >= 1 => Self::Ac97,
            _ => Self::Unknown,
        }
    }
}

fn count(list: &ComPtr<IResourceList>, kind: CM_RESOURCE_TYPE) -> u32 {
    let f = list.vtbl().NumberOfEntriesOfType;
    // SAFETY: a live resource list (the caller holds a reference).
    unsafe { f(list.this(), kind) }
}

/// The two I/O windows of the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ac97Resources {
    /// NAMBAR: codec mixer registers (16-bit accesses only).
    pub mixer_port: u16,
    /// NABMBAR: bus-master registers.
    pub bus_master_port: u16,
}

/// Smallest mixer window: registers up to 0x7E.
const MIN_MIXER_LENGTH: u32 = 0x80;
/// Smallest bus-master window: registers up to `GLOB_STA` (0x30..0x33).
const MIN_BUS_MASTER_LENGTH: u32 = 0x34;

/// Start and length of the `index`-th translated I/O port range.
fn port_range(list: &ComPtr<IResourceList>, index: u32) -> Option<(u64, u32)> {
    let f = list.vtbl().FindTranslatedEntry;
    // SAFETY: a live resource list; the answer is null or a descriptor the
    // list owns, valid while we hold the list.
    let entry = unsafe { f(list.this(), CmResourceTypePort, index) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: a non-null answer is a readable descriptor (4-byte aligned in
    // the list, read unaligned anyway).
    let descriptor = unsafe { entry.read_unaligned() };
    // SAFETY: the list found it as a `CmResourceTypePort` entry, whose union
    // member is `u.Port` (every member is plain integers in any case).
    let port = unsafe { descriptor.u.Port };
    Some((
        u64::from_ne_bytes(port.Start.QuadPart.to_ne_bytes()),
        port.Length,
    ))
}

impl Ac97Resources {
    /// Reads the two I/O windows, in BAR order, and checks there is an
    /// interrupt.
    ///
    /// # Errors
    ///
    /// `STATUS_DEVICE_CONFIGURATION_ERROR` when a window is missing, too
    /// short or above 64 KiB of port space, or there is no interrupt.
    pub fn from_list(list: &ComPtr<IResourceList>) -> NtResult<Self> {
        let bad = NtStatus::DEVICE_CONFIGURATION_ERROR;
        if count(list, CmResourceTypeInterrupt) == 0 {
            return Err(bad);
        }
        let window = |index, min| {
            port_range(list, index)
                .filter(|&(start, length)| {
                    length >= min
                        && start
                            .checked_add(u64::from(length))
                            .is_some_and(|end| end <= 0x1_0000)
                })
                .and_then(|(start, _)| u16::try_from(start).ok())
        };
        let mixer_port = window(0, MIN_MIXER_LENGTH).ok_or(bad)?;
        let bus_master_port = window(1, MIN_BUS_MASTER_LENGTH).ok_or(bad)?;
        Ok(Self {
            mixer_port,
            bus_master_port,
        })
    }
}
