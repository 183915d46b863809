//! A line on stderr every few seconds while a long, silent tool runs.
//!
//! componentize-py and componentize-js print nothing for the minute a
//! first build can take; without a sign of life users stop them.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often to say that the build still runs.
const EVERY: Duration = Duration::from_secs(10);

/// Runs `work`, printing on stderr (when `show`) that `what` is being
/// built, then how long it has taken every [`EVERY`] until it ends.
pub(crate) fn while_running<T>(what: &str, show: bool, work: impl FnOnce() -> T) -> T {
    if !show {
        return work();
    }
    eprintln!("waymark-build: building {what} (a first build takes a minute or two)");
    let started = Instant::now();
    let (done, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // Ends when `done` is dropped (the work returned or panicked).
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                eprintln!(
                    "waymark-build: still building {what} ({} s)",
                    started.elapsed().as_secs()
                );
            }
        });
        let result = work();
        drop(done);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_runs_once_and_its_value_comes_back() {
        let mut runs = 0;
        let value = while_running("nothing", true, || {
            runs += 1;
            7
        });
        assert_eq!((value, runs), (7, 1));
        assert_eq!(while_running("nothing", false, || 8), 8);
    }
}
