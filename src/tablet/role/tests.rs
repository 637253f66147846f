//! Table tests of the role decisions: every branch of [`plan_role`] and
//! [`plan_replication`] (backoff included), as the agent behaves today.

use super::*;
use crate::mysql::flavor::ThreadError;

fn alias(uid: u32) -> TabletAlias {
    TabletAlias {
        cell: "zone1".into(),
        uid,
    }
}

fn replica_of(uid: u32) -> Role {
    Role::Replica {
        primary: alias(uid),
        host: "db".into(),
        port: 3300 + uid as u16,
    }
}

#[test]
fn plan_role_table() {
    let me = alias(1);
    let other = alias(2);
    // (current role, shard's primary, expected action)
    let cases: Vec<(Role, Option<&TabletAlias>, RoleAction)> = vec![
        // The shard names this tablet primary.
        (Role::Primary, Some(&me), RoleAction::StayPrimary),
        (Role::Unknown, Some(&me), RoleAction::BecomePrimary),
        (Role::Orphan, Some(&me), RoleAction::BecomePrimary),
        (replica_of(2), Some(&me), RoleAction::BecomePrimary),
        // No primary: read-only only if it may be writable.
        (
            Role::Unknown,
            None,
            RoleAction::GoOrphan {
                set_read_only: true,
            },
        ),
        (
            Role::Primary,
            None,
            RoleAction::GoOrphan {
                set_read_only: true,
            },
        ),
        (
            Role::Orphan,
            None,
            RoleAction::GoOrphan {
                set_read_only: false,
            },
        ),
        (
            replica_of(2),
            None,
            RoleAction::GoOrphan {
                set_read_only: false,
            },
        ),
        // Another primary: follow it.
        (
            Role::Unknown,
            Some(&other),
            RoleAction::Follow {
                set_read_only: true,
                primary: other.clone(),
            },
        ),
        (
            Role::Primary,
            Some(&other),
            RoleAction::Follow {
                set_read_only: true,
                primary: other.clone(),
            },
        ),
        (
            Role::Orphan,
            Some(&other),
            RoleAction::Follow {
                set_read_only: false,
                primary: other.clone(),
            },
        ),
        (
            replica_of(3),
            Some(&other),
            RoleAction::Follow {
                set_read_only: false,
                primary: other.clone(),
            },
        ),
    ];
    for (current, primary, want) in cases {
        assert_eq!(
            plan_role(&me, &current, primary),
            want,
            "current {current:?}, shard primary {primary:?}"
        );
    }
}

#[test]
fn role_actions_publish_primary_or_the_base_type() {
    let base = TabletType::Replica;
    assert_eq!(
        RoleAction::StayPrimary.tablet_type(base),
        TabletType::Primary
    );
    assert_eq!(
        RoleAction::BecomePrimary.tablet_type(base),
        TabletType::Primary
    );
    assert_eq!(
        RoleAction::GoOrphan {
            set_read_only: false
        }
        .tablet_type(TabletType::Rdonly),
        TabletType::Rdonly
    );
    assert_eq!(
        RoleAction::Follow {
            set_read_only: true,
            primary: alias(2)
        }
        .tablet_type(base),
        base
    );
}

#[test]
fn plan_replication_table() {
    let running = ReplicationView {
        running: true,
        ..ReplicationView::default()
    };
    let broken = ReplicationView {
        running: false,
        last_error: Some("Error connecting".into()),
        stop_error: Some((
            "io",
            ThreadError {
                errno: 2003,
                message: "Error connecting".into(),
            },
        )),
    };
    let stopped = ReplicationView::default();
    let start = |adopt: bool, why: Option<&str>| ReplicationAction::Start {
        adopt_binlog_position: adopt,
        restart_reason: why.map(str::to_string),
    };
    let t0 = Utc::now();
    let fresh = ReplicationHistory::default();
    // Restarted at t0, and the threads stopped again on an error: backoff 2 s.
    let mut failed_once = ReplicationHistory::default();
    failed_once.restarted(t0);
    assert!(failed_once.observe(t0, Some(&broken)));
    let until = t0 + chrono::Duration::seconds(2);
    let wanted = replica_of(2);
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    // (current role, what mysqld reports, history, now, expected action)
    type Case<'a> = (
        Role,
        Option<&'a ReplicationView>,
        &'a ReplicationHistory,
        DateTime<Utc>,
        ReplicationAction,
    );
    let cases: Vec<Case> = vec![
        // Already following the wanted primary with both threads up.
        (
            wanted.clone(),
            Some(&running),
            &fresh,
            t0,
            ReplicationAction::Nothing,
        ),
        (
            wanted.clone(),
            Some(&running),
            &failed_once,
            t0,
            ReplicationAction::Nothing,
        ),
        // Same primary, threads down, no failed restart yet: restart, saying why.
        (
            wanted.clone(),
            Some(&broken),
            &fresh,
            t0,
            start(false, Some("Error connecting")),
        ),
        (
            wanted.clone(),
            Some(&stopped),
            &fresh,
            t0,
            start(false, Some("threads stopped")),
        ),
        (
            wanted.clone(),
            None,
            &fresh,
            t0,
            start(false, Some("threads stopped")),
        ),
        // The last restart stopped again: wait out the backoff, then restart.
        (
            wanted.clone(),
            Some(&broken),
            &failed_once,
            at(1),
            ReplicationAction::Wait { until },
        ),
        (
            wanted.clone(),
            Some(&broken),
            &failed_once,
            at(2),
            start(false, Some("Error connecting")),
        ),
        // A new primary (or none before): point at it at once, backoff or not.
        (
            replica_of(3),
            Some(&running),
            &fresh,
            t0,
            start(false, None),
        ),
        (
            replica_of(3),
            Some(&broken),
            &failed_once,
            at(1),
            start(false, None),
        ),
        (Role::Orphan, None, &fresh, t0, start(false, None)),
        (
            Role::Unknown,
            Some(&running),
            &fresh,
            t0,
            start(false, None),
        ),
        // A demoted primary adopts its own binlog position first.
        (Role::Primary, None, &fresh, t0, start(true, None)),
        (Role::Primary, Some(&running), &fresh, t0, start(true, None)),
    ];
    for (current, view, history, now, want) in cases {
        assert_eq!(
            plan_replication(&current, &wanted, view, history, now),
            want,
            "current {current:?}, replication {view:?}, history {history:?}, now {now}"
        );
    }
}
