//! Point-in-time apply against a real MariaDB (issue 10, item 4): binlog files
//! copied from a real mariadbd's data directory are read by `mysql::binlog` (the
//! first check of that reader against reality), planned by `backup::pitr` and
//! applied by `mariadb-binlog | mariadb` onto a second server, to a GTID and to a
//! second; a failing `mariadb-binlog` and a failing `mariadb` both fail the apply
//! with their own error text. Event times are set with `SET TIMESTAMP`, so the
//! test never sleeps.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::backup::pitr::{plan_apply, DownloadedIncremental, RestoreTarget};
use cairn::mysql::binlog::summarize;
use cairn::mysql::binlog_apply::BinlogApply;
use cairn::mysql::gtid::{format_gtid_list, parse_gtid_list, Gtid};
use cairn::mysql::mysqld::{server_id_for_uid, Mysqld, MysqldConfig};
use cairn_topo::testkit::free_port;
use chrono::{TimeZone, Utc};
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

const TEST_TIMEOUT: Duration = Duration::from_secs(180);
/// The fake clock of the source's events: row `i` is written at `T0 + 10 i`.
const T0: i64 = 1_800_000_000;

async fn with_timeout<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out");
}

/// SIGKILLs every mysqld serving `datadir` when dropped.
struct KillGuard {
    datadir: PathBuf,
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        let want = format!("--datadir={}", self.datadir.display());
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmd.split(|b| *b == 0).any(|a| a == want.as_bytes()) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

struct Server {
    mysqld: Mysqld,
    _guard: KillGuard,
    _dir: tempfile::TempDir,
}

async fn server(uid: u32) -> Server {
    let dir = tempfile::Builder::new()
        .prefix("cairn-pitr")
        .tempdir()
        .unwrap();
    let cfg = MysqldConfig::new(
        dir.path().join("t"),
        free_port().unwrap(),
        "127.0.0.1".into(),
        server_id_for_uid(uid),
    );
    let mut mysqld = Mysqld::new(cfg).expect("a MariaDB server on PATH");
    let guard = KillGuard {
        datadir: mysqld.data_dir(),
    };
    mysqld.init_if_needed().await.unwrap();
    mysqld.start().await.unwrap();
    Server {
        mysqld,
        _guard: guard,
        _dir: dir,
    }
}

fn gtid(seq: u64) -> Gtid {
    Gtid {
        domain: 0,
        server: server_id_for_uid(101),
        seq,
    }
}

fn ids(s: &str) -> String {
    s.to_string()
}

async fn rows(m: &Mysqld) -> String {
    let v: Option<Option<String>> = m
        .query_first("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.t")
        .await
        .unwrap();
    v.flatten().unwrap_or_default()
}

async fn apply(
    m: &Mysqld,
    dir: &Path,
    files: &[String],
    start: &str,
    stop: &str,
) -> anyhow::Result<()> {
    m.apply_binlogs(
        &BinlogApply {
            dir,
            files,
            start,
            stop,
        },
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binlogs_are_read_planned_and_applied_to_a_gtid_and_a_second() {
    with_timeout(async {
        let src = server(101).await;
        let dst = server(102).await;
        let m = &src.mysqld;
        m.set_read_only(false).await.unwrap();
        let mut c = m.conn().await.unwrap();
        c.query_drop(format!("SET TIMESTAMP = {T0}")).await.unwrap();
        c.query_drop("CREATE DATABASE app").await.unwrap();
        c.query_drop("CREATE TABLE app.t (id INT PRIMARY KEY, at BIGINT)")
            .await
            .unwrap();
        for i in 1..=6i64 {
            let at = T0 + 10 * i;
            c.query_drop(format!("SET TIMESTAMP = {at}")).await.unwrap();
            c.query_drop(format!("INSERT INTO app.t VALUES ({i}, {at})"))
                .await
                .unwrap();
            if i == 3 {
                c.query_drop("FLUSH BINARY LOGS").await.unwrap();
            }
        }
        c.query_drop("FLUSH BINARY LOGS").await.unwrap();
        let _ = c.disconnect().await;

        // Copy the closed binlogs (all but the active, last one) as a backup would.
        let data = m.data_dir();
        let mut names: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.strip_prefix("mysql-bin.")
                    .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        names.sort();
        names.pop();
        let copy = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for n in &names {
            std::fs::copy(data.join(n), copy.path().join(n)).unwrap();
            let f = std::fs::File::open(copy.path().join(n)).unwrap();
            let len = f.metadata().unwrap().len();
            let s = summarize(std::io::BufReader::new(f)).unwrap_or_else(|e| panic!("{n}: {e}"));
            // What reality says about the reader: every closed file is complete,
            // closed by a Rotate naming the next file, and has a Gtid_list.
            assert!(s.has_gtid_list, "{n}: {s:?}");
            assert!(s.closed, "{n}: {s:?}");
            assert_eq!(s.complete_len, len, "{n}");
            assert!(
                s.rotated_to
                    .as_deref()
                    .is_some_and(|r| r.starts_with("mysql-bin.")),
                "{n}: {s:?}"
            );
            assert!(
                s.server_version.contains("MariaDB"),
                "{n}: {}",
                s.server_version
            );
            files.push((n.clone(), s));
        }
        // Each file's Gtid_list is where the one before it ended.
        for w in files.windows(2) {
            assert_eq!(
                w[1].1.gtid_list,
                w[0].1.end_position(),
                "{} -> {}",
                w[0].0,
                w[1].0
            );
        }
        let txs: Vec<_> = files
            .iter()
            .flat_map(|(_, s)| s.transactions.clone())
            .collect();
        assert_eq!(
            txs.iter().map(|t| t.gtid).collect::<Vec<_>>(),
            (1..=8).map(gtid).collect::<Vec<_>>()
        );
        for (i, t) in txs.iter().enumerate().skip(2) {
            let at = (T0 + 10 * (i as i64 - 1)) as u32;
            assert_eq!((t.started, t.committed), (at, at), "row {}", i - 1);
        }
        assert_eq!(files.last().unwrap().1.end_position(), vec![gtid(8)]);

        let inc = vec![DownloadedIncremental {
            backup: "inc".into(),
            files,
        }];
        // To the GTID of row 4 (0-101-6), from an empty server.
        let to_pos = RestoreTarget::Position(vec![gtid(6)]);
        let plan = plan_apply(&[], &inc, &to_pos).unwrap();
        assert_eq!(plan.applied_to, vec![gtid(6)]);
        let d = &dst.mysqld;
        for s in &plan.steps {
            apply(
                d,
                copy.path(),
                &s.files,
                &format_gtid_list(&s.start),
                &format_gtid_list(&s.stop),
            )
            .await
            .unwrap();
        }
        assert_eq!(rows(d).await, ids("1,2,3,4"));
        assert_eq!(
            parse_gtid_list(&d.gtid_position().await.unwrap()).unwrap(),
            vec![gtid(6)]
        );

        // Then on to every transaction committed before row 6's second.
        let t6 = Utc.timestamp_opt(T0 + 60, 0).unwrap();
        let plan = plan_apply(&[gtid(6)], &inc, &RestoreTarget::Time(t6)).unwrap();
        assert_eq!(plan.applied_to, vec![gtid(7)]);
        assert_eq!(plan.last_commit, Some((T0 + 50) as u32));
        let step = &plan.steps[0];
        assert_eq!(
            (step.transactions, format_gtid_list(&step.stop)),
            (1, "0-101-7".to_string()),
            "{step:?}"
        );
        apply(
            d,
            copy.path(),
            &step.files,
            &format_gtid_list(&step.start),
            &format_gtid_list(&step.stop),
        )
        .await
        .unwrap();
        assert_eq!(rows(d).await, ids("1,2,3,4,5"));

        // The reader failing: a start the files never reach. Its own words come back.
        let err = apply(d, copy.path(), &step.files, "0-101-99", "")
            .await
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("mariadb-binlog exited with 1") && err.contains("ERROR"),
            "{err}"
        );
        // The client failing: row 5's transaction applied twice is refused by the
        // server (gtid_strict_mode: an out-of-order GTID).
        let err = apply(
            d,
            copy.path(),
            &step.files,
            &format_gtid_list(&step.start),
            &format_gtid_list(&step.stop),
        )
        .await
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("mariadb exited with 1") && err.contains("ERROR 1950"),
            "{err}"
        );
        assert_eq!(rows(d).await, ids("1,2,3,4,5"), "nothing more was applied");
    })
    .await;
}
