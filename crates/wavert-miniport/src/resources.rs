//! PCI resources from PortCls' `IResourceList`, shared by the hardware
//! back-ends, and how `StartDevice` tells the devices apart.
//!
//! * The root-enumerated virtual cable has no resources at all.
//! * An ICH AC'97 has two I/O BARs and one interrupt
//!   ([`crate::ac97::Ac97Resources`]).
//! * An HD Audio controller has one memory BAR (16 KiB of registers) and
//!   one interrupt, no I/O ranges ([`crate::hda::HdaResources`]).

use portcls_sys::{
    CmResourceTypeInterrupt, CmResourceTypeMemory, CmResourceTypePort, IResourceList,
    CM_RESOURCE_TYPE,
};
use wavert_com::ComPtr;

/// Which device a `StartDevice` is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// No resources: the root-enumerated virtual cable.
    VirtualCable,
    /// At least two I/O ranges and an interrupt: a PCI AC'97.
    Ac97,
    /// A memory range, an interrupt and no I/O range: a PCI HD Audio
    /// controller.
    Hda,
    /// Some resources, but neither device's: refuse to start.
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
        let memory = count(list, CmResourceTypeMemory);
        let interrupts = count(list, CmResourceTypeInterrupt);
        let all = {
            let f = list.vtbl().NumberOfEntries;
            // SAFETY: a live resource list (the caller holds a reference).
            unsafe { f(list.this()) }
        };
        match (ports, memory, interrupts, all) {
            (_, _, _, 0) => Self::VirtualCable,
            (p, _, i, _) if p >= 2 && i >= 1 => Self::Ac97,
            (0, m, i, _) if m >= 1 && i >= 1 => Self::Hda,
            _ => Self::Unknown,
        }
    }
}

/// How many entries of `kind` the list has.
pub(crate) fn count(list: &ComPtr<IResourceList>, kind: CM_RESOURCE_TYPE) -> u32 {
    let f = list.vtbl().NumberOfEntriesOfType;
    // SAFETY: a live resource list (the caller holds a reference).
    unsafe { f(list.this(), kind) }
}

/// Start and length of the `index`-th translated range of `kind` (a
/// `CmResourceTypePort` or `CmResourceTypeMemory` entry, whose union
/// members `u.Port` and `u.Memory` have the same layout).
pub(crate) fn translated_range(
    list: &ComPtr<IResourceList>,
    kind: CM_RESOURCE_TYPE,
    index: u32,
) -> Option<(u64, u32)> {
    if kind != CmResourceTypePort && kind != CmResourceTypeMemory {
        return None;
    }
    let f = list.vtbl().FindTranslatedEntry;
    // SAFETY: a live resource list; the answer is null or a descriptor the
    // list owns, valid while we hold the list.
    let entry = unsafe { f(list.this(), kind, index) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: a non-null answer is a readable descriptor (4-byte aligned in
    // the list, read unaligned anyway).
    let descriptor = unsafe { entry.read_unaligned() };
    // SAFETY: the list found it as a port or memory entry (checked above),
    // whose union member is `u.Port` / `u.Memory`, one layout (every member
    // is plain integers in any case).
    let range = unsafe { descriptor.u.Port };
    Some((
        u64::from_ne_bytes(range.Start.QuadPart.to_ne_bytes()),
        range.Length,
    ))
}
