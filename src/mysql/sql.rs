//! The SQL cairn sends one mysqld: connections over its socket, queries, read-only,
//! accounts, replication and GTID positions. An `impl Mysqld` block over the type in
//! [`super::mysqld`]; the statements themselves come from [`super::flavor`], this
//! module only executes them. Calls only [`super::flavor`] and `common`.
//!
//! Passwords never reach logs or errors: every statement that carries one is executed
//! through a path that redacts it from the statement and from the server's message.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, OptsBuilder, Row, Value};

use super::flavor::{quote_string, ReplicationStatus, UserAuth};
use super::mysqld::Mysqld;

/// Replaces every secret (raw and as it appears inside a quoted literal) with `<redacted>`.
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let quoted = quote_string(s);
        let inner = &quoted[1..quoted.len() - 1];
        out = out.replace(inner, "<redacted>").replace(*s, "<redacted>");
    }
    out
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// A result row as column name → text value.
fn row_to_map(row: &Row) -> HashMap<String, Option<String>> {
    row.columns_ref()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                c.name_str().into_owned(),
                row.as_ref(i).and_then(value_to_string),
            )
        })
        .collect()
}

impl Mysqld {
    /// A new connection over the socket as the admin user. Close it with
    /// `disconnect().await` when done.
    pub async fn conn(&self) -> Result<Conn> {
        let opts = OptsBuilder::default()
            .socket(Some(self.socket.as_str()))
            .tcp_port(self.config.port)
            .user(Some(self.admin_user.as_str()))
            .prefer_socket(true);
        Conn::new(opts).await.with_context(|| {
            format!(
                "connecting to mysqld on {} as {}",
                self.socket, self.admin_user
            )
        })
    }

    /// Runs statements in order on one connection; errors name the statement with the
    /// secrets redacted (from the SQL and from the server's message).
    async fn exec_batch(&self, stmts: &[String], secrets: &[&str]) -> Result<()> {
        let mut conn = self.conn().await?;
        for sql in stmts {
            tracing::debug!(sql = %redact(sql, secrets), "mysqld exec");
            if let Err(e) = conn.query_drop(sql.as_str()).await {
                let _ = conn.disconnect().await;
                return Err(anyhow!(
                    "{}: {}",
                    redact(sql, secrets),
                    redact(&e.to_string(), secrets)
                ));
            }
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// Runs one statement. Don't pass passwords here; errors quote the SQL.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        self.exec_batch(&[sql.to_string()], &[]).await
    }

    /// Runs a query and returns its first row, if any.
    pub async fn query_first<T: FromRow + Send + 'static>(&self, sql: &str) -> Result<Option<T>> {
        let mut conn = self.conn().await?;
        let r = conn
            .query_first::<T, _>(sql)
            .await
            .with_context(|| format!("query {sql}"));
        let _ = conn.disconnect().await;
        r
    }

    /// Runs a query and returns all rows.
    pub async fn query<T: FromRow + Send + 'static>(&self, sql: &str) -> Result<Vec<T>> {
        let mut conn = self.conn().await?;
        let r = conn
            .query::<T, _>(sql)
            .await
            .with_context(|| format!("query {sql}"));
        let _ = conn.disconnect().await;
        r
    }

    /// The running server's `VERSION()`.
    pub async fn version(&self) -> Result<String> {
        self.query_first::<String>("SELECT VERSION()")
            .await?
            .context("SELECT VERSION() returned no row")
    }

    /// Makes the server read-only (replica) or writable (primary). MariaDB has no
    /// super_read_only; its read_only already binds accounts without READ_ONLY ADMIN.
    pub async fn set_read_only(&self, on: bool) -> Result<()> {
        self.exec_batch(&self.flavor.read_only_sqls(on), &[]).await
    }

    /// Whether the server is read-only.
    pub async fn is_read_only(&self) -> Result<bool> {
        let v = self.query_first::<i64>("SELECT @@GLOBAL.read_only").await?;
        Ok(v.unwrap_or(0) != 0)
    }

    /// Creates or updates `user@host` with `auth` and grants `privileges` on `*.*`,
    /// with binary logging off: each server manages its own accounts, so replicas never
    /// replay (and trip over) another server's user changes.
    pub async fn ensure_user(
        &self,
        user: &str,
        host: &str,
        auth: &UserAuth,
        privileges: &[&str],
    ) -> Result<()> {
        let mut stmts = vec!["SET SESSION sql_log_bin = 0".to_string()];
        stmts.extend(self.flavor.ensure_user_sqls(user, host, auth, privileges)?);
        let secrets: Vec<&str> = match auth {
            UserAuth::Password(p) => vec![p.as_str()],
            UserAuth::UnixSocket => vec![],
        };
        self.exec_batch(&stmts, &secrets)
            .await
            .with_context(|| format!("ensuring account '{user}'@'{host}'"))
    }

    /// The account replicas use to connect to this server (from any host).
    pub async fn ensure_replication_user(&self, user: &str, password: &str) -> Result<()> {
        self.ensure_user(
            user,
            "%",
            &UserAuth::Password(password.to_string()),
            self.flavor.replication_privileges(),
        )
        .await
    }

    /// The local account the hot-backup tool (mariabackup/xtrabackup) logs in as.
    pub async fn ensure_backup_tool_user(&self, user: &str, auth: &UserAuth) -> Result<()> {
        self.ensure_user(
            user,
            "localhost",
            auth,
            self.flavor.backup_tool_privileges(),
        )
        .await
    }

    /// Both replication threads are running (false when it cannot be read).
    pub async fn replication_running(&self) -> bool {
        self.replication_status()
            .await
            .ok()
            .flatten()
            .is_some_and(|r| r.io_running && r.sql_running)
    }

    /// Replication state, or `None` when the server is not configured as a replica.
    pub async fn replication_status(&self) -> Result<Option<ReplicationStatus>> {
        let rows: Vec<Row> = self.query(self.flavor.replication_status_sql()).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let status = self
            .flavor
            .parse_replication_status(&row_to_map(row))
            .context("parsing the replication status")?;
        Ok(Some(status))
    }

    /// The executed GTID set, without the flavor prefix (MariaDB: `0-1-42`).
    pub async fn gtid_position(&self) -> Result<String> {
        let row: Row = self
            .query_first(self.flavor.executed_position_sql())
            .await?
            .context("the GTID position query returned no row")?;
        let values: Vec<Option<String>> = (0..row.len())
            .map(|i| row.as_ref(i).and_then(value_to_string))
            .collect();
        self.flavor.executed_position_from_row(&values)
    }

    /// The executed GTID set with the flavor prefix (`MariaDB/0-1-42`), as stored in
    /// topo and MANIFESTs.
    pub async fn position(&self) -> Result<String> {
        Ok(self.flavor.format_position(&self.gtid_position().await?))
    }

    /// (Re)points replication at a primary and starts it, positioned by GTID.
    pub async fn start_replication_from(
        &self,
        host: &str,
        port: u16,
        user: &str,
        password: &str,
    ) -> Result<()> {
        let f = self.flavor;
        let stmts = vec![
            f.stop_replication_sql().to_string(),
            f.change_primary_sql(host, port, user, password),
            f.start_replication_sql().to_string(),
        ];
        self.exec_batch(&stmts, &[password])
            .await
            .with_context(|| format!("starting replication from {host}:{port}"))
    }

    /// Stops both replication threads (keeps the primary's coordinates).
    pub async fn stop_replication(&self) -> Result<()> {
        self.exec(self.flavor.stop_replication_sql()).await
    }

    /// Starts both replication threads with the configured primary.
    pub async fn start_replication(&self) -> Result<()> {
        self.exec(self.flavor.start_replication_sql()).await
    }

    /// Stops replication and forgets the primary (what a new primary does).
    pub async fn reset_replication(&self) -> Result<()> {
        self.exec_batch(&self.flavor.reset_replication_sqls(), &[])
            .await
    }

    /// After a restore: make replication start from `pos` (the backup's position, with
    /// or without prefix). Forgets the primary and **discards this server's binlogs**;
    /// follow with [`Mysqld::start_replication_from`].
    pub async fn set_replication_position(&self, pos: &str) -> Result<()> {
        let stmts = self.flavor.set_replication_position_sqls(pos)?;
        self.exec_batch(&stmts, &[])
            .await
            .with_context(|| format!("setting the replication position to {pos}"))
    }

    /// For a demoted primary: replication resumes from everything this server has
    /// executed, including its own writes, which MariaDB's `gtid_slave_pos` lacks (it
    /// would otherwise ask the new primary for transactions it wrote itself).
    pub async fn adopt_binlog_position_for_replication(&self) -> Result<()> {
        let pos = self.gtid_position().await?;
        let stmts = self.flavor.resume_from_executed_sqls(&pos)?;
        self.exec_batch(&stmts, &[])
            .await
            .with_context(|| format!("setting gtid_slave_pos to the executed position {pos}"))
    }

    /// Waits until this replica has applied `pos`; `Ok(false)` on timeout.
    pub async fn wait_for_position(&self, pos: &str, timeout: Duration) -> Result<bool> {
        let sql = self
            .flavor
            .wait_for_position_sql(pos, timeout.as_secs().max(1))?;
        let r = self.query_first::<Option<i64>>(&sql).await?.flatten();
        Ok(r == Some(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_covers_raw_and_quoted_forms() {
        let sql = "CHANGE MASTER TO MASTER_PASSWORD='s\\'ecret'";
        let r = redact(sql, &["s'ecret"]);
        assert_eq!(r, "CHANGE MASTER TO MASTER_PASSWORD='<redacted>'");
        assert_eq!(
            redact("near 's'ecret' at line 1", &["s'ecret"]),
            "near '<redacted>' at line 1"
        );
        assert_eq!(redact("nothing", &[""]), "nothing");
    }
}
