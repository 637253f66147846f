//! Typed configurations built from the flags: the CLI is the only module that sees
//! clap structs; the layers below take these.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_topo::TabletAlias;

use super::args::{CoordinatorArgs, EncryptionArgs, StorageArg, StorageArgs, TabletArgs};
use crate::backup::encryption::{parse_recipients_file, Identities, Recipients};
use crate::backup::engine::EngineConfig;
use crate::backup::pipeline::Compression;
use crate::backup::{BackupStorage, StorageConfig};
use crate::common::UsageError;
use crate::coordinator::config::CoordinatorConfig;
use crate::coordinator::schedule::parse_cron;
use crate::tablet::AgentConfig;

/// The storage the flags name. With `required`, a missing root is a usage error;
/// without, it means "no storage" (a tablet runs without one).
pub fn storage_config(s: &StorageArgs, required: bool) -> anyhow::Result<StorageConfig> {
    match s.backup_storage_implementation {
        StorageArg::File => match &s.file_backup_storage_root {
            Some(root) => Ok(StorageConfig::File { root: root.clone() }),
            None if required => Err(UsageError(
                "--file-backup-storage-root is required with --backup-storage-implementation file"
                    .into(),
            )
            .into()),
            None => Ok(StorageConfig::None),
        },
    }
}

/// The recipients the encryption flags name (`None`: no encryption), validated
/// and proven able to encrypt. An unreadable or empty recipients file, or a line
/// that is not an age X25519 public key, is a usage error naming the flag:
/// configured but unusable encryption never starts, so nothing is stored in
/// plaintext by accident.
pub fn encryption_recipients(a: &EncryptionArgs) -> Result<Option<Arc<Recipients>>, UsageError> {
    let mut keys = a.backup_encryption_recipient.clone();
    if let Some(f) = &a.backup_encryption_recipients_file {
        let flag = format!("--backup-encryption-recipients-file {}", f.display());
        let text = std::fs::read_to_string(f)
            .map_err(|e| UsageError(format!("{flag}: cannot read it: {e}")))?;
        let listed =
            parse_recipients_file(&text).map_err(|why| UsageError(format!("{flag}: {why}")))?;
        if listed.is_empty() {
            return Err(UsageError(format!("{flag}: lists no recipient")));
        }
        keys.extend(listed);
    }
    if keys.is_empty() {
        return Ok(None);
    }
    Recipients::new(&keys)
        .map(|r| Some(Arc::new(r)))
        .map_err(|why| UsageError(format!("--backup-encryption-recipient: {why}")))
}

/// The identities `--backup-encryption-identity-file` holds (`None` without the
/// flag). An unreadable file, or one without a valid X25519 identity, is a usage
/// error naming the flag; the error never quotes the file's content.
pub fn encryption_identities(file: Option<&Path>) -> Result<Option<Arc<Identities>>, UsageError> {
    let Some(f) = file else {
        return Ok(None);
    };
    let flag = format!("--backup-encryption-identity-file {}", f.display());
    let text =
        std::fs::read_to_string(f).map_err(|e| UsageError(format!("{flag}: cannot read it: {e}")))?;
    Identities::parse(&text, &f.display().to_string())
        .map(|ids| Some(Arc::new(ids)))
        .map_err(|why| UsageError(format!("{flag}: {why}")))
}

/// The replication password the flags or `CAIRN_REPLICATION_PASSWORD` give, if any.
fn given_password(args: &TabletArgs) -> anyhow::Result<Option<String>> {
    if let Some(file) = &args.replication_password_file {
        let s = std::fs::read_to_string(file)
            .with_context(|| format!("reading --replication-password-file {}", file.display()))?;
        let p = s.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            bail!("--replication-password-file {} is empty", file.display());
        }
        return Ok(Some(p));
    }
    Ok(std::env::var(REPLICATION_PASSWORD_VAR)
        .ok()
        .filter(|p| !p.is_empty()))
}

/// The environment variable that may carry the replication password.
const REPLICATION_PASSWORD_VAR: &str = "CAIRN_REPLICATION_PASSWORD";

/// The password used when none is given: fine for a mysqld only reachable on loopback.
const BUILT_IN_REPLICATION_PASSWORD: &str = "cairn-replication";

/// Whether `addr` (a `--mysql-bind-address`) only accepts connections from this host.
fn is_loopback(addr: &str) -> bool {
    if addr.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses the built-in replication password once mysqld listens beyond loopback:
/// anyone who can reach the port would know the replication account's password.
fn check_replication_password(bind_address: &str, given: bool) -> Result<(), UsageError> {
    if given || is_loopback(bind_address) {
        return Ok(());
    }
    Err(UsageError(format!(
        "--mysql-bind-address {bind_address} is not a loopback address: set the replication \
         password with --replication-password-file or {REPLICATION_PASSWORD_VAR} (the \
         built-in one is only allowed on loopback)"
    )))
}

fn resolve_password(args: &TabletArgs) -> anyhow::Result<String> {
    let given = given_password(args)?;
    check_replication_password(&args.mysql_bind_address, given.is_some())?;
    if let Some(p) = given {
        return Ok(p);
    }
    tracing::warn!(
        "no --replication-password-file and no {REPLICATION_PASSWORD_VAR}: using the built-in \
         replication password (mysqld listens on loopback only); set one in production"
    );
    Ok(BUILT_IN_REPLICATION_PASSWORD.to_string())
}

/// The storage the flags name, opened; the commands that read storage need one.
pub fn open_storage(s: &StorageArgs) -> anyhow::Result<Arc<dyn BackupStorage>> {
    storage_config(s, true)?
        .open()
        .ok_or_else(|| UsageError("no backup storage configured".into()).into())
}

/// Refuses durations and counts that would make the agent misbehave (a zero health
/// interval spins; a lease shorter than 2 s expires between keepalives).
fn check_tablet_flags(a: &TabletArgs) -> Result<(), UsageError> {
    at_least(
        "--health-interval",
        a.health_interval,
        Duration::from_millis(100),
    )?;
    at_least("--health-ttl", a.health_ttl, Duration::from_secs(2))?;
    if a.health_interval >= a.health_ttl {
        return Err(UsageError(format!(
            "--health-interval ({}) must be shorter than --health-ttl ({})",
            human(a.health_interval),
            human(a.health_ttl)
        )));
    }
    if a.concurrency == 0 {
        return Err(UsageError("--concurrency must be at least 1".into()));
    }
    Ok(())
}

/// Refuses coordinator flags that contradict each other or would spin.
fn check_coordinator_flags(a: &CoordinatorArgs) -> Result<(), UsageError> {
    at_least("--lease-ttl", a.lease_ttl, Duration::from_secs(2))?;
    at_least(
        "--reconcile-interval",
        a.reconcile_interval,
        Duration::from_millis(100),
    )?;
    at_least(
        "--pending-timeout",
        a.pending_timeout,
        Duration::from_secs(1),
    )?;
    at_least("--job-timeout", a.job_timeout, Duration::from_secs(1))?;
    at_least("--job-history", a.job_history, Duration::from_secs(1))?;
    if a.max_attempts == 0 {
        return Err(UsageError(
            "--max-attempts must be at least 1 (the first try)".into(),
        ));
    }
    if a.topo_snapshot_keep == 0 {
        return Err(UsageError("--topo-snapshot-keep must be at least 1".into()));
    }
    // A backup still being written is incomplete; retention must never take it for an
    // abandoned one, so the grace outlasts any job.
    if a.incomplete_grace <= a.job_timeout {
        return Err(UsageError(format!(
            "--incomplete-grace ({}) must be longer than --job-timeout ({}): a backup in \
             flight would otherwise be pruned as abandoned",
            human(a.incomplete_grace),
            human(a.job_timeout)
        )));
    }
    Ok(())
}

fn at_least(flag: &str, value: Duration, min: Duration) -> Result<(), UsageError> {
    if value < min {
        return Err(UsageError(format!(
            "{flag} must be at least {}",
            human(min)
        )));
    }
    Ok(())
}

/// A duration spelled as a flag takes it (`100ms`, `30s`, `1m30s`, `2h30m`).
fn human(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, 0) => format!("{h}h{m}m"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The agent configuration `cairn tablet`'s flags describe.
pub fn agent_config(args: &TabletArgs) -> anyhow::Result<AgentConfig> {
    check_tablet_flags(args)?;
    let alias =
        TabletAlias::new(&args.cell, args.tablet_uid).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(AgentConfig {
        alias,
        keyspace: args.init_keyspace.clone(),
        shard: args.init_shard.clone(),
        base_type: args.init_tablet_type,
        tablet_dir: args.tablet_dir.clone(),
        mysql_port: args.mysql_port,
        mysql_bind_address: args.mysql_bind_address.clone(),
        hostname: args.tablet_hostname.clone().unwrap_or_else(|| {
            if args.mysql_bind_address == "0.0.0.0" {
                crate::common::hostname()
            } else {
                args.mysql_bind_address.clone()
            }
        }),
        repl_user: args.replication_user.clone(),
        repl_password: resolve_password(args)?,
        health_ttl: args.health_ttl,
        health_interval: args.health_interval,
        innodb_buffer_pool_size: args.innodb_buffer_pool_size.clone(),
        backup: EngineConfig {
            default_engine: args.backup_engine_implementation,
            compression: Compression::for_engine(args.compression_engine),
            concurrency: args.concurrency.max(1) as usize,
            xtrabackup_user: args.xtrabackup_user.clone(),
            xtrabackup_stream_mode: args.xtrabackup_stream_mode,
            xtrabackup_root_path: args.xtrabackup_root_path.clone(),
            work_dir: args.tablet_dir.clone(),
            allow_other_shard: args.allow_other_shard,
            encryption: encryption_recipients(&args.encryption)?,
            identities: encryption_identities(args.backup_encryption_identity_file.as_deref())?,
        },
        restore_from_backup: args.restore_from_backup,
        wait_for_backup_interval: args.wait_for_backup_interval,
        restore_from_backup_ts: args.restore_from_backup_ts.clone(),
        storage: storage_config(&args.storage, false)?,
        http_port: args.port,
    })
}

/// The coordinator configuration `cairn coordinator`'s flags describe.
pub fn coordinator_config(args: &CoordinatorArgs) -> anyhow::Result<CoordinatorConfig> {
    check_coordinator_flags(args)?;
    if let Some(expr) = &args.topo_snapshot_cron {
        parse_cron(expr).map_err(|e| UsageError(format!("--topo-snapshot-cron: {e}")))?;
    }
    Ok(CoordinatorConfig {
        id: args
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", crate::common::hostname(), std::process::id())),
        lease_ttl: args.lease_ttl,
        reconcile_interval: args.reconcile_interval,
        max_lag_seconds: args.max_lag.as_secs(),
        stagger_window: args.stagger_window,
        pending_timeout: args.pending_timeout,
        job_timeout: args.job_timeout,
        max_attempts: args.max_attempts.max(1),
        retry_delay: args.retry_delay,
        job_history: args.job_history,
        incomplete_grace: args.incomplete_grace,
        snapshot_cron: args.topo_snapshot_cron.clone(),
        snapshot_keep: args.topo_snapshot_keep.max(1),
        storage: storage_config(&args.storage, true)?,
        encryption: encryption_recipients(&args.encryption)?,
        http_port: args.port,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};

    fn parse(argv: &[&str]) -> Command {
        let mut full = vec!["cairn"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full) {
            Ok(c) => c.command,
            Err(e) => panic!("{argv:?} did not parse: {e}"),
        }
    }

    #[test]
    fn tablet_flags_are_checked() {
        let base = [
            "tablet",
            "--tablet-uid",
            "1",
            "--init-keyspace",
            "ks",
            "--init-shard",
            "0",
            "--tablet-dir",
            "/nonexistent",
            "--mysql-port",
            "1",
        ];
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (
                &["--health-interval", "0"],
                Some("--health-interval must be at least 100ms"),
            ),
            (
                &["--health-ttl", "1s"],
                Some("--health-ttl must be at least 2s"),
            ),
            (
                &["--health-interval", "5s", "--health-ttl", "5s"],
                Some("--health-interval (5s) must be shorter than --health-ttl (5s)"),
            ),
            (
                &["--concurrency", "0"],
                Some("--concurrency must be at least 1"),
            ),
        ];
        for (extra, want) in cases {
            let mut argv = base.to_vec();
            argv.extend_from_slice(extra);
            let Command::Tablet(a) = parse(&argv) else {
                panic!("not a tablet command")
            };
            let got = check_tablet_flags(&a).err().map(|e| e.0);
            assert_eq!(got.as_deref(), *want, "{extra:?}");
        }
    }

    #[test]
    fn coordinator_flags_are_checked() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (
                &["--lease-ttl", "1s"],
                Some("--lease-ttl must be at least 2s"),
            ),
            (
                &["--reconcile-interval", "0"],
                Some("--reconcile-interval must be at least 100ms"),
            ),
            (
                &["--max-attempts", "0"],
                Some("--max-attempts must be at least 1 (the first try)"),
            ),
            (
                &["--topo-snapshot-keep", "0"],
                Some("--topo-snapshot-keep must be at least 1"),
            ),
            (
                &["--job-timeout", "2h", "--incomplete-grace", "1h"],
                Some(
                    "--incomplete-grace (1h) must be longer than --job-timeout (2h): a backup \
                     in flight would otherwise be pruned as abandoned",
                ),
            ),
            (
                &["--job-timeout", "2h", "--incomplete-grace", "2h30m"],
                None,
            ),
        ];
        for (extra, want) in cases {
            let mut argv = vec!["coordinator"];
            argv.extend_from_slice(extra);
            let Command::Coordinator(a) = parse(&argv) else {
                panic!("not a coordinator command")
            };
            let got = check_coordinator_flags(&a).err().map(|e| e.0);
            assert_eq!(got.as_deref(), *want, "{extra:?}");
        }
    }

    /// Both timestamp flags refuse at parse time what the restore would refuse when
    /// the job runs (the CLI's rule is the restore's).
    #[test]
    fn timestamps_are_parsed_strictly_at_the_cli() {
        let tablet = |ts: &str| {
            Cli::try_parse_from([
                "cairn",
                "tablet",
                "--tablet-uid",
                "1",
                "--init-keyspace",
                "ks",
                "--init-shard",
                "0",
                "--tablet-dir",
                "/nonexistent",
                "--mysql-port",
                "1",
                "--restore-from-backup-ts",
                ts,
            ])
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        let restore = |ts: &str| {
            Cli::try_parse_from([
                "cairn",
                "restore-from-backup",
                "zone1-1",
                "--backup-timestamp",
                ts,
            ])
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        for (ts, ok) in [
            ("2024-01-31.235959", true),
            ("2024-02-29.000000", true),
            ("2024-1-31.235959", false),
            ("2024-01-31.2359", false),
            ("2024-01-31.23595", false),
            ("2024-01-31.235959Z", false),
            (" 2024-01-31.235959", false),
            ("2024-01-31 235959", false),
            ("2023-02-29.000000", false),
            ("2024-13-01.000000", false),
            ("2024-01-31.246000", false),
            ("+2024-01-31.235959", false),
            ("", false),
        ] {
            for (which, got) in [("tablet", tablet(ts)), ("restore", restore(ts))] {
                assert_eq!(got.is_ok(), ok, "{which} {ts:?}: {got:?}");
                if let Err(e) = got {
                    assert!(
                        e.contains("expected YYYY-MM-DD.HHMMSS"),
                        "{which} {ts:?}: {e}"
                    );
                }
            }
            assert_eq!(
                crate::backup::manifest::parse_backup_timestamp(ts).is_ok(),
                ok,
                "the restore's own rule disagrees on {ts:?}"
            );
        }
    }

    #[test]
    fn built_in_password_only_on_loopback() {
        let refused = |addr: &str| {
            Some(format!(
                "--mysql-bind-address {addr} is not a loopback address: set the replication \
                 password with --replication-password-file or CAIRN_REPLICATION_PASSWORD (the \
                 built-in one is only allowed on loopback)"
            ))
        };
        let cases: &[(&str, bool, Option<String>)] = &[
            ("127.0.0.1", false, None),
            ("127.0.0.2", false, None),
            ("::1", false, None),
            ("[::1]", false, None),
            ("localhost", false, None),
            ("LOCALHOST", false, None),
            ("0.0.0.0", false, refused("0.0.0.0")),
            ("::", false, refused("::")),
            ("10.0.0.5", false, refused("10.0.0.5")),
            ("db1.example.com", false, refused("db1.example.com")),
            ("0.0.0.0", true, None),
            ("10.0.0.5", true, None),
            ("db1.example.com", true, None),
        ];
        for (addr, given, want) in cases {
            let got = check_replication_password(addr, *given).err().map(|e| e.0);
            assert_eq!(&got, want, "{addr} given={given}");
        }
    }

    /// Every way encryption can be configured unusably is refused with a usage
    /// error (exit 2) naming the flag; usable settings give the keys.
    #[test]
    fn encryption_flags_are_checked() {
        use age::secrecy::ExposeSecret;
        let d = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let (public, secret) = (id.to_public().to_string(), id.to_string());
        let public: &str = public.leak();
        let other = age::x25519::Identity::generate().to_public().to_string();
        let write = |name: &str, text: &str| -> &'static str {
            let p = d.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string().leak()
        };
        let good = write("good.txt", &format!("# keys\n{public}\n\n{other}\n"));
        let empty = write("empty.txt", "# nobody\n");
        let bad = write("bad.txt", &format!("{public}\nage1oops\n"));
        let key = write("key.txt", &format!("# public key: {public}\n{}\n", secret.expose_secret()));
        let nokey = write("nokey.txt", &format!("{public}\n"));
        let missing: &str = d.path().join("missing.txt").display().to_string().leak();
        let base = [
            "tablet", "--tablet-uid", "1", "--init-keyspace", "ks", "--init-shard", "0",
            "--tablet-dir", "/nonexistent", "--mysql-port", "1",
        ];
        // (extra flags, recipients or the start of the error)
        let cases: Vec<(Vec<&str>, Result<usize, String>)> = vec![
            (vec![], Ok(0)),
            (vec!["--backup-encryption-recipient", public], Ok(1)),
            (vec!["--backup-encryption-recipients-file", good], Ok(2)),
            (
                vec!["--backup-encryption-recipient", public, "--backup-encryption-recipients-file", good],
                Ok(2),
            ),
            (
                vec!["--backup-encryption-recipients-file", empty],
                Err(format!("--backup-encryption-recipients-file {empty}: lists no recipient")),
            ),
            (
                vec!["--backup-encryption-recipients-file", bad],
                Err(format!("--backup-encryption-recipients-file {bad}: line 2: \"age1oops\" is not")),
            ),
            (
                vec!["--backup-encryption-recipients-file", missing],
                Err(format!("--backup-encryption-recipients-file {missing}: cannot read it")),
            ),
            (vec!["--backup-encryption-identity-file", key], Ok(0)),
            (
                vec!["--backup-encryption-identity-file", nokey],
                Err(format!("--backup-encryption-identity-file {nokey}: line 1 is not an age X25519 identity")),
            ),
            (
                vec!["--backup-encryption-identity-file", missing],
                Err(format!("--backup-encryption-identity-file {missing}: cannot read it")),
            ),
            (
                vec!["--backup-encryption-identity-file", empty],
                Err(format!("--backup-encryption-identity-file {empty}: holds no identity")),
            ),
        ];
        for (extra, want) in cases {
            let mut argv = base.to_vec();
            argv.extend_from_slice(&extra);
            let Command::Tablet(a) = parse(&argv) else {
                panic!("not a tablet command")
            };
            let got = encryption_recipients(&a.encryption).and_then(|r| {
                encryption_identities(a.backup_encryption_identity_file.as_deref())?;
                Ok(r.map_or(0, |r| r.names().len()))
            });
            match (got, want) {
                (Ok(n), Ok(m)) => assert_eq!(n, m, "{extra:?}"),
                (Err(e), Err(w)) => assert!(e.0.starts_with(&w), "{extra:?}: {} vs {w}", e.0),
                (got, want) => panic!("{extra:?}: {got:?} vs {want:?}"),
            }
        }
        // A recipient that is not an age key is refused by the parser (exit 2),
        // in every spelling, naming the flag.
        for spelling in ["--backup-encryption-recipient", "--backup_encryption_recipient", "-backup_encryption_recipient"] {
            let mut argv = vec!["cairn".to_string()];
            argv.extend(base.iter().map(|s| s.to_string()));
            argv.extend([spelling.to_string(), "ssh-ed25519 AAAA".to_string()]);
            let e = Cli::try_parse_from(crate::cli::args::normalize_args(argv)).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            let msg = e.to_string();
            assert!(msg.contains("--backup-encryption-recipient"), "{msg}");
            assert!(msg.contains("is not an age X25519 public key"), "{msg}");
        }
    }

    #[test]
    fn durations_read_back_as_flags() {
        for (d, s) in [
            (Duration::from_millis(100), "100ms"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(9000), "2h30m"),
            (Duration::from_secs(3601), "1h0m1s"),
        ] {
            assert_eq!(human(d), s);
        }
    }
}
