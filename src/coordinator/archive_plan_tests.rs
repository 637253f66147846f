//! Table tests of the pure archiving rules in [`super`].

use cairn_topo::{ArchiveState, Health, ReplicationError, Tablet, Versioned};

use super::*;

fn at(s: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::seconds(s)
}

fn alias(uid: u32) -> TabletAlias {
    TabletAlias::new("zone1", uid).unwrap()
}

/// A tablet: `health` None = agent down; `lag` None = not replicating.
fn tablet(uid: u32, ty: TabletType, health: Option<(bool, Option<u64>, bool)>) -> TabletInfo {
    TabletInfo {
        tablet: Versioned {
            value: Tablet {
                alias: alias(uid),
                hostname: "h".into(),
                mysql_host: "h".into(),
                mysql_port: 1,
                port: 2,
                keyspace: "ks".into(),
                shard: "0".into(),
                tablet_type: ty,
                base_type: ty,
                flavor: "MariaDB".into(),
                tablet_dir: String::new(),
                started_at: at(0),
            },
            version: 1,
        },
        health: health.map(|(up, lag, failing)| Health {
            mysqld_up: up,
            replication_io_running: lag.is_some(),
            replication_sql_running: lag.is_some(),
            replication_lag_seconds: lag,
            serving: up,
            replication_error: failing.then(|| ReplicationError {
                thread: "sql".into(),
                errno: 1062,
                message: "dup".into(),
                seen_at: at(0),
            }),
            ..Health::default()
        }),
    }
}

#[test]
fn placement_prefers_a_healthy_replica_then_the_primary() {
    use TabletType::{Backup, Drained, Primary, Replica, Restore};
    let p = alias(101);
    // (what, tablets, want)
    let rows: Vec<(&str, Vec<TabletInfo>, Option<u32>)> = vec![
        (
            "least lag wins",
            vec![
                tablet(101, Primary, Some((true, None, false))),
                tablet(102, Replica, Some((true, Some(5), false))),
                tablet(103, Replica, Some((true, Some(0), false))),
            ],
            Some(103),
        ),
        (
            "equal lag: lowest alias",
            vec![
                tablet(103, Replica, Some((true, Some(0), false))),
                tablet(102, Replica, Some((true, Some(0), false))),
            ],
            Some(102),
        ),
        (
            "a dead replica is skipped",
            vec![
                tablet(101, Primary, Some((true, None, false))),
                tablet(102, Replica, None),
                tablet(103, Replica, Some((true, Some(9), false))),
            ],
            Some(103),
        ),
        (
            "a replica taking a backup is alive and may archive",
            vec![
                tablet(101, Primary, Some((true, None, false))),
                tablet(102, Backup, Some((true, None, false))),
            ],
            Some(102),
        ),
        (
            "failing replication, mysqld down, restoring, drained: the primary",
            vec![
                tablet(101, Primary, Some((true, None, false))),
                tablet(102, Replica, Some((true, Some(0), true))),
                tablet(103, Replica, Some((false, None, false))),
                tablet(104, Restore, Some((true, None, false))),
                tablet(105, Drained, Some((true, None, false))),
            ],
            Some(101),
        ),
        (
            "nothing alive",
            vec![tablet(101, Primary, None), tablet(102, Replica, None)],
            None,
        ),
    ];
    for (what, tablets, want) in rows {
        assert_eq!(place_archive(&tablets, Some(&p)), want.map(alias), "{what}");
    }
}

fn record() -> ArchiveRecord {
    ArchiveRecord {
        keyspace: "ks".into(),
        shard: "0".into(),
        interval_ms: 1000,
        created_at: at(0),
        updated_at: None,
        state: ArchiveState::default(),
        gaps: Vec::new(),
    }
}

fn job(id: &str, state: JobState, created: i64, finished: Option<i64>) -> Job {
    let mut j = Job::pending(JobKind::Archive, "ks", "0", &alias(102));
    j.id = id.into();
    j.state = state;
    j.created_at = at(created);
    j.finished_at = finished.map(at);
    j
}

#[test]
fn one_live_job_per_archived_shard() {
    use JobState::{Cancelled, Failed, Pending, Running};
    let r = record();
    let there = alias(103);
    let create = vec![ArchiveAction::Create(there.clone())];
    let cancel = |id: &str, why: &str| ArchiveAction::Cancel {
        job_id: id.into(),
        reason: why.into(),
    };
    // (what, archived, jobs, place, now, want)
    type Row = (
        &'static str,
        bool,
        Vec<Job>,
        Option<TabletAlias>,
        i64,
        Vec<ArchiveAction>,
    );
    let rows: Vec<Row> = vec![
        (
            "new archive",
            true,
            vec![],
            Some(there.clone()),
            10,
            create.clone(),
        ),
        ("no tablet alive", true, vec![], None, 10, vec![]),
        (
            "running: left alone",
            true,
            vec![job("a", Running, 0, None)],
            Some(there.clone()),
            10,
            vec![],
        ),
        (
            "pending: left alone",
            true,
            vec![job("a", Pending, 0, None)],
            Some(there.clone()),
            10,
            vec![],
        ),
        (
            "failed just now: wait the backoff",
            true,
            vec![job("a", Failed, 0, Some(9))],
            Some(there.clone()),
            10,
            vec![],
        ),
        (
            "failed a while ago: replaced",
            true,
            vec![job("a", Failed, 0, Some(5))],
            Some(there.clone()),
            10,
            create.clone(),
        ),
        (
            "removed: live jobs cancelled, final ones left",
            false,
            vec![
                job("a", Running, 0, None),
                job("b", Cancelled, 0, Some(1)),
                job("c", Pending, 1, None),
            ],
            Some(there.clone()),
            10,
            vec![
                cancel("a", "the shard's archive was removed"),
                cancel("c", "the shard's archive was removed"),
            ],
        ),
        (
            "two live: the older is cancelled",
            true,
            vec![job("b", Running, 5, None), job("a", Running, 0, None)],
            Some(there.clone()),
            10,
            vec![cancel("a", "the shard has a newer archive job b")],
        ),
    ];
    for (what, archived, jobs, place, now, want) in rows {
        let refs: Vec<&Job> = jobs.iter().collect();
        let got = plan_archive(archived.then_some(&r), &refs, place.as_ref(), at(now));
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn loss_window_is_zero_when_caught_up_else_since_safe() {
    let mut r = record();
    assert_eq!(loss_window(&r, Some("MariaDB/0-101-5"), at(100)), None);
    r.state.updated_at = Some(at(50));
    r.state.position = "0-101-5".into();
    r.state.safe_at = Some(at(97));
    // (primary position, now, want seconds)
    for (pos, now, want) in [
        (Some("MariaDB/0-101-5"), 100, 0),
        (Some("0-101-4"), 100, 0),
        (Some("MariaDB/0-101-6"), 100, 3),
        (None, 100, 3),
        (Some("MariaDB/0-101-6,1-101-1"), 110, 13),
        (Some("MariaDB/garbage"), 100, 3),
    ] {
        assert_eq!(
            loss_window(&r, pos, at(now)),
            Some(Duration::from_secs(want)),
            "{pos:?}"
        );
    }
    r.state.safe_at = None;
    assert_eq!(
        loss_window(&r, Some("MariaDB/0-101-6"), at(100)),
        Some(Duration::from_secs(100)),
        "never caught up: since the archive was set"
    );
}
