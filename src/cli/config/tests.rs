//! Unit tests of the typed configurations: flag checks and encryption settings, table-driven.

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
        (
            &["--job-progress-interval", "0"],
            Some("--job-progress-interval must be at least 100ms"),
        ),
        (&["--job-progress-interval", "1s"], None),
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
            &["--min-schedule-period", "0"],
            Some("--min-schedule-period must be at least 1s"),
        ),
        (
            &["--min-schedule-period", "500ms"],
            Some("--min-schedule-period must be at least 1s"),
        ),
        (&["--min-schedule-period", "1s"], None),
        (&["--min-schedule-period", "24h"], None),
        (
            &["--cancelled-job-history", "0"],
            Some("--cancelled-job-history must be at least 1s"),
        ),
        // Longer than --job-history is allowed: the shorter one wins.
        (
            &["--cancelled-job-history", "720h", "--job-history", "1h"],
            None,
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
        (
            &["--lost-health-grace", "500ms"],
            Some("--lost-health-grace must be at least 1s"),
        ),
        (
            &["--lost-health-grace", "0"],
            Some("--lost-health-grace must be at least 1s"),
        ),
        (
            &["--job-timeout", "30s", "--lost-health-grace", "30s"],
            Some("--lost-health-grace (30s) must be shorter than --job-timeout (30s)"),
        ),
        (
            &["--job-timeout", "30s", "--lost-health-grace", "29s"],
            None,
        ),
        (&["--lost-health-grace", "1s"], None),
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

/// The flags' defaults are the rules' own constants.
#[test]
fn the_minimum_schedule_period_defaults_to_the_rule_s_constant() {
    use crate::coordinator::schedule::period::DEFAULT_MIN_SCHEDULE_PERIOD;
    let Command::Coordinator(a) = parse(&["coordinator"]) else {
        panic!("not a coordinator command")
    };
    assert_eq!(a.min_schedule_period, DEFAULT_MIN_SCHEDULE_PERIOD);
    let Command::Schedule(crate::cli::args::ScheduleCommand::Set(s)) = parse(&[
        "schedule",
        "set",
        "n",
        "--cron",
        "0 2 * * *",
        "--target",
        "ks",
    ]) else {
        panic!("not schedule set")
    };
    assert_eq!(s.min_schedule_period, DEFAULT_MIN_SCHEDULE_PERIOD);
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
    let key = write(
        "key.txt",
        &format!("# public key: {public}\n{}\n", secret.expose_secret()),
    );
    let nokey = write("nokey.txt", &format!("{public}\n"));
    let missing: &str = d.path().join("missing.txt").display().to_string().leak();
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
    // (extra flags, recipients or the start of the error)
    let cases: Vec<(Vec<&str>, Result<usize, String>)> = vec![
        (vec![], Ok(0)),
        (vec!["--backup-encryption-recipient", public], Ok(1)),
        (vec!["--backup-encryption-recipients-file", good], Ok(2)),
        (
            vec![
                "--backup-encryption-recipient",
                public,
                "--backup-encryption-recipients-file",
                good,
            ],
            Ok(2),
        ),
        (
            vec!["--backup-encryption-recipients-file", empty],
            Err(format!(
                "--backup-encryption-recipients-file {empty}: lists no recipient"
            )),
        ),
        (
            vec!["--backup-encryption-recipients-file", bad],
            Err(format!(
                "--backup-encryption-recipients-file {bad}: line 2: \"age1oops\" is not"
            )),
        ),
        (
            vec!["--backup-encryption-recipients-file", missing],
            Err(format!(
                "--backup-encryption-recipients-file {missing}: cannot read it"
            )),
        ),
        (vec!["--backup-encryption-identity-file", key], Ok(0)),
        (
            vec!["--backup-encryption-identity-file", nokey],
            Err(format!(
                "--backup-encryption-identity-file {nokey}: line 1 is not an age X25519 identity"
            )),
        ),
        (
            vec!["--backup-encryption-identity-file", missing],
            Err(format!(
                "--backup-encryption-identity-file {missing}: cannot read it"
            )),
        ),
        (
            vec!["--backup-encryption-identity-file", empty],
            Err(format!(
                "--backup-encryption-identity-file {empty}: holds no identity"
            )),
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
    for spelling in [
        "--backup-encryption-recipient",
        "--backup_encryption_recipient",
        "-backup_encryption_recipient",
    ] {
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
