//! The one polling helper of tests, benchmarks and the demo: call a check until it
//! yields a value or a timeout passes. Built on [`crate::common::wait::poll_until`];
//! adds what tests need on top: checks that may fail, the last failure in the
//! timeout message, and failures that end the wait at once.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use crate::common::wait::poll_until;

/// Polls `f` every 50 ms until it returns `Ok(Some(v))` or `timeout` passes. An
/// `Err` counts as "not yet" and is quoted in the timeout error. Shorthand for
/// `Wait::new(what, timeout).until(f)`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    Wait::new(what, timeout).until(f).await
}

/// A wait to run: what is awaited (for the error), how long, how often, and whether
/// an error from the check ends it at once.
#[derive(Debug, Clone)]
pub struct Wait {
    what: String,
    timeout: Duration,
    every: Duration,
    fail_fast: bool,
}

impl Wait {
    /// Polls every 50 ms; errors from the check are retried.
    pub fn new(what: impl Into<String>, timeout: Duration) -> Wait {
        Wait {
            what: what.into(),
            timeout,
            every: Duration::from_millis(50),
            fail_fast: false,
        }
    }

    /// Polls every `every` instead (benchmarks measure with a finer grain).
    pub fn every(mut self, every: Duration) -> Wait {
        self.every = every;
        self
    }

    /// An error from the check ends the wait with that error (e.g. the process
    /// being waited on exited), instead of being retried until the timeout.
    pub fn fail_fast(mut self) -> Wait {
        self.fail_fast = true;
        self
    }

    /// Calls `f` until it returns `Ok(Some(v))` (then `v`), the timeout passes
    /// (an error naming `what` and the last failure, if any), or, with
    /// [`Wait::fail_fast`], it fails.
    pub async fn until<T, F, Fut>(self, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let last_err: RefCell<Option<anyhow::Error>> = RefCell::new(None);
        let fail_fast = self.fail_fast;
        let got = poll_until(&self.what, self.timeout, self.every, None, || {
            let fut = f();
            let last_err = &last_err;
            async move {
                match fut.await {
                    Ok(Some(v)) => Some(Ok(v)),
                    Ok(None) => None,
                    Err(e) if fail_fast => Some(Err(e)),
                    Err(e) => {
                        *last_err.borrow_mut() = Some(e);
                        None
                    }
                }
            }
        })
        .await;
        match got {
            Ok(v) => v,
            Err(timed_out) => match last_err.into_inner() {
                Some(e) => Err(anyhow::anyhow!("{timed_out}: last error: {e:#}")),
                None => Err(timed_out.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn returns_the_first_value() {
        let n = Cell::new(0);
        let v = Wait::new("three", Duration::from_secs(5))
            .every(Duration::from_millis(1))
            .until(|| {
                n.set(n.get() + 1);
                let k = n.get();
                async move { Ok((k >= 3).then_some(k)) }
            })
            .await
            .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn times_out_quoting_the_last_error() {
        let e = wait_for("never", Duration::from_millis(30), || async {
            Err::<Option<()>, _>(anyhow::anyhow!("boom"))
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("waiting for never"), "{e}");
        assert!(e.contains("last error: boom"), "{e}");
    }

    #[tokio::test]
    async fn fail_fast_stops_at_the_first_error() {
        let calls = Cell::new(0);
        let e = Wait::new("x", Duration::from_secs(5))
            .fail_fast()
            .until(|| {
                calls.set(calls.get() + 1);
                async { Err::<Option<()>, _>(anyhow::anyhow!("exited")) }
            })
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "exited");
        assert_eq!(calls.get(), 1);
    }
}
