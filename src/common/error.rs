//! The error kinds the edge maps to exit codes.

/// An error that is the user's fault (exit code 2), as opposed to a failed operation
/// (exit code 1). Raised anywhere a flag or argument turns out unusable; the CLI
/// finds it with `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
