//! A policy call's deadline, measured in the CPU time of the call itself.
//!
//! The engine's epoch ticks every millisecond while a call is in progress and
//! every [`IDLE_EPOCH_TICK`] otherwise. A call starts with an epoch deadline
//! of one tick ([`FIRST_DEADLINE`]), so nothing but the wall clock is read on
//! the fast path: a decision of a few microseconds rarely sees a tick. When a
//! tick passes during a call, the store's callback reads the calling thread's
//! CPU clock; from then on the call is charged the time before that tick (its
//! wall-clock time, at most one tick: a call that started during an idle
//! period may have run longer, which is how a runaway call overruns its budget
//! by [`IDLE_EPOCH_TICK`] at most) plus the CPU time the thread spends. A call
//! that spent its budget (a loop) is interrupted; one that did not (its thread
//! was descheduled on a busy host) goes on for the budget it has left. A
//! deadline thus fails only the policy's own work, never a call the host's CPU
//! starvation delayed. Wall-clock time is still bounded, by the budget plus
//! [`STARVATION_ALLOWANCE`]. Policies cannot block (no import waits), so a call
//! that is not running is one the operating system has not scheduled.

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

/// When a call started, and at the first tick it saw: what it is charged for
/// the time before, and the thread's CPU clock.
#[derive(Debug, Clone, Copy)]
pub struct CallClock {
    wall: Instant,
    first_tick: Option<FirstTick>,
}

#[derive(Debug, Clone, Copy)]
struct FirstTick {
    /// The time charged for before the first tick.
    before: Duration,
    /// The thread's CPU clock at the first tick.
    cpu: Duration,
}

impl CallClock {
    /// Now.
    pub fn start() -> CallClock {
        CallClock { wall: Instant::now(), first_tick: None }
    }

    /// The CPU time the call is charged with: the time before the first tick
    /// it saw, and the thread's CPU time since.
    fn charged(&self) -> Duration {
        self.first_tick.map_or(Duration::ZERO, |t| t.before + thread_cpu().saturating_sub(t.cpu))
    }

    /// What to do when the epoch deadline of a call with `budget` passed:
    /// interrupt it when it spent its budget of CPU time (or its wall-clock
    /// allowance), else extend the deadline by what is left.
    pub fn on_deadline(&mut self, budget: Duration) -> UpdateDeadline {
        let elapsed = self.wall.elapsed();
        self.decide(budget, elapsed)
    }

    /// [`Self::on_deadline`] when the call started `elapsed` ago.
    fn decide(&mut self, budget: Duration, elapsed: Duration) -> UpdateDeadline {
        if self.first_tick.is_none() {
            self.first_tick = Some(FirstTick { before: elapsed.min(EPOCH_TICK), cpu: thread_cpu() });
        }
        let used = self.charged();
        if used >= budget || elapsed >= budget + STARVATION_ALLOWANCE {
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
            matches!(clock.decide(budget, Duration::from_micros(10)), UpdateDeadline::Continue(5)),
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
        let mut clock = CallClock { wall: Instant::now() - STARVATION_ALLOWANCE * 2, first_tick: None };
        assert!(matches!(clock.on_deadline(Duration::from_millis(5)), UpdateDeadline::Interrupt));
    }

    #[test]
    fn the_time_before_the_first_tick_is_charged_up_to_one_tick() {
        // A call of a few microseconds that sees a tick: a budget of one tick
        // is not spent.
        let mut clock = CallClock::start();
        assert!(matches!(clock.decide(EPOCH_TICK, Duration::from_micros(10)), UpdateDeadline::Continue(1)));
        // One that started long before its first tick (an idle epoch): one
        // tick charged, so a budget of one tick ends there.
        let mut clock = CallClock::start();
        assert!(matches!(clock.decide(EPOCH_TICK, EPOCH_TICK * 4), UpdateDeadline::Interrupt));
        let mut clock = CallClock::start();
        assert!(matches!(clock.decide(EPOCH_TICK * 5, EPOCH_TICK * 4), UpdateDeadline::Continue(4)));
    }
}
