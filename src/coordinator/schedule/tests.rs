//! Table tests of the cron, target, due and stagger rules in [`super`].

use super::*;
use chrono::TimeZone;

pub(super) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn sched(cron: &str, created: &str, last_run: Option<&str>) -> Schedule {
    Schedule {
        name: "nightly".into(),
        cron: cron.into(),
        target: "commerce".into(),
        keep_count: None,
        keep_for_seconds: None,
        backup_engine: None,
        paused: false,
        last_run: last_run.map(t),
        next_run: None,
        created_at: t(created),
        skipped_runs: 0,
        last_skip_reason: None,
        last_skip_at: None,
        incremental: false,
        drill_cron: None,
        drill_last_run: None,
        drill_next_run: None,
        drill_to_now: false,
    }
}

#[test]
fn cron_with_five_or_six_fields() {
    let five = parse_cron("30 2 * * *").unwrap();
    assert_eq!(
        next_run(&five, t("2026-01-01T00:00:00Z")),
        Some(t("2026-01-01T02:30:00Z"))
    );
    let six = parse_cron("15 30 2 * * *").unwrap();
    assert_eq!(
        next_run(&six, t("2026-01-01T00:00:00Z")),
        Some(t("2026-01-01T02:30:15Z"))
    );
    let every_10s = parse_cron("*/10 * * * * *").unwrap();
    assert_eq!(
        next_run(&every_10s, t("2026-01-01T00:00:05Z")),
        Some(t("2026-01-01T00:00:10Z"))
    );
    // Strictly after.
    assert_eq!(
        next_run(&five, t("2026-01-01T02:30:00Z")),
        Some(t("2026-01-02T02:30:00Z"))
    );
    assert!(parse_cron("0 3 * * MON-FRI").is_ok());
}

#[test]
fn bad_cron_is_refused_with_a_reason() {
    for (expr, needle) in [
        ("* * * *", "4 fields"),
        ("", "0 fields"),
        ("* * * * * * *", "7 fields"),
        ("garbage", "1 fields"),
        ("a b c d e", "invalid cron"),
        ("61 * * * *", "invalid cron"),
        ("* 25 * * *", "invalid cron"),
        ("0 0 30 2 *", "never fires"),
        ("@daily x y z w", "nicknames"),
    ] {
        let e = parse_cron(expr).unwrap_err().to_string();
        assert!(e.contains(needle), "{expr:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn targets() {
    assert_eq!(
        parse_target("commerce").unwrap(),
        Target::Keyspace("commerce".into())
    );
    let s = parse_target("commerce/-80").unwrap();
    assert_eq!(
        s,
        Target::Shard {
            keyspace: "commerce".into(),
            shard: "-80".into()
        }
    );
    assert_eq!(s.to_string(), "commerce/-80");
    assert_eq!(s.keyspace(), "commerce");
    for bad in ["", "a/b/c", "com merce", "ks/", "/0", "ks/8 0", "k-s"] {
        assert!(parse_target(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn keyspace_targets_expand_to_the_current_shards() {
    let ks = Target::Keyspace("commerce".into());
    let now = vec!["80-".to_string(), "-80".to_string()];
    assert_eq!(
        expand_target(&ks, &now),
        vec![
            ("commerce".to_string(), "-80".to_string()),
            ("commerce".to_string(), "80-".to_string())
        ]
    );
    // A shard added later is part of the next run.
    let later = vec!["-80".to_string(), "80-".to_string(), "c0-".to_string()];
    assert_eq!(expand_target(&ks, &later).len(), 3);
    assert!(expand_target(&ks, &[]).is_empty());
    let one = parse_target("commerce/0").unwrap();
    assert_eq!(
        expand_target(&one, &[]),
        vec![("commerce".to_string(), "0".to_string())]
    );
}

#[test]
fn due_table() {
    // (cron, created, last_run, stored next_run, paused, now, expected slot)
    type Row = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        bool,
        &'static str,
        Option<&'static str>,
    );
    let rows: &[Row] = &[
        // Never ran, first slot after creation not reached yet.
        (
            "0 2 * * *",
            "2026-01-01T03:00:00Z",
            None,
            None,
            false,
            "2026-01-02T01:59:59Z",
            None,
        ),
        // Never ran, first slot reached exactly.
        (
            "0 2 * * *",
            "2026-01-01T03:00:00Z",
            None,
            None,
            false,
            "2026-01-02T02:00:00Z",
            Some("2026-01-02T02:00:00Z"),
        ),
        // Ran at the last slot: not due until the next.
        (
            "0 2 * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-02T02:00:00Z"),
            None,
            false,
            "2026-01-02T23:00:00Z",
            None,
        ),
        // Three days without a coordinator: one run, for the latest missed slot.
        (
            "0 2 * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-02T02:00:00Z"),
            None,
            false,
            "2026-01-05T12:00:00Z",
            Some("2026-01-05T02:00:00Z"),
        ),
        // Hourly, missed many: latest slot at or before now.
        (
            "0 * * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T01:00:00Z"),
            None,
            false,
            "2026-01-01T07:59:59Z",
            Some("2026-01-01T07:00:00Z"),
        ),
        // Paused: never due.
        (
            "0 * * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T01:00:00Z"),
            None,
            true,
            "2026-01-01T07:59:59Z",
            None,
        ),
        // Stored next_run postpones (set/resume at 07:30): the 07:00 slot is not made up.
        (
            "0 * * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T01:00:00Z"),
            Some("2026-01-01T08:00:00Z"),
            false,
            "2026-01-01T07:59:59Z",
            None,
        ),
        (
            "0 * * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T01:00:00Z"),
            Some("2026-01-01T08:00:00Z"),
            false,
            "2026-01-01T08:00:01Z",
            Some("2026-01-01T08:00:00Z"),
        ),
        // A stale stored next_run (earlier than the slot after last_run) never
        // makes a schedule due again.
        (
            "0 * * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T05:00:00Z"),
            Some("2026-01-01T02:00:00Z"),
            false,
            "2026-01-01T05:30:00Z",
            None,
        ),
        // Seconds.
        (
            "*/10 * * * * *",
            "2026-01-01T00:00:00Z",
            Some("2026-01-01T00:00:10Z"),
            None,
            false,
            "2026-01-01T00:00:35Z",
            Some("2026-01-01T00:00:30Z"),
        ),
    ];
    for (i, (cron, created, last, stored, paused, now, want)) in rows.iter().enumerate() {
        let mut s = sched(cron, created, *last);
        s.next_run = stored.map(t);
        s.paused = *paused;
        assert_eq!(due(&s, t(now)).unwrap(), want.map(t), "row {i}");
    }
}

#[test]
fn a_recorded_run_is_not_due_again_until_the_next_slot() {
    let cron = parse_cron("0 2 * * *").unwrap();
    let mut s = sched("0 2 * * *", "2026-01-01T00:00:00Z", None);
    let now = t("2026-01-09T10:00:00Z");
    let slot = due_with(&s, &cron, now).unwrap();
    assert_eq!(slot, t("2026-01-09T02:00:00Z"));
    record_run(&mut s, &cron, slot);
    assert_eq!(s.last_run, Some(slot));
    assert_eq!(s.next_run, Some(t("2026-01-10T02:00:00Z")));
    assert_eq!(due_with(&s, &cron, now), None);
    assert_eq!(due_with(&s, &cron, t("2026-01-10T01:59:59Z")), None);
    assert_eq!(
        due_with(&s, &cron, t("2026-01-10T02:00:00Z")),
        Some(t("2026-01-10T02:00:00Z"))
    );
    assert_eq!(upcoming(&s, &cron), Some(t("2026-01-10T02:00:00Z")));
}

#[test]
fn unparsable_stored_cron_is_an_error_naming_the_schedule() {
    let s = sched("nope", "2026-01-01T00:00:00Z", None);
    let e = due(&s, Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap()).unwrap_err();
    assert!(e.to_string().contains("schedule nightly"), "{e}");
}

#[test]
fn stagger_is_deterministic_within_the_window_and_spreads() {
    let w = Duration::from_secs(60);
    let a = stagger("nightly", "commerce", "-80", w);
    assert_eq!(a, stagger("nightly", "commerce", "-80", w));
    assert!(a < w);
    assert_eq!(
        stagger("nightly", "commerce", "-80", Duration::ZERO),
        Duration::ZERO
    );
    // Different shards of a keyspace land on different seconds (with 16 shards
    // in a minute some may share one, but not all of them).
    let shards: Vec<String> = (0..16).map(|i| format!("{:02x}-", i * 16)).collect();
    let secs: std::collections::HashSet<u64> = shards
        .iter()
        .map(|s| stagger("nightly", "commerce", s, w).as_secs())
        .collect();
    assert!(secs.len() > 8, "{secs:?}");
    for s in &shards {
        assert!(stagger("nightly", "commerce", s, w) < w);
    }
    // Separators matter.
    assert_ne!(
        stagger("a", "bc", "0", Duration::from_secs(3600)),
        stagger("ab", "c", "0", Duration::from_secs(3600))
    );
}

#[test]
fn usable_schedule_table() {
    // (cron, target, usable)
    let cases = [
        ("0 2 * * *", "commerce", true),
        ("*/5 * * * * *", "commerce/-80", true),
        ("not a cron", "commerce", false),
        ("", "commerce", false),
        ("0 0 30 2 *", "commerce", false),
        ("@daily", "commerce", false),
        ("0 2 * * *", "", false),
        ("0 2 * * *", "a/b/c", false),
        ("0 2 * * *", "bad keyspace!", false),
    ];
    for (cron, target, usable) in cases {
        let mut s = sched(cron, "2024-01-01T00:00:00Z", None);
        s.target = target.into();
        let got = usable_schedule(&s);
        assert_eq!(
            got.is_ok(),
            usable,
            "cron {cron:?}, target {target:?}: {got:?}"
        );
        if let Err(e) = got {
            assert!(e.0.contains("nightly"), "names the schedule: {e}");
        }
    }
}
