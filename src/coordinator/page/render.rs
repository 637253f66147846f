//! [`render`]: [`PageData`] into the HTML document.
//!
//! Pure; part of [`super`].

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::html::{badge, esc, redact};
use super::style::CSS;
use super::{timeline, JobView, PageData, ScheduleView, ShardView, REFRESH_SECONDS};
use crate::coordinator::recoverability::short_secs;
use cairn_topo::DrillResult;

/// The whole page.
pub fn render(d: &PageData) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>cairn: {}</title><style>{CSS}</style></head><body>",
        summary_title(d)
    );
    header(&mut s, d);
    s.push_str("<main>");
    shards(&mut s, d);
    jobs(&mut s, &d.jobs, d.now);
    schedules(&mut s, &d.schedules, d.now);
    s.push_str("</main></body></html>\n");
    s
}

fn counts(d: &PageData) -> [usize; 3] {
    let mut c = [0; 3];
    for sh in &d.shards {
        c[sh.picture.health.value() as usize] += 1;
    }
    c
}

fn summary_title(d: &PageData) -> String {
    let [_, amber, red] = counts(d);
    match (red, amber) {
        (0, 0) => "all shards green".into(),
        (0, a) => format!("{a} amber"),
        (r, _) => format!("{r} red"),
    }
}

fn header(s: &mut String, d: &PageData) {
    let role = if d.is_leader {
        "leader".to_string()
    } else {
        match &d.leader_id {
            Some(l) => format!("standby; leader {}", esc(l)),
            None => "standby".to_string(),
        }
    };
    let _ = write!(
        s,
        "<header><h1>cairn</h1><span>coordinator <b>{}</b> ({role})</span>",
        esc(&d.coordinator_id)
    );
    if !d.is_leader && d.leader_id.is_none() {
        s.push_str("<span class=\"badge red\" id=\"no-leader\">no coordinator leader</span>");
    }
    let [g, a, r] = counts(d);
    let _ = write!(
        s,
        "<span class=\"summary\"><span>{g} green</span><span>{a} amber</span><span>{r} red</span></span>\
         <span class=\"muted\">{} · reloads every {REFRESH_SECONDS}s</span></header>",
        d.now.format("%Y-%m-%d %H:%M:%S UTC")
    );
}

fn shards(s: &mut String, d: &PageData) {
    let _ = write!(s, "<h2>Shards ({})</h2>", d.shards.len());
    if d.shards.is_empty() {
        s.push_str("<p class=\"muted\">No shard in the topology yet.</p>");
        return;
    }
    s.push_str(
        "<p class=\"legend muted\">Timeline of the last 7 days: \
         <span><svg width=\"10\" height=\"10\"><circle class=\"m-full\" cx=\"5\" cy=\"5\" r=\"5\"/></svg> full</span>\
         <span><svg width=\"10\" height=\"10\"><circle class=\"m-verified\" cx=\"5\" cy=\"5\" r=\"5\"/></svg> verified</span>\
         <span><svg width=\"10\" height=\"10\"><circle class=\"m-failed\" cx=\"5\" cy=\"5\" r=\"5\"/></svg> drill failed</span>\
         <span><svg width=\"10\" height=\"10\"><rect class=\"m-incr\" x=\"3\" y=\"0\" width=\"3\" height=\"10\"/></svg> incremental</span></p>\
         <div class=\"grid\">",
    );
    for sh in &d.shards {
        shard(s, sh, d.now);
    }
    s.push_str("</div>");
}

fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    short_secs((now - t).num_milliseconds() as f64 / 1000.0)
}

fn shard(s: &mut String, v: &ShardView, now: DateTime<Utc>) {
    let p = &v.picture;
    let name = format!("{}/{}", p.keyspace, p.shard);
    let light = p.health.as_str();
    let _ = write!(
        s,
        "<section class=\"shard {light}\" data-shard=\"{n}\" data-health=\"{light}\">\
         <h3><span class=\"name\">{n}</span>{}</h3>",
        badge(p.health),
        n = esc(&name)
    );
    if !p.reasons.is_empty() {
        s.push_str("<ul class=\"reasons\">");
        for r in &p.reasons {
            let _ = write!(s, "<li>{}</li>", esc(&redact(r)));
        }
        s.push_str("</ul>");
    }
    s.push_str("<dl class=\"facts\">");
    let fact = |s: &mut String, k: &str, v: String| {
        let _ = write!(s, "<dt>{k}</dt><dd>{v}</dd>");
    };
    fact(
        s,
        "primary",
        v.primary.as_deref().map_or("<i>none</i>".into(), esc),
    );
    let newest = match (&p.newest_backup, p.newest_backup_age_seconds) {
        (Some(n), Some(age)) => {
            let limit = p.backup_max_age_seconds.map_or_else(
                || "no schedule".to_string(),
                |l| {
                    format!(
                        "max {} by {}",
                        short_secs(l),
                        esc(p.schedule.as_deref().unwrap_or("?"))
                    )
                },
            );
            format!(
                "<b class=\"age\">{} ago</b> <span class=\"muted\">({limit})</span><br><small>{}</small>",
                short_secs(age),
                esc(n)
            )
        }
        _ => "<i>none</i>".into(),
    };
    fact(s, "newest backup", newest);
    let drill = match &p.last_drill {
        None => "<i>never</i>".to_string(),
        Some(dr) => {
            let outcome = match dr.result {
                DrillResult::Succeeded => "<span class=\"badge green\">ok</span>",
                DrillResult::Failed => "<span class=\"badge red\">failed</span>",
            };
            let took = dr
                .seconds
                .map(|x| format!(" recovery time <b>{}</b>", short_secs(x)))
                .unwrap_or_default();
            let when = dr
                .verified_at
                .map(|t| format!(", verified {} ago", ago(t, now)))
                .unwrap_or_default();
            format!(
                "{outcome}{took}{when}<br><small>{}</small>",
                esc(&dr.backup)
            )
        }
    };
    fact(s, "last drill", drill);
    fact(
        s,
        "verified backup",
        p.newest_verified_backup_age_seconds
            .map_or("<i>none</i>".into(), |a| format!("{} old", short_secs(a))),
    );
    fact(
        s,
        "loss window",
        p.loss_window_seconds
            .map_or("<i>not archived</i>".into(), short_secs),
    );
    s.push_str("</dl><ul class=\"tablets\">");
    if v.tablets.is_empty() {
        s.push_str("<li class=\"muted\">no tablets</li>");
    }
    for t in &v.tablets {
        let _ = write!(
            s,
            "<li><span class=\"dot {l}\" title=\"{l}\"></span><b>{}</b> {} <span class=\"muted\">{}</span></li>",
            esc(&t.alias),
            esc(&t.tablet_type),
            esc(&redact(&t.note)),
            l = t.light.as_str()
        );
    }
    s.push_str("</ul>");
    s.push_str(&timeline::svg(&v.marks, now));
    s.push_str("</section>");
}

fn jobs(s: &mut String, jobs: &[JobView], now: DateTime<Utc>) {
    let _ = write!(s, "<h2>Running jobs ({})</h2>", jobs.len());
    if jobs.is_empty() {
        s.push_str("<p class=\"muted\">None.</p>");
        return;
    }
    s.push_str(
        "<div class=\"scroll\"><table id=\"jobs\"><tr><th>kind</th><th>shard</th><th>tablet</th>\
         <th>state</th><th>progress</th><th>running for</th><th>id</th></tr>",
    );
    for j in jobs {
        let pct = if j.bytes_total > 0 {
            (j.bytes_done as f64 / j.bytes_total as f64 * 100.0).min(100.0)
        } else {
            0.0
        };
        let progress = if j.bytes_total > 0 {
            format!(
                "<span class=\"bar\"><i style=\"width:{pct:.0}%\"></i></span> {pct:.0}% of {}",
                human_bytes(j.bytes_total)
            )
        } else if j.bytes_done > 0 {
            human_bytes(j.bytes_done)
        } else {
            "-".into()
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{progress}</td><td>{}</td><td class=\"muted\">{}</td></tr>",
            esc(&j.kind),
            esc(&j.keyspace),
            esc(&j.shard),
            esc(&j.tablet),
            esc(&j.state),
            j.started_at.map_or("-".into(), |t| ago(t, now)),
            esc(&j.id)
        );
    }
    s.push_str("</table></div>");
}

fn schedules(s: &mut String, list: &[ScheduleView], now: DateTime<Utc>) {
    let _ = write!(s, "<h2>Schedules ({})</h2>", list.len());
    if list.is_empty() {
        s.push_str("<p class=\"muted\">None: no shard has a promised backup.</p>");
        return;
    }
    s.push_str(
        "<div class=\"scroll\"><table id=\"schedules\"><tr><th>name</th><th>cron</th><th>target</th>\
         <th>kind</th><th>next run</th><th>last run</th></tr>",
    );
    for x in list {
        let next = if x.paused {
            "<span class=\"badge amber\">paused</span>".to_string()
        } else {
            x.next_run.map_or("-".into(), |t| {
                let secs = (t - now).num_seconds();
                if secs >= 0 {
                    format!(
                        "in {} <span class=\"muted\">({})</span>",
                        short_secs(secs as f64),
                        t.format("%m-%d %H:%M UTC")
                    )
                } else {
                    format!(
                        "due <span class=\"muted\">({})</span>",
                        t.format("%m-%d %H:%M UTC")
                    )
                }
            })
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{next}</td><td>{}</td></tr>",
            esc(&x.name),
            esc(&x.cron),
            esc(&x.target),
            if x.incremental { "incremental" } else { "full" },
            x.last_run.map_or("never".into(), |t| format!("{} ago", ago(t, now)))
        );
    }
    s.push_str("</table></div>");
}

/// `1.5 GiB`, `320 MiB`, `12 KiB`, `7 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
