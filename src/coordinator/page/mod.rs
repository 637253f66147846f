//! The coordinator's status page, `/`: one server-rendered HTML document with
//! inline CSS and no script, that reloads itself (`<meta http-equiv=refresh>`).
//! Every keyspace/shard with its primary, tablets and their health, the newest
//! backup and its age against the schedule (green/amber/red), the last drill and
//! its recovery time, the loss window, an SVG timeline of its backups; the
//! running jobs with their progress; the schedules with their next run.
//!
//! Pure: [`PageData`] in ([`data::from_view`] builds it from the coordinator's
//! view), an HTML string out ([`render`]). Every string that came from etcd is
//! escaped, and error messages are shown with credentials hidden; no storage
//! key, flag or secret is on the page.
//!
//! May call: [`super::recoverability`] (the pictures and lights), [`super::cache`]
//! (read only, in `data`).

pub mod data;
pub mod html;
mod render;
pub mod style;
pub mod timeline;

use chrono::{DateTime, Utc};

pub use render::render;
pub use timeline::MarkKind;

use super::recoverability::{Light, ShardPicture};

/// Seconds between the page's reloads.
pub const REFRESH_SECONDS: u32 = 15;

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct PageData {
    /// When it was put together.
    pub now: DateTime<Utc>,
    /// This coordinator's `--id`.
    pub coordinator_id: String,
    /// Whether it leads.
    pub is_leader: bool,
    /// Who leads, as far as it knows.
    pub leader_id: Option<String>,
    /// Every shard, sorted.
    pub shards: Vec<ShardView>,
    /// Jobs not yet final.
    pub jobs: Vec<JobView>,
    /// Every schedule.
    pub schedules: Vec<ScheduleView>,
}

/// One shard's card.
#[derive(Debug, Clone)]
pub struct ShardView {
    /// Backup ages, drills, loss window and the shard's light.
    pub picture: ShardPicture,
    /// The primary's alias.
    pub primary: Option<String>,
    /// The shard's tablets, sorted by alias.
    pub tablets: Vec<TabletView>,
    /// Its backups, for the timeline.
    pub marks: Vec<TimelineMark>,
}

/// One tablet line.
#[derive(Debug, Clone, PartialEq)]
pub struct TabletView {
    pub alias: String,
    /// `PRIMARY`, `REPLICA`, …
    pub tablet_type: String,
    pub light: Light,
    /// One short phrase: `serving`, `lag 3s`, `agent down`, …
    pub note: String,
}

/// One backup on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineMark {
    pub name: String,
    pub at: DateTime<Utc>,
    pub kind: MarkKind,
}

/// One running or pending job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    pub keyspace: String,
    pub shard: String,
    pub tablet: String,
    pub state: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub started_at: Option<DateTime<Utc>>,
}

/// One schedule line.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleView {
    pub name: String,
    pub cron: String,
    pub target: String,
    pub paused: bool,
    pub incremental: bool,
    pub last_run: Option<DateTime<Utc>>,
    pub next_run: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests;
