//! Table tests of the storage flags: every backend's flags, in their three
//! spellings, resolve to a storage or fail with one line naming the flag.

use clap::Parser;

use super::*;
use crate::cli::args::{Cli, Command};

/// The storage flags in their three spellings resolve to a storage, or fail
/// with one line naming the flag (a usage error, exit 2).
#[test]
fn storage_flags_resolve_or_name_the_flag() {
    let s3 = ["--backup-storage-implementation", "s3"];
    let cases: &[(Vec<&str>, Result<&str, &str>)] = &[
        (vec!["--file-backup-storage-root", "/b"], Ok("/b")),
        (
            [&s3[..], &["--s3-backup-storage-bucket", "bkt"]].concat(),
            Ok("s3://bkt"),
        ),
        (
            vec![
                "-backup_storage_implementation=s3",
                "-s3_backup_storage_bucket=bkt",
                "--s3_backup_storage_root=/team/cairn/",
                "-s3_backup_aws_endpoint",
                "http://127.0.0.1:9000",
                "-s3_backup_force_path_style",
                "--s3-backup-aws-retries=-1",
                "--s3-backup-server-side-encryption=AES256",
                "--s3-backup-aws-region=eu-west-1",
            ],
            Ok("s3://bkt/team/cairn"),
        ),
        (
            s3.to_vec(),
            Err("--s3-backup-storage-bucket is required with --backup-storage-implementation s3"),
        ),
        (
            vec![
                "--file-backup-storage-root",
                "/b",
                "--s3-backup-storage-bucket",
                "bkt",
            ],
            Err("--s3-backup-storage-bucket needs --backup-storage-implementation s3"),
        ),
        (
            [&s3[..], &["--s3-backup-storage-bucket", "b"]].concat(),
            Err("--s3-backup-storage-bucket: invalid bucket name"),
        ),
        (
            [
                &s3[..],
                &[
                    "--s3-backup-storage-bucket",
                    "bkt",
                    "--s3-backup-storage-root",
                    "a/../b",
                ],
            ]
            .concat(),
            Err("--s3-backup-storage-root: invalid key prefix"),
        ),
        (
            [
                &s3[..],
                &[
                    "--s3-backup-storage-bucket",
                    "bkt",
                    "--s3-backup-aws-endpoint",
                    "ftp://x",
                ],
            ]
            .concat(),
            Err("--s3-backup-aws-endpoint: invalid URL"),
        ),
        (
            [
                &s3[..],
                &[
                    "--s3-backup-storage-bucket",
                    "bkt",
                    "--s3-backup-aws-region",
                    "a b",
                ],
            ]
            .concat(),
            Err("--s3-backup-aws-region: invalid region"),
        ),
    ];
    for (flags, want) in cases {
        let mut argv = vec!["cairn".to_string(), "list-backups".into(), "ks/0".into()];
        argv.extend(flags.iter().map(|s| s.to_string()));
        let argv = crate::cli::args::normalize_args(argv);
        let Command::ListBackups(a) = Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"))
            .command
        else {
            panic!("not list-backups")
        };
        match (storage_config(&a.storage, true), want) {
            (Ok(cfg), Ok(w)) => assert_eq!(cfg.describe(), *w, "{flags:?}"),
            (Err(e), Err(w)) => {
                assert!(e.downcast_ref::<UsageError>().is_some(), "{flags:?}: {e}");
                assert!(e.to_string().starts_with(w), "{flags:?}: {e}");
            }
            (got, _) => panic!("{flags:?}: got {:?}", got.map(|c| c.describe())),
        }
    }
    // Values clap refuses itself (exit 2 before anything runs).
    for bad in [
        ["--s3-backup-server-side-encryption", "aes256"],
        ["--s3-backup-aws-retries", "many"],
        ["--s3-backup-aws-retries", "-2"],
        ["--backup-storage-implementation", "gcs"],
    ] {
        let argv = ["cairn", "list-backups", "ks/0", bad[0], bad[1]];
        assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
    }
}

#[test]
fn tablet_concurrency_bounds_s3_parts_in_flight() {
    let cfg = S3Config::new("bkt");
    let StorageConfig::S3(got) = with_concurrency(StorageConfig::S3(cfg), 7) else {
        panic!("not s3")
    };
    assert_eq!(got.concurrency, 7);
}
