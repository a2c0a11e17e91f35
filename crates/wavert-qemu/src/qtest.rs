//! The qtest protocol.
//!
//! One text line per command, one `OK [value]` (or `FAIL ...`) line per
//! answer. Interrupt level changes of intercepted
//! lines arrive as `IRQ raise N` / `IRQ lower N` lines before the answer of
//! the command that caused them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long one command may take before the harness gives up on QEMU.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A connected qtest session.
#[derive(Debug)]
pub struct Qtest {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    irq_levels: [bool; 24],
    irq_raises: [u64; 24],
    commands: u64,
    error: Option<String>,
}

impl Qtest {
    /// Wraps a stream QEMU connected on.
    ///
    /// # Errors
    /// When the stream cannot be configured.
    pub fn new(stream: UnixStream) -> Result<Self, String> {
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(|e| format!("qtest socket: {e}"))?;
        let writer = stream
            .try_clone()
            .map_err(|e| format!("qtest socket: {e}"))?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
            irq_levels: [false; 24],
            irq_raises: [0; 24],
            commands: 0,
            error: None,
        })
    }

    /// Sends one command and returns what follows `OK` in its answer.
    /// After the first failure every command fails at once with it.
    ///
    /// # Errors
    /// A transport error, a `FAIL` answer, or an earlier failure.
    pub fn command(&mut self, line: &str) -> Result<String, String> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = self.exchange(line);
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    fn exchange(&mut self, line: &str) -> Result<String, String> {
        self.commands += 1;
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("qtest `{line}`: {e}"))?;
        loop {
            let mut answer = String::new();
            let read = self
                .reader
                .read_line(&mut answer)
                .map_err(|e| format!("qtest `{line}`: {e}"))?;
            if read == 0 {
                return Err(format!("qtest `{line}`: QEMU closed the connection"));
            }
            let answer = answer.trim_end();
            if let Some(rest) = answer.strip_prefix("IRQ ") {
                self.note_irq(rest);
            } else if answer == "OK" {
                return Ok(String::new());
            } else if let Some(value) = answer.strip_prefix("OK ") {
                return Ok(value.to_owned());
            } else {
                return Err(format!("qtest `{line}`: {answer}"));
            }
        }
    }

    fn note_irq(&mut self, event: &str) {
        let mut words = event.split_whitespace();
        let (Some(kind), Some(number)) = (words.next(), words.next()) else {
            return;
        };
        let Some(line) = number
            .parse::<usize>()
            .ok()
            .filter(|&n| n < self.irq_levels.len())
        else {
            return;
        };
        let raised = kind == "raise";
        if let (Some(level), Some(raises)) =
            (self.irq_levels.get_mut(line), self.irq_raises.get_mut(line))
        {
            if raised && !*level {
                *raises += 1;
            }
            *level = raised;
        }
    }

    /// Sends a command whose answer is a number (`OK 0x...` or `OK 123`).
    ///
    /// # Errors
    /// As [`Self::command`], or an answer that is not a number.
    pub fn command_value(&mut self, line: &str) -> Result<u64, String> {
        let value = self.command(line)?;
        let parsed = value.strip_prefix("0x").map_or_else(
            || value.parse::<u64>().ok(),
            |hex| u64::from_str_radix(hex, 16).ok(),
        );
        parsed.ok_or_else(|| format!("qtest `{line}`: not a number: {value}"))
    }

    /// Whether intercepted interrupt line `line` is asserted.
    #[must_use]
    pub fn irq_level(&self, line: u8) -> bool {
        self.irq_levels
            .get(usize::from(line))
            .copied()
            .unwrap_or(false)
    }

    /// Times line `line` went from low to high.
    #[must_use]
    pub fn irq_raises(&self, line: u8) -> u64 {
        self.irq_raises.get(usize::from(line)).copied().unwrap_or(0)
    }

    /// Commands sent so far.
    #[must_use]
    pub const fn commands(&self) -> u64 {
        self.commands
    }

    /// The first failure, if any.
    #[must_use]
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}
