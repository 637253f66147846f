//! Table tests of the skipped-run rules in [`super`].

use super::super::tests::{sched, t};
use super::super::{parse_cron, SlotSkip};
use super::*;
use cairn_topo::JobState;
use cairn_topo::{JobKind, TabletAlias};

fn given_up(ks: &str, shard: &str, reason: &str) -> GivenUp {
    GivenUp {
        keyspace: ks.into(),
        shard: shard.into(),
        reason: reason.into(),
    }
}

fn job(shard: &str) -> Job {
    Job::pending(
        JobKind::Backup,
        "ks",
        shard,
        &TabletAlias::new("zone1", 101).unwrap(),
    )
}

fn no_tablet() -> Blocked {
    Blocked::NoTablet {
        why: "no tablets".into(),
    }
}

fn busy() -> Blocked {
    Blocked::Busy {
        job: "j0".into(),
        state: JobState::Running,
    }
}

#[test]
fn a_shard_without_a_tablet_waits_half_the_period_after_its_delay() {
    let slot = t("2026-01-01T10:00:00Z");
    // (cron, stagger delay, give-up time)
    let rows = [
        ("0 * * * *", 0, "2026-01-01T10:30:00Z"),
        ("0 * * * *", 20, "2026-01-01T10:30:20Z"),
        ("0 10 * * *", 0, "2026-01-01T22:00:00Z"),
        ("*/10 * * * * *", 3, "2026-01-01T10:00:08Z"),
        // Uneven: 10:00 then 10:03; half of the 3 minutes to the next slot.
        ("0,3 10 * * *", 0, "2026-01-01T10:01:30Z"),
    ];
    for (cron, delay, want) in rows {
        let c = parse_cron(cron).unwrap();
        assert_eq!(
            give_up_at(&c, slot, Duration::from_secs(delay)),
            t(want),
            "{cron} delay {delay}s"
        );
    }
}

#[test]
fn settle_table() {
    let cron = parse_cron("0 * * * *").unwrap();
    let slot = t("2026-01-01T10:00:00Z");
    let plan = |done: bool| SlotPlan {
        slot,
        shards: vec![],
        start: vec![],
        skip: if done {
            vec![]
        } else {
            vec![(
                "ks".into(),
                "c0".into(),
                SlotSkip::Waiting {
                    until: t("2026-01-01T10:00:20Z"),
                },
            )]
        },
        done,
    };
    let out = |shard: &str, r: Result<Job, Blocked>| {
        ("ks".to_string(), shard.to_string(), Duration::ZERO, r)
    };
    let early = t("2026-01-01T10:05:00Z");
    let late = t("2026-01-01T10:30:00Z");
    // (what, plan done, earlier, outcomes, now,
    //  created shards, given-up shards, waiting shards, done)
    type Row<'a> = (
        &'a str,
        bool,
        Vec<GivenUp>,
        Vec<(String, String, Duration, Result<Job, Blocked>)>,
        DateTime<Utc>,
        Vec<&'a str>,
        Vec<&'a str>,
        Vec<&'a str>,
        bool,
    );
    let rows: Vec<Row> = vec![
        (
            "every shard starts: done",
            true,
            vec![],
            vec![out("a", Ok(job("a"))), out("b", Ok(job("b")))],
            early,
            vec!["a", "b"],
            vec![],
            vec![],
            true,
        ),
        (
            "a busy shard is given up at once",
            true,
            vec![],
            vec![out("a", Ok(job("a"))), out("b", Err(busy()))],
            early,
            vec!["a"],
            vec!["b"],
            vec![],
            true,
        ),
        (
            "no tablet before the give-up time: waits, the slot stays open",
            true,
            vec![],
            vec![out("a", Ok(job("a"))), out("b", Err(no_tablet()))],
            early,
            vec!["a"],
            vec![],
            vec!["b"],
            false,
        ),
        (
            "no tablet at the give-up time: given up, done",
            true,
            vec![],
            vec![out("b", Err(no_tablet()))],
            late,
            vec![],
            vec!["b"],
            vec![],
            true,
        ),
        (
            "a shard given up earlier is not looked at again, and stays counted",
            true,
            vec![given_up("ks", "b", "busy before")],
            vec![out("a", Ok(job("a"))), out("b", Ok(job("b")))],
            early,
            vec!["a"],
            vec!["b"],
            vec![],
            true,
        ),
        (
            "shards still in their stagger delay keep the slot open",
            false,
            vec![],
            vec![out("b", Err(busy()))],
            early,
            vec![],
            vec!["b"],
            vec![],
            false,
        ),
    ];
    for (what, plan_done, earlier, outcomes, now, create, gone, waiting, done) in rows {
        let s = settle(&plan(plan_done), &cron, &earlier, outcomes, now);
        let shards = |v: Vec<&String>| v.into_iter().cloned().collect::<Vec<_>>();
        assert_eq!(
            shards(s.create.iter().map(|j| &j.shard).collect()),
            create,
            "{what}: created"
        );
        assert_eq!(
            shards(s.given_up.iter().map(|g| &g.shard).collect()),
            gone,
            "{what}: given up"
        );
        assert_eq!(
            shards(s.waiting.iter().map(|w| &w.1).collect()),
            waiting,
            "{what}: waiting"
        );
        assert_eq!(s.done, done, "{what}: done");
    }
    // The reasons are the blocked ones, in words.
    let s = settle(
        &plan(true),
        &cron,
        &[],
        vec![out("b", Err(busy())), out("c", Err(no_tablet()))],
        late,
    );
    assert_eq!(
        s.given_up,
        vec![
            given_up("ks", "b", "backup job j0 of the shard is still RUNNING"),
            given_up("ks", "c", "no eligible tablet (no tablets)"),
        ]
    );
    // A waiting shard says until when.
    let s = settle(
        &plan(true),
        &cron,
        &[],
        vec![out("c", Err(no_tablet()))],
        early,
    );
    assert_eq!(
        s.waiting,
        vec![("ks".into(), "c".into(), t("2026-01-01T10:30:00Z"))]
    );
}

#[test]
fn skipped_shards_are_counted_on_the_schedule() {
    let now = t("2026-01-01T10:30:00Z");
    // (what, skipped before, given up, skipped after, last reason)
    type Row<'a> = (&'a str, u64, Vec<GivenUp>, u64, Option<String>);
    let rows: Vec<Row> = vec![
        ("nothing given up: unchanged", 4, vec![], 4, None),
        (
            "one shard",
            0,
            vec![given_up("ks", "-80", "no eligible tablet (no tablets)")],
            1,
            Some("ks/-80: no eligible tablet (no tablets)".into()),
        ),
        (
            "two shards",
            7,
            vec![
                given_up("ks", "-80", "no eligible tablet (no tablets)"),
                given_up("ks", "80-", "busy"),
            ],
            9,
            Some("ks/-80: no eligible tablet (no tablets) (and 1 more shard)".into()),
        ),
        (
            "three shards",
            0,
            vec![
                given_up("ks", "a", "x"),
                given_up("ks", "b", "y"),
                given_up("ks", "c", "z"),
            ],
            3,
            Some("ks/a: x (and 2 more shards)".into()),
        ),
        (
            "a reason on several lines becomes one",
            0,
            vec![given_up("ks", "a", "x\ny")],
            1,
            Some("ks/a: x y".into()),
        ),
    ];
    for (what, before, gone, after, reason) in rows {
        let mut s = sched("0 * * * *", "2026-01-01T00:00:00Z", None);
        s.skipped_runs = before;
        record_skips(&mut s, &gone, now);
        assert_eq!(s.skipped_runs, after, "{what}");
        assert_eq!(s.last_skip_reason, reason, "{what}");
        assert_eq!(s.last_skip_at, (!gone.is_empty()).then_some(now), "{what}");
    }
    // A long reason is cut.
    let mut s = sched("0 * * * *", "2026-01-01T00:00:00Z", None);
    record_skips(&mut s, &[given_up("ks", "a", &"x".repeat(2000))], now);
    let r = s.last_skip_reason.unwrap();
    assert_eq!(r.chars().count(), REASON_MAX_CHARS);
    assert!(r.ends_with('…'), "{r}");
}

#[test]
fn a_refusal_is_counted_once_per_reason() {
    let t1 = t("2026-01-01T10:00:00Z");
    let t2 = t("2026-01-01T11:00:00Z");
    let mut s = sched("* * * * * *", "2026-01-01T00:00:00Z", None);
    // (what, reason, now, changed, skipped after, last skip at)
    let rows = [
        ("first refusal", "too often", t1, true, 1, t1),
        (
            "the same again: nothing written",
            "too often",
            t2,
            false,
            1,
            t1,
        ),
        ("another reason", "bad target", t2, true, 2, t2),
        ("the first reason again", "too often", t2, true, 3, t2),
    ];
    for (what, reason, now, changed, after, at) in rows {
        assert_eq!(note_refusal(&mut s, reason, now), changed, "{what}");
        assert_eq!(s.skipped_runs, after, "{what}");
        assert_eq!(s.last_skip_reason.as_deref(), Some(reason), "{what}");
        assert_eq!(s.last_skip_at, Some(at), "{what}");
    }
}
