//! The inline SVG timeline of a shard's backups over the last days: one mark per
//! backup at its backup time (full, incremental, verified, failed drill,
//! unreadable), a line per day. No script, no external file.
//!
//! Pure; part of [`super`].

use chrono::{DateTime, Duration, Utc};

use super::html::esc;
use super::TimelineMark;

/// Days the timeline covers, ending now.
pub const TIMELINE_DAYS: i64 = 7;

const W: f64 = 700.0;
const H: f64 = 46.0;
const PAD: f64 = 6.0;

/// What one mark looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A complete full backup.
    Full,
    /// A full backup whose drill succeeded.
    Verified,
    /// A backup whose last drill failed.
    DrillFailed,
    /// An incremental backup.
    Incremental,
    /// An unreadable or incomplete backup.
    Bad,
}

impl MarkKind {
    fn class(self) -> &'static str {
        match self {
            MarkKind::Full => "m-full",
            MarkKind::Verified => "m-verified",
            MarkKind::DrillFailed => "m-failed",
            MarkKind::Incremental => "m-incr",
            MarkKind::Bad => "m-bad",
        }
    }

    fn label(self) -> &'static str {
        match self {
            MarkKind::Full => "full",
            MarkKind::Verified => "full, verified by a drill",
            MarkKind::DrillFailed => "drill failed",
            MarkKind::Incremental => "incremental",
            MarkKind::Bad => "unreadable or incomplete",
        }
    }
}

/// The x of `t` on a timeline ending at `now`; `None` outside it.
pub fn x_of(t: DateTime<Utc>, now: DateTime<Utc>) -> Option<f64> {
    let span = Duration::days(TIMELINE_DAYS).num_seconds() as f64;
    let from_start = (t - (now - Duration::days(TIMELINE_DAYS))).num_seconds() as f64;
    if !(0.0..=span).contains(&from_start) {
        return None;
    }
    Some(PAD + from_start / span * (W - 2.0 * PAD))
}

/// The SVG of `marks` (backups outside the window are left out).
pub fn svg(marks: &[TimelineMark], now: DateTime<Utc>) -> String {
    let mut s = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {W} {H}\" \
         role=\"img\" aria-label=\"backups over the last {TIMELINE_DAYS} days\">"
    );
    s.push_str(&format!(
        "<line class=\"axis\" x1=\"{PAD}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\"/>",
        y = H - 14.0,
        x2 = W - PAD
    ));
    for d in 0..=TIMELINE_DAYS {
        let t = now - Duration::days(TIMELINE_DAYS - d);
        if let Some(x) = x_of(t, now) {
            s.push_str(&format!(
                "<line class=\"day\" x1=\"{x:.1}\" y1=\"2\" x2=\"{x:.1}\" y2=\"{y}\"/>",
                y = H - 14.0
            ));
            let label = if d == TIMELINE_DAYS {
                "now".to_string()
            } else {
                format!("-{}d", TIMELINE_DAYS - d)
            };
            let anchor = if d == TIMELINE_DAYS { "end" } else { "middle" };
            s.push_str(&format!(
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"{anchor}\">{label}</text>",
                x = x.max(12.0),
                y = H - 2.0
            ));
        }
    }
    for m in marks {
        let Some(x) = x_of(m.at, now) else { continue };
        let title = format!(
            "<title>{} ({}) {}</title>",
            esc(&m.name),
            m.kind.label(),
            m.at.format("%Y-%m-%d %H:%M UTC")
        );
        let y = H - 14.0;
        let shape = match m.kind {
            MarkKind::Incremental => format!(
                "<rect class=\"{c}\" x=\"{x0:.1}\" y=\"{y0}\" width=\"3\" height=\"10\">{title}</rect>",
                c = m.kind.class(),
                x0 = x - 1.5,
                y0 = y - 10.0
            ),
            _ => format!(
                "<circle class=\"{c}\" cx=\"{x:.1}\" cy=\"{cy}\" r=\"6\">{title}</circle>",
                c = m.kind.class(),
                cy = y - 12.0
            ),
        };
        s.push_str(&shape);
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_inside_the_window_only_and_escaped() {
        let now = Utc::now();
        let at = |h: i64| now - Duration::hours(h);
        assert_eq!(x_of(now, now), Some(W - PAD));
        assert_eq!(x_of(at(TIMELINE_DAYS * 24), now), Some(PAD));
        assert_eq!(x_of(at(TIMELINE_DAYS * 24 + 1), now), None);
        assert_eq!(x_of(now + Duration::hours(1), now), None);
        let marks = [
            TimelineMark {
                name: "<b>".into(),
                at: at(2),
                kind: MarkKind::Verified,
            },
            TimelineMark {
                name: "old".into(),
                at: at(24 * 30),
                kind: MarkKind::Full,
            },
            TimelineMark {
                name: "i".into(),
                at: at(1),
                kind: MarkKind::Incremental,
            },
        ];
        let s = svg(&marks, now);
        assert!(s.contains("&lt;b&gt;") && !s.contains("<b>"), "{s}");
        assert_eq!(s.matches("<circle").count(), 1, "{s}");
        assert_eq!(s.matches("class=\"m-incr\"").count(), 1, "{s}");
        assert!(!s.contains("old"), "{s}");
    }
}
