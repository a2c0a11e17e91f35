//! Notification schedule: one or two events per buffer cycle, at packet ends.
//!
//! The schedule is driven by the stream's linear position (which advances at
//! the nominal rate whatever the timer does). When the timer or interrupt is
//! late and several packet ends have passed, each one is reported exactly
//! once, in order; packet counting never slips.

/// Why a schedule could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyError {
    /// Notification count other than 1 or 2.
    InvalidCount(u32),
    /// Buffer size 0.
    ZeroBuffer,
    /// Buffer size not divisible by the notification count.
    NotDivisible {
        /// Buffer size.
        buffer_bytes: u32,
        /// Notification count.
        count: u32,
    },
}

/// Notifications that fell due in one poll: packets `first .. first + count`
/// (0-based, linear) have ended. Signal the event `count` times (or once, and
/// report `count` to whoever counts misses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Linear index of the first packet that ended since the last poll.
    pub first: u64,
    /// How many packets ended.
    pub count: u64,
}

/// The schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotificationSchedule {
    packet_bytes: u64,
    count_per_buffer: u32,
    reported: u64,
}

impl NotificationSchedule {
    /// `count` (1 or 2) notifications per buffer of `buffer_bytes`.
    ///
    /// # Errors
    /// One [`NotifyError`] per rejected parameter.
    pub const fn new(buffer_bytes: u32, count: u32) -> Result<Self, NotifyError> {
        if !matches!(count, 1 | 2) {
            return Err(NotifyError::InvalidCount(count));
        }
        if buffer_bytes == 0 {
            return Err(NotifyError::ZeroBuffer);
        }
        if buffer_bytes % count != 0 {
            return Err(NotifyError::NotDivisible {
                buffer_bytes,
                count,
            });
        }
        Ok(Self {
            packet_bytes: (buffer_bytes / count) as u64,
            count_per_buffer: count,
            reported: 0,
        })
    }

    /// Packets that have ended at `linear_bytes` (the nominal packet count).
    #[must_use]
    pub const fn packets_completed(&self, linear_bytes: u64) -> u64 {
        linear_bytes / self.packet_bytes
    }

    /// Reports the packet ends passed since the last poll. A position that
    /// went backwards reports nothing (and nothing is reported twice).
    pub const fn poll(&mut self, linear_bytes: u64) -> Due {
        // Most polls (every position read) come between packet ends: one
        // comparison answers them, the division only runs at a packet end.
        if linear_bytes < self.next_due_bytes() {
            return Due {
                first: self.reported,
                count: 0,
            };
        }
        let done = self.packets_completed(linear_bytes);
        if done <= self.reported {
            return Due {
                first: self.reported,
                count: 0,
            };
        }
        let due = Due {
            first: self.reported,
            count: done - self.reported,
        };
        self.reported = done;
        due
    }

    /// Linear byte position at which the next notification falls due.
    #[must_use]
    pub const fn next_due_bytes(&self) -> u64 {
        (self.reported + 1).saturating_mul(self.packet_bytes)
    }

    /// Packet size in bytes.
    #[must_use]
    pub const fn packet_bytes(&self) -> u64 {
        self.packet_bytes
    }

    /// Notifications per buffer cycle.
    #[must_use]
    pub const fn count_per_buffer(&self) -> u32 {
        self.count_per_buffer
    }

    /// Notifications reported so far.
    #[must_use]
    pub const fn reported(&self) -> u64 {
        self.reported
    }

    /// STOP: start again from packet 0.
    pub const fn reset(&mut self) {
        self.reported = 0;
    }
}
