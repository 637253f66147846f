//! Typed topology errors: the outcomes callers branch on (exists, missing, lost a
//! race, fenced off) kept apart from connection trouble, which may be retried
//! (the classification, [`TopoError::is_transient`], lives in [`crate::retry`]).
//! Depends on nothing else of the crate.

/// What can go wrong talking to the topology.
#[derive(Debug, thiserror::Error)]
pub enum TopoError {
    /// Create of a key that already exists.
    #[error("node already exists: {0}")]
    NodeExists(String),
    /// The key is not there.
    #[error("no node: {0}")]
    NoNode(String),
    /// A conditional write lost: someone changed the key since it was read.
    #[error("bad version for {0}: changed concurrently")]
    BadVersion(String),
    /// A record that does not parse as the expected type.
    #[error("cannot parse {key}: {reason}")]
    BadRecord {
        /// The key holding the unparsable value.
        key: String,
        /// What the JSON decoder said.
        reason: String,
    },
    /// A fenced write whose fence (leadership) no longer holds.
    #[error("lost leadership; write to {0} refused")]
    Fenced(String),
    /// The lease a write or a campaign refers to does not exist (any more).
    #[error("lease {0:x} not found (expired or revoked)")]
    LeaseNotFound(i64),
    /// The operation did not finish in time.
    #[error("topo timeout: {0}")]
    Timeout(String),
    /// Any error from etcd or the connection.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// Bad configuration (files, endpoints).
    #[error("{0}")]
    Config(String),
    /// A TLS handshake that cannot succeed as configured (an untrusted server
    /// certificate, a client certificate etcd rejects, plaintext to a TLS port).
    #[error("{0}")]
    Tls(String),
    /// etcd refused the login, or the user may not touch the `--topo-root` prefix.
    #[error("{0}")]
    Auth(String),
}

pub type Result<T, E = TopoError> = std::result::Result<T, E>;
