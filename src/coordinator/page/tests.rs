use std::time::Duration;

use cairn_topo::{Health, ReplicationError, TabletType};
use chrono::Utc;

use super::data::tablet_light;
use super::*;
use crate::coordinator::recoverability::{picture, SchedulePeriod};

fn shard(name: &str, light_age_hours: Option<u64>) -> ShardView {
    let now = Utc::now();
    let sched = SchedulePeriod {
        name: "nightly".into(),
        target: "ks".into(),
        period: Duration::from_secs(24 * 3600),
    };
    let mut p = picture(
        "ks",
        name,
        &[],
        Some(&sched),
        Some(Duration::from_secs(5)),
        now,
    );
    if let Some(h) = light_age_hours {
        p.newest_backup = Some(format!("backup-of-{name}"));
        p.newest_backup_age_seconds = Some((h * 3600) as f64);
        let (l, _) = crate::coordinator::recoverability::backup_light(
            Some(Duration::from_secs(h * 3600)),
            Some(Duration::from_secs(24 * 3600)),
        );
        p.health = l;
        p.reasons.clear();
    }
    ShardView {
        picture: p,
        primary: Some("zone1-0000000101".into()),
        tablets: vec![TabletView {
            alias: "zone1-0000000101".into(),
            tablet_type: "PRIMARY".into(),
            light: Light::Green,
            note: "serving".into(),
        }],
        marks: vec![],
    }
}

fn page(shards: Vec<ShardView>) -> PageData {
    PageData {
        now: Utc::now(),
        coordinator_id: "c1".into(),
        is_leader: true,
        leader_id: Some("c1".into()),
        shards,
        jobs: vec![JobView {
            id: "j<1>".into(),
            kind: "BACKUP".into(),
            keyspace: "ks".into(),
            shard: "0".into(),
            tablet: "zone1-0000000102".into(),
            state: "RUNNING".into(),
            bytes_done: 512,
            bytes_total: 1024,
            started_at: Some(Utc::now()),
        }],
        schedules: vec![ScheduleView {
            name: "nightly".into(),
            cron: "0 2 * * *".into(),
            target: "ks".into(),
            paused: false,
            incremental: false,
            last_run: None,
            next_run: Some(Utc::now() + chrono::Duration::hours(3)),
        }],
    }
}

#[test]
fn shards_carry_their_light_and_names_are_escaped() {
    let mut evil = shard("<img src=x>", None);
    evil.picture.reasons = vec!["fetch s3://me:hunter2@host/b failed".into()];
    let html = render(&page(vec![
        shard("fresh", Some(2)),
        shard("stale", Some(72)),
        evil,
    ]));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("http-equiv=\"refresh\""));
    assert!(html.contains("name=\"viewport\""));
    assert!(
        html.contains("data-shard=\"ks/fresh\" data-health=\"green\""),
        "{html}"
    );
    assert!(
        html.contains("data-shard=\"ks/stale\" data-health=\"red\""),
        "{html}"
    );
    assert!(!html.contains("<img"), "unescaped name");
    assert!(html.contains("ks/&lt;img src=x&gt;"));
    assert!(!html.contains("hunter2"), "a password on the page");
    assert!(html.contains("j&lt;1&gt;"));
    assert!(html.contains("50%"), "job progress");
    assert!(html.contains("<svg class=\"timeline\""));
    // No script, no external resource.
    assert!(!html.contains("<script"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("no-leader"));
}

#[test]
fn a_standby_without_a_leader_says_so() {
    let mut d = page(vec![]);
    d.is_leader = false;
    d.leader_id = None;
    let html = render(&d);
    assert!(html.contains("no coordinator leader"), "{html}");
    assert!(html.contains("No shard in the topology yet"));
}

#[test]
fn tablet_lights() {
    let healthy = Health {
        mysqld_up: true,
        replication_io_running: true,
        replication_sql_running: true,
        replication_lag_seconds: Some(2),
        serving: true,
        ..Health::default()
    };
    let lagging = Health {
        replication_lag_seconds: Some(3600),
        ..healthy.clone()
    };
    let stopped = Health {
        replication_sql_running: false,
        ..healthy.clone()
    };
    let down = Health {
        mysqld_up: false,
        ..healthy.clone()
    };
    let failing = Health {
        replication_error: Some(ReplicationError {
            thread: "sql".into(),
            errno: 1062,
            message: "dup".into(),
            seen_at: Utc::now(),
        }),
        ..healthy.clone()
    };
    let not_serving = Health {
        serving: false,
        ..healthy.clone()
    };
    // (type, health, light, note contains)
    let cases = [
        (TabletType::Primary, Some(&healthy), Light::Green, "serving"),
        (
            TabletType::Primary,
            Some(&not_serving),
            Light::Amber,
            "not serving",
        ),
        (TabletType::Replica, Some(&healthy), Light::Green, "lag 2s"),
        (
            TabletType::Replica,
            Some(&lagging),
            Light::Amber,
            "lag 3600s",
        ),
        (TabletType::Replica, Some(&stopped), Light::Amber, "stopped"),
        (TabletType::Replica, Some(&failing), Light::Red, "1062"),
        (TabletType::Rdonly, Some(&down), Light::Red, "mysqld down"),
        (TabletType::Spare, None, Light::Red, "agent down"),
        (TabletType::Backup, Some(&stopped), Light::Green, "job"),
        (TabletType::Drained, Some(&healthy), Light::Amber, "drained"),
    ];
    for (t, h, light, note) in cases {
        let (l, n) = tablet_light(t, h);
        assert_eq!(l, light, "{t} {n}");
        assert!(n.contains(note), "{t}: {n}");
    }
}
