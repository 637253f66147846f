//! The minimum schedule period: how close together a cron's slots come
//! ([`shortest_gap`]) and the refusal of a cron that fires more often than
//! `--min-schedule-period` allows ([`check_min_period`]). `schedule set` refuses
//! such a cron before anything is written; the coordinator refuses a stored one
//! (written with a lower minimum, or by hand) and does not run it.
//!
//! Pure; part of [`super`] (the schedule rules).

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;

use super::{next_run, InvalidSchedule};
use crate::coordinator::retention::human;

/// `--min-schedule-period`'s default: every run writes to etcd (its job, its
/// backup record) and takes a replica out of service, so a cron firing every few
/// seconds by mistake is refused.
pub const DEFAULT_MIN_SCHEDULE_PERIOD: Duration = Duration::from_secs(300);

/// [`shortest_gap`] looks at no more than this many slots…
pub const GAP_HORIZON_SLOTS: usize = 10_000;

/// …and no further than this after its start (four years: a leap day included).
pub const GAP_HORIZON_DAYS: i64 = 4 * 366;

/// The shortest interval between consecutive slots of `cron` after `from`, and the
/// slot that starts it, looking at the first [`GAP_HORIZON_SLOTS`] slots within
/// [`GAP_HORIZON_DAYS`]. The scan stops at the first gap below `stop_below`
/// (which is then returned; `Duration::ZERO` scans the whole horizon). `None` when
/// fewer than two slots fall in the horizon (a cron that fires once a decade has
/// no gap worth refusing).
///
/// A horizon, not a proof: a cron whose closest slots only come after it (e.g.
/// two slots on the same day of a year far away) is not caught; every cron that
/// repeats daily, hourly or faster is.
pub fn shortest_gap(
    cron: &Cron,
    from: DateTime<Utc>,
    stop_below: Duration,
) -> Option<(Duration, DateTime<Utc>)> {
    let end = from + chrono::Duration::days(GAP_HORIZON_DAYS);
    let mut prev = next_run(cron, from)?;
    let mut best: Option<(Duration, DateTime<Utc>)> = None;
    for _ in 0..GAP_HORIZON_SLOTS {
        let Some(next) = next_run(cron, prev) else {
            break;
        };
        if next > end {
            break;
        }
        let gap = (next - prev).to_std().unwrap_or(Duration::ZERO);
        if best.is_none_or(|(b, _)| gap < b) {
            best = Some((gap, prev));
            if gap < stop_below {
                break;
            }
        }
        prev = next;
    }
    best
}

/// Refuses a cron whose slots come closer together than `min` (see
/// [`shortest_gap`], scanned from `from`): the error names the gap, where it is,
/// and `--min-schedule-period`. `expr` is the cron as written, for the message.
pub fn check_min_period(
    expr: &str,
    cron: &Cron,
    min: Duration,
    from: DateTime<Utc>,
) -> Result<(), InvalidSchedule> {
    match shortest_gap(cron, from, min) {
        Some((gap, at)) if gap < min => Err(InvalidSchedule(format!(
            "cron {expr:?} fires {} apart (from {}), more often than --min-schedule-period {} \
             allows",
            human(gap),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            human(min)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_cron;
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const FROM: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn the_shortest_gap_of_a_cron() {
        let m = |n: u64| Some(Duration::from_secs(n * 60));
        let h = |n: u64| m(n * 60);
        // (cron, shortest gap over the horizon)
        let cases: &[(&str, Option<Duration>)] = &[
            ("* * * * * *", Some(Duration::from_secs(1))),
            ("*/10 * * * * *", Some(Duration::from_secs(10))),
            ("* * * * *", m(1)),
            ("*/5 * * * *", m(5)),
            ("0 * * * *", h(1)),
            ("0 2 * * *", h(24)),
            // Uneven: 02:00 and 02:03 each day.
            ("0,3 2 * * *", m(3)),
            // Across midnight: 23:58 then 00:01 the next day.
            ("1,58 0,23 * * *", m(3)),
            // Weekdays only: the shortest is a day, not the weekend's three.
            ("0 3 * * MON-FRI", h(24)),
            // The last day of a month then the first of the next: a day apart.
            ("0 0 1,31 * *", h(24)),
            // Once a year: one gap in four years' horizon, a year long at least.
            ("0 0 1 1 *", Some(Duration::from_secs(365 * 86_400))),
        ];
        for (expr, want) in cases {
            let cron = parse_cron(expr).unwrap();
            let got = shortest_gap(&cron, t(FROM), Duration::ZERO).map(|(g, _)| g);
            assert_eq!(got, *want, "{expr}");
        }
    }

    #[test]
    fn the_scan_stops_at_the_first_gap_below_the_bound_and_says_where() {
        // 02:00, 02:03 then every hour from 03:00: the first short gap is at 02:00.
        let cron = parse_cron("0,3 2 * * *").unwrap();
        let (gap, at) = shortest_gap(&cron, t(FROM), Duration::from_secs(300)).unwrap();
        assert_eq!(gap, Duration::from_secs(180));
        assert_eq!(at, t("2026-01-01T02:00:00Z"));
    }

    #[test]
    fn a_cron_below_the_minimum_is_refused_naming_the_flag() {
        let five_m = Duration::from_secs(300);
        // (cron, minimum, refused)
        let cases: &[(&str, Duration, bool)] = &[
            ("* * * * * *", five_m, true),
            ("* * * * *", five_m, true),
            ("*/4 * * * *", five_m, true),
            ("*/5 * * * *", five_m, false),
            ("0 * * * *", five_m, false),
            ("0 2 * * *", five_m, false),
            ("0,3 2 * * *", five_m, true),
            ("0 0,23 * * *", Duration::from_secs(2 * 3600), true),
            ("0 0,12 * * *", Duration::from_secs(2 * 3600), false),
            ("* * * * * *", Duration::from_secs(1), false),
            ("0 0 1 1 *", Duration::from_secs(86_400), false),
        ];
        for (expr, min, refused) in cases {
            let cron = parse_cron(expr).unwrap();
            let got = check_min_period(expr, &cron, *min, t(FROM));
            assert_eq!(got.is_err(), *refused, "{expr} min {min:?}: {got:?}");
            if let Err(e) = got {
                let e = e.to_string();
                assert!(
                    e.contains(&format!("--min-schedule-period {}", human(*min))),
                    "{e}"
                );
                assert!(e.contains(&format!("{expr:?}")), "{e}");
                assert!(!e.contains('\n'), "{e}");
            }
        }
        let cron = parse_cron("*/30 * * * * *").unwrap();
        assert_eq!(
            check_min_period("*/30 * * * * *", &cron, five_m, t(FROM))
                .unwrap_err()
                .to_string(),
            "cron \"*/30 * * * * *\" fires 30s apart (from 2026-01-01T00:00:30Z), more often \
             than --min-schedule-period 5m allows"
        );
    }
}
