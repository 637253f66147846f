use super::*;
use cairn_topo::engines::BackupMethod;
use chrono::TimeZone;

fn h(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn record(name: &str, hours_ago: i64) -> BackupRecord {
    let t = now() - chrono::Duration::hours(hours_ago);
    BackupRecord {
        finished_time: Some(t + chrono::Duration::minutes(10)),
        size_bytes: 1,
        ..BackupRecord::full(
            name,
            "ks",
            "0",
            "zone1-0000000101",
            BackupMethod::Builtin,
            t,
            "MariaDB/0-1-1",
        )
    }
}

fn drilled(mut b: BackupRecord, ok: bool) -> BackupRecord {
    b.drill_result = Some(if ok {
        DrillResult::Succeeded
    } else {
        DrillResult::Failed
    });
    b.drill_seconds = Some(42.0);
    if ok {
        b.verified_at = Some(now());
    } else {
        b.drill_error = Some("table t1 is corrupt".into());
    }
    b
}

#[test]
fn backup_lights_against_the_schedule() {
    // (age, limit, light)
    let cases = [
        (Some(h(1)), Some(h(24)), Light::Green),
        (Some(h(24)), Some(h(24)), Light::Green),
        (Some(h(25)), Some(h(24)), Light::Amber),
        (Some(h(48)), Some(h(24)), Light::Amber),
        (Some(h(49)), Some(h(24)), Light::Red),
        (None, Some(h(24)), Light::Red),
        (Some(h(1)), None, Light::Amber),
        (None, None, Light::Amber),
    ];
    for (age, limit, want) in cases {
        let (got, why) = backup_light(age, limit);
        assert_eq!(got, want, "{age:?} {limit:?}");
        assert_eq!(
            why.is_none(),
            want == Light::Green,
            "{age:?} {limit:?} {why:?}"
        );
    }
}

#[test]
fn drill_lights() {
    let last = |result| LastDrill {
        backup: "b1".into(),
        result,
        seconds: Some(3.0),
        verified_at: None,
        error: Some("boom".into()),
    };
    assert_eq!(drill_light(None).0, Light::Green);
    assert_eq!(
        drill_light(Some(&last(DrillResult::Succeeded))).0,
        Light::Green
    );
    let (l, why) = drill_light(Some(&last(DrillResult::Failed)));
    assert_eq!(l, Light::Red);
    assert!(why.unwrap().contains("b1 failed: boom"));
}

#[test]
fn pictures_of_shards() {
    let daily = SchedulePeriod {
        name: "nightly".into(),
        target: "ks".into(),
        period: h(24),
    };
    let old = record("old", 60);
    let fresh = record("fresh", 2);
    let mut incr = record("incr", 1);
    incr.incremental = true;
    let mut unreadable = record("bad", 1);
    unreadable.state = BackupRecordState::Unreadable;
    unreadable.complete = false;
    let old_ok = drilled(record("old", 60), true);
    let fresh_failed = drilled(record("fresh", 2), false);
    // (backups, schedule, light, newest, verified, last drill failed)
    type Case<'a> = (
        Vec<&'a BackupRecord>,
        Option<&'a SchedulePeriod>,
        Light,
        Option<&'a str>,
        Option<&'a str>,
        Option<bool>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![&old, &fresh],
            Some(&daily),
            Light::Green,
            Some("fresh"),
            None,
            None,
        ),
        (
            vec![&old],
            Some(&daily),
            Light::Red,
            Some("old"),
            None,
            None,
        ),
        // Incrementals and unreadable backups are not full backups.
        (
            vec![&old, &incr, &unreadable],
            Some(&daily),
            Light::Red,
            Some("old"),
            None,
            None,
        ),
        (vec![], Some(&daily), Light::Red, None, None, None),
        (vec![&fresh], None, Light::Amber, Some("fresh"), None, None),
        (
            vec![&old_ok, &fresh],
            Some(&daily),
            Light::Green,
            Some("fresh"),
            Some("old"),
            Some(false),
        ),
        // The newest drilled backup is the last drill: it failed, red.
        (
            vec![&old_ok, &fresh_failed],
            Some(&daily),
            Light::Red,
            Some("fresh"),
            Some("old"),
            Some(true),
        ),
    ];
    for (i, (backups, sched, light, newest, verified, failed)) in cases.into_iter().enumerate() {
        let p = picture("ks", "0", &backups, sched, Some(h(1)), now());
        assert_eq!(p.health, light, "case {i}: {:?}", p.reasons);
        assert_eq!(p.newest_backup.as_deref(), newest, "case {i}");
        assert_eq!(p.newest_verified_backup.as_deref(), verified, "case {i}");
        assert_eq!(
            p.last_drill
                .as_ref()
                .map(|d| d.result == DrillResult::Failed),
            failed,
            "case {i}"
        );
        assert_eq!(p.loss_window_seconds, Some(3600.0));
    }
    // The limit is the period plus the usual duration (10 minutes here).
    let p = picture("ks", "0", &[&fresh], Some(&daily), None, now());
    assert_eq!(p.backup_max_age_seconds, Some((24 * 3600 + 600) as f64));
    assert_eq!(p.newest_backup_age_seconds, Some(7200.0));
    assert_eq!(p.schedule.as_deref(), Some("nightly"));
}

#[test]
fn schedules_that_promise_full_backups() {
    let sched = |name: &str, cron: &str, target: &str| Schedule {
        name: name.into(),
        cron: cron.into(),
        target: target.into(),
        keep_count: None,
        keep_for_seconds: None,
        backup_engine: None,
        paused: false,
        last_run: None,
        next_run: None,
        created_at: now(),
        skipped_runs: 0,
        last_skip_reason: None,
        last_skip_at: None,
        incremental: false,
        drill_cron: None,
        drill_to_now: false,
        drill_last_run: None,
        drill_next_run: None,
    };
    let mut paused = sched("paused", "0 * * * *", "ks");
    paused.paused = true;
    let mut incr = sched("incr", "*/5 * * * *", "ks");
    incr.incremental = true;
    let all = [
        sched("nightly", "0 2 * * *", "ks"),
        sched("six", "0 */6 * * *", "ks/0"),
        sched("weekdays", "0 2 * * 1-5", "other"),
        sched("garbage", "not a cron", "ks"),
        paused,
        incr,
    ];
    let periods = schedule_periods(&all, now());
    let names: Vec<&str> = periods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["nightly", "six", "weekdays"]);
    assert_eq!(periods[2].period, h(72));
    // (keyspace, shard, schedule)
    let cases = [
        ("ks", "0", Some("six")),
        ("ks", "1", Some("nightly")),
        ("other", "0", Some("weekdays")),
        ("none", "0", None),
    ];
    for (ks, shard, want) in cases {
        let got = expectation(&periods, ks, shard).map(|p| p.name.as_str());
        assert_eq!(got, want, "{ks}/{shard}");
    }
}

#[test]
fn short_durations() {
    let cases = [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (61, "1m1s"),
        (3600, "1h"),
        (3660, "1h1m"),
        (86400, "1d"),
        (90000, "1d1h"),
        (86460, "1d"),
    ];
    for (s, want) in cases {
        assert_eq!(short_duration(Duration::from_secs(s)), want, "{s}");
    }
    assert_eq!(short_secs(-5.0), "0s");
}
