//! Table tests of the role decisions: every branch of [`plan_role`] and
//! [`plan_replication`], as the agent behaves today.

use super::*;

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
        last_error: None,
    };
    let broken = ReplicationView {
        running: false,
        last_error: Some("Error connecting".into()),
    };
    let stopped = ReplicationView {
        running: false,
        last_error: None,
    };
    let start = |adopt: bool, why: Option<&str>| ReplicationAction::Start {
        adopt_binlog_position: adopt,
        restart_reason: why.map(str::to_string),
    };
    let wanted = replica_of(2);
    // (current role, what mysqld reports, expected action)
    let cases: Vec<(Role, Option<&ReplicationView>, ReplicationAction)> = vec![
        // Already following the wanted primary with both threads up.
        (wanted.clone(), Some(&running), ReplicationAction::Nothing),
        // Same primary, threads down: restart, saying why.
        (
            wanted.clone(),
            Some(&broken),
            start(false, Some("Error connecting")),
        ),
        (
            wanted.clone(),
            Some(&stopped),
            start(false, Some("threads stopped")),
        ),
        (wanted.clone(), None, start(false, Some("threads stopped"))),
        // A new primary (or none before): point at it.
        (replica_of(3), Some(&running), start(false, None)),
        (Role::Orphan, None, start(false, None)),
        (Role::Unknown, Some(&running), start(false, None)),
        // A demoted primary adopts its own binlog position first.
        (Role::Primary, None, start(true, None)),
        (Role::Primary, Some(&running), start(true, None)),
    ];
    for (current, view, want) in cases {
        assert_eq!(
            plan_replication(&current, &wanted, view),
            want,
            "current {current:?}, replication {view:?}"
        );
    }
}

#[test]
fn replication_view_needs_both_threads() {
    let mut s = ReplicationStatus {
        io_running: true,
        sql_running: true,
        last_error: Some("x".into()),
        ..ReplicationStatus::default()
    };
    assert!(ReplicationView::from(&s).running);
    s.sql_running = false;
    let v = ReplicationView::from(&s);
    assert!(!v.running);
    assert_eq!(v.last_error.as_deref(), Some("x"));
}
