//! Windows 10 packet mode: which packets the OS may write and which it
//! reads next.
//!
//! Both follow from the packets the device has completed
//! (`IMiniportWaveRTOutputStream::SetWritePacket`,
//! `IMiniportWaveRTInputStream::GetReadPacket`).
//!
//! A packet is the buffer divided by the notification count, so a buffer
//! holds `per_buffer` packets, packet `n` in slot `n % per_buffer`.
//! Packets are numbered from 0 at STOP; the device keeps completing them at
//! the nominal rate whatever the OS does. The rules (Microsoft Learn,
//! `IMiniportWaveRTOutputStream::SetWritePacket`, `::GetPacketCount`,
//! `IMiniportWaveRTInputStream::GetReadPacket`):
//!
//! * Render: packet `completed` is the one being transferred once the
//!   device moves (or has moved part of it); a packet number at or before
//!   it is late (`STATUS_DATA_LATE_ERROR`), one the buffer cannot hold yet
//!   is an overrun (`STATUS_DATA_OVERRUN`). `GetPacketCount`'s own example:
//!   a count of 5 means packet 5 is in progress and the OS writes packet 6.
//! * Capture: the OS reads completed packets; when it calls, it has read
//!   all earlier ones; a packet the device has already begun to overwrite
//!   (the OS was too slow) is dropped, oldest first.

/// Why a `SetWritePacket` packet number is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Already transferred or being transferred (`STATUS_DATA_LATE_ERROR`).
    Late,
    /// Beyond what the buffer can hold now (`STATUS_DATA_OVERRUN`).
    Overrun,
}

/// `GetReadPacket` has nothing new (`STATUS_DEVICE_NOT_READY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotReady;

/// The packet `GetReadPacket` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadChoice {
    /// Its number since STOP.
    pub packet: u64,
    /// Whether a newer complete packet is ready too (`MoreData`).
    pub more: bool,
    /// Unread packets skipped because the device overwrote them.
    pub dropped: u64,
}

/// Where a stream's packets stand at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketProgress {
    /// Packets completely transferred since STOP (`GetPacketCount`'s 1-based
    /// count; also the 0-based number of the packet in progress).
    pub completed: u64,
    /// Whether packet `completed` has begun to move (the stream runs, or
    /// stopped part-way through it).
    pub in_transfer: bool,
    /// Packets per buffer (the notification count, at least 1).
    pub per_buffer: u32,
}

impl PacketProgress {
    /// The progress of a device that has moved `linear_bytes` since STOP
    /// in packets of `packet_bytes`, `running` or not. `None` for a packet
    /// size or count of 0.
    #[must_use]
    pub const fn from_linear(
        linear_bytes: u64,
        packet_bytes: u32,
        per_buffer: u32,
        running: bool,
    ) -> Option<Self> {
        if packet_bytes == 0 || per_buffer == 0 {
            return None;
        }
        let completed = linear_bytes / packet_bytes as u64;
        Some(Self {
            completed,
            in_transfer: running || linear_bytes % packet_bytes as u64 != 0,
            per_buffer,
        })
    }

    /// The packet numbers the OS may write now, first and last.
    ///
    /// The buffer holds packets `completed .. completed + per_buffer`; the
    /// one in transfer is no longer the OS's to write. With one packet per
    /// buffer the single slot is always in use once the stream runs: the
    /// next packet goes into it (what `GetPacketCount`'s page tells the OS to
    /// write, and what SYSVAD accepts).
    #[must_use]
    pub const fn writable(&self) -> (u64, u64) {
        let first = if self.in_transfer {
            self.completed.saturating_add(1)
        } else {
            self.completed
        };
        let room = self
            .completed
            .saturating_add(self.per_buffer as u64)
            .saturating_sub(1);
        let last = if room > first { room } else { first };
        (first, last)
    }

    /// Checks a `SetWritePacket` number (32 bits, wrapping: the port
    /// passes the low 32 bits of the packet's number) and returns the
    /// packet's full number.
    ///
    /// # Errors
    ///
    /// [`WriteError::Late`] at or before the packet in transfer,
    /// [`WriteError::Overrun`] beyond the buffer.
    pub const fn check_write(&self, number: u32) -> Result<u64, WriteError> {
        let (first, last) = self.writable();
        // Truncation intended: the low 32 bits, compared modulo 2^32.
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let delta = number.wrapping_sub(first as u32) as i32;
        if delta < 0 {
            return Err(WriteError::Late);
        }
        // Non-negative: checked above.
        #[allow(clippy::cast_sign_loss)]
        let ahead = delta as u64;
        if ahead > last - first {
            return Err(WriteError::Overrun);
        }
        Ok(first.saturating_add(ahead))
    }

    /// The packet `GetReadPacket` reports, given the last one the OS read
    /// since STOP (`None`: none yet).
    ///
    /// The newest complete packet is `completed - 1`; the one in progress
    /// overwrites packet `completed - per_buffer`, so the oldest still whole
    /// is `completed + 1 - per_buffer` (with two packets per buffer only
    /// the newest: `MoreData` is then never TRUE).
    ///
    /// # Errors
    ///
    /// [`NotReady`] when no packet completed since the last one read.
    pub const fn next_read(&self, last_read: Option<u64>) -> Result<ReadChoice, NotReady> {
        if self.completed == 0 {
            return Err(NotReady);
        }
        let newest = self.completed - 1;
        let next = match last_read {
            Some(read) => read.saturating_add(1),
            None => 0,
        };
        if next > newest {
            return Err(NotReady);
        }
        let oldest_whole = self
            .completed
            .saturating_add(1)
            .saturating_sub(self.per_buffer as u64);
        let oldest = if oldest_whole > newest {
            newest
        } else {
            oldest_whole
        };
        let packet = if next > oldest { next } else { oldest };
        Ok(ReadChoice {
            packet,
            more: packet < newest,
            dropped: packet - next,
        })
    }
}

/// Why `SetWritePacket`'s flags or end-of-stream length are refused
/// (`STATUS_INVALID_PARAMETER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidWriteParameter;

/// `KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM` (ks.h), the one flag
/// `SetWritePacket` takes.
pub const END_OF_STREAM_FLAG: u32 = 0x0000_0200;

/// Checks `SetWritePacket`'s flags and end-of-stream length.
///
/// `Some(bytes)` of valid data in the last packet when the flag is set (0
/// is valid; whole frames, at most a packet), `None` for an ordinary
/// packet (the length is then ignored, as the page says).
///
/// # Errors
///
/// [`InvalidWriteParameter`] for another flag, or a length that is no
/// whole number of frames within the packet.
pub const fn check_write_flags(
    flags: u32,
    eos_length: u32,
    packet_bytes: u32,
    block_align: u32,
) -> Result<Option<u32>, InvalidWriteParameter> {
    if flags & !END_OF_STREAM_FLAG != 0 {
        return Err(InvalidWriteParameter);
    }
    if flags & END_OF_STREAM_FLAG == 0 {
        return Ok(None);
    }
    if eos_length > packet_bytes || block_align == 0 || eos_length % block_align != 0 {
        return Err(InvalidWriteParameter);
    }
    Ok(Some(eos_length))
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn progress(completed: u64, in_transfer: bool, per_buffer: u32) -> PacketProgress {
        PacketProgress {
            completed,
            in_transfer,
            per_buffer,
        }
    }

    #[test]
    fn learns_example_count_five_writes_packet_six() {
        let running = progress(5, true, 2);
        assert_eq!(running.writable(), (6, 6));
        assert_eq!(running.check_write(6), Ok(6));
        assert_eq!(running.check_write(5), Err(WriteError::Late));
        assert_eq!(running.check_write(0), Err(WriteError::Late));
        assert_eq!(running.check_write(7), Err(WriteError::Overrun));
        assert_eq!(running.check_write(u32::MAX / 2), Err(WriteError::Overrun));
    }

    #[test]
    fn before_the_first_packet_moves_the_whole_buffer_is_writable() {
        assert_eq!(progress(0, false, 2).writable(), (0, 1));
        assert_eq!(progress(0, false, 1).writable(), (0, 0));
        // Paused part-way through packet 3: it is in transfer.
        assert_eq!(progress(3, true, 2).writable(), (4, 4));
        assert_eq!(progress(0, true, 1).writable(), (1, 1));
        assert_eq!(progress(10, true, 4).writable(), (11, 13));
    }

    #[test]
    fn from_linear_counts_whole_packets_and_a_started_one() {
        let p = PacketProgress::from_linear(2 * 960 + 4, 960, 2, false);
        assert_eq!(p, Some(progress(2, true, 2)));
        let p = PacketProgress::from_linear(2 * 960, 960, 2, false);
        assert_eq!(p, Some(progress(2, false, 2)));
        assert_eq!(PacketProgress::from_linear(5, 0, 2, true), None);
        assert_eq!(PacketProgress::from_linear(5, 4, 0, true), None);
    }

    #[test]
    fn packet_numbers_wrap_at_32_bits() {
        let p = progress(u64::from(u32::MAX), true, 2);
        assert_eq!(p.check_write(0), Ok(1 << 32));
        assert_eq!(p.check_write(u32::MAX), Err(WriteError::Late));
        assert_eq!(p.check_write(1), Err(WriteError::Overrun));
    }

    #[test]
    fn reads_follow_on_and_skip_what_was_overwritten() {
        assert_eq!(progress(0, true, 2).next_read(None), Err(NotReady));
        let first = progress(1, true, 2).next_read(None);
        assert_eq!(
            first,
            Ok(ReadChoice {
                packet: 0,
                more: false,
                dropped: 0
            })
        );
        assert_eq!(progress(1, true, 2).next_read(Some(0)), Err(NotReady));
        // Three packets late with two per buffer: only the newest is whole.
        let late = progress(4, true, 2).next_read(Some(0));
        assert_eq!(
            late,
            Ok(ReadChoice {
                packet: 3,
                more: false,
                dropped: 2
            })
        );
        // Four per buffer: the three newest are whole, oldest first.
        let deep = progress(9, true, 4).next_read(Some(2));
        assert_eq!(
            deep,
            Ok(ReadChoice {
                packet: 6,
                more: true,
                dropped: 3
            })
        );
        // One per buffer: the newest, already being overwritten.
        assert_eq!(
            progress(3, true, 1).next_read(Some(0)).map(|c| c.packet),
            Ok(2)
        );
    }

    #[test]
    fn flags_and_end_of_stream_lengths() {
        assert_eq!(check_write_flags(0, 77, 960, 4), Ok(None));
        assert_eq!(
            check_write_flags(END_OF_STREAM_FLAG, 0, 960, 4),
            Ok(Some(0))
        );
        assert_eq!(
            check_write_flags(END_OF_STREAM_FLAG, 960, 960, 4),
            Ok(Some(960))
        );
        for (flags, len) in [
            (1, 0),
            (END_OF_STREAM_FLAG | 1, 0),
            (END_OF_STREAM_FLAG, 964),
            (END_OF_STREAM_FLAG, 6),
        ] {
            assert_eq!(
                check_write_flags(flags, len, 960, 4),
                Err(InvalidWriteParameter),
                "{flags:#x} {len}"
            );
        }
    }
}
