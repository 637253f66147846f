//! Deadlines, backoff and the transient-error classification every etcd call of
//! the crate relies on: [`with_timeout`] around one call, the backoffs of unary
//! retries, of read-modify-write contention and of long-lived reconnect loops
//! (watch, keepalive, connect), [`TopoError::is_transient`] to tell "try again"
//! from an answer, and [`map_lease_error`] for "lease not found".
//!
//! Pure helpers over [`crate::error`]; calls nothing else of the crate.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::{Result, TopoError};

/// Attempts of a unary call on transient errors (the first included).
pub(crate) const UNARY_ATTEMPTS: usize = 4;
/// Attempts of a read-modify-write that keeps losing races.
pub(crate) const UPDATE_WITH_ATTEMPTS: usize = 20;

/// The backoff between attempts of one unary call: jittered, 100ms to 1s,
/// [`UNARY_ATTEMPTS`] attempts in all.
pub(crate) fn unary_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(UNARY_ATTEMPTS - 1)
}

/// Small jittered pauses between read-modify-write attempts, so two contenders
/// stop colliding in lockstep.
pub(crate) fn contention_pauses() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(2))
        .with_max_delay(Duration::from_millis(100))
        .without_max_times()
        .build()
}

/// The backoff of long-lived reconnect loops: jittered, 200ms doubling to 5s,
/// never giving up.
pub(crate) fn reconnect_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build()
}

/// The next delay of a reconnect backoff (never exhausted; the fallback only
/// keeps the type honest).
pub(crate) fn next_delay(b: &mut backon::ExponentialBackoff) -> Duration {
    b.next().unwrap_or(Duration::from_secs(5))
}

/// Runs one etcd call under a deadline.
pub(crate) async fn with_timeout<T, F>(d: Duration, what: &str, fut: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r,
        Err(_) => Err(TopoError::Timeout(format!(
            "{what}: no answer within {d:?}"
        ))),
    }
}

/// Maps etcd's "requested lease not found" to [`TopoError::LeaseNotFound`], so
/// an owner learns its lease is gone instead of seeing a generic etcd error.
pub(crate) fn map_lease_error(e: etcd_client::Error, lease: Option<i64>) -> TopoError {
    if let (Some(id), etcd_client::Error::GRpcStatus(s)) = (lease, &e) {
        if s.code() == tonic::Code::NotFound && s.message().contains("lease not found") {
            return TopoError::LeaseNotFound(id);
        }
    }
    TopoError::Etcd(e)
}

impl TopoError {
    /// Whether retrying the same call may succeed (connection trouble, timeouts).
    /// Answers from etcd that will not change on retry (bad arguments, permission
    /// denied, lease not found, compacted revision) are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            TopoError::Timeout(_) => true,
            TopoError::Etcd(e) => match e {
                etcd_client::Error::GRpcStatus(s) => is_transient_code(s.code()),
                etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
                _ => false,
            },
            _ => false,
        }
    }
}

/// gRPC codes that mean "the server could not answer now" rather than "no".
/// `Unknown` is what a connection torn down mid-call looks like (h2 protocol error).
fn is_transient_code(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal
            | Code::ResourceExhausted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_told_apart() {
        let st = |c| TopoError::Etcd(etcd_client::Error::GRpcStatus(tonic::Status::new(c, "x")));
        assert!(st(tonic::Code::Unavailable).is_transient());
        assert!(st(tonic::Code::Unknown).is_transient());
        assert!(!st(tonic::Code::InvalidArgument).is_transient());
        assert!(!st(tonic::Code::PermissionDenied).is_transient());
        assert!(TopoError::Timeout("x".into()).is_transient());
        assert!(!TopoError::BadVersion("x".into()).is_transient());
        assert!(!TopoError::Fenced("x".into()).is_transient());
    }

    #[test]
    fn lease_not_found_is_typed() {
        let e = etcd_client::Error::GRpcStatus(tonic::Status::new(
            tonic::Code::NotFound,
            "etcdserver: requested lease not found",
        ));
        assert!(matches!(
            map_lease_error(e, Some(7)),
            TopoError::LeaseNotFound(7)
        ));
        let e = etcd_client::Error::GRpcStatus(tonic::Status::new(
            tonic::Code::NotFound,
            "etcdserver: requested lease not found",
        ));
        assert!(matches!(map_lease_error(e, None), TopoError::Etcd(_)));
    }

    #[tokio::test]
    async fn with_timeout_names_the_call() {
        let r: Result<()> = with_timeout(Duration::from_millis(10), "probe", async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
        match r {
            Err(TopoError::Timeout(m)) => assert!(m.starts_with("probe:"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
