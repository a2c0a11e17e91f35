//! Positions: linear, cyclic, presentation (frames + QPC) and packet count.
//!
//! They derive from QPC time for timer-paced (virtual) streams, or from a
//! wrapping hardware offset for DMA-paced ones.
//!
//! Time to frames uses 128-bit integer arithmetic with a carried remainder:
//! after any sequence of updates the frame count equals
//! `floor(elapsed_qpc * rate / qpc_frequency)` exactly, so there is no drift
//! however many small steps are taken.

/// Why a clock could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PositionError {
    /// QPC frequency 0.
    ZeroQpcFrequency,
    /// Sample rate 0.
    ZeroSampleRate,
    /// Frame size 0.
    ZeroBlockAlign,
    /// Buffer size 0.
    ZeroBufferSize,
    /// Packet size 0 or not dividing the buffer.
    BadPacketSize,
}

/// `KSAUDIO_PRESENTATION_POSITION`: frames presented and the QPC time of that
/// observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresentationPosition {
    /// Frames since RUN was first entered after STOP (`u64PositionInBlocks`).
    pub frames: u64,
    /// QPC value the position refers to (`u64QPCPosition`).
    pub qpc: u64,
}

/// A stream clock paced by QPC (the virtual DMA engine's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QpcClock {
    qpc_frequency: u64,
    sample_rate: u32,
    block_align: u32,
    buffer_bytes: u32,
    packet_bytes: u32,
    running: bool,
    last_qpc: u64,
    frames: u64,
    /// Numerator remainder below `qpc_frequency` carried between updates.
    remainder: u64,
}

impl QpcClock {
    /// A stopped clock at position 0.
    ///
    /// # Errors
    /// One [`PositionError`] per zero or inconsistent parameter.
    pub const fn new(
        qpc_frequency: u64,
        sample_rate: u32,
        block_align: u32,
        buffer_bytes: u32,
        packet_bytes: u32,
    ) -> Result<Self, PositionError> {
        if qpc_frequency == 0 {
            return Err(PositionError::ZeroQpcFrequency);
        }
        if sample_rate == 0 {
            return Err(PositionError::ZeroSampleRate);
        }
        if block_align == 0 {
            return Err(PositionError::ZeroBlockAlign);
        }
        if buffer_bytes == 0 {
            return Err(PositionError::ZeroBufferSize);
        }
        if packet_bytes == 0 || buffer_bytes % packet_bytes != 0 {
            return Err(PositionError::BadPacketSize);
        }
        Ok(Self {
            qpc_frequency,
            sample_rate,
            block_align,
            buffer_bytes,
            packet_bytes,
            running: false,
            last_qpc: 0,
            frames: 0,
            remainder: 0,
        })
    }

    /// Frames elapsed in `delta` QPC ticks given a carried remainder:
    /// returns (whole frames, new remainder). Exact; u128 cannot overflow
    /// (u64 x u32 + u64 < 2^97).
    #[must_use]
    pub fn frames_for_ticks(
        delta: u64,
        sample_rate: u32,
        qpc_frequency: u64,
        remainder: u64,
    ) -> (u64, u64) {
        if qpc_frequency == 0 {
            return (0, 0);
        }
        // A service's step (under 55 days at 10 MHz and 384 kHz) fits in
        // u64: one hardware division instead of a 128-bit one, the same
        // answer.
        if let Some(total) = delta
            .checked_mul(u64::from(sample_rate))
            .and_then(|product| product.checked_add(remainder))
        {
            return (total / qpc_frequency, total % qpc_frequency);
        }
        let total = u128::from(delta) * u128::from(sample_rate) + u128::from(remainder);
        let freq = u128::from(qpc_frequency);
        let frames = u64::try_from(total / freq).unwrap_or(u64::MAX);
        // The remainder is below qpc_frequency, itself a u64.
        let remainder = u64::try_from(total % freq).unwrap_or(0);
        (frames, remainder)
    }

    /// Advances to `qpc` when running. A `qpc` earlier than the last one
    /// (a clock read out of order) moves nothing: the position is monotonic.
    pub fn update(&mut self, qpc: u64) {
        if !self.running || qpc <= self.last_qpc {
            return;
        }
        let delta = qpc - self.last_qpc;
        let (frames, remainder) =
            Self::frames_for_ticks(delta, self.sample_rate, self.qpc_frequency, self.remainder);
        self.frames = self.frames.saturating_add(frames);
        self.remainder = remainder;
        self.last_qpc = qpc;
    }

    /// RUN: start (or resume) counting from `qpc`.
    pub const fn run(&mut self, qpc: u64) {
        if !self.running {
            self.running = true;
            self.last_qpc = qpc;
        }
    }

    /// PAUSE: count up to `qpc`, then freeze.
    pub fn pause(&mut self, qpc: u64) {
        self.update(qpc);
        self.running = false;
    }

    /// STOP: back to position 0.
    pub const fn reset(&mut self) {
        self.running = false;
        self.frames = 0;
        self.remainder = 0;
        self.last_qpc = 0;
    }

    /// Bytes per frame.
    #[must_use]
    pub const fn block_align(&self) -> u32 {
        self.block_align
    }

    /// The cyclic buffer's size in bytes.
    #[must_use]
    pub const fn buffer_bytes(&self) -> u32 {
        self.buffer_bytes
    }

    /// Whether counting.
    #[must_use]
    pub const fn is_running(&self) -> bool {
        self.running
    }
    /// Frames so far.
    #[must_use]
    pub const fn frames(&self) -> u64 {
        self.frames
    }
    /// Linear byte position (frames x block align, saturating).
    #[must_use]
    pub const fn linear_bytes(&self) -> u64 {
        self.frames.saturating_mul(self.block_align as u64)
    }
    /// Offset in the cyclic buffer (play or write cursor).
    #[must_use]
    pub fn cyclic_offset(&self) -> u32 {
        // The remainder is below buffer_bytes, itself a u32.
        u32::try_from(self.linear_bytes() % u64::from(self.buffer_bytes)).unwrap_or(0)
    }
    /// Packets completed (the Windows 10 packet counter).
    #[must_use]
    pub const fn packet_count(&self) -> u64 {
        self.linear_bytes() / self.packet_bytes as u64
    }
    /// Presentation position as of the last update.
    #[must_use]
    pub const fn presentation(&self) -> PresentationPosition {
        PresentationPosition {
            frames: self.frames,
            qpc: self.last_qpc,
        }
    }
    /// How many frames this clock is ahead of `other`, rounded up: the
    /// exact difference of the two positions (frames and the fraction the
    /// remainder holds) at the QPC both were last updated to. `None` unless
    /// both run at the same rate and QPC frequency and were updated to the
    /// same QPC.
    ///
    /// Rounding up is what a copy from `other`'s stream into this one needs:
    /// this clock's frame `n` holds `other`'s frame `n - lead`, which `other`
    /// has always consumed by the time this clock has frame `n`.
    #[must_use]
    pub fn lead_frames(&self, other: &Self) -> Option<i64> {
        let comparable = self.running
            && other.running
            && self.sample_rate == other.sample_rate
            && self.qpc_frequency == other.qpc_frequency
            && self.last_qpc == other.last_qpc;
        if !comparable {
            return None;
        }
        let whole = i128::from(self.frames) - i128::from(other.frames);
        let up = i128::from(self.remainder > other.remainder);
        i64::try_from(whole + up).ok()
    }

    /// The earliest QPC at which the frame count reaches `target` frames,
    /// assuming the clock keeps running (for programming a timer).
    /// `None` when already reached, not running, or beyond u64.
    #[must_use]
    pub fn qpc_when_frames_reach(&self, target: u64) -> Option<u64> {
        if !self.running || target <= self.frames {
            return None;
        }
        self.reading().qpc_of_frame(target)
    }

    /// The clock as of its last update, for the packet interfaces.
    #[must_use]
    pub const fn reading(&self) -> ClockReading {
        ClockReading {
            frames: self.frames,
            qpc: self.last_qpc,
            remainder: self.remainder,
            sample_rate: self.sample_rate,
            qpc_frequency: self.qpc_frequency,
        }
    }
}

/// A stream clock read at one instant.
///
/// What the packet interfaces derive their answers from:
/// `GetPacketCount` from `frames`, `GetOutputStreamPresentationPosition`
/// from `frames`, `GetReadPacket`'s time from
/// [`ClockReading::qpc_of_frame`].
///
/// A timer-paced clock ([`QpcClock::reading`]) gives its exact state; a
/// DMA-paced device gives the frames its engine has moved, the QPC it read
/// them at, and a remainder of 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReading {
    /// Frames moved since STOP.
    pub frames: u64,
    /// QPC of the reading.
    pub qpc: u64,
    /// How much of the next frame had elapsed, in `1 / qpc_frequency`
    /// frames (below `qpc_frequency`).
    pub remainder: u64,
    /// Frames per second.
    pub sample_rate: u32,
    /// QPC ticks per second.
    pub qpc_frequency: u64,
}

impl ClockReading {
    /// The earliest QPC at which the frame count was (or will be) at least
    /// `frame`, at the nominal rate: the sampling instant of frame `frame`.
    ///
    /// Exact for a timer-paced clock that ran without a pause between that
    /// frame and the reading (a pause in between shifts the answer by the
    /// pause's length). `None` for a zero rate or a time outside `u64`.
    #[must_use]
    pub fn qpc_of_frame(&self, frame: u64) -> Option<u64> {
        if self.sample_rate == 0 || self.qpc_frequency == 0 {
            return None;
        }
        // A timer's next due time lies within a buffer of the reading: u64
        // holds the products, one hardware division instead of a 128-bit
        // one, with the same answers (None where the wide path's result
        // leaves u64 too).
        let narrow_rate = u64::from(self.sample_rate);
        if frame <= self.frames {
            if let Some(back) = (self.frames - frame)
                .checked_mul(self.qpc_frequency)
                .and_then(|back| back.checked_add(self.remainder))
            {
                return self.qpc.checked_sub(back / narrow_rate);
            }
        } else if let Some(ahead) = (frame - self.frames).checked_mul(self.qpc_frequency) {
            return ahead
                .checked_sub(self.remainder)
                .and_then(|ahead| self.qpc.checked_add(ahead.div_ceil(narrow_rate)));
        }
        let rate = u128::from(self.sample_rate);
        let freq = u128::from(self.qpc_frequency);
        let remainder = u128::from(self.remainder);
        let qpc = u128::from(self.qpc);
        let at = if frame <= self.frames {
            // Elapsed since that frame's instant, in 1 / rate ticks:
            // (frames - frame) whole frames plus the fraction of the next.
            let back = u128::from(self.frames - frame) * freq + remainder;
            qpc.checked_sub(back / rate)?
        } else {
            // Still to elapse; the remainder is below `freq`, so this stays
            // positive.
            let ahead = (u128::from(frame - self.frames) * freq).checked_sub(remainder)?;
            qpc + ahead.div_ceil(rate)
        };
        u64::try_from(at).ok()
    }
}

/// Turns a wrapping hardware offset into a monotonic 64-bit linear position.
///
/// The offset is e.g. a DMA position in the cyclic buffer. Reads must come at least once per
/// buffer cycle (the driver's period interrupt guarantees it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearFromCyclic {
    buffer_bytes: u32,
    last_offset: u32,
    linear: u64,
}

impl LinearFromCyclic {
    /// At position 0.
    ///
    /// # Errors
    /// [`PositionError::ZeroBufferSize`].
    pub const fn new(buffer_bytes: u32) -> Result<Self, PositionError> {
        if buffer_bytes == 0 {
            return Err(PositionError::ZeroBufferSize);
        }
        Ok(Self {
            buffer_bytes,
            last_offset: 0,
            linear: 0,
        })
    }

    /// Feeds a new hardware offset (taken modulo the buffer size) and returns
    /// the linear position.
    pub const fn update(&mut self, offset: u32) -> u64 {
        let offset = offset % self.buffer_bytes;
        let delta = if offset >= self.last_offset {
            offset - self.last_offset
        } else {
            self.buffer_bytes - self.last_offset + offset
        };
        self.linear = self.linear.saturating_add(delta as u64);
        self.last_offset = offset;
        self.linear
    }

    /// Adds `laps` whole buffers the offsets cannot show: a reader that
    /// knows (from its own clock) it went more than a buffer without a look
    /// says how many wraps it missed.
    pub const fn add_laps(&mut self, laps: u64) {
        self.linear = self
            .linear
            .saturating_add(laps.saturating_mul(self.buffer_bytes as u64));
    }

    /// Linear position so far.
    #[must_use]
    pub const fn linear(&self) -> u64 {
        self.linear
    }

    /// Back to 0 (STOP).
    pub const fn reset(&mut self) {
        self.last_offset = 0;
        self.linear = 0;
    }
}
