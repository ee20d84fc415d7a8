//! A policy call's deadline, measured in the CPU time of the call itself.
//!
//! The engine's epoch ticks every millisecond while a call is in progress and
//! every [`IDLE_EPOCH_TICK`] otherwise. A call reads the thread's CPU clock
//! when it starts and begins with an epoch deadline of one tick
//! ([`FIRST_DEADLINE`]): a decision of a few microseconds rarely sees a tick.
//! When a tick passes during a call, the store's callback reads the CPU clock
//! again and charges the call exactly the CPU time it used. A call that spent
//! its budget (a loop) is interrupted; one that did not (its thread was
//! descheduled on a busy host) goes on for the budget it has left. A deadline
//! thus fails only the policy's own work, never a call the host's CPU
//! starvation delayed. A call that starts while the epoch is idle sees its
//! first tick up to [`IDLE_EPOCH_TICK`] later, so a runaway call with a budget
//! below that runs until then: a call uses at most its budget or
//! [`IDLE_EPOCH_TICK`] of CPU, whichever is more, plus one tick. Wall-clock
//! time is still bounded, by the budget plus [`STARVATION_ALLOWANCE`].
//! Policies cannot block (no import waits), so a call that is not running is
//! one the operating system has not scheduled.

use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};
use wasmtime::UpdateDeadline;

use super::engine::EPOCH_TICK;
#[cfg(doc)]
use super::engine::IDLE_EPOCH_TICK;

/// How much longer than its budget a starved call may take in wall-clock time.
pub const STARVATION_ALLOWANCE: Duration = Duration::from_secs(1);

/// The epoch deadline a call starts with, in ticks: the next tick.
pub const FIRST_DEADLINE: u64 = 1;

/// The CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// Ticks that cover `d`, at least one.
fn ticks(d: Duration) -> u64 {
    (d.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64).max(1)
}

/// When a call started, by the wall clock and by the thread's CPU clock.
#[derive(Debug, Clone, Copy)]
pub struct CallClock {
    wall: Instant,
    cpu: Duration,
}

impl CallClock {
    /// Now (one read of the thread's CPU clock, a system call: about 0.3 µs
    /// here).
    pub fn start() -> CallClock {
        CallClock { wall: Instant::now(), cpu: thread_cpu() }
    }

    /// The CPU time the call has used.
    fn charged(&self) -> Duration {
        thread_cpu().saturating_sub(self.cpu)
    }

    /// What to do when the epoch deadline of a call with `budget` passed:
    /// interrupt it when it spent its budget of CPU time (or its wall-clock
    /// allowance), else extend the deadline by what is left.
    pub fn on_deadline(&mut self, budget: Duration) -> UpdateDeadline {
        let used = self.charged();
        if used >= budget || self.wall.elapsed() >= budget + STARVATION_ALLOWANCE {
            return UpdateDeadline::Interrupt;
        }
        UpdateDeadline::Continue(ticks(budget - used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_waited_goes_on_and_one_that_ran_is_interrupted() {
        let budget = Duration::from_millis(5);
        let mut clock = CallClock::start();
        assert!(
            matches!(clock.on_deadline(budget), UpdateDeadline::Continue(5)),
            "a tick just after the start: next to nothing charged"
        );
        // Off the CPU for four budgets: what a descheduled thread looks like.
        std::thread::sleep(budget * 4);
        assert!(clock.wall.elapsed() > budget);
        assert!(matches!(clock.on_deadline(budget), UpdateDeadline::Continue(n) if n >= 1));
        // On the CPU until the budget is spent.
        while clock.charged() < budget {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert!(matches!(clock.on_deadline(budget), UpdateDeadline::Interrupt));
    }

    #[test]
    fn wall_clock_time_stays_bounded() {
        let mut clock = CallClock { wall: Instant::now() - STARVATION_ALLOWANCE * 2, cpu: thread_cpu() };
        assert!(matches!(clock.on_deadline(Duration::from_millis(5)), UpdateDeadline::Interrupt));
    }

    #[test]
    fn a_call_is_charged_the_cpu_time_it_used_before_its_first_tick() {
        // A call of a few microseconds that sees a tick: a budget of one tick
        // is not spent.
        let mut clock = CallClock::start();
        assert!(matches!(clock.on_deadline(EPOCH_TICK), UpdateDeadline::Continue(1)));
        // One that ran for two ticks before its first tick (it started while
        // the epoch was idle): a budget of one tick is spent there.
        let mut clock = CallClock::start();
        while clock.charged() < EPOCH_TICK * 2 {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert!(matches!(clock.on_deadline(EPOCH_TICK), UpdateDeadline::Interrupt));
    }
}
