//! Waiting with a deadline: poll a check until it yields a value, the deadline
//! passes, or a cancellation token fires. One loop instead of one per caller.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why [`poll_until`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed first.
    #[error("timed out after {0:?} waiting for {1}")]
    TimedOut(Duration, String),
    /// The token was cancelled first.
    #[error("cancelled while waiting for {0}")]
    Cancelled(String),
}

/// Calls `check` every `interval` until it returns `Some`, for at most `timeout`
/// (the check runs at least once, and once more at the deadline). `what` names the
/// awaited condition in the error.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    cancel: Option<&CancellationToken>,
    mut check: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::TimedOut(timeout, what.to_string()));
        }
        let pause = interval.min(deadline - now);
        match cancel {
            Some(c) => tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = c.cancelled() => return Err(WaitError::Cancelled(what.to_string())),
            },
            None => tokio::time::sleep(pause).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_the_value_once_ready() {
        let n = AtomicU32::new(0);
        let v = poll_until(
            "three",
            Duration::from_secs(5),
            Duration::from_millis(10),
            None,
            || {
                let k = n.fetch_add(1, Ordering::SeqCst);
                async move { (k >= 3).then_some(k) }
            },
        )
        .await;
        assert_eq!(v, Ok(3));
    }

    #[tokio::test]
    async fn times_out_and_is_cancelled() {
        let never = || async { None::<()> };
        let r = poll_until(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(10),
            None,
            never,
        )
        .await;
        assert!(matches!(r, Err(WaitError::TimedOut(_, _))));
        let c = CancellationToken::new();
        c.cancel();
        let r = poll_until(
            "never",
            Duration::from_secs(50),
            Duration::from_millis(10),
            Some(&c),
            never,
        )
        .await;
        assert_eq!(r, Err(WaitError::Cancelled("never".into())));
    }
}
