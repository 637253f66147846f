//! Typed topology errors.

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
    BadRecord { key: String, reason: String },
    /// A fenced write whose fence (leadership) no longer holds.
    #[error("lost leadership; write to {0} refused")]
    Fenced(String),
    /// The operation did not finish in time.
    #[error("topo timeout: {0}")]
    Timeout(String),
    /// Any error from etcd or the connection.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// Bad configuration (files, endpoints).
    #[error("{0}")]
    Config(String),
}

impl TopoError {
    /// Whether retrying the same call may succeed (connection trouble, timeouts).
    pub fn is_transient(&self) -> bool {
        match self {
            TopoError::Timeout(_) => true,
            TopoError::Etcd(e) => matches!(
                e,
                etcd_client::Error::GRpcStatus(_)
                    | etcd_client::Error::TransportError(_)
                    | etcd_client::Error::IoError(_)
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = TopoError> = std::result::Result<T, E>;
