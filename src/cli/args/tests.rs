//! Parsing tests: Vitess spellings, the seed command lines, names refused at
//! parse time, and the job flags `backup` and `backup-shard` share.

use super::*;

fn norm(v: &[&str]) -> Vec<String> {
    normalize_args(v.iter().map(|s| s.to_string()))
}

#[test]
fn vitess_spellings_become_clap_spellings() {
    assert_eq!(
        norm(&[
            "cairn",
            "tablet",
            "-restore_from_backup",
            "--init_shard",
            "-80",
            "-file_backup_storage_root=/x_y",
            "-l",
            "--",
            "-a_b"
        ]),
        vec![
            "cairn",
            "tablet",
            "--restore-from-backup",
            "--init-shard",
            "-80",
            "--file-backup-storage-root=/x_y",
            "-l",
            "--",
            "-a_b"
        ]
    );
}

#[test]
fn seed_command_line_parses() {
    let args = norm(&[
        "cairn",
        "tablet",
        "-tablet_uid",
        "101",
        "-init_keyspace",
        "commerce",
        "-init_shard",
        "-80",
        "-init_tablet_type",
        "rdonly",
        "-tablet_dir",
        "/tmp/t",
        "-mysql_port=17000",
        "-backup_storage_implementation=file",
        "-file_backup_storage_root=/tmp/b",
        "-restore_from_backup",
        "-wait_for_backup_interval",
        "1h",
    ]);
    let cli = Cli::try_parse_from(args).unwrap();
    let Command::Tablet(t) = cli.command else {
        panic!("not tablet")
    };
    assert!(t.restore_from_backup);
    assert_eq!(t.init_shard, "-80");
    assert_eq!(t.init_tablet_type, TabletType::Rdonly);
    assert_eq!(t.wait_for_backup_interval, Duration::from_secs(3600));
    assert_eq!(
        t.storage.file_backup_storage_root.as_deref(),
        Some(std::path::Path::new("/tmp/b"))
    );
}

#[test]
fn backup_and_backup_shard_share_the_job_flags_with_help() {
    use clap::CommandFactory;
    let cli = Cli::command();
    let flags = |name: &str| -> Vec<(String, bool)> {
        let sub = cli.find_subcommand(name).expect("subcommand");
        let mut v: Vec<(String, bool)> = sub
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?.to_string(), a.get_help().is_some())))
            .filter(|(l, _)| !["help", "version"].contains(&l.as_str()))
            .collect();
        v.sort();
        v
    };
    let job = [
        "allow-primary",
        "backup-engine",
        "concurrency",
        "json",
        "no-wait",
        "pending-timeout",
    ];
    for cmd in ["backup", "backup-shard"] {
        let f = flags(cmd);
        for name in job {
            assert!(f.iter().any(|(l, _)| l == name), "{cmd} lacks --{name}");
        }
        for (l, help) in &f {
            assert!(*help, "{cmd} --{l} has no help text");
        }
    }
    let parsed = |args: &[&str]| Cli::try_parse_from(args).unwrap().command;
    let Command::BackupShard(a) = parsed(&[
        "cairn",
        "backup-shard",
        "ks/0",
        "--allow-primary",
        "--backup-engine",
        "xtrabackup",
        "--concurrency",
        "3",
        "--no-wait",
        "--pending-timeout",
        "5s",
        "--json",
        "--max-lag",
        "1m",
    ]) else {
        panic!("not backup-shard")
    };
    assert!(a.job.allow_primary && a.job.no_wait && a.job.json);
    assert_eq!(a.job.backup_engine, Some(BackupMethod::Xtrabackup));
    assert_eq!(a.job.concurrency, Some(3));
    assert_eq!(a.job.pending_timeout, Duration::from_secs(5));
    assert_eq!(a.max_lag, Duration::from_secs(60));
    let Command::Backup(b) = parsed(&["cairn", "backup", "zone1-101"]) else {
        panic!("not backup")
    };
    assert!(!b.job.allow_primary && !b.job.no_wait && !b.job.json);
    assert_eq!(b.job.pending_timeout, Duration::from_secs(30));
    assert_eq!((b.job.backup_engine, b.job.concurrency), (None, None));
}

#[test]
fn bad_names_are_usage_errors() {
    for args in [
        vec!["cairn", "get-shard", "commerce"],
        vec!["cairn", "get-shard", "com merce/0"],
        vec!["cairn", "init-shard-primary", "commerce/0", "zone1"],
        vec!["cairn", "remove-backup", "commerce/0", ".."],
        vec!["cairn", "get-tablets", "--keyspace", "a/b"],
        vec![
            "cairn",
            "tablet",
            "--tablet-uid",
            "1",
            "--init-keyspace",
            "k",
            "--init-shard",
            "0",
            "--init-tablet-type",
            "primary",
            "--tablet-dir",
            "/t",
            "--mysql-port",
            "1",
        ],
    ] {
        let e = Cli::try_parse_from(args.clone()).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{args:?}");
    }
}

/// Every command and subcommand has a man-style long help (what it does, what
/// it changes, examples), and every flag and argument says what it is.
#[test]
fn every_command_has_a_long_help_with_what_it_changes_and_examples() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let p = format!("{path} {}", sub.get_name());
            let long = sub
                .get_long_about()
                .map(|s| s.to_string())
                .unwrap_or_default();
            if !long.contains("Examples:\n  cairn ") && !long.contains("Examples:\n  source ") {
                problems.push(format!("{p}: no examples in its long help"));
            }
            let lower = long.to_lowercase();
            if sub.get_subcommands().next().is_none()
                && !lower.contains("changes:")
                && !lower.contains("changes nothing")
            {
                problems.push(format!("{p}: its long help does not say what it changes"));
            }
            for a in sub.get_arguments() {
                let id = a.get_id().as_str();
                if ["help", "version"].contains(&id) || a.is_global_set() {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    problems.push(format!("{p}: argument {id} has no help"));
                }
            }
            walk(sub, &p, problems);
        }
    }
    let mut problems = Vec::new();
    walk(&Cli::command(), "cairn", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
