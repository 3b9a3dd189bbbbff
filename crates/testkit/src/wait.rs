//! Waiting for a condition, bounded: a test waits with [`eventually`], whose deadlines keep a
//! failing test short; the scale harness, whose workloads take longer, gives its own deadline
//! to [`poll_until`].

use std::cell::Cell;
use std::thread;
use std::time::{Duration, Instant};

/// How long any condition is waited for before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a test may spend waiting in all, so that a failing test still ends in well under
/// 20 seconds however many conditions it waits for.
pub const TEST_BUDGET: Duration = Duration::from_secs(15);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(50);

thread_local! {
    /// When the current test first waited for something (each test runs on its own thread).
    static FIRST_WAIT: Instant = Instant::now();
    /// Time the current test set aside on purpose (see [`extend_budget`]).
    static BUDGET_EXTENSION: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Adds `spent` to the current test's [`TEST_BUDGET`]: for time it spends on purpose outside
/// any wait (a deliberate stall of the exporter, say), which would otherwise be taken from
/// the conditions it waits for afterwards. Tests that never call it keep the plain budget.
pub fn extend_budget(spent: Duration) {
    BUDGET_EXTENSION.with(|extension| extension.set(extension.get() + spent));
}

/// When a condition the current test starts waiting for now must be reached: after
/// [`DEADLINE`], or once the test has spent [`TEST_BUDGET`] since its first wait, whichever
/// comes first.
pub fn test_deadline() -> Instant {
    let budget_end =
        FIRST_WAIT.with(|first| *first + TEST_BUDGET) + BUDGET_EXTENSION.with(Cell::get);
    (Instant::now() + DEADLINE).min(budget_end)
}

/// Polls `check` until it returns `Ok`, and returns that value; the test fails with `what`
/// and the last reason `check` gave once the [`test_deadline`] has passed.
#[track_caller]
pub fn eventually<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    within(what, test_deadline(), check)
}

/// Polls `check` until it returns `Ok`, and returns that value; panics with `what` and the
/// last reason `check` gave once `deadline` has passed.
#[track_caller]
pub fn within<T>(what: &str, deadline: Instant, check: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    match poll_until(deadline, check) {
        Ok(value) => value,
        Err(reason) => {
            let waited = started.elapsed().as_secs_f32();
            panic!("{what}: not reached after {waited:.1}s: {reason}")
        }
    }
}

/// Polls `check` until it returns `Ok` or `deadline` passes; the error is the last reason
/// `check` gave. `check` runs at least once.
pub fn poll_until<T>(
    deadline: Instant,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(reason) if Instant::now() >= deadline => return Err(reason),
            Err(_) => thread::sleep(POLL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_met_later_is_returned() {
        let mut polls = 0;
        let value = poll_until(Instant::now() + DEADLINE, || {
            polls += 1;
            if polls == 3 {
                Ok(polls)
            } else {
                Err(format!("poll {polls}"))
            }
        });
        assert_eq!(value, Ok(3));
    }

    #[test]
    fn a_passed_deadline_gives_the_last_reason_after_one_check() {
        let mut polls = 0;
        let outcome: Result<(), String> = poll_until(Instant::now(), || {
            polls += 1;
            Err(format!("poll {polls}"))
        });
        assert_eq!(outcome, Err("poll 1".to_owned()));
    }

    #[test]
    #[should_panic(expected = "the answer: not reached after")]
    fn within_fails_with_what_was_awaited() {
        within("the answer", Instant::now(), || Err::<(), _>("no".into()));
    }
}
