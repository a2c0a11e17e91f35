//! The host thread's real-time facts: the real-time mode's priority, as
//! MMCSS gives the Windows engine, and a thread's CPU time.
//!
//! On Windows the audio engine's streaming thread runs under MMCSS's "Pro
//! Audio" task, a real-time priority above every ordinary thread; the
//! emulated engine asks Linux for the same (`SCHED_FIFO`) and for timer
//! wake-ups without the default 50 us of slack, for as long as a real-time
//! session runs.
//!
//! Refusal is not an error: the session runs at normal priority and the
//! report says so, since the lateness it measures is then the host's.

use std::fmt;

/// The `SCHED_FIFO` priority asked for: above ordinary threads, below the
/// kernel's own real-time threads (1..=99 on Linux).
const FIFO_PRIORITY: libc::c_int = 10;

/// The priority a session got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `SCHED_FIFO` at this priority, 1 ns timer slack.
    Fifo(i32),
    /// Refused by the host: why, as the OS said it.
    Refused(String),
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fifo(priority) => write!(
                f,
                "SCHED_FIFO {priority}, 1 ns timer slack (as MMCSS Pro Audio on Windows)"
            ),
            Self::Refused(why) => write!(f, "normal priority (real-time priority refused: {why})"),
        }
    }
}

/// Real-time priority for the calling thread until dropped, when the
/// thread's previous policy and timer slack come back.
#[must_use = "the priority lasts as long as the guard"]
pub struct ProAudioPriority {
    previous: Option<(libc::c_int, libc::sched_param, libc::c_ulong)>,
    grant: Grant,
}

impl ProAudioPriority {
    /// Asks for `SCHED_FIFO` and 1 ns timer slack on the calling thread.
    pub fn enter() -> Self {
        // SAFETY: queries the calling thread's policy; no pointers.
        let policy = unsafe { libc::sched_getscheduler(0) };
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid, writable sched_param.
        let got = unsafe { libc::sched_getparam(0, &raw mut param) };
        // SAFETY: PR_GET_TIMERSLACK takes no pointer and returns the slack.
        let slack = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) };
        if policy < 0 || got != 0 || slack < 0 {
            return Self {
                previous: None,
                grant: Grant::Refused(std::io::Error::last_os_error().to_string()),
            };
        }
        let fifo = libc::sched_param {
            sched_priority: FIFO_PRIORITY,
        };
        // SAFETY: `fifo` is a valid sched_param for the calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const fifo) } != 0 {
            return Self {
                previous: None,
                grant: Grant::Refused(std::io::Error::last_os_error().to_string()),
            };
        }
        // SAFETY: PR_SET_TIMERSLACK takes the slack in ns by value.
        let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        Self {
            previous: Some((
                policy,
                param,
                libc::c_ulong::try_from(slack).unwrap_or(50_000),
            )),
            grant: Grant::Fifo(FIFO_PRIORITY),
        }
    }

    /// What the session got.
    #[must_use]
    pub const fn grant(&self) -> &Grant {
        &self.grant
    }
}

impl Drop for ProAudioPriority {
    fn drop(&mut self) {
        if let Some((policy, param, slack)) = self.previous.take() {
            // SAFETY: restores the policy and parameters read at `enter`.
            let _ = unsafe { libc::sched_setscheduler(0, policy, &raw const param) };
            // SAFETY: PR_SET_TIMERSLACK takes the slack in ns by value.
            let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, slack) };
        }
    }
}

/// CPU time the calling thread has used, in nanoseconds.
///
/// `CLOCK_THREAD_CPUTIME_ID` is exact at the call, unlike the scheduler's
/// `schedstat`, which only moves at ticks and switches; `None` if the host
/// refuses the clock.
#[must_use]
pub fn thread_cpu_nanos() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut now) } != 0 {
        return None;
    }
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> libc::c_int {
        // SAFETY: queries the calling thread's policy; no pointers.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn thread_cpu_time_moves_with_work_on_this_thread() {
        let before = thread_cpu_nanos().expect("the thread CPU clock");
        let mut x = 1u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = thread_cpu_nanos().expect("the thread CPU clock");
        assert!(after > before, "2 million multiplications take CPU time");
    }

    #[test]
    fn the_guard_restores_the_thread_it_raised() {
        let before = policy();
        {
            let guard = ProAudioPriority::enter();
            match guard.grant() {
                Grant::Fifo(priority) => {
                    assert_eq!(policy(), libc::SCHED_FIFO);
                    assert_eq!(*priority, FIFO_PRIORITY);
                }
                Grant::Refused(why) => {
                    assert!(!why.is_empty(), "a refusal says why");
                    assert_eq!(policy(), before, "a refusal changes nothing");
                }
            }
        }
        assert_eq!(policy(), before, "dropped: the previous policy is back");
    }
}
