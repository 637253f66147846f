//! MySQL and MariaDB servers: the mysqld process and the SQL cairn sends it. Used by
//! the tablet agent and by the backup engines; calls only `common` and `cairn-topo`.
//!
//! - [`flavor`]: what differs between MariaDB and MySQL (SQL text, tool names, GTID
//!   spellings); pure and unit-tested.
//! - [`mysqld`]: one mysqld: initialise, start, adopt, stop, and the SQL helpers
//!   (replication, read-only, positions, users).

pub mod flavor;
pub mod mysqld;
