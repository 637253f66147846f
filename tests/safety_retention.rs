//! Retention that loses nothing it does not own, against real etcd and MariaDB:
//! two schedules with different keep counts on one shard and a manual backup
//! (each schedule prunes only its own, the manual one survives both, and
//! `schedule prune --dry-run` agrees with the leader), and a backup in flight that
//! a prune with a tiny incomplete grace must leave alone (it completes and seeds a
//! tablet with every row).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, CoordinatorProcess, TabletProcess};
use cairn_topo::Topo;

const T: Duration = Duration::from_secs(120);
const ROWS: u64 = 2000;

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and a replica (uid+1, with `replica_env`) of `ks/0`, with
/// `ROWS` rows replicated.
async fn shard(
    c: &Cluster,
    topo: &Topo,
    uid: u32,
    replica_env: &[(&str, &str)],
) -> (TabletProcess, TabletProcess) {
    let p_spec = c.tablet(uid, "ks", "0").unwrap();
    let mut r_spec = c.tablet(uid + 1, "ks", "0").unwrap();
    r_spec.env = replica_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut p = c.spawn_tablet(&p_spec).unwrap();
    let mut r = c.spawn_tablet(&r_spec).unwrap();
    p.wait_healthy(topo, T).await.unwrap();
    r.wait_healthy(topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &p_spec.alias()])
        .unwrap();
    p.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO app.t SELECT seq, REPEAT(MD5(seq), 20) FROM app.seq_1_to_2000",
    )
    .unwrap();
    r.wait_rows(ROWS, T).await.unwrap();
    wait_healthy_replica(c, &r_spec.alias()).await;
    (p, r)
}

/// Waits until get-tablets shows the tablet as a healthy REPLICA (eligible).
async fn wait_healthy_replica(c: &Cluster, alias: &str) {
    wait_for(&format!("{alias} healthy REPLICA"), T, || async {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["get-tablets", "--json"])?)?;
        Ok(rows
            .iter()
            .find(|r| r["alias"] == alias && r["type"] == "REPLICA" && r["healthy"] == true)
            .map(|_| ()))
    })
    .await
    .unwrap();
}

fn root(c: &Cluster) -> String {
    c.backup_root().display().to_string()
}

fn list_backups(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(
        &c.cli_ok(&[
            "list-backups",
            "ks/0",
            "--json",
            "--file-backup-storage-root",
            &root(c),
        ])
        .unwrap(),
    )
    .unwrap()
}

/// Names of the complete backups in storage the schedule took (`None`: manual).
fn complete_of(listed: &[serde_json::Value], schedule: Option<&str>) -> BTreeSet<String> {
    listed
        .iter()
        .filter(|b| b["complete"] == true && b["schedule"].as_str() == schedule)
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

fn jobs(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

/// Backup names of the schedule's succeeded jobs, oldest first.
fn succeeded_of(c: &Cluster, schedule: &str) -> Vec<String> {
    let mut names: Vec<String> = jobs(c)
        .into_iter()
        .filter(|j| j["state"] == "SUCCEEDED" && j["schedule"] == schedule)
        .filter_map(|j| j["backup_name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// `schedule prune NAME [--dry-run] --json`: the names it removed or would remove.
fn prune(c: &Cluster, schedule: &str, extra: &[&str]) -> Vec<String> {
    let r = root(c);
    let mut args = vec![
        "schedule",
        "prune",
        schedule,
        "--json",
        "--file-backup-storage-root",
        &r,
    ];
    args.extend_from_slice(extra);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&c.cli_ok(&args).unwrap()).unwrap();
    rows.iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

async fn wait_leader(c: &CoordinatorProcess) {
    c.wait_leader(T).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Runs `schedule` (every 3 s, keeping `keep`) until it has `runs` successful
/// backups, pauses it, and waits until every job is finished and the leader's
/// retention left exactly `keep` of its backups in storage, with no removal still
/// under way; returns them.
async fn run_schedule(
    c: &Cluster,
    coord: &CoordinatorProcess,
    schedule: &str,
    keep: usize,
    runs: usize,
) -> BTreeSet<String> {
    c.cli_ok(&[
        "schedule",
        "set",
        schedule,
        "--cron",
        "*/3 * * * * *",
        "--target",
        "ks/0",
        "--keep-count",
        &keep.to_string(),
    ])
    .unwrap();
    wait_for(&format!("{runs} backups of {schedule}"), T, || async {
        Ok((succeeded_of(c, schedule).len() >= runs).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
    c.cli_ok(&["schedule", "pause", schedule]).unwrap();
    wait_for(&format!("{schedule}'s retention done"), T, || async {
        let settled = jobs(c)
            .iter()
            .all(|j| j["state"] != "PENDING" && j["state"] != "RUNNING");
        let listed = list_backups(c);
        // A removal in progress (MANIFEST gone, files going) is listed incomplete
        // until it ends; every prune plan would still name it.
        let removed = listed.iter().all(|b| b["complete"] == true);
        let own = complete_of(&listed, Some(schedule));
        Ok((settled && removed && own.len() == keep).then_some(own))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", list_backups(c), coord.log_tail(30)))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_schedule_prunes_only_its_own_and_the_manual_backup_survives() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (_p, r) = shard(&c, &topo, 700, &[]).await;
        // The oldest backup of the shard, taken by hand.
        let manual = c
            .cli_ok(&["backup", &r.spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        wait_healthy_replica(&c, &r.spec.alias()).await;
        let coord = c.spawn_coordinator("c", &[]).unwrap();
        wait_leader(&coord).await;

        // "hourly" keeps 2 of its 4+ backups; the manual one is not its own.
        let hourly = run_schedule(&c, &coord, "hourly", 2, 4).await;
        let taken = succeeded_of(&c, "hourly");
        let newest_two: BTreeSet<String> = taken[taken.len() - 2..].iter().cloned().collect();
        assert_eq!(hourly, newest_two, "hourly keeps its two newest");
        assert_eq!(
            complete_of(&list_backups(&c), None),
            [manual.clone()].into()
        );

        // "yearly" keeps 1 of its 3+ backups: before ownership, its rule removed
        // every other backup of the shard, hourly's and the manual one included.
        let yearly = run_schedule(&c, &coord, "yearly", 1, 3).await;
        let newest_yearly = succeeded_of(&c, "yearly").pop().unwrap();
        assert_eq!(yearly, [newest_yearly.clone()].into());
        let listed = list_backups(&c);
        assert_eq!(
            complete_of(&listed, Some("hourly")),
            hourly,
            "yearly's rule removed hourly's backups: {listed:?}"
        );
        assert_eq!(
            complete_of(&listed, None),
            [manual.clone()].into(),
            "a schedule removed the manual backup: {listed:?}"
        );
        assert_eq!(
            listed.iter().filter(|b| b["complete"] == true).count(),
            4,
            "{listed:?}"
        );

        // The catalog carries the owner too, and follows storage.
        let records = topo.list_backup_records("ks", "0").await.unwrap();
        assert_eq!(records.len(), 4, "{records:?}");
        for rec in &records {
            let want = if rec.value.name == manual {
                None
            } else if hourly.contains(&rec.value.name) {
                Some("hourly")
            } else {
                Some("yearly")
            };
            assert_eq!(rec.value.schedule.as_deref(), want, "{rec:?}");
        }
        let shard = topo.get_shard("ks", "0").await.unwrap().unwrap().value;
        assert_eq!(shard.latest_backup.as_deref(), Some(newest_yearly.as_str()));

        // The dry run plans what the leader did: nothing more to remove for either.
        assert_eq!(prune(&c, "hourly", &["--dry-run"]), Vec::<String>::new());
        assert_eq!(prune(&c, "yearly", &["--dry-run"]), Vec::<String>::new());
        // A stricter hourly rule: its dry run names only hourly's older backup,
        // and the prune removes exactly that.
        c.cli_ok(&[
            "schedule",
            "set",
            "hourly",
            "--cron",
            "0 0 1 1 *",
            "--target",
            "ks/0",
            "--keep-count",
            "1",
        ])
        .unwrap();
        let older_hourly = hourly.iter().next().unwrap().clone();
        assert_eq!(
            prune(&c, "hourly", &["--dry-run"]),
            vec![older_hourly.clone()]
        );
        let doomed = c.backup_root().join("ks/0").join(&older_hourly);
        assert!(doomed.exists(), "a dry run removed {older_hourly}");
        assert_eq!(prune(&c, "hourly", &[]), vec![older_hourly.clone()]);
        assert!(!doomed.exists());
        // yearly keeping nothing older than 1 s: its only backup is the shard's
        // newest, kept.
        c.cli_ok(&[
            "schedule",
            "set",
            "yearly",
            "--cron",
            "0 0 1 1 *",
            "--target",
            "ks/0",
            "--keep-for",
            "1s",
        ])
        .unwrap();
        assert_eq!(prune(&c, "yearly", &[]), Vec::<String>::new());
        let listed = list_backups(&c);
        assert_eq!(complete_of(&listed, None), [manual.clone()].into());
        assert_eq!(complete_of(&listed, Some("yearly")), yearly);
        assert_eq!(complete_of(&listed, Some("hourly")).len(), 1);

        // Only remove-backup removes the manual one.
        c.cli_ok(&[
            "remove-backup",
            "ks/0",
            &manual,
            "--file-backup-storage-root",
            &root(&c),
        ])
        .unwrap();
        assert!(complete_of(&list_backups(&c), None).is_empty());
    })
    .await
    .expect("test timed out");
}

/// An abandoned backup directory (no MANIFEST) named as if taken long ago.
fn abandoned_backup(root: &Path, name: &str) {
    let dir = root.join("ks/0").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0"), b"half a file").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_in_flight_is_never_pruned_as_abandoned() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // A slow storage on the replica, so its backup stays in flight.
        let (_p, r) = shard(
            &c,
            &topo,
            710,
            &[("CAIRN_FAULT_STORAGE_BYTES_PER_SEC", "16384")],
        )
        .await;
        // A schedule to prune by (never due; no coordinator is needed).
        c.cli_ok(&[
            "schedule",
            "set",
            "s",
            "--cron",
            "0 0 1 1 *",
            "--target",
            "ks/0",
            "--keep-count",
            "1",
        ])
        .unwrap();
        let abandoned = "2020-01-01.000000.zone1-0000000799";
        abandoned_backup(&c.backup_root(), abandoned);

        let id = c
            .cli_ok(&["backup", &r.spec.alias(), "--no-wait"])
            .unwrap()
            .trim()
            .to_string();
        // The job names its backup as soon as it runs, and the backup is in storage.
        let name = wait_for("the backup in flight", T, || async {
            let job = jobs(&c).into_iter().find(|j| j["id"] == id.as_str());
            let Some(job) = job.filter(|j| j["state"] == "RUNNING") else {
                return Ok(None);
            };
            let name = job["backup_name"].as_str().map(str::to_string);
            Ok(name.filter(|n| c.backup_root().join("ks/0").join(n).exists()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", r.log_tail(30)));
        // Older than the grace the prune is given.
        tokio::time::sleep(Duration::from_millis(2500)).await;

        let grace = ["--incomplete-grace", "1s"];
        let dry = prune(&c, "s", &["--dry-run", grace[0], grace[1]]);
        assert_eq!(dry, vec![abandoned.to_string()], "the dry run");
        let removed = prune(&c, "s", &grace);
        assert_eq!(removed, vec![abandoned.to_string()]);
        let job = jobs(&c)
            .into_iter()
            .find(|j| j["id"] == id.as_str())
            .unwrap();
        assert_eq!(
            job["state"], "RUNNING",
            "the backup finished before the prune: the test proves nothing"
        );
        assert!(c.backup_root().join("ks/0").join(&name).exists());
        assert!(!c.backup_root().join("ks/0").join(abandoned).exists());

        // The backup completes, whole.
        let done = wait_for("the backup to finish", Duration::from_secs(300), || async {
            Ok(jobs(&c)
                .into_iter()
                .find(|j| j["id"] == id.as_str())
                .filter(|j| j["state"] != "RUNNING" && j["state"] != "PENDING"))
        })
        .await
        .unwrap();
        assert_eq!(done["state"], "SUCCEEDED", "{done}");
        assert_eq!(done["backup_name"], name.as_str());
        let listed = list_backups(&c);
        assert_eq!(
            complete_of(&listed, None),
            [name.clone()].into(),
            "{listed:?}"
        );

        // And seeds a new tablet with every row.
        let mut spec = c.tablet(712, "ks", "0").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        let mut seeded = c.spawn_tablet(&spec).unwrap();
        seeded
            .wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", seeded.log_tail(30)));
        assert!(seeded.log().contains(&name), "{}", seeded.log_tail(30));
        seeded.wait_rows(ROWS, T).await.unwrap();
    })
    .await
    .expect("test timed out");
}
