//! The AC'97's PCI resources from PortCls' `IResourceList`.
//!
//! An ICH AC'97 function has two I/O BARs, listed in BAR order: BAR0 the
//! native audio mixer (NAMBAR, 256 bytes on ICH, 1 KiB on QEMU), BAR1 the
//! native audio bus master (NABMBAR, 64 bytes on ICH, 256 on QEMU), and
//! one interrupt (INTA). How `StartDevice` tells it from the other devices
//! is shared ([`DeviceKind::of`], `crate::resources`).

use portcls_sys::{CmResourceTypeInterrupt, CmResourceTypePort, IResourceList};
use wavert_com::{ComPtr, NtResult, NtStatus};

pub use crate::resources::DeviceKind;
use crate::resources::{count, translated_range};

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
    translated_range(list, CmResourceTypePort, index)
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
