//! Plumbing shared by every layer of the binary, below all of them: it imports no
//! other module of this crate (only `cairn-topo` where a type comes from there).
//!
//! - [`env`]: the agent's `CAIRN_*` variables, which no child process inherits.
//! - [`error`]: [`UsageError`], the error that maps to exit code 2.
//! - [`shutdown`]: SIGINT/SIGTERM into a cancellation token.
//! - [`wait`]: polling with a deadline.
//! - [`sync`]: a mutex lock that survives poisoning.
//! - [`host`]: this machine's hostname.
//! - [`duration`]: Go-style durations as Vitess flags take them.
//! - [`failpoint`]: named steps where a test build can kill the process.

pub mod duration;
pub mod env;
pub mod error;
pub mod failpoint;
pub mod host;
pub mod shutdown;
pub mod sync;
pub mod wait;

pub use duration::{format_duration, parse_duration};
pub use error::UsageError;
pub use host::hostname;
pub use sync::lock;
