//! Which tablet of a shard to back up, and which to run a restore drill on: pure
//! functions over plain data, shared by `cairn backup-shard` / `cairn drill` and
//! the coordinator's scheduler.
//!
//! Eligible: REPLICA, RDONLY or SPARE tablets whose Health is present, mysqld up,
//! no replication failure reported (the agent keeps the error that stopped a thread
//! until replication has run cleanly for a while after it), both replication threads
//! running, lag known and at most the threshold, and not busy with a job. Among them the least lag wins, then the most advanced GTID
//! position, then the lowest alias (a stable order). The PRIMARY is a fallback only
//! when allowed. Why each tablet was passed over is reported, so "no tablet
//! available" always says why.
//!
//! A drill ([`select_drill_tablet`]) takes the same eligibility without the
//! primary fallback: a SPARE first (it serves nobody), else a REPLICA or RDONLY,
//! least lag, lowest alias, and only where the disk has room: a tablet whose
//! Health reports `data_free_bytes` below what the drill needs
//! ([`crate::backup::drill::drill_room_required`], the rule the agent's own
//! check uses) is passed over, saying how much it needs and has. A tablet that
//! does not report it (an older agent) stays eligible: its own check still
//! refuses a drill its disk cannot hold.
//!
//! Owns no IO; calls `cairn-topo`'s record types and `backup::drill`'s pure
//! space rule.

use cairn_topo::typed::TabletInfo;
use cairn_topo::{Job, JobKind, TabletAlias, TabletType};

use crate::backup::drill::human_bytes;

/// How the reason of a tablet passed over for a drill for lack of disk starts.
pub const NO_ROOM: &str = "not enough disk: ";

/// The outcome of a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Back up this tablet.
    Tablet(TabletAlias),
    /// Nobody is eligible; one reason per tablet.
    None(Vec<(TabletAlias, String)>),
}

/// Knobs of the selection.
#[derive(Debug, Clone)]
pub struct SelectOptions {
    /// Fall back to the primary when no replica is eligible.
    pub allow_primary: bool,
    /// Replicas lagging more than this are passed over.
    pub max_lag_seconds: u64,
}

/// Why `t` may not be backed up, or `None` if it may (primaries are judged apart).
fn ineligible(t: &TabletInfo, opts: &SelectOptions) -> Option<String> {
    let ty = t.tablet.value.tablet_type;
    if !matches!(
        ty,
        TabletType::Replica | TabletType::Rdonly | TabletType::Spare
    ) {
        return Some(format!("type {ty}"));
    }
    let Some(h) = &t.health else {
        return Some("no health (agent down)".into());
    };
    if !h.mysqld_up {
        return Some("mysqld down".into());
    }
    if let Some(job) = &h.busy_job {
        return Some(format!("busy with job {job}"));
    }
    if let Some(e) = &h.replication_error {
        // The agent keeps the error until replication has run cleanly for a while:
        // a replica that diverged (e.g. a duplicate key) is never backed up.
        return Some(format!("replication failing: {e}"));
    }
    if !h.replication_io_running || !h.replication_sql_running {
        return Some("replication stopped".into());
    }
    match h.replication_lag_seconds {
        None => Some("replication lag unknown".into()),
        Some(l) if l > opts.max_lag_seconds => {
            Some(format!("lagging {l}s > {}s", opts.max_lag_seconds))
        }
        Some(_) => None,
    }
}

/// Compares MariaDB GTID positions (`[MariaDB/]d-s-n[,d-s-n…]`) by the sum of
/// sequence numbers per domain: more is more advanced. Unparseable positions rank
/// lowest.
fn gtid_weight(pos: Option<&str>) -> u128 {
    let Some(p) = pos else { return 0 };
    let p = p.split_once('/').map_or(p, |(_, rest)| rest);
    p.split(',')
        .filter_map(|g| g.trim().rsplit('-').next()?.parse::<u64>().ok())
        .map(u128::from)
        .sum()
}

/// Picks the tablet to back up among the tablets of one shard.
pub fn select_backup_tablet(tablets: &[TabletInfo], opts: &SelectOptions) -> Choice {
    let mut reasons = Vec::new();
    let mut best: Option<(&TabletInfo, u64, u128)> = None;
    for t in tablets {
        let h = match (ineligible(t, opts), t.health.as_ref()) {
            (None, Some(h)) => h,
            (why, _) => {
                let why = why.unwrap_or_else(|| "no health (agent down)".into());
                reasons.push((t.tablet.value.alias.clone(), why));
                continue;
            }
        };
        let lag = h.replication_lag_seconds.unwrap_or(u64::MAX);
        let weight = gtid_weight(h.gtid_position.as_deref());
        let better = match &best {
            None => true,
            Some((b, blag, bweight)) => {
                (lag, std::cmp::Reverse(weight), &t.tablet.value.alias)
                    < (*blag, std::cmp::Reverse(*bweight), &b.tablet.value.alias)
            }
        };
        if better {
            best = Some((t, lag, weight));
        }
    }
    if let Some((t, _, _)) = best {
        return Choice::Tablet(t.tablet.value.alias.clone());
    }
    if opts.allow_primary {
        let primary = tablets.iter().find(|t| {
            t.tablet.value.tablet_type == TabletType::Primary
                && t.health
                    .as_ref()
                    .is_some_and(|h| h.mysqld_up && h.busy_job.is_none())
        });
        if let Some(p) = primary {
            return Choice::Tablet(p.tablet.value.alias.clone());
        }
    }
    Choice::None(reasons)
}

/// Picks the tablet to run a restore drill on among the tablets of one shard: an
/// eligible SPARE first, else an eligible REPLICA or RDONLY with the least lag
/// (then the lowest alias); never the PRIMARY, never one busy with a job, never
/// one whose Health reports fewer free bytes than `need_bytes` (the drill's
/// [`drill_room_required`](crate::backup::drill::drill_room_required); `None`
/// when the backup's restored size is unknown: disk is not looked at). Pure.
pub fn select_drill_tablet(
    tablets: &[TabletInfo],
    max_lag_seconds: u64,
    need_bytes: Option<u64>,
) -> Choice {
    let opts = SelectOptions {
        allow_primary: false,
        max_lag_seconds,
    };
    let mut reasons = Vec::new();
    let mut best: Option<((bool, u64, &TabletAlias), &TabletAlias)> = None;
    for t in tablets {
        let alias = &t.tablet.value.alias;
        let h = match (ineligible(t, &opts), t.health.as_ref()) {
            (None, Some(h)) => h,
            (why, _) => {
                let why = why.unwrap_or_else(|| "no health (agent down)".into());
                reasons.push((alias.clone(), why));
                continue;
            }
        };
        if let (Some(need), Some(free)) = (need_bytes, h.data_free_bytes) {
            if free < need {
                reasons.push((alias.clone(), no_room(need, free)));
                continue;
            }
        }
        let not_spare = t.tablet.value.tablet_type != TabletType::Spare;
        let rank = (
            not_spare,
            h.replication_lag_seconds.unwrap_or(u64::MAX),
            alias,
        );
        if best.as_ref().is_none_or(|(b, _)| rank < *b) {
            best = Some((rank, alias));
        }
    }
    match best {
        Some((_, alias)) => Choice::Tablet(alias.clone()),
        None => Choice::None(reasons),
    }
}

/// `tablets` with every tablet that has an unfinished job other than an
/// ARCHIVE (which runs in a room of its own, beside the others) marked busy
/// with it in its Health, as the agent will once it takes the job: so a drill
/// is never placed on a tablet whose job is written but not taken yet, and the
/// reason names the job. Pure.
pub fn with_pending_jobs(mut tablets: Vec<TabletInfo>, jobs: &[Job]) -> Vec<TabletInfo> {
    for t in &mut tablets {
        let job = jobs.iter().find(|j| {
            j.tablet_alias == t.tablet.value.alias
                && j.kind != JobKind::Archive
                && !j.state.is_final()
        });
        if let (Some(j), Some(h)) = (job, t.health.as_mut()) {
            if h.busy_job.is_none() {
                h.busy_job = Some(j.id.clone());
            }
        }
    }
    tablets
}

/// `not enough disk: needs 2.1 GiB, has 800.0 MiB free`. Pure.
fn no_room(need: u64, free: u64) -> String {
    format!(
        "{NO_ROOM}needs {}, has {} free",
        human_bytes(need),
        human_bytes(free)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_topo::{Health, Tablet, Versioned};
    use chrono::Utc;

    fn tablet(uid: u32, ty: TabletType, health: Option<Health>) -> TabletInfo {
        TabletInfo {
            tablet: Versioned {
                value: Tablet {
                    alias: TabletAlias::new("zone1", uid).unwrap(),
                    hostname: "h".into(),
                    mysql_host: "h".into(),
                    mysql_port: 1,
                    port: 2,
                    keyspace: "ks".into(),
                    shard: "0".into(),
                    tablet_type: ty,
                    base_type: ty,
                    flavor: "MariaDB".into(),
                    tablet_dir: String::new(),
                    started_at: Utc::now(),
                },
                version: 1,
            },
            health,
        }
    }

    fn healthy(lag: u64, pos: &str) -> Option<Health> {
        Some(Health {
            mysqld_up: true,
            replication_io_running: true,
            replication_sql_running: true,
            replication_lag_seconds: Some(lag),
            gtid_position: Some(pos.into()),
            serving: true,
            ..Health::default()
        })
    }

    fn dup_key() -> cairn_topo::ReplicationError {
        cairn_topo::ReplicationError {
            thread: "sql".into(),
            errno: 1062,
            message: "Duplicate entry '7' for key 'PRIMARY'".into(),
            seen_at: Utc::now(),
        }
    }

    fn opts(allow_primary: bool) -> SelectOptions {
        SelectOptions {
            allow_primary,
            max_lag_seconds: 30,
        }
    }

    fn pick(ts: &[TabletInfo], allow_primary: bool) -> Option<u32> {
        match select_backup_tablet(ts, &opts(allow_primary)) {
            Choice::Tablet(a) => Some(a.uid),
            Choice::None(_) => None,
        }
    }

    #[test]
    fn table_of_cases() {
        use TabletType::*;
        let stopped = || {
            let mut h = healthy(0, "MariaDB/0-1-100").unwrap();
            h.replication_sql_running = false;
            Some(h)
        };
        let busy = || {
            let mut h = healthy(0, "MariaDB/0-1-100").unwrap();
            h.busy_job = Some("j1".into());
            Some(h)
        };
        // Threads up right after a restart, but the last one stopped on an error.
        let failing = || {
            let mut h = healthy(0, "MariaDB/0-1-500").unwrap();
            h.replication_error = Some(dup_key());
            Some(h)
        };
        // Outlived its error: the agent cleared it after a clean period.
        let recovered = || {
            let mut h = healthy(0, "MariaDB/0-1-500").unwrap();
            h.replication_clean_since = Some(Utc::now() - chrono::Duration::seconds(31));
            Some(h)
        };
        let unknown_lag = || {
            let mut h = healthy(0, "MariaDB/0-1-100").unwrap();
            h.replication_lag_seconds = None;
            Some(h)
        };
        let cases: Vec<(&str, Vec<TabletInfo>, bool, Option<u32>)> = vec![
            (
                "least lag wins",
                vec![
                    tablet(1, Replica, healthy(5, "0-1-9")),
                    tablet(2, Rdonly, healthy(1, "0-1-9")),
                ],
                false,
                Some(2),
            ),
            (
                "tie on lag: most advanced gtid",
                vec![
                    tablet(1, Replica, healthy(0, "MariaDB/0-1-10")),
                    tablet(2, Replica, healthy(0, "MariaDB/0-1-12")),
                ],
                false,
                Some(2),
            ),
            (
                "tie on everything: lowest alias",
                vec![
                    tablet(2, Replica, healthy(0, "0-1-1")),
                    tablet(1, Replica, healthy(0, "0-1-1")),
                ],
                false,
                Some(1),
            ),
            (
                "primary never without allow",
                vec![tablet(1, Primary, healthy(0, "0-1-1"))],
                false,
                None,
            ),
            (
                "primary as a fallback when allowed",
                vec![
                    tablet(1, Primary, healthy(0, "0-1-1")),
                    tablet(2, Replica, stopped()),
                ],
                true,
                Some(1),
            ),
            (
                "replica preferred over an allowed primary",
                vec![
                    tablet(1, Primary, healthy(0, "0-1-1")),
                    tablet(2, Replica, healthy(3, "0-1-1")),
                ],
                true,
                Some(2),
            ),
            ("no health", vec![tablet(1, Replica, None)], false, None),
            (
                "replication stopped",
                vec![
                    tablet(1, Replica, stopped()),
                    tablet(2, Replica, healthy(20, "0-1-1")),
                ],
                false,
                Some(2),
            ),
            (
                "lagging past the threshold",
                vec![tablet(1, Replica, healthy(31, "0-1-1"))],
                false,
                None,
            ),
            (
                "lag unknown",
                vec![tablet(1, Replica, unknown_lag())],
                false,
                None,
            ),
            (
                "busy",
                vec![
                    tablet(1, Replica, busy()),
                    tablet(2, Spare, healthy(9, "0-1-1")),
                ],
                false,
                Some(2),
            ),
            (
                "drained, backup, restore, experimental are not candidates",
                vec![
                    tablet(1, Drained, healthy(0, "0-1-1")),
                    tablet(2, Backup, healthy(0, "0-1-1")),
                    tablet(3, Restore, healthy(0, "0-1-1")),
                    tablet(4, Experimental, healthy(0, "0-1-1")),
                ],
                false,
                None,
            ),
            (
                "failing replica never picked, even ahead in gtid and lag",
                vec![
                    tablet(1, Replica, failing()),
                    tablet(2, Replica, healthy(10, "MariaDB/0-1-100")),
                ],
                false,
                Some(2),
            ),
            (
                "only a failing replica: nobody",
                vec![tablet(1, Replica, failing())],
                false,
                None,
            ),
            (
                "only a failing replica: the allowed primary",
                vec![
                    tablet(1, Primary, healthy(0, "0-1-1")),
                    tablet(2, Rdonly, failing()),
                ],
                true,
                Some(1),
            ),
            (
                "a recovered replica is eligible again",
                vec![
                    tablet(1, Replica, recovered()),
                    tablet(2, Replica, healthy(10, "MariaDB/0-1-100")),
                ],
                false,
                Some(1),
            ),
            ("empty shard", vec![], true, None),
        ];
        for (name, tablets, allow, want) in cases {
            assert_eq!(pick(&tablets, allow), want, "case: {name}");
        }
    }

    #[test]
    fn reasons_name_every_tablet() {
        let ts = vec![
            tablet(1, TabletType::Replica, None),
            tablet(2, TabletType::Replica, healthy(99, "0-1-1")),
        ];
        let Choice::None(reasons) = select_backup_tablet(&ts, &opts(false)) else {
            panic!()
        };
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].1.contains("no health"));
        assert!(reasons[1].1.contains("lagging 99s"));
    }

    #[test]
    fn a_failing_replica_says_why() {
        let mut h = healthy(0, "0-1-1").unwrap();
        h.replication_error = Some(dup_key());
        let ts = vec![tablet(1, TabletType::Replica, Some(h))];
        let Choice::None(reasons) = select_backup_tablet(&ts, &opts(false)) else {
            panic!()
        };
        assert_eq!(
            reasons[0].1,
            "replication failing: SQL thread error 1062: Duplicate entry '7' for key 'PRIMARY'"
        );
    }

    #[test]
    fn drill_table_of_cases() {
        use TabletType::*;
        let busy = || {
            let mut h = healthy(0, "MariaDB/0-1-100").unwrap();
            h.busy_job = Some("j1".into());
            Some(h)
        };
        let failing = || {
            let mut h = healthy(0, "MariaDB/0-1-100").unwrap();
            h.replication_error = Some(dup_key());
            Some(h)
        };
        let down = || {
            let mut h = healthy(0, "MariaDB/0-1-100").unwrap();
            h.mysqld_up = false;
            Some(h)
        };
        let cases: Vec<(&str, Vec<TabletInfo>, Option<u32>)> = vec![
            (
                "a spare before any replica, even a less lagging one",
                vec![
                    tablet(1, Replica, healthy(0, "0-1-9")),
                    tablet(2, Spare, healthy(7, "0-1-9")),
                ],
                Some(2),
            ),
            (
                "no spare: the least lagging replica",
                vec![
                    tablet(1, Replica, healthy(4, "0-1-9")),
                    tablet(2, Rdonly, healthy(1, "0-1-9")),
                ],
                Some(2),
            ),
            (
                "tie: lowest alias",
                vec![
                    tablet(3, Replica, healthy(0, "0-1-9")),
                    tablet(2, Replica, healthy(0, "0-1-9")),
                ],
                Some(2),
            ),
            (
                "never the primary, even as the only healthy tablet",
                vec![
                    tablet(1, Primary, healthy(0, "0-1-9")),
                    tablet(2, Replica, down()),
                ],
                None,
            ),
            (
                "a busy spare is passed over for a replica",
                vec![
                    tablet(1, Spare, busy()),
                    tablet(2, Replica, healthy(3, "0-1-9")),
                ],
                Some(2),
            ),
            (
                "a failing spare is passed over",
                vec![
                    tablet(1, Spare, failing()),
                    tablet(2, Replica, healthy(3, "0-1-9")),
                ],
                Some(2),
            ),
            (
                "lagging past the threshold",
                vec![tablet(1, Replica, healthy(31, "0-1-9"))],
                None,
            ),
            (
                "drained and restoring tablets are not candidates",
                vec![
                    tablet(1, Drained, healthy(0, "0-1-9")),
                    tablet(2, Restore, healthy(0, "0-1-9")),
                    tablet(3, Backup, healthy(0, "0-1-9")),
                ],
                None,
            ),
            ("agent down", vec![tablet(1, Spare, None)], None),
            ("empty shard", vec![], None),
        ];
        for (name, tablets, want) in cases {
            let got = match select_drill_tablet(&tablets, 30, None) {
                Choice::Tablet(a) => Some(a.uid),
                Choice::None(_) => None,
            };
            assert_eq!(got, want, "case: {name}");
        }
        let Choice::None(reasons) = select_drill_tablet(
            &[
                tablet(1, Primary, healthy(0, "0-1-9")),
                tablet(2, Replica, busy()),
            ],
            30,
            None,
        ) else {
            panic!("nobody is eligible")
        };
        assert_eq!(reasons[0].1, "type PRIMARY");
        assert_eq!(reasons[1].1, "busy with job j1");
    }

    #[test]
    fn drill_placement_by_free_disk() {
        use TabletType::*;
        const GIB: u64 = 1024 * 1024 * 1024;
        let free = |lag: u64, bytes: Option<u64>| {
            let mut h = healthy(lag, "0-1-9").unwrap();
            h.data_free_bytes = bytes;
            Some(h)
        };
        let need = Some(2 * GIB);
        // (what, tablets, the drill's need, chosen)
        type Case<'a> = (&'a str, Vec<TabletInfo>, Option<u64>, Option<u32>);
        let cases: Vec<Case> = vec![
            (
                "a spare without room: the replica that has it",
                vec![
                    tablet(1, Spare, free(0, Some(GIB))),
                    tablet(2, Replica, free(5, Some(3 * GIB))),
                ],
                need,
                Some(2),
            ),
            (
                "exactly enough is enough",
                vec![tablet(1, Replica, free(0, Some(2 * GIB)))],
                need,
                Some(1),
            ),
            (
                "one byte short is not",
                vec![tablet(1, Replica, free(0, Some(2 * GIB - 1)))],
                need,
                None,
            ),
            (
                "the least lagging replica lacks room: the next one",
                vec![
                    tablet(1, Replica, free(0, Some(GIB))),
                    tablet(2, Rdonly, free(9, Some(5 * GIB))),
                ],
                need,
                Some(2),
            ),
            (
                "unknown free disk (an older agent) stays eligible",
                vec![
                    tablet(1, Spare, free(0, None)),
                    tablet(2, Replica, free(0, Some(9 * GIB))),
                ],
                need,
                Some(1),
            ),
            (
                "unknown need (an older record): disk is not looked at",
                vec![tablet(1, Spare, free(0, Some(1)))],
                None,
                Some(1),
            ),
            (
                "nobody has room",
                vec![
                    tablet(1, Spare, free(0, Some(GIB))),
                    tablet(2, Replica, free(0, Some(GIB))),
                ],
                need,
                None,
            ),
        ];
        for (what, tablets, need, want) in cases {
            let got = match select_drill_tablet(&tablets, 30, need) {
                Choice::Tablet(a) => Some(a.uid),
                Choice::None(_) => None,
            };
            assert_eq!(got, want, "case: {what}");
        }
        // Every candidate is named with its reason, room included.
        let mut busy = free(0, Some(GIB)).unwrap();
        busy.busy_job = Some("j1".into());
        let mut down = free(0, Some(9 * GIB)).unwrap();
        down.mysqld_up = false;
        let ts = vec![
            tablet(1, Primary, free(0, Some(9 * GIB))),
            tablet(2, Replica, Some(busy)),
            tablet(3, Replica, Some(down)),
            tablet(4, Spare, free(0, Some(800 * 1024 * 1024))),
        ];
        let Choice::None(reasons) = select_drill_tablet(&ts, 30, Some(2 * GIB + GIB / 10)) else {
            panic!("nobody fits")
        };
        let why: Vec<&str> = reasons.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            why,
            [
                "type PRIMARY",
                "busy with job j1",
                "mysqld down",
                "not enough disk: needs 2.1 GiB, has 800.0 MiB free",
            ]
        );
        assert!(why[3].starts_with(NO_ROOM));
    }

    #[test]
    fn written_jobs_make_a_tablet_busy_but_an_archive_does_not() {
        use cairn_topo::JobState;
        let ts = vec![
            tablet(1, TabletType::Replica, healthy(0, "0-1-9")),
            tablet(2, TabletType::Spare, healthy(0, "0-1-9")),
            tablet(3, TabletType::Rdonly, None),
        ];
        let alias = |uid| TabletAlias::new("zone1", uid).unwrap();
        let mut archive = Job::pending(JobKind::Archive, "ks", "0", &alias(1));
        archive.state = JobState::Running;
        let backup = Job::pending(JobKind::Backup, "ks", "0", &alias(2));
        let mut done = Job::pending(JobKind::Drill, "ks", "0", &alias(1));
        done.state = JobState::Succeeded;
        let orphan = Job::pending(JobKind::Drill, "ks", "0", &alias(3));
        let marked = with_pending_jobs(ts, &[archive, backup.clone(), done, orphan]);
        let busy: Vec<Option<&str>> = marked
            .iter()
            .map(|t| t.health.as_ref().and_then(|h| h.busy_job.as_deref()))
            .collect();
        assert_eq!(busy, [None, Some(backup.id.as_str()), None]);
        assert_eq!(
            select_drill_tablet(&marked, 30, None),
            Choice::Tablet(alias(1)),
            "the spare is taken; the archiving replica is not busy"
        );
    }

    #[test]
    fn gtid_weights() {
        assert!(gtid_weight(Some("MariaDB/0-1-10,1-2-5")) > gtid_weight(Some("MariaDB/0-1-14")));
        assert_eq!(gtid_weight(None), 0);
        assert_eq!(gtid_weight(Some("garbage")), 0);
    }
}
