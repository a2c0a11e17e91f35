//! The HD Audio controller's PCI resources from PortCls' `IResourceList`:
//! one memory BAR (BAR0, the 16 KiB register block: HDA spec 3.3, PCI
//! `HDBARL`) and one interrupt (INTA or MSI). No I/O ranges.

use portcls_sys::{CmResourceTypeInterrupt, CmResourceTypeMemory, IResourceList};
use wavert_com::{ComPtr, NtResult, NtStatus};

use crate::resources::{count, translated_range};

/// The controller's register block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HdaResources {
    /// Physical address of BAR0 (what the driver maps).
    pub mmio_base: u64,
    /// Its length in bytes.
    pub mmio_length: u32,
}

/// Smallest register block: the global registers and eight stream
/// descriptors (0x80 + 8 x 0x20); real controllers and QEMU's decode
/// 16 KiB.
pub const MIN_MMIO_LENGTH: u32 = 0x180;

impl HdaResources {
    /// Reads the memory BAR and checks there is an interrupt.
    ///
    /// # Errors
    ///
    /// `STATUS_DEVICE_CONFIGURATION_ERROR` when the memory range is
    /// missing, shorter than [`MIN_MMIO_LENGTH`] or wraps, or there is no
    /// interrupt.
    pub fn from_list(list: &ComPtr<IResourceList>) -> NtResult<Self> {
        let bad = NtStatus::DEVICE_CONFIGURATION_ERROR;
        if count(list, CmResourceTypeInterrupt) == 0 {
            return Err(bad);
        }
        let (mmio_base, mmio_length) = translated_range(list, CmResourceTypeMemory, 0)
            .filter(|&(start, length)| {
                length >= MIN_MMIO_LENGTH && start.checked_add(u64::from(length)).is_some()
            })
            .ok_or(bad)?;
        Ok(Self {
            mmio_base,
            mmio_length,
        })
    }
}
