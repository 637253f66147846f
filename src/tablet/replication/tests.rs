//! Table tests of the replication history: what a sequence of observations and
//! restarts makes of a replica (failing or not, errors counted, next restart), the
//! backoff, and which thread's error counts.

use super::*;

fn dup_key() -> ThreadError {
    ThreadError {
        errno: 1062,
        message: "Duplicate entry '7' for key 'PRIMARY'".into(),
    }
}

fn running() -> ReplicationView {
    ReplicationView {
        running: true,
        ..ReplicationView::default()
    }
}

fn sql_stopped() -> ReplicationView {
    ReplicationView {
        running: false,
        last_error: Some("SQL thread error 1062: Duplicate entry".into()),
        stop_error: Some(("sql", dup_key())),
    }
}

fn stopped_no_error() -> ReplicationView {
    ReplicationView::default()
}

/// One step of a replica's life, at a number of seconds after t0.
#[derive(Clone)]
enum Step {
    See(i64, ReplicationView),
    NotReplica(i64),
    Restart(i64),
}
use Step::*;

/// What the history says after the steps.
#[derive(Debug, PartialEq)]
struct After {
    failing: bool,
    /// New stops on an error that the caller counts.
    counted: u32,
    failed_restarts: u32,
    /// Seconds after t0 of the next allowed restart (`None`: at once).
    next_restart: Option<i64>,
    /// Seconds after t0 of the start of the current clean run.
    clean_since: Option<i64>,
}

#[test]
fn history_table() {
    let t0 = Utc::now();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let after = |failing, counted, failed_restarts, next_restart, clean_since| After {
        failing,
        counted,
        failed_restarts,
        next_restart,
        clean_since,
    };
    let cases: Vec<(&str, Vec<Step>, After)> = vec![
        (
            "never a problem",
            vec![See(0, running()), See(40, running())],
            after(false, 0, 0, None, Some(0)),
        ),
        (
            "stopped without an error (STOP SLAVE, connecting) is not a failure",
            vec![
                See(0, stopped_no_error()),
                Restart(1),
                See(2, stopped_no_error()),
            ],
            after(false, 0, 0, None, None),
        ),
        (
            "first stop on an error: failing, restart at once",
            vec![See(0, running()), See(5, sql_stopped())],
            after(true, 1, 0, None, None),
        ),
        (
            "the same stop seen on every tick is counted once",
            vec![
                See(0, sql_stopped()),
                See(1, sql_stopped()),
                See(2, sql_stopped()),
            ],
            after(true, 1, 0, None, None),
        ),
        (
            "runs again after the restart but not for long enough: still failing",
            vec![
                See(0, sql_stopped()),
                Restart(1),
                See(2, running()),
                See(31, running()),
            ],
            after(true, 1, 0, None, Some(2)),
        ),
        (
            "runs cleanly for the whole period after the restart: healthy again",
            vec![
                See(0, sql_stopped()),
                Restart(1),
                See(2, running()),
                See(32, running()),
            ],
            after(false, 1, 0, None, Some(2)),
        ),
        (
            // What a duplicate key does: the threads come up, then the SQL thread
            // meets the conflicting row again.
            "stopped again after a restart: backoff 2 s",
            vec![
                See(0, sql_stopped()),
                Restart(1),
                See(1, running()),
                See(2, sql_stopped()),
            ],
            after(true, 2, 1, Some(3), None),
        ),
        (
            "each failed restart doubles the wait",
            vec![
                See(0, sql_stopped()),
                Restart(1),
                See(2, sql_stopped()),
                Restart(3),
                See(4, sql_stopped()),
                See(5, sql_stopped()),
                Restart(10),
                See(10, sql_stopped()),
            ],
            after(true, 4, 3, Some(18), None),
        ),
        (
            "a clean period forgets the failed restarts",
            vec![
                See(0, sql_stopped()),
                Restart(1),
                See(2, sql_stopped()),
                Restart(3),
                See(4, running()),
                See(40, running()),
                See(41, sql_stopped()),
            ],
            after(true, 3, 0, None, None),
        ),
        (
            "a short clean run in between keeps the count",
            vec![
                See(0, sql_stopped()),
                Restart(1),
                See(2, sql_stopped()),
                Restart(3),
                See(4, running()),
                See(10, sql_stopped()),
            ],
            after(true, 3, 2, Some(7), None),
        ),
        (
            "not configured as a replica: no clean run, error kept",
            vec![See(0, sql_stopped()), NotReplica(1)],
            after(true, 1, 0, None, None),
        ),
    ];
    for (name, steps, want) in cases {
        let mut h = ReplicationHistory::default();
        let mut counted = 0;
        for step in steps {
            match step {
                See(s, v) => counted += u32::from(h.observe(at(s), Some(&v))),
                NotReplica(s) => counted += u32::from(h.observe(at(s), None)),
                Restart(s) => h.restarted(at(s)),
            }
        }
        let got = After {
            failing: h.error().is_some(),
            counted,
            failed_restarts: h.failed_restarts(),
            next_restart: h.next_restart_at().map(|t| (t - t0).num_seconds()),
            clean_since: h.clean_since().map(|t| (t - t0).num_seconds()),
        };
        assert_eq!(got, want, "case: {name}");
    }
}

#[test]
fn the_error_is_what_mysqld_said_and_reset_forgets_it() {
    let t0 = Utc::now();
    let mut h = ReplicationHistory::default();
    h.observe(t0, Some(&sql_stopped()));
    let e = h.error().cloned().unwrap();
    assert_eq!(
        (e.thread.as_str(), e.errno, e.message.as_str(), e.seen_at),
        ("sql", 1062, "Duplicate entry '7' for key 'PRIMARY'", t0)
    );
    h.reset();
    assert_eq!(h, ReplicationHistory::default());
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    // (failed restarts, wait in seconds)
    let cases = [
        (0, 0),
        (1, 2),
        (2, 4),
        (3, 8),
        (5, 32),
        (6, 60),
        (7, 60),
        (33, 60),
        (u32::MAX, 60),
    ];
    for (failed, secs) in cases {
        assert_eq!(
            restart_backoff(failed),
            Duration::from_secs(secs),
            "after {failed} failed restarts"
        );
    }
}

#[test]
fn view_keeps_only_the_error_of_a_stopped_thread() {
    let io_err = ThreadError {
        errno: 2003,
        message: "error connecting to master".into(),
    };
    // (IO running, SQL running, IO error, SQL error, running, stop error)
    let cases = [
        (true, true, None, None, true, None),
        // Left over from before a restart: both threads run again.
        (true, true, Some(&io_err), Some(dup_key()), true, None),
        (
            true,
            false,
            None,
            Some(dup_key()),
            false,
            Some(("sql", dup_key())),
        ),
        (
            false,
            true,
            Some(&io_err),
            None,
            false,
            Some(("io", io_err.clone())),
        ),
        // Both stopped: the SQL thread's error is the one that tells.
        (
            false,
            false,
            Some(&io_err),
            Some(dup_key()),
            false,
            Some(("sql", dup_key())),
        ),
        // The SQL thread runs; only the IO thread's error counts.
        (
            false,
            true,
            Some(&io_err),
            Some(dup_key()),
            false,
            Some(("io", io_err.clone())),
        ),
        (false, false, None, None, false, None),
    ];
    for (io, sql, io_error, sql_error, want_running, want_error) in cases {
        let s = ReplicationStatus {
            io_running: io,
            sql_running: sql,
            io_error: io_error.cloned(),
            sql_error: sql_error.clone(),
            last_error: Some("x".into()),
            ..ReplicationStatus::default()
        };
        let v = ReplicationView::from(&s);
        assert_eq!(v.running, want_running, "{s:?}");
        assert_eq!(v.stop_error, want_error, "{s:?}");
        assert_eq!(v.last_error.as_deref(), Some("x"));
    }
}
