//! Packet mode as the Windows audio engine uses it, and the port's rules
//! for the miniport's packet answers.
//!
//! The rules hold each answer against the engine's own clock of the stream
//! ([`IdealClock`]: the frames a device running at the nominal rate has
//! moved, from the instants the engine put it in RUN and PAUSE), never
//! against another answer of the same miniport, so a miniport whose
//! position and packet counter agree on a wrong figure is still caught.
//! What the documentation says an answer must be is restated here in the
//! port's own terms, not taken from the miniport's code, for the same
//! reason: a rule that shares the driver's logic cannot catch it.
//!
//! Sources (Microsoft Learn): `IMiniportWaveRTOutputStream::GetPacketCount`
//! (1-based count of packets completely transferred; count 5 means packet
//! 5 is in progress and the OS writes packet 6; reset to 0 at STOP),
//! `::SetWritePacket` (the four error statuses; the counter and the events
//! keep the nominal rate), `::GetOutputStreamPresentationPosition` and
//! `KSAUDIO_PRESENTATION_POSITION` (block 0 is packet 0's first sample; the
//! QPC is read when the position is taken),
//! `IMiniportWaveRTInputStream::GetReadPacket` (`STATUS_DEVICE_NOT_READY`
//! when nothing is new; the QPC of the packet's first sample; `MoreData`).

use portcls_sys::{
    KSAUDIO_PRESENTATION_POSITION, KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM, NTSTATUS,
    STATUS_DATA_LATE_ERROR, STATUS_DATA_OVERRUN, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

/// A range of values the answer must lie in, both ends included.
pub type Bounds = (u64, u64);

/// The engine's clock of one stream: how long it has been in RUN, as a
/// range, since each state change is only known to have happened between
/// the QPC read before the `SetState` call and the one after it.
///
/// A device paced at the nominal rate has moved
/// `floor(running ticks x rate / QPC frequency)` frames (what a QPC-paced
/// clock computes exactly; a DMA engine on its own crystal drifts from it,
/// which the HLK's position rules bound). In virtual time the calls take no
/// time, so every range is a single value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdealClock {
    rate: u32,
    qpc_frequency: u64,
    /// Ticks spent in RUN in finished runs since STOP.
    done: Bounds,
    /// The current run's start, when running.
    run: Option<Bounds>,
}

impl IdealClock {
    /// A stopped clock for a stream of `rate` frames per second.
    #[must_use]
    pub const fn new(rate: u32, qpc_frequency: u64) -> Self {
        Self {
            rate,
            qpc_frequency,
            done: (0, 0),
            run: None,
        }
    }

    /// RUN, entered by a call between `before` and `after`.
    pub const fn run(&mut self, before: u64, after: u64) {
        if self.run.is_none() {
            self.run = Some((before, after));
        }
    }

    /// RUN left (PAUSE or a jump down) by a call between `before` and `after`.
    pub const fn pause(&mut self, before: u64, after: u64) {
        if let Some((start_lo, start_hi)) = self.run {
            self.done = (
                self.done.0.saturating_add(before.saturating_sub(start_hi)),
                self.done.1.saturating_add(after.saturating_sub(start_lo)),
            );
            self.run = None;
        }
    }

    /// STOP: back to nothing.
    pub const fn stop(&mut self) {
        self.done = (0, 0);
        self.run = None;
    }

    /// Whether the stream is in RUN.
    #[must_use]
    pub const fn running(&self) -> bool {
        self.run.is_some()
    }

    /// Ticks in RUN at an instant between `before` and `after`.
    #[must_use]
    pub const fn running_ticks(&self, before: u64, after: u64) -> Bounds {
        match self.run {
            Some((start_lo, start_hi)) => (
                self.done.0.saturating_add(before.saturating_sub(start_hi)),
                self.done.1.saturating_add(after.saturating_sub(start_lo)),
            ),
            None => self.done,
        }
    }

    /// Frames moved at the nominal rate by an instant between `before` and
    /// `after`.
    #[must_use]
    pub fn frames(&self, before: u64, after: u64) -> Bounds {
        let (lo, hi) = self.running_ticks(before, after);
        (self.ticks_to_frames(lo), self.ticks_to_frames(hi))
    }

    fn ticks_to_frames(&self, ticks: u64) -> u64 {
        let frames =
            u128::from(ticks) * u128::from(self.rate) / u128::from(self.qpc_frequency.max(1));
        u64::try_from(frames).unwrap_or(u64::MAX)
    }

    /// The QPC at which frame `frame` was sampled (the first tick whose
    /// count reaches it), when it falls in the current run; `None` when
    /// not running, or when the frame may belong to an earlier run.
    #[must_use]
    pub fn instant_of_frame(&self, frame: u64) -> Option<Bounds> {
        let (start_lo, start_hi) = self.run?;
        let needed = u128::from(frame) * u128::from(self.qpc_frequency);
        let ticks = u64::try_from(needed.div_ceil(u128::from(self.rate.max(1)))).ok()?;
        if ticks < self.done.1 {
            return None;
        }
        Some((
            start_lo.saturating_add(ticks - self.done.1),
            start_hi.saturating_add(ticks.saturating_sub(self.done.0)),
        ))
    }
}

/// The packet counts (completed packets) a clock range allows.
#[must_use]
pub const fn packets(frames: Bounds, packet_frames: u64) -> Bounds {
    if packet_frames == 0 {
        return (0, 0);
    }
    (frames.0 / packet_frames, frames.1 / packet_frames)
}

/// The full number in `range` whose low 32 bits are `low` (packet numbers
/// and counts cross the interfaces as `ULONG`s).
#[must_use]
pub const fn widen(low: u32, range: Bounds) -> Option<u64> {
    let base = range.0 & !0xFFFF_FFFF;
    let mut candidate = base | low as u64;
    if candidate < range.0 {
        candidate = match candidate.checked_add(1 << 32) {
            Some(c) => c,
            None => return None,
        };
    }
    if candidate <= range.1 {
        Some(candidate)
    } else {
        None
    }
}

/// Rule: `GetPacketCount` counts the packets the nominal clock has
/// completed, whatever the client did (late or not), and 0 after STOP.
///
/// # Errors
///
/// The rule, in words.
pub fn check_packet_count(count: u32, allowed: Bounds) -> Result<u64, String> {
    widen(count, allowed).ok_or_else(|| {
        format!(
            "GetPacketCount answered {count}, but at the nominal rate {} packets have been \
             transferred since STOP: the counter must keep the nominal rate, late client or not",
            show(allowed)
        )
    })
}

/// What Learn says `SetWritePacket(number, flags, eos_length)` answers.
///
/// The stream has completed `completed` packets of a buffer of
/// `per_buffer`, the next one `in_transfer` or not, `packet_bytes` each of
/// `block_align`-byte frames, with an end of stream sent before or not.
#[must_use]
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per fact the page's rule uses"
)]
pub const fn expected_write_status(
    number: u64,
    flags: u32,
    eos_length: u32,
    completed: u64,
    in_transfer: bool,
    per_buffer: u32,
    packet_bytes: u32,
    block_align: u32,
    after_end_of_stream: bool,
) -> NTSTATUS {
    if after_end_of_stream {
        return STATUS_INVALID_DEVICE_STATE;
    }
    let end_of_stream = flags & KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM != 0;
    let whole_frames = block_align != 0 && eos_length % block_align == 0;
    if flags & !KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM != 0
        || (end_of_stream && (eos_length > packet_bytes || !whole_frames))
    {
        return STATUS_INVALID_PARAMETER;
    }
    // "already transferred or currently being transferred": packet
    // `completed` is in progress once the device moves.
    let first_writable = if in_transfer {
        completed + 1
    } else {
        completed
    };
    if number < first_writable {
        return STATUS_DATA_LATE_ERROR;
    }
    // "higher than can be stored in the WaveRT buffer": it holds packets
    // `completed .. completed + per_buffer`; with one packet per buffer the
    // next packet goes into the slot in use (GetPacketCount's page: the OS
    // writes count + 1).
    let room = completed + per_buffer as u64 - 1;
    let last_writable = if room > first_writable {
        room
    } else {
        first_writable
    };
    if number > last_writable {
        return STATUS_DATA_OVERRUN;
    }
    STATUS_SUCCESS
}

/// Rule: `SetWritePacket` gives the documented status.
///
/// # Errors
///
/// The rule, in words.
pub fn check_write_status(number: u64, got: NTSTATUS, allowed: &[NTSTATUS]) -> Result<(), String> {
    if allowed.contains(&got) {
        return Ok(());
    }
    let names: Vec<String> = allowed.iter().map(|&s| status_name(s)).collect();
    Err(format!(
        "SetWritePacket({number}) answered {}, where the packet count says {}",
        status_name(got),
        names.join(" or ")
    ))
}

/// Rule: `GetOutputStreamPresentationPosition` is taken during the call,
/// never goes backwards, and presents what the nominal clock has moved,
/// less at most the reported latency.
///
/// # Errors
///
/// The rule, in words.
pub fn check_presentation(
    position: &KSAUDIO_PRESENTATION_POSITION,
    call: Bounds,
    previous: Option<&KSAUDIO_PRESENTATION_POSITION>,
    moved: Bounds,
    latency_frames: u64,
) -> Result<(), String> {
    let (blocks, qpc) = (position.u64PositionInBlocks, position.u64QPCPosition);
    if let Some(p) = previous {
        if blocks < p.u64PositionInBlocks || qpc < p.u64QPCPosition {
            return Err(format!(
                "GetOutputStreamPresentationPosition went backwards: {blocks} blocks at QPC \
                 {qpc} after {} blocks at QPC {}",
                p.u64PositionInBlocks, p.u64QPCPosition
            ));
        }
    }
    if qpc < call.0 || qpc > call.1 {
        return Err(format!(
            "GetOutputStreamPresentationPosition's QPC {qpc} is not the time of the call ({})",
            show(call)
        ));
    }
    let presented = (moved.0.saturating_sub(latency_frames), moved.1);
    if blocks < presented.0 || blocks > presented.1 {
        return Err(format!(
            "GetOutputStreamPresentationPosition answered {blocks} blocks; at the nominal rate \
             {} frames have been moved, and the reported latency is {latency_frames} frames",
            show(moved)
        ));
    }
    Ok(())
}

/// What a successful `GetReadPacket` answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAnswer {
    /// `PacketNumber`.
    pub number: u32,
    /// `Flags`.
    pub flags: u32,
    /// `PerformanceCounterValue`.
    pub qpc: u64,
    /// `MoreData`.
    pub more: bool,
}

/// Rule: `GetReadPacket` reports a complete packet after the last one
/// read (the newest one unless `MoreData`), with `Flags` 0 and the QPC of
/// its first sample; returns the packet's full number.
///
/// `completed` is the range of packets complete at the call, `instant`
/// the engine's instant of a packet's first sample (`None` when it cannot
/// know it, e.g. the packet began before a PAUSE).
///
/// # Errors
///
/// The rule, in words.
pub fn check_read_packet(
    answer: &ReadAnswer,
    completed: Bounds,
    last_read: Option<u64>,
    instant: &dyn Fn(u64) -> Option<Bounds>,
) -> Result<u64, String> {
    let first_unread = last_read.map_or(0, |r| r + 1);
    let newest = (completed.0.saturating_sub(1), completed.1.saturating_sub(1));
    let Some(packet) = widen(answer.number, (first_unread, newest.1)).filter(|_| completed.1 > 0)
    else {
        return Err(format!(
            "GetReadPacket answered packet {}, but the packets complete and not yet read are \
             {first_unread} to {}",
            answer.number, newest.1
        ));
    };
    if !answer.more && packet < newest.0 {
        return Err(format!(
            "GetReadPacket answered packet {packet} with MoreData FALSE, but packet {} is \
             complete too",
            newest.0
        ));
    }
    if answer.more && packet >= newest.1 {
        return Err(format!(
            "GetReadPacket answered packet {packet} with MoreData TRUE, but it is the newest \
             complete packet"
        ));
    }
    if answer.flags != 0 {
        return Err(format!(
            "GetReadPacket answered Flags {:#x} (reserved, must be 0)",
            answer.flags
        ));
    }
    if let Some(at) = instant(packet) {
        if answer.qpc < at.0 || answer.qpc > at.1 {
            return Err(format!(
                "GetReadPacket's QPC {} for packet {packet} is not the time of its first \
                 sample ({})",
                answer.qpc,
                show(at)
            ));
        }
    }
    Ok(packet)
}

/// Rule: `GetReadPacket` says `STATUS_DEVICE_NOT_READY` only when no
/// packet completed since the last one read.
///
/// # Errors
///
/// The rule, in words.
pub fn check_not_ready(completed: Bounds, last_read: Option<u64>) -> Result<(), String> {
    let first_unread = last_read.map_or(0, |r| r + 1);
    if completed.0 > first_unread {
        return Err(format!(
            "GetReadPacket answered STATUS_DEVICE_NOT_READY, but packet {first_unread} is \
             complete ({} packets since STOP)",
            show(completed)
        ));
    }
    Ok(())
}

fn show(range: Bounds) -> String {
    if range.0 == range.1 {
        range.0.to_string()
    } else {
        format!("{} to {}", range.0, range.1)
    }
}

/// A status by its `ntstatus.h` name where the packet rules use it.
#[must_use]
pub fn status_name(status: NTSTATUS) -> String {
    match status {
        STATUS_SUCCESS => "STATUS_SUCCESS".to_owned(),
        STATUS_DATA_LATE_ERROR => "STATUS_DATA_LATE_ERROR".to_owned(),
        STATUS_DATA_OVERRUN => "STATUS_DATA_OVERRUN".to_owned(),
        STATUS_INVALID_DEVICE_STATE => "STATUS_INVALID_DEVICE_STATE".to_owned(),
        STATUS_INVALID_PARAMETER => "STATUS_INVALID_PARAMETER".to_owned(),
        other => format!("{other:#010x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 10_000_000;

    #[test]
    fn the_clock_counts_running_time_only() {
        let mut c = IdealClock::new(48_000, HZ);
        assert_eq!(c.frames(5, 5), (0, 0));
        c.run(1_000, 1_000);
        assert_eq!(c.frames(1_000 + HZ / 100, 1_000 + HZ / 100), (480, 480));
        c.pause(1_000 + HZ / 100, 1_000 + HZ / 100);
        assert_eq!(c.frames(9 * HZ, 9 * HZ), (480, 480), "frozen in PAUSE");
        c.run(10 * HZ, 10 * HZ);
        assert_eq!(
            c.frames(10 * HZ + HZ / 1000, 10 * HZ + HZ / 1000),
            (528, 528)
        );
        // Frame 600 lies in the second run; frame 100 in the first.
        let at = c.instant_of_frame(600).unwrap();
        assert_eq!(at, (10 * HZ + 25_000, 10 * HZ + 25_000));
        assert_eq!(c.instant_of_frame(100), None);
        c.stop();
        assert_eq!(c.frames(11 * HZ, 11 * HZ), (0, 0));
        assert!(!c.running());
    }

    #[test]
    fn call_brackets_widen_the_ranges() {
        let mut c = IdealClock::new(48_000, HZ);
        c.run(100, 300);
        let (lo, hi) = c.running_ticks(10_300, 10_400);
        assert_eq!((lo, hi), (10_000, 10_300));
        let (a, b) = c.instant_of_frame(48).unwrap();
        assert_eq!((a, b), (100 + 10_000, 300 + 10_000));
    }

    #[test]
    fn numbers_widen_across_the_32_bit_wrap() {
        assert_eq!(widen(5, (3, 9)), Some(5));
        assert_eq!(widen(5, (6, 9)), None);
        assert_eq!(
            widen(1, (u64::from(u32::MAX), 1 << 33)),
            Some((1 << 32) + 1)
        );
        assert_eq!(widen(u32::MAX, (1 << 32, (1 << 32) + 5)), None);
    }

    #[test]
    fn the_write_statuses_follow_learns_wording() {
        let expect = |n, completed, in_transfer| {
            expected_write_status(n, 0, 0, completed, in_transfer, 2, 960, 4, false)
        };
        assert_eq!(expect(6, 5, true), STATUS_SUCCESS, "Learn's example");
        assert_eq!(expect(5, 5, true), STATUS_DATA_LATE_ERROR);
        assert_eq!(expect(2, 5, true), STATUS_DATA_LATE_ERROR);
        assert_eq!(expect(7, 5, true), STATUS_DATA_OVERRUN);
        assert_eq!(expect(0, 0, false), STATUS_SUCCESS, "before RUN");
        assert_eq!(expect(1, 0, false), STATUS_SUCCESS);
        assert_eq!(expect(2, 0, false), STATUS_DATA_OVERRUN);
        let eos = KSSTREAM_HEADER_OPTIONSF_ENDOFSTREAM;
        assert_eq!(
            expected_write_status(6, eos, 962, 5, true, 2, 960, 4, false),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            expected_write_status(6, eos, 6, 5, true, 2, 960, 4, false),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            expected_write_status(6, 1, 0, 5, true, 2, 960, 4, false),
            STATUS_INVALID_PARAMETER
        );
        assert_eq!(
            expected_write_status(6, eos, 0, 5, true, 2, 960, 4, false),
            STATUS_SUCCESS
        );
        assert_eq!(
            expected_write_status(6, 0, 0, 5, true, 2, 960, 4, true),
            STATUS_INVALID_DEVICE_STATE
        );
        assert!(
            check_write_status(6, STATUS_SUCCESS, &[STATUS_DATA_LATE_ERROR])
                .unwrap_err()
                .contains("answered STATUS_SUCCESS")
        );
    }

    #[test]
    fn each_answer_rule_fails_on_a_wrong_answer() {
        assert_eq!(check_packet_count(7, (7, 7)), Ok(7));
        assert!(check_packet_count(8, (7, 7)).is_err());
        let at = |blocks, qpc| KSAUDIO_PRESENTATION_POSITION {
            u64PositionInBlocks: blocks,
            u64QPCPosition: qpc,
        };
        assert_eq!(
            check_presentation(&at(480, 50), (50, 50), None, (480, 480), 0),
            Ok(())
        );
        let back = check_presentation(&at(470, 60), (60, 60), Some(&at(480, 50)), (470, 470), 0);
        assert!(back.unwrap_err().contains("backwards"));
        assert!(check_presentation(&at(480, 49), (50, 50), None, (480, 480), 0).is_err());
        assert!(check_presentation(&at(481, 50), (50, 50), None, (480, 480), 0).is_err());
        assert_eq!(
            check_presentation(&at(470, 50), (50, 50), None, (480, 480), 16),
            Ok(())
        );
        let read = ReadAnswer {
            number: 3,
            flags: 0,
            qpc: 700,
            more: false,
        };
        let instant = |_: u64| Some((700, 700));
        assert_eq!(check_read_packet(&read, (4, 4), Some(2), &instant), Ok(3));
        assert!(check_read_packet(&read, (5, 5), Some(2), &instant)
            .unwrap_err()
            .contains("MoreData FALSE"));
        assert!(
            check_read_packet(&read, (4, 4), Some(3), &instant).is_err(),
            "read twice"
        );
        let late = ReadAnswer { qpc: 701, ..read };
        assert!(check_read_packet(&late, (4, 4), Some(2), &instant)
            .unwrap_err()
            .contains("first sample"));
        let more = ReadAnswer { more: true, ..read };
        assert!(check_read_packet(&more, (4, 4), Some(2), &instant).is_err());
        let flagged = ReadAnswer { flags: 1, ..read };
        assert!(check_read_packet(&flagged, (4, 4), Some(2), &instant).is_err());
        assert_eq!(check_not_ready((4, 4), Some(3)), Ok(()));
        assert!(check_not_ready((5, 5), Some(3)).is_err());
    }
}
