//! A policy call's deadline, measured in the CPU time of the call itself.
//!
//! The engine's epoch ticks every millisecond, and a call's epoch deadline is
//! its budget in ticks: wall-clock time. When that passes, the store's callback
//! looks at the CPU time the calling thread has spent since the call began: a
//! call that used its budget (a loop) is interrupted; one that did not (its
//! thread was descheduled on a busy host) goes on for the budget it has left.
//! A deadline thus fails only the policy's own work, never a call the host's
//! CPU starvation delayed. Wall-clock time is still bounded, by the budget plus
//! [`STARVATION_ALLOWANCE`]. Policies cannot block (no import waits), so a call
//! that is not running is one the operating system has not scheduled.

use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};
use wasmtime::UpdateDeadline;

use super::engine::EPOCH_TICK;

/// How much longer than its budget a starved call may take in wall-clock time.
pub const STARVATION_ALLOWANCE: Duration = Duration::from_secs(1);

/// The CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// When a call started, in wall-clock and in the thread's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct CallClock {
    wall: Instant,
    cpu: Duration,
}

impl CallClock {
    /// Now, on the calling thread.
    pub fn start() -> CallClock {
        CallClock { wall: Instant::now(), cpu: thread_cpu() }
    }

    /// The CPU time the call has used.
    pub fn cpu_used(&self) -> Duration {
        thread_cpu().saturating_sub(self.cpu)
    }

    /// What to do when the epoch deadline of a call with `budget` passed:
    /// interrupt it when it used its budget of CPU time (or its wall-clock
    /// allowance), else extend the deadline by what is left.
    pub fn on_deadline(&self, budget: Duration) -> UpdateDeadline {
        let used = self.cpu_used();
        if used >= budget || self.wall.elapsed() >= budget + STARVATION_ALLOWANCE {
            return UpdateDeadline::Interrupt;
        }
        let left = budget - used;
        UpdateDeadline::Continue((left.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_waited_goes_on_and_one_that_ran_is_interrupted() {
        let budget = Duration::from_millis(5);
        let clock = CallClock::start();
        // Off the CPU for four budgets: what a descheduled thread looks like.
        std::thread::sleep(budget * 4);
        assert!(clock.wall.elapsed() > budget);
        assert!(matches!(clock.on_deadline(budget), UpdateDeadline::Continue(n) if n >= 1));
        // On the CPU until the budget is used.
        while clock.cpu_used() < budget {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert!(matches!(clock.on_deadline(budget), UpdateDeadline::Interrupt));
    }

    #[test]
    fn wall_clock_time_stays_bounded() {
        let clock = CallClock { wall: Instant::now() - STARVATION_ALLOWANCE * 2, cpu: thread_cpu() };
        assert!(matches!(clock.on_deadline(Duration::from_millis(5)), UpdateDeadline::Interrupt));
    }
}
