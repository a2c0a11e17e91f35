//! Cyclic buffer size negotiation (`KSPROPERTY_RTAUDIO_BUFFER[_WITH_NOTIFICATION]`).
//!
//! The requested size is a wish. The granted size is:
//!
//! - a multiple of the *unit* = `notification_count` x lcm(frame size, device
//!   granularity), so that the buffer holds whole frames and splits into
//!   `notification_count` packets of whole frames, each a multiple of the
//!   device granularity;
//! - the smallest such multiple at or above the request (and at or above
//!   `min_bytes`): `IMiniportWaveRTStream::AllocateAudioBuffer` says the
//!   actual size must be at least the requested size, or the audio engine
//!   will not use the buffer and stream creation fails;
//! - never above `max_bytes`: a request above the device cap is an error
//!   (the audio engine never asks for that; a client that does is confused).
//!   A request within one unit of the cap, whose next multiple would pass
//!   it, gets the largest multiple under the cap: the closest the device
//!   can do, and smaller than asked, which only the notification variant
//!   allows (the caller decides).
//!
//! When the pages cannot all be had, [`BufferPlan::shrink_to_pages`] gives
//! the largest valid size that fits in the pages obtained.

use crate::geometry::PAGE_SIZE;

/// What the device can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Smallest buffer in bytes.
    pub min_bytes: u32,
    /// Largest buffer in bytes (the device cap).
    pub max_bytes: u32,
    /// Every packet must be a multiple of this many bytes (1 = none; 2 for
    /// devices counting 16-bit samples; 128 for HDA buffers).
    pub granularity_bytes: u32,
}

/// A client's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferRequest {
    /// Requested size in bytes.
    pub requested_bytes: u32,
    /// Notifications per buffer cycle: 1 or 2 (packet count).
    pub notification_count: u32,
    /// Bytes per frame of the stream format.
    pub block_align: u32,
}

/// Why a request (or a shrink) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegotiateError {
    /// Requested size 0.
    ZeroSize,
    /// Requested size above [`DeviceLimits::max_bytes`].
    ExceedsDeviceMaximum {
        /// Requested bytes.
        requested: u32,
        /// The cap.
        maximum: u32,
    },
    /// Notification count other than 1 or 2.
    InvalidNotificationCount(u32),
    /// Frame size 0.
    ZeroBlockAlign,
    /// Device limits inconsistent (granularity 0, or min above max).
    InvalidLimits,
    /// The size unit (frame size x granularity x packets) does not fit in 32 bits.
    Overflow,
    /// No multiple of the unit lies within the device's min/max.
    NoValidSize {
        /// The unit every size must be a multiple of.
        unit: u32,
    },
    /// The pages available cannot hold even the smallest valid buffer.
    InsufficientPages {
        /// Pages offered.
        available_pages: u32,
        /// Pages the smallest valid buffer needs.
        needed_pages: u32,
    },
}

/// A granted buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferPlan {
    /// Buffer size in bytes.
    pub size_bytes: u32,
    /// Notifications (packets) per buffer.
    pub notification_count: u32,
    /// Bytes per packet (`size_bytes / notification_count`).
    pub packet_bytes: u32,
    /// Bytes per frame.
    pub block_align: u32,
    /// Every valid size is a multiple of this.
    pub unit_bytes: u32,
    /// The limits used, kept for [`Self::shrink_to_pages`].
    pub limits: DeviceLimits,
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

/// Pages (4 KiB) needed to hold `bytes` starting at a page boundary.
#[must_use]
pub const fn pages_for(bytes: u32) -> u32 {
    bytes.div_ceil(PAGE_SIZE)
}

fn unit_for(request: &BufferRequest, limits: &DeviceLimits) -> Result<u32, NegotiateError> {
    if request.block_align == 0 {
        return Err(NegotiateError::ZeroBlockAlign);
    }
    if !matches!(request.notification_count, 1 | 2) {
        return Err(NegotiateError::InvalidNotificationCount(
            request.notification_count,
        ));
    }
    if limits.granularity_bytes == 0 || limits.min_bytes > limits.max_bytes {
        return Err(NegotiateError::InvalidLimits);
    }
    let a = u64::from(request.block_align);
    let b = u64::from(limits.granularity_bytes);
    // lcm(a, b) = a / gcd * b; gcd >= 1 because a, b >= 1.
    let lcm = (a / gcd(a, b).max(1)).checked_mul(b);
    let unit = lcm.and_then(|l| l.checked_mul(u64::from(request.notification_count)));
    unit.and_then(|u| u32::try_from(u).ok())
        .ok_or(NegotiateError::Overflow)
}

/// Smallest multiple of `unit` at or above `max(request, min)`, or, when
/// that passes `max`, the largest one within `[min, max]`.
fn fit(unit: u32, min: u32, request: u32, max: u32) -> Option<u32> {
    let floor = request.max(min).max(1);
    if let Some(up) = floor.checked_next_multiple_of(unit) {
        if up <= max {
            return Some(up);
        }
    }
    let down = max - max % unit;
    (down >= min.max(1)).then_some(down)
}

/// Grants a buffer for `request` (see the module docs for the rule).
///
/// # Errors
/// Every [`NegotiateError`] but `InsufficientPages`.
pub fn negotiate(
    request: &BufferRequest,
    limits: &DeviceLimits,
) -> Result<BufferPlan, NegotiateError> {
    if request.requested_bytes == 0 {
        return Err(NegotiateError::ZeroSize);
    }
    let unit = unit_for(request, limits)?;
    if request.requested_bytes > limits.max_bytes {
        return Err(NegotiateError::ExceedsDeviceMaximum {
            requested: request.requested_bytes,
            maximum: limits.max_bytes,
        });
    }
    let size = fit(
        unit,
        limits.min_bytes,
        request.requested_bytes,
        limits.max_bytes,
    )
    .ok_or(NegotiateError::NoValidSize { unit })?;
    Ok(BufferPlan {
        size_bytes: size,
        notification_count: request.notification_count,
        packet_bytes: size / request.notification_count,
        block_align: request.block_align,
        unit_bytes: unit,
        limits: *limits,
    })
}

impl BufferPlan {
    /// Pages this plan needs.
    #[must_use]
    pub const fn pages(&self) -> u32 {
        pages_for(self.size_bytes)
    }

    /// Frames in the buffer.
    #[must_use]
    pub const fn frames(&self) -> u32 {
        self.size_bytes / self.block_align
    }

    /// The closest smaller plan that fits in `available_pages` pages (the
    /// plan itself when it already fits).
    ///
    /// # Errors
    /// [`NegotiateError::InsufficientPages`] when not even the smallest valid
    /// buffer fits.
    pub fn shrink_to_pages(&self, available_pages: u32) -> Result<Self, NegotiateError> {
        let available_bytes = u64::from(available_pages) * u64::from(PAGE_SIZE);
        let ceiling = u32::try_from(available_bytes)
            .unwrap_or(u32::MAX)
            .min(self.size_bytes);
        let smallest = self
            .limits
            .min_bytes
            .max(1)
            .checked_next_multiple_of(self.unit_bytes)
            .unwrap_or(u32::MAX);
        let down = ceiling - ceiling % self.unit_bytes;
        if down == 0 || down < self.limits.min_bytes {
            return Err(NegotiateError::InsufficientPages {
                available_pages,
                needed_pages: pages_for(smallest),
            });
        }
        Ok(Self {
            size_bytes: down,
            packet_bytes: down / self.notification_count,
            ..*self
        })
    }
}
