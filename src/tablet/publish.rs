//! How often the agent writes to etcd, as pure decisions: a job's progress at most
//! once per `--job-progress-interval` and only when it moved ([`should_publish`];
//! the final figures go with the job's outcome), and Health at the health interval
//! and on a change, never an unchanged copy between ticks ([`health_write_due`]).
//!
//! Every write is a revision etcd keeps until it compacts: a backup of an hour
//! reporting every second would write 3,600 of them.
//!
//! Pure; the job runner (`jobs.rs`) and the health loop (`health.rs`) call it.

use std::time::{Duration, Instant};

use cairn_topo::Health;

/// Whether to publish a job's progress now: it `changed` since the last
/// publication and at least `every` has passed since it (the first publication
/// waits for nothing).
pub(super) fn should_publish(
    last: Option<Instant>,
    now: Instant,
    changed: bool,
    every: Duration,
) -> bool {
    match last {
        None => changed,
        Some(l) => changed && now.saturating_duration_since(l) >= every,
    }
}

/// What makes the agent want to write Health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HealthTrigger {
    /// The health loop's tick, every `--health-interval`.
    Tick,
    /// A change the agent knows of (a job ended, the Shard changed, a restore
    /// step): published at once if Health changed.
    Event,
}

/// The last Health written: when, under which lease, and what (its
/// `updated_at` cleared, so two copies compare by content).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Written {
    /// When it was written.
    pub at: Instant,
    /// The lease it was written under (a new lease means a new key).
    pub lease: i64,
    /// Its content, without `updated_at`.
    pub health: Health,
}

/// `h` without its write time, to compare content.
pub(super) fn content(h: &Health) -> Health {
    Health {
        updated_at: None,
        ..h.clone()
    }
}

/// Whether to write Health `now`: always when none was written yet, under
/// another lease (the old key went with it), or with other content; an unchanged
/// copy only on a tick, and only when the last write is at least half an
/// interval old (so a change published just before the tick is not written twice
/// in a row, and `updated_at` is never older than two intervals).
pub(super) fn health_write_due(
    last: Option<&Written>,
    lease: i64,
    health: &Health,
    now: Instant,
    interval: Duration,
    trigger: HealthTrigger,
) -> bool {
    let Some(last) = last else { return true };
    if last.lease != lease || last.health != content(health) {
        return true;
    }
    trigger == HealthTrigger::Tick && now.saturating_duration_since(last.at) >= interval / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_published_when_it_moved_and_the_interval_passed() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let every = s(10);
        // (what, last published secs before now, changed, publish)
        let cases: &[(&str, Option<u64>, bool, bool)] = &[
            ("first figures", None, true, true),
            ("nothing to say yet", None, false, false),
            ("moved, too soon", Some(3), true, false),
            ("moved, just in time", Some(10), true, true),
            ("moved, late", Some(60), true, true),
            ("unchanged, however long", Some(600), false, false),
        ];
        for (what, ago, changed, want) in cases {
            let now = t0 + s(1000);
            let last = ago.map(|a| now - s(a));
            assert_eq!(should_publish(last, now, *changed, every), *want, "{what}");
        }
    }

    #[test]
    fn health_is_written_at_the_interval_and_on_a_change() {
        let t0 = Instant::now() + Duration::from_secs(1000);
        let ms = Duration::from_millis;
        let interval = ms(2000);
        let up = Health {
            mysqld_up: true,
            serving: true,
            gtid_position: Some("MariaDB/0-1-5".into()),
            ..Health::default()
        };
        let moved = Health {
            gtid_position: Some("MariaDB/0-1-6".into()),
            ..up.clone()
        };
        let written = |ago: u64, lease: i64| Written {
            at: t0 - ms(ago),
            lease,
            health: content(&up),
        };
        use HealthTrigger::{Event, Tick};
        // (what, last written (ms ago, lease), health now, trigger, write)
        type Case<'a> = (&'a str, Option<(u64, i64)>, &'a Health, HealthTrigger, bool);
        let cases: Vec<Case> = vec![
            ("nothing written yet", None, &up, Event, true),
            (
                "a tick, unchanged, an interval later",
                Some((2000, 7)),
                &up,
                Tick,
                true,
            ),
            (
                "a tick, unchanged, a bit early (timer jitter)",
                Some((1900, 7)),
                &up,
                Tick,
                true,
            ),
            (
                "a tick right after an event's write",
                Some((300, 7)),
                &up,
                Tick,
                false,
            ),
            ("an event, unchanged", Some((5000, 7)), &up, Event, false),
            (
                "an event, changed, right after a write",
                Some((10, 7)),
                &moved,
                Event,
                true,
            ),
            ("a tick, changed", Some((10, 7)), &moved, Tick, true),
            (
                "another lease: the key is new",
                Some((10, 8)),
                &up,
                Event,
                true,
            ),
        ];
        for (what, last, health, trigger, want) in cases {
            let last = last.map(|(ago, lease)| written(ago, lease));
            let got = health_write_due(last.as_ref(), 7, health, t0, interval, trigger);
            assert_eq!(got, want, "{what}");
        }
        // The write time alone is not a change.
        let stamped = Health {
            updated_at: Some(chrono::Utc::now()),
            ..up.clone()
        };
        assert!(!health_write_due(
            Some(&written(10, 7)),
            7,
            &stamped,
            t0,
            interval,
            Event
        ));
    }
}
