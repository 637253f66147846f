//! Server flavors: everything that differs between MariaDB and MySQL, in one place.
//!
//! This module owns the *words* the tablet agent says to its server: binary and tool
//! names, data-dir initialisation arguments, replication SQL, the GTID position
//! format, the replication status row, read-only switches and user management SQL.
//! It is pure (no IO apart from [`Flavor::detect`], which runs `<server> --version`),
//! so every statement it builds is unit-tested (in `flavor/tests.rs`). [`super::sql`]
//! executes them; GTID lists are parsed and merged by [`super::gtid`]. Calls only
//! [`super::gtid`].
//!
//! Only MariaDB is implemented. A MySQL flavor is one more enum variant: the compiler
//! then points at every `match` that needs its answer (`SOURCE_AUTO_POSITION=1`,
//! `@@gtid_executed`, `super_read_only`, `xtrabackup`, ...).
//!
//! Quoting: string literals are escaped like `mysql_real_escape_string` (backslash
//! escapes). That is correct unless the server runs with `NO_BACKSLASH_ESCAPES` in
//! its `sql_mode`, which the agent never sets.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use super::gtid::{format_gtid_list, merge_gtid_lists, parse_gtid_list, Gtid};

/// Which server dialect a tablet's mysqld speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Flavor {
    /// MariaDB 10.5 or later (domain-server-sequence GTIDs, `CHANGE MASTER ... MASTER_USE_GTID`).
    MariaDB,
}

/// A server binary found on PATH, with the flavor its `--version` output revealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedServer {
    /// The dialect to speak to it.
    pub flavor: Flavor,
    /// Absolute path of the server binary, so the agent starts exactly what it probed.
    pub binary: PathBuf,
    /// Version token from `--version` (e.g. `10.11.6-MariaDB-0+deb12u1`), for logs and MANIFESTs.
    pub version: String,
}

/// How a database account authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum UserAuth {
    /// The OS user of the connecting process must carry the account's name (socket only).
    UnixSocket,
    /// A password, sent hashed by the client; never logged.
    Password(String),
}

impl fmt::Debug for UserAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserAuth::UnixSocket => f.write_str("UnixSocket"),
            UserAuth::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// The replication state of a server configured as a replica.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ReplicationStatus {
    /// The IO thread is connected to the primary and receiving events ("Yes", not "Connecting").
    pub io_running: bool,
    /// The SQL thread is applying events.
    pub sql_running: bool,
    /// Seconds behind the primary; `None` when the server cannot tell (a thread is stopped).
    pub lag_seconds: Option<u64>,
    /// The last IO and/or SQL thread error, when there is one; what an operator needs to see.
    pub last_error: Option<String>,
    /// The primary host this replica is pointed at, so the agent can tell whether to re-point it.
    pub primary_host: Option<String>,
    /// The primary port this replica is pointed at, for the same reason.
    pub primary_port: Option<u16>,
    /// GTID position received by the IO thread (MariaDB `Gtid_IO_Pos`), for diagnostics.
    pub gtid_io_pos: Option<String>,
    /// The IO thread's last error (`Last_IO_Errno`, `Last_IO_Error`), if any.
    #[serde(default)]
    pub io_error: Option<ThreadError>,
    /// The SQL thread's last error (`Last_SQL_Errno`, `Last_SQL_Error`), if any.
    #[serde(default)]
    pub sql_error: Option<ThreadError>,
}

/// One replication thread's last error as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadError {
    /// The server's error number (1062: duplicate key); 0 when it gave none.
    pub errno: u32,
    /// The server's message.
    pub message: String,
}

/// Quotes a string literal for SQL: `'...'` with quotes, backslashes and control
/// bytes escaped as `mysql_real_escape_string` does.
pub fn quote_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\x1a' => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `'user'@'host'`, both parts quoted.
pub fn quote_account(user: &str, host: &str) -> String {
    format!("{}@{}", quote_string(user), quote_string(host))
}

/// Checks a privilege name is a bare keyword phrase (`REPLICATION SLAVE`), so it can
/// be spliced into a GRANT without quoting.
fn validate_privilege(p: &str) -> Result<()> {
    let ok = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '_')
        && !p.starts_with(' ')
        && !p.ends_with(' ');
    if !ok {
        bail!("invalid privilege name {p:?}: want upper-case keywords like \"REPLICATION SLAVE\"");
    }
    Ok(())
}

/// Finds an executable named `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Server binaries looked up on PATH, in order: MariaDB's name first, then the name
/// both MySQL and (as a symlink) MariaDB install.
pub const SERVER_BINARY_NAMES: &[&str] = &["mariadbd", "mysqld"];

impl Flavor {
    /// Finds the server binary on PATH (`mariadbd`, else `mysqld`) and asks it
    /// `--version` which flavor it is. Blocks briefly on the child process.
    pub fn detect() -> Result<DetectedServer> {
        let binary = SERVER_BINARY_NAMES
            .iter()
            .find_map(|n| find_on_path(n))
            .with_context(|| {
                format!(
                    "no MariaDB/MySQL server binary on PATH (looked for {SERVER_BINARY_NAMES:?})"
                )
            })?;
        Self::detect_binary(&binary)
    }

    /// Runs `<binary> --version` and classifies the output.
    pub fn detect_binary(binary: &Path) -> Result<DetectedServer> {
        let mut cmd = std::process::Command::new(binary);
        for var in crate::common::env::agent_only_env() {
            cmd.env_remove(var);
        }
        let out = cmd
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version", binary.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "{} --version failed ({}): {}{}",
                binary.display(),
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let (flavor, version) = Self::from_version_output(&text)
            .with_context(|| format!("classifying {}", binary.display()))?;
        Ok(DetectedServer {
            flavor,
            binary: binary.to_path_buf(),
            version,
        })
    }

    /// Classifies `--version` output (`mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for ...`)
    /// and extracts the version token.
    pub fn from_version_output(out: &str) -> Result<(Flavor, String)> {
        let line = out
            .lines()
            .find(|l| l.contains(" Ver "))
            .unwrap_or(out)
            .trim();
        let version = line
            .split_whitespace()
            .skip_while(|w| *w != "Ver")
            .nth(1)
            .unwrap_or("")
            .to_string();
        if version.is_empty() {
            bail!("unrecognised --version output {line:?}");
        }
        if line.contains("MariaDB") {
            Ok((Flavor::MariaDB, version))
        } else {
            bail!("server {version:?} looks like MySQL, which cairn does not support yet (only MariaDB)")
        }
    }

    /// Human name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::MariaDB => "MariaDB",
        }
    }

    /// Data-dir initialisation programs looked up on PATH, in order.
    pub fn install_db_program_names(self) -> &'static [&'static str] {
        match self {
            Flavor::MariaDB => &["mariadb-install-db", "mysql_install_db"],
        }
    }

    /// Arguments of the initialisation program for `datadir`. `as_root` adds
    /// `--user=root` (the server refuses to run as root without it). `server_args`
    /// (e.g. InnoDB sizes) are passed through to the bootstrap server so the files it
    /// creates match the ones the real server will use. MariaDB's script splits
    /// arguments on spaces, so `datadir` must not contain any.
    pub fn install_db_args(
        self,
        datadir: &Path,
        as_root: bool,
        server_args: &[String],
    ) -> Vec<OsString> {
        match self {
            Flavor::MariaDB => {
                let mut dd = OsString::from("--datadir=");
                dd.push(datadir.as_os_str());
                let mut v: Vec<OsString> = vec![
                    "--no-defaults".into(),
                    dd,
                    "--auth-root-authentication-method=socket".into(),
                    "--skip-test-db".into(),
                ];
                if as_root {
                    v.push("--user=root".into());
                }
                v.extend(server_args.iter().map(OsString::from));
                v
            }
        }
    }

    /// Server flags this flavor needs for GTID replication, on top of the common ones.
    pub fn server_args(self) -> Vec<String> {
        match self {
            Flavor::MariaDB => vec!["--gtid-strict-mode=ON".into()],
        }
    }

    /// Prefix of positions written to topo and MANIFESTs (`MariaDB/0-1-5`).
    pub fn position_prefix(self) -> &'static str {
        match self {
            Flavor::MariaDB => "MariaDB/",
        }
    }

    /// Adds the flavor prefix to a raw GTID set.
    pub fn format_position(self, raw: &str) -> String {
        format!("{}{}", self.position_prefix(), raw)
    }

    /// Accepts a position with or without the flavor prefix, validates it, and returns
    /// the raw GTID set in canonical form. A different flavor's prefix is an error.
    pub fn parse_position(self, pos: &str) -> Result<String> {
        let pos = pos.trim();
        let raw = match pos.strip_prefix(self.position_prefix()) {
            Some(r) => r,
            None => {
                if let Some((prefix, _)) = pos.split_once('/') {
                    bail!(
                        "position {pos:?} is for flavor {prefix:?}, this server is {}",
                        self.name()
                    );
                }
                pos
            }
        };
        match self {
            Flavor::MariaDB => Ok(format_gtid_list(
                &parse_gtid_list(raw).with_context(|| format!("parsing position {pos:?}"))?,
            )),
        }
    }

    /// Points replication at a primary, positioned by GTID.
    pub fn change_primary_sql(self, host: &str, port: u16, user: &str, password: &str) -> String {
        match self {
            Flavor::MariaDB => format!(
                "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, \
                 MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                quote_string(host),
                port,
                quote_string(user),
                quote_string(password)
            ),
        }
    }

    /// Starts both replication threads.
    pub fn start_replication_sql(self) -> &'static str {
        match self {
            Flavor::MariaDB => "START SLAVE",
        }
    }

    /// Stops both replication threads; a no-op (with a note) when not a replica.
    pub fn stop_replication_sql(self) -> &'static str {
        match self {
            Flavor::MariaDB => "STOP SLAVE",
        }
    }

    /// Stops replication and forgets the primary entirely.
    pub fn reset_replication_sqls(self) -> Vec<String> {
        match self {
            Flavor::MariaDB => vec!["STOP SLAVE".into(), "RESET SLAVE ALL".into()],
        }
    }

    /// Returns the replication status row (empty result when not a replica).
    pub fn replication_status_sql(self) -> &'static str {
        match self {
            Flavor::MariaDB => "SHOW SLAVE STATUS",
        }
    }

    /// Selects the values [`Self::executed_position_from_row`] combines.
    pub fn executed_position_sql(self) -> &'static str {
        match self {
            Flavor::MariaDB => "SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos",
        }
    }

    /// The executed GTID set (raw, no prefix) from the row of [`Self::executed_position_sql`].
    ///
    /// MariaDB: the per-domain newest of `gtid_binlog_pos` and `gtid_slave_pos`. The
    /// binlog position alone misses a freshly restored replica (its binlog is empty, its
    /// `gtid_slave_pos` holds the backup's position); the slave position alone misses
    /// writes made on a primary. `gtid_current_pos` is close, but ignores binlog GTIDs
    /// written under another server_id that never reached `gtid_slave_pos`.
    pub fn executed_position_from_row(self, values: &[Option<String>]) -> Result<String> {
        match self {
            Flavor::MariaDB => {
                let lists = values
                    .iter()
                    .map(|v| parse_gtid_list(v.as_deref().unwrap_or("")))
                    .collect::<Result<Vec<_>>>()?;
                Ok(format_gtid_list(&merge_gtid_lists(&lists)))
            }
        }
    }

    /// Makes a freshly restored server start replicating from `pos` (with or without
    /// prefix): stop and forget replication, **discard this server's own binlogs**
    /// (they would clash with the primary's GTIDs under strict mode), then set the
    /// replica start position. Only for a server that is not, and was not, serving as
    /// a primary.
    pub fn set_replication_position_sqls(self, pos: &str) -> Result<Vec<String>> {
        let raw = self.parse_position(pos)?;
        match self {
            Flavor::MariaDB => Ok(vec![
                "STOP SLAVE".into(),
                "RESET SLAVE ALL".into(),
                "RESET MASTER".into(),
                format!("SET GLOBAL gtid_slave_pos = {}", quote_string(&raw)),
            ]),
        }
    }

    /// Makes replication resume from `executed` (this server's own executed set, see
    /// [`Self::executed_position_from_row`]) without touching binlogs: what a demoted
    /// primary needs before it follows the new primary.
    pub fn resume_from_executed_sqls(self, executed: &str) -> Result<Vec<String>> {
        let raw = self.parse_position(executed)?;
        match self {
            Flavor::MariaDB => Ok(vec![
                "STOP SLAVE".into(),
                format!("SET GLOBAL gtid_slave_pos = {}", quote_string(&raw)),
            ]),
        }
    }

    /// Blocks until this replica has applied `pos` or `timeout_secs` passes; the query
    /// returns 0 when reached and -1 on timeout.
    pub fn wait_for_position_sql(self, pos: &str, timeout_secs: u64) -> Result<String> {
        let raw = self.parse_position(pos)?;
        match self {
            Flavor::MariaDB => Ok(format!(
                "SELECT MASTER_GTID_WAIT({}, {timeout_secs})",
                quote_string(&raw)
            )),
        }
    }

    /// Whether the flavor has `super_read_only` (MySQL does; MariaDB 10.11 does not,
    /// its `read_only` already binds everyone without READ_ONLY ADMIN).
    pub fn has_super_read_only(self) -> bool {
        match self {
            Flavor::MariaDB => false,
        }
    }

    /// Statements that make the server read-only (or writable).
    pub fn read_only_sqls(self, on: bool) -> Vec<String> {
        let v = if on { "ON" } else { "OFF" };
        match self {
            Flavor::MariaDB => vec![format!("SET GLOBAL read_only = {v}")],
        }
    }

    /// The clause that gives an account its authentication method.
    fn auth_clause(self, auth: &UserAuth) -> String {
        match (self, auth) {
            (Flavor::MariaDB, UserAuth::UnixSocket) => "IDENTIFIED VIA unix_socket".into(),
            (Flavor::MariaDB, UserAuth::Password(p)) => {
                format!("IDENTIFIED BY {}", quote_string(p))
            }
        }
    }

    /// Statements that create or update an account so it exists with exactly this
    /// authentication and at least these global privileges. Run them with binary
    /// logging off, so each server manages its own accounts and replicas never replay
    /// conflicting user changes.
    pub fn ensure_user_sqls(
        self,
        user: &str,
        host: &str,
        auth: &UserAuth,
        privileges: &[&str],
    ) -> Result<Vec<String>> {
        if user.is_empty() {
            bail!("empty user name");
        }
        for p in privileges {
            validate_privilege(p)?;
        }
        let account = quote_account(user, host);
        let auth = self.auth_clause(auth);
        let mut v = vec![
            format!("CREATE USER IF NOT EXISTS {account} {auth}"),
            format!("ALTER USER {account} {auth}"),
        ];
        if !privileges.is_empty() {
            v.push(format!(
                "GRANT {} ON *.* TO {account}",
                privileges.join(", ")
            ));
        }
        Ok(v)
    }

    /// Privileges a replica's replication account needs on the primary.
    pub fn replication_privileges(self) -> &'static [&'static str] {
        match self {
            Flavor::MariaDB => &["REPLICATION SLAVE", "REPLICATION CLIENT"],
        }
    }

    /// Privileges the hot-backup tool's account needs.
    pub fn backup_tool_privileges(self) -> &'static [&'static str] {
        match self {
            Flavor::MariaDB => &[
                "RELOAD",
                "PROCESS",
                "LOCK TABLES",
                "BINLOG MONITOR",
                "SLAVE MONITOR",
            ],
        }
    }

    /// Hot-backup tool binaries, in lookup order.
    pub fn backup_tool_names(self) -> &'static [&'static str] {
        match self {
            Flavor::MariaDB => &["mariabackup", "mariadb-backup"],
        }
    }

    /// Names of the file in which the backup tool records the binlog position and
    /// GTID of the backup, newest naming first. MariaDB 10.11's mariabackup still
    /// writes `xtrabackup_binlog_info`; later releases renamed it.
    pub fn binlog_info_file_names(self) -> &'static [&'static str] {
        match self {
            Flavor::MariaDB => &["mariadb_backup_binlog_info", "xtrabackup_binlog_info"],
        }
    }

    /// Parses one row of [`Self::replication_status_sql`], given as column name →
    /// value. Accepts both the old (`Slave_IO_Running`, `Master_Host`) and the new
    /// (`Replica_IO_Running`, `Source_Host`) column names.
    pub fn parse_replication_status(
        self,
        row: &HashMap<String, Option<String>>,
    ) -> Result<ReplicationStatus> {
        let get = |names: &[&str]| -> Option<String> {
            names
                .iter()
                .find_map(|n| row.get(*n).cloned().flatten())
                .map(|s| s.trim().to_string())
        };
        let io = get(&["Slave_IO_Running", "Replica_IO_Running"])
            .context("replication status row has no Slave_IO_Running column")?;
        let sql = get(&["Slave_SQL_Running", "Replica_SQL_Running"])
            .context("replication status row has no Slave_SQL_Running column")?;
        let lag_seconds = match get(&["Seconds_Behind_Master", "Seconds_Behind_Source"]) {
            None => None,
            Some(s) if s.is_empty() || s.eq_ignore_ascii_case("NULL") => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .with_context(|| format!("invalid Seconds_Behind_Master {s:?}"))?,
            ),
        };
        // An error number that does not parse is kept as 0: the message still tells.
        let thread_error = |errno: &[&str], message: &[&str]| {
            let errno = get(errno).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
            let message = get(message).unwrap_or_default();
            (errno != 0 || !message.is_empty()).then_some(ThreadError { errno, message })
        };
        let io_error = thread_error(
            &["Last_IO_Errno"],
            &["Last_IO_Error", "Last_IO_Error_Message"],
        );
        let sql_error = thread_error(
            &["Last_SQL_Errno"],
            &["Last_SQL_Error", "Last_SQL_Error_Message"],
        );
        let describe = |thread: &str, e: &ThreadError| match e.errno {
            0 => format!("{thread} thread: {}", e.message),
            n => format!("{thread} thread error {n}: {}", e.message),
        };
        let mut errors = Vec::new();
        if let Some(e) = &io_error {
            errors.push(describe("IO", e));
        }
        if let Some(e) = &sql_error {
            errors.push(describe("SQL", e));
        }
        let primary_port = match get(&["Master_Port", "Source_Port"]) {
            Some(p) if !p.is_empty() => Some(
                p.parse::<u16>()
                    .with_context(|| format!("invalid Master_Port {p:?}"))?,
            ),
            _ => None,
        };
        Ok(ReplicationStatus {
            io_running: io.eq_ignore_ascii_case("Yes"),
            sql_running: sql.eq_ignore_ascii_case("Yes"),
            lag_seconds,
            last_error: (!errors.is_empty()).then(|| errors.join("; ")),
            primary_host: get(&["Master_Host", "Source_Host"]).filter(|h| !h.is_empty()),
            primary_port,
            gtid_io_pos: get(&["Gtid_IO_Pos"]),
            io_error,
            sql_error,
        })
    }
}

#[cfg(test)]
mod tests;
