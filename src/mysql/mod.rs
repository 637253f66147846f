//! MySQL and MariaDB servers: the mysqld process and the SQL cairn sends it. Used by
//! the tablet agent and by the backup engines; calls only `common` and `cairn-topo`.
//!
//! - [`mysqld`]: [`mysqld::Mysqld`], one tablet's server as a value (paths, flavor,
//!   the watched process) and its [`mysqld::MysqldConfig`]; what callers hold.
//! - [`process`]: the lifecycle of that server: initialise the data directory, start,
//!   adopt one left running, supervise, stop.
//! - [`sql`]: connections and queries over the socket: read-only, accounts,
//!   replication, GTID positions (statements come from `flavor`).
//! - [`flavor`]: what differs between MariaDB and MySQL (SQL text, tool names, GTID
//!   position spellings, the replication status row); pure and unit-tested.
//! - [`gtid`]: MariaDB GTID lists: parse, format, merge; pure.
//! - [`binlog`]: MariaDB binlog files: their events, transactions, GTID state and
//!   times, and where the complete part of a growing file ends; pure.
//! - [`binlog_apply`]: binlog files applied to the running server
//!   (`mariadb-binlog | mariadb`), both tools' errors captured.
//! - [`binlog_files`]: the server's binlog files through SQL: rotate, list, locate.
//! - [`binlog_stream`]: a primary's binlog streamed into a spool directory by
//!   `mariadb-binlog --read-from-remote-server --raw --stop-never`, and what the
//!   primary says about its binlog files.

pub mod binlog;
pub mod binlog_apply;
pub mod binlog_files;
pub mod binlog_stream;
pub mod flavor;
pub mod gtid;
pub mod mysqld;
pub mod process;
pub mod sql;
