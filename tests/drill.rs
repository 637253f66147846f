//! Restore drills against real etcd, MariaDB and `file` storage, on one shared
//! cluster (a primary and a replica): `cairn drill` of a good backup succeeds,
//! records `verified_at` and `drill_seconds`, and the drilling replica keeps
//! serving (reads work throughout; its rows and GTID position are unchanged)
//! with no scratch directory or mariadbd left behind; a drill on `--drill-cron`
//! runs through a real coordinator; a SPARE is drilled first; a drill cancelled
//! midway, and one whose agent is killed midway (cleaned up at its next start),
//! leave no scratch directory or server behind; a drill of a corrupted backup (one byte
//! flipped in a stored data file, MANIFEST kept) fails, records
//! `drill_result: failed` with the reason and leaves nothing behind; bad input
//! is refused with one `error:` line and nothing written. `drill --to-now` of a
//! new full backup, with the archive on and writes after the backup, applies the
//! archived chain and ends at the archive's position with the primary's rows;
//! with one archived segment deleted it fails naming the missing GTIDs and
//! leaves nothing behind. A scheduled drill with `--drill-to-now` and nothing
//! archived drills the full backup alone and says so. Drills are placed where
//! the disk has room (free disk made small with the test-only
//! `CAIRN_TEST_DATA_FREE_BYTES`): a spare without room is passed over; with no
//! room anywhere `cairn drill` exits 1 naming each tablet and why, and a
//! scheduled drill is counted as skipped, no job written.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, TabletProcess};
use cairn_topo::{BackupRecord, DrillResult, Job, JobKind, JobState, Topo};

const T: Duration = Duration::from_secs(180);

async fn record(topo: &Topo, name: &str) -> BackupRecord {
    topo.get::<BackupRecord>(&topo.keys().backup("ks", "0", name))
        .await
        .unwrap()
        .unwrap()
        .value
}

/// Scratch directories a drill left in a tablet dir.
fn scratch_dirs(tablet_dir: &Path) -> Vec<String> {
    std::fs::read_dir(tablet_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("drill-"))
        .collect()
}

/// Live processes whose command line names a drill's scratch directory of
/// `tablet_dir`.
fn scratch_processes(tablet_dir: &Path) -> Vec<String> {
    let want = format!("{}/drill-", tablet_dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&want).then(|| format!("{pid}: {cmd}"))
        })
        .collect()
}

fn assert_nothing_left(r: &TabletProcess) {
    assert_eq!(scratch_dirs(&r.spec.dir), Vec::<String>::new());
    assert_eq!(scratch_processes(&r.spec.dir), Vec::<String>::new());
}

/// `cairn drill ARGS… --json`: exit code and the JSON outcome (or the output).
fn drill(c: &Cluster, args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["drill", "ks/0", "--json"];
    all.extend_from_slice(args);
    let out = c.cli(&all).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{stderr}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_prove_good_backups_and_catch_corrupt_ones() {
    let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster");
    let topo = c.topo().await.unwrap();
    let mut p = c.spawn_tablet(&c.tablet(401, "ks", "0").unwrap()).unwrap();
    let mut r = c.spawn_tablet(&c.tablet(402, "ks", "0").unwrap()).unwrap();
    p.wait_healthy(&topo, T).await.unwrap();
    r.wait_healthy(&topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &p.spec.alias()])
        .unwrap();

    // Bad input before there is anything to drill: one error line, nothing written.
    for (args, want) in [
        (vec!["drill", "ks/0"], "no complete full backup"),
        (vec!["drill", "nope/0"], "shard nope/0 does not exist"),
        (vec!["drill", "ks/0", "--to-now"], "no complete full backup"),
        (
            vec![
                "drill",
                "ks/0",
                "--backup",
                "2026-01-01.000000.zone1-0000000402",
            ],
            "is not in its catalog",
        ),
    ] {
        let out = c.cli(&args).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    assert!(topo.list_jobs().await.unwrap().is_empty());

    p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_3000; ANALYZE TABLE app.t")
        .unwrap();
    r.wait_value("SELECT COUNT(*) FROM app.t", "3000", T)
        .await
        .unwrap();
    let name = c
        .cli_ok(&["backup", &r.spec.alias()])
        .unwrap()
        .trim()
        .to_string();
    // Writes after the backup: the drill must find the backup's position, not
    // the replica's.
    p.sql("INSERT INTO app.t SELECT seq, 'after' FROM app.seq_3001_to_3100")
        .unwrap();
    r.wait_value("SELECT COUNT(*) FROM app.t", "3100", T)
        .await
        .unwrap();
    let pos_before = r.sql("SELECT @@gtid_current_pos").unwrap();

    // Reads on the replica all through the drill.
    let reading = Arc::new(AtomicBool::new(true));
    let (reads, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (reading, reads, failed) = (reading.clone(), reads.clone(), failed.clone());
        let dir = r.spec.dir.clone();
        std::thread::spawn(move || {
            while reading.load(Ordering::Relaxed) {
                match cairn::testkit::mysql_client(
                    &dir.join("mysql.sock"),
                    "SELECT COUNT(*) FROM app.t",
                ) {
                    Ok(s) if s.trim() == "3100" => reads.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = std::time::Instant::now();
    let (code, out, text) = drill(&c, &[]);
    let took = started.elapsed();
    reading.store(false, Ordering::Relaxed);
    reader.join().unwrap();
    assert_eq!(code, 0, "{text}\n{}", r.log_tail(40));
    assert_eq!(out["state"], "SUCCEEDED", "{out}");
    assert_eq!(out["backup_name"], name.as_str(), "{out}");
    assert_eq!(out["tablet_alias"], r.spec.alias(), "{out}");
    assert_eq!(out["drill_result"], "succeeded", "{out}");
    let message = out["message"].as_str().unwrap();
    for stage in ["restore ", "start ", "check ", "app.t 3000"] {
        assert!(message.contains(stage), "{message}");
    }
    let rec = record(&topo, &name).await;
    let first_verified = rec.verified_at.expect("verified_at");
    let secs = rec.drill_seconds.expect("drill_seconds");
    assert!(
        secs > 0.0 && secs < took.as_secs_f64() + 1.0,
        "{secs} {took:?}"
    );
    assert_eq!(rec.drill_result, Some(DrillResult::Succeeded));
    assert_eq!(rec.drill_error, None);
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "reads failed during the drill"
    );
    assert_eq!(r.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(), "3100");
    assert_eq!(r.sql("SELECT @@gtid_current_pos").unwrap(), pos_before);
    let tablets: Vec<serde_json::Value> =
        serde_json::from_str(&c.cli_ok(&["get-tablets", "--json"]).unwrap()).unwrap();
    let row = tablets
        .iter()
        .find(|t| t["alias"] == r.spec.alias())
        .unwrap();
    assert_eq!(row["type"], "REPLICA", "{row}");
    assert_nothing_left(&r);
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&c.cli_ok(&["list-backups", "ks/0", "--json"]).unwrap()).unwrap();
    assert_eq!(listed[0]["drill_result"], "succeeded", "{listed:?}");
    assert!(listed[0]["verified_at"].is_string(), "{listed:?}");
    println!("drill of a good backup: {took:?} wall, {secs}s recorded: {message}");

    let phase = std::time::Instant::now();
    // On a schedule, through a real coordinator.
    let coord = c
        .spawn_coordinator("c1", &["--reconcile-interval", "1s"])
        .unwrap();
    coord.wait_leader(T).await.unwrap();
    c.cli_ok(&[
        "schedule",
        "set",
        "yearly",
        "--cron",
        "0 0 1 1 *",
        "--target",
        "ks/0",
        "--drill-cron",
        "*/2 * * * * *",
        "--drill-to-now",
    ])
    .unwrap();
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&c.cli_ok(&["schedule", "list", "--json"]).unwrap()).unwrap();
    assert_eq!(listed[0]["drill_to_now"], true, "{listed:?}");
    let job = wait_for("a scheduled drill", T, || async {
        let jobs = topo.list_jobs().await?;
        Ok(jobs
            .into_iter()
            .map(|j| j.value)
            .find(|j| j.schedule.as_deref() == Some("yearly:drill") && j.state.is_final()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(40)));
    c.cli_ok(&["schedule", "remove", "yearly"]).unwrap();
    assert_eq!(
        format!("{:?}", job.state),
        "Succeeded",
        "{job:?}\n{}",
        r.log_tail(40)
    );
    assert_eq!(job.backup_name.as_deref(), Some(name.as_str()));
    assert_eq!(job.tablet_alias.to_string(), r.spec.alias());
    let rec = record(&topo, &name).await;
    assert!(rec.verified_at.unwrap() > first_verified, "{rec:?}");
    // To now with no archive and no incrementals: the full backup alone, said.
    let message = job.message.clone().unwrap_or_default();
    assert!(
        message.contains("the full backup alone was drilled"),
        "{message}"
    );
    let pit = job.point_in_time.clone().expect("a drill to now");
    assert_eq!(pit.restored_to.as_deref(), Some(rec.position.as_str()));
    drop(coord);
    // A drill the coordinator started after the removal still ends; wait for it.
    wait_for("no drill running", T, || async {
        let jobs = topo.list_jobs().await?;
        Ok((!jobs.iter().any(|j| !j.value.state.is_final())).then_some(()))
    })
    .await
    .unwrap();
    assert_nothing_left(&r);

    println!("scheduled drill: {:?}", phase.elapsed());
    let phase = std::time::Instant::now();
    // A SPARE is drilled before any replica. Cancelled once its scratch server
    // runs (starting, or held before its checks), the drill stops that server
    // and removes its directory.
    let mut spec = c.tablet(403, "ks", "0").unwrap();
    spec.tablet_type = "spare".into();
    spec.env = vec![(
        "CAIRN_FAILPOINT_PAUSE".into(),
        "drill-before-check=120".into(),
    )];
    let mut s = c.spawn_tablet(&spec).unwrap();
    s.wait_healthy(&topo, T).await.unwrap();
    s.wait_value("SELECT COUNT(*) FROM app.t", "3100", T)
        .await
        .unwrap();
    println!("spare up: {:?}", phase.elapsed());
    let phase = std::time::Instant::now();
    let verified = record(&topo, &name).await.verified_at;
    let held = |s: &TabletProcess| {
        let (dirs, procs) = (scratch_dirs(&s.spec.dir), scratch_processes(&s.spec.dir));
        (!dirs.is_empty() && !procs.is_empty()).then_some(())
    };
    let id = c
        .cli_ok(&["drill", "ks/0", "--no-wait"])
        .unwrap()
        .trim()
        .to_string();
    let key = topo.keys().job(&id);
    let job = topo.get::<Job>(&key).await.unwrap().unwrap().value;
    assert_eq!(
        job.tablet_alias.to_string(),
        s.spec.alias(),
        "a spare first"
    );
    wait_for("the drill's scratch server running", T, || async {
        Ok(held(&s))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s.log_tail(30)));
    topo.update_with::<Job, _>(&key, |cur| {
        let Some(mut j) = cur else { return Ok(None) };
        j.state = JobState::Cancelled;
        j.error = Some("cancelled by the test".into());
        Ok(Some(j))
    })
    .await
    .unwrap();
    wait_for("the cancelled drill cleaned up", T, || async {
        let left =
            !scratch_dirs(&s.spec.dir).is_empty() || !scratch_processes(&s.spec.dir).is_empty();
        Ok((!left).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s.log_tail(30)));
    assert_eq!(
        record(&topo, &name).await.verified_at,
        verified,
        "a cancelled drill is no verdict"
    );

    println!("cancelled drill: {:?}", phase.elapsed());
    let phase = std::time::Instant::now();
    // The agent dies mid-drill (its scratch server lives on, in its own process
    // group): the next start stops that server, removes the directory and fails
    // the job.
    wait_for("the spare free again", T, || async {
        let t = topo.get_tablet_info(&job.tablet_alias).await?;
        Ok(t.and_then(|t| t.health).filter(|h| h.busy_job.is_none()))
    })
    .await
    .unwrap();
    let id = c
        .cli_ok(&["drill", "ks/0", "--no-wait"])
        .unwrap()
        .trim()
        .to_string();
    wait_for("the second drill's scratch server running", T, || async {
        Ok(held(&s))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", s.log_tail(30)));
    s.kill9();
    assert!(
        !scratch_processes(&s.spec.dir).is_empty(),
        "it outlives the agent"
    );
    let spec_dir = s.spec.dir.clone();
    // It yields to the serving tablet: every thread of the scratch server at
    // nice 19 (set before exec, so the threads it makes inherit it). Looked at
    // once InnoDB has started its threads.
    let tasks_of = |p: &str| -> Vec<std::path::PathBuf> {
        let pid = p.split(':').next().unwrap_or("0").to_string();
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let servers = wait_for("the scratch server's threads", T, || async {
        let servers: Vec<String> = scratch_processes(&spec_dir)
            .into_iter()
            .filter(|p| p.contains("mariadbd") || p.contains("mysqld "))
            .collect();
        let started = !servers.is_empty() && servers.iter().all(|p| tasks_of(p).len() > 4);
        Ok(started.then_some(servers))
    })
    .await
    .unwrap();
    for p in &servers {
        for task in tasks_of(p) {
            let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
            // After the command's closing parenthesis: field 3 (state) first, nice is field 19.
            let after = stat.rsplit_once(')').map_or("", |x| x.1);
            let nice = after.split_whitespace().nth(16).unwrap_or("?");
            assert_eq!(nice, "19", "{p}: thread {}", task.display());
        }
    }
    let mut spec = s.spec.clone();
    spec.env.clear();
    // Its own mysqld stays up too; the next agent adopts it.
    std::mem::forget(s);
    let mut s = c.spawn_tablet(&spec).unwrap();
    s.wait_healthy(&topo, T).await.unwrap();
    let job = wait_for("the orphaned drill failed", T, || async {
        let j = topo.get::<Job>(&topo.keys().job(&id)).await?;
        Ok(j.map(|j| j.value).filter(|j| j.state.is_final()))
    })
    .await
    .unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert_nothing_left(&s);

    println!("killed drill: {:?}", phase.elapsed());
    // A corrupted backup: one byte flipped in its biggest stored file.
    let dir = c.backup_root().join("ks/0").join(&name);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("MANIFEST")).unwrap()).unwrap();
    let entry = manifest["FileEntries"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|e| e["StoredSize"].as_u64().unwrap())
        .unwrap()
        .clone();
    let object = dir.join(entry["StoredName"].as_str().unwrap());
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&object, &bytes).unwrap();
    let (code, out, text) = drill(&c, &["--backup", &name]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(out["state"], "FAILED", "{out}");
    assert_eq!(out["drill_result"], "failed", "{out}");
    let rec = record(&topo, &name).await;
    assert_eq!(rec.drill_result, Some(DrillResult::Failed));
    let why = rec.drill_error.clone().unwrap();
    assert!(why.contains("restoring backup"), "{why}");
    assert!(!why.contains('\n'));
    println!("drill of a corrupted backup: {why}");
    assert!(
        rec.verified_at.is_some(),
        "the last success is kept: {rec:?}"
    );
    assert!(text.contains("error: drill of backup"), "{text}");
    let drilled = if out["tablet_alias"] == s.spec.alias() {
        &s
    } else {
        &r
    };
    assert!(
        drilled.log().contains("RESTORE DRILL FAILED"),
        "a failed drill is logged at error level"
    );
    assert_nothing_left(&s);
    assert_nothing_left(&r);
    assert_eq!(r.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(), "3100");

    let phase = std::time::Instant::now();
    to_now(&c, &topo, &p, &mut r, &s).await;
    println!("drills to now: {:?}", phase.elapsed());

    let phase = std::time::Instant::now();
    placed_where_the_disk_has_room(&c, &topo, &p, r, s).await;
    println!("drills placed by free disk: {:?}", phase.elapsed());
}

/// Free bytes the tablets made small report (test-only override).
const SMALL_DISK: u64 = 64 * 1024 * 1024;

/// Restarts the agent of `t` (its mysqld adopted) with its disk reported as
/// [`SMALL_DISK`] free; waits until its Health says so.
async fn with_small_disk(c: &Cluster, topo: &Topo, mut t: TabletProcess) -> TabletProcess {
    let mut spec = t.spec.clone();
    spec.env
        .push(("CAIRN_TEST_DATA_FREE_BYTES".into(), SMALL_DISK.to_string()));
    t.kill9();
    std::mem::forget(t);
    let mut t = c.spawn_tablet(&spec).unwrap();
    t.wait_healthy(topo, T).await.unwrap();
    let alias: cairn_topo::TabletAlias = spec.alias().parse().unwrap();
    wait_for("Health to report the small disk", T, || async {
        let h = topo.get_tablet_info(&alias).await?.and_then(|i| i.health);
        Ok(h.filter(|h| h.data_free_bytes == Some(SMALL_DISK))
            .map(|_| ()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
    t
}

/// Drills go where the disk has room: the spare, made to report 64 MiB free,
/// is passed over for the replica; with both small, `cairn drill` exits 1
/// naming each tablet and why, and a scheduled drill records a skip instead of
/// a job.
async fn placed_where_the_disk_has_room(
    c: &Cluster,
    topo: &Topo,
    p: &TabletProcess,
    r: TabletProcess,
    s: TabletProcess,
) {
    let s = with_small_disk(c, topo, s).await;
    let id = c
        .cli_ok(&["drill", "ks/0", "--no-wait"])
        .unwrap()
        .trim()
        .to_string();
    let job = wait_for("the drill on the replica", T, || async {
        let j = topo.get::<Job>(&topo.keys().job(&id)).await?;
        Ok(j.map(|j| j.value).filter(|j| j.state.is_final()))
    })
    .await
    .unwrap();
    assert_eq!(
        job.tablet_alias.to_string(),
        r.spec.alias(),
        "not the spare without room"
    );
    assert_eq!(
        job.state,
        JobState::Succeeded,
        "{job:?}\n{}",
        r.log_tail(30)
    );

    let r = with_small_disk(c, topo, r).await;
    let drills = || async {
        let jobs = topo.list_jobs().await.unwrap();
        jobs.into_iter()
            .map(|j| j.value)
            .filter(|j| j.kind == JobKind::Drill)
            .collect::<Vec<_>>()
    };
    let drills_before = drills().await.len();
    let out = c.cli(&["drill", "ks/0"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for want in [
        format!("{}: type PRIMARY", p.spec.alias()),
        format!("{}: not enough disk: needs ", r.spec.alias()),
        format!("{}: not enough disk: needs ", s.spec.alias()),
        "has 64.0 MiB free".to_string(),
    ] {
        assert!(err.contains(&want), "{want}: {err}");
    }
    println!("no room anywhere: {}", err.trim());

    let coord = c
        .spawn_coordinator("c3", &["--reconcile-interval", "1s"])
        .unwrap();
    coord.wait_leader(T).await.unwrap();
    c.cli_ok(&[
        "schedule",
        "set",
        "roomless",
        "--cron",
        "0 0 1 1 *",
        "--target",
        "ks/0",
        "--drill-cron",
        "*/2 * * * * *",
    ])
    .unwrap();
    let key = topo.keys().schedule("roomless");
    let why = wait_for("a skipped drill slot", T, || async {
        let sc = topo.get::<cairn_topo::Schedule>(&key).await?;
        Ok(sc
            .map(|s| s.value)
            .filter(|s| s.skipped_runs > 0)
            .and_then(|s| s.last_skip_reason))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(40)));
    c.cli_ok(&["schedule", "remove", "roomless"]).unwrap();
    assert!(
        why.contains("not enough disk: needs") && why.contains("has 64.0 MiB free"),
        "{why}"
    );
    assert_eq!(drills().await.len(), drills_before, "no job doomed to fail");
    println!("scheduled drill without room: {why}");
    drop(coord);
    assert_nothing_left(&r);
    assert_nothing_left(&s);
}

/// The archive's position as `get-shard --json` reports it.
fn archived_position(c: &Cluster) -> String {
    let out = c.cli_ok(&["get-shard", "ks/0", "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["archive"]["position"].as_str().unwrap_or("").to_string()
}

/// Waits until the archive holds the primary's position; returns it.
async fn wait_archived(c: &Cluster, p: &TabletProcess) -> String {
    let want = p
        .sql("SELECT @@gtid_binlog_pos")
        .unwrap()
        .trim()
        .to_string();
    wait_for(&format!("the archive to reach {want}"), T, || async {
        Ok((archived_position(c) == want).then_some(()))
    })
    .await
    .unwrap();
    want
}

/// `drill --to-now` of a new full backup with the archive on: writes after the
/// backup (two batches, in segments of their own) are applied; then one
/// segment is deleted and the drill fails naming the hole.
async fn to_now(
    c: &Cluster,
    topo: &Topo,
    p: &TabletProcess,
    r: &mut TabletProcess,
    s: &TabletProcess,
) {
    use cairn::backup::binlog_archive::{archive_dir, find_by_gtid, list_segments};
    use cairn::backup::storage::BackupStorage;
    use cairn::backup::FileStorage;
    use cairn::mysql::gtid::parse_gtid_list;

    let coord = c
        .spawn_coordinator("c2", &["--reconcile-interval", "1s"])
        .unwrap();
    coord.wait_leader(T).await.unwrap();
    let full = c
        .cli_ok(&["backup", &r.spec.alias()])
        .unwrap()
        .trim()
        .to_string();
    r.wait_healthy(topo, T).await.unwrap();
    c.cli_ok(&["archive", "set", "ks/0", "--interval", "1s"])
        .unwrap();
    wait_archived(c, p).await;
    p.sql("INSERT INTO app.t SELECT seq, 'to-now 1' FROM app.seq_3101_to_3200")
        .unwrap();
    let first = wait_archived(c, p).await;
    p.sql("INSERT INTO app.t SELECT seq, 'to-now 2' FROM app.seq_3201_to_3300")
        .unwrap();
    let end = wait_archived(c, p).await;
    let rows = p
        .sql("SELECT COUNT(*) FROM app.t")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(rows, "3300");

    let (code, out, text) = drill(c, &["--backup", &full, "--to-now"]);
    assert_eq!(code, 0, "{text}\n{}\n{}", r.log_tail(30), s.log_tail(30));
    assert_eq!(out["state"], "SUCCEEDED", "{out}");
    assert_eq!(out["drill_result"], "succeeded", "{out}");
    assert_eq!(out["to_now"], true, "{out}");
    let reached = out["restored_to"].as_str().unwrap_or_default();
    assert!(reached.starts_with(&format!("MariaDB/{end} ")), "{out}");
    let message = out["message"].as_str().unwrap();
    for want in [
        "apply ".to_string(),
        format!("position MariaDB/{end}"),
        format!("app.t {rows}"),
    ] {
        assert!(message.contains(&want), "{want}: {message}");
    }
    let chain = out["chain"].to_string();
    assert!(
        chain.contains("archive") && chain.contains(&full),
        "{chain}"
    );
    let rec = record(topo, &full).await;
    assert_eq!(rec.drill_result, Some(DrillResult::Succeeded));
    assert!(rec.drill_seconds.unwrap() > 0.0);
    println!("drill to now: {message}");
    assert_nothing_left(r);
    assert_nothing_left(s);

    // The same on a schedule (`--drill-to-now`): removed as soon as its first
    // job is written, which still runs to its end.
    c.cli_ok(&[
        "schedule",
        "set",
        "tonow",
        "--cron",
        "0 0 1 1 *",
        "--target",
        "ks/0",
        "--drill-cron",
        "*/2 * * * * *",
        "--drill-to-now",
    ])
    .unwrap();
    let id = wait_for("a scheduled drill to now", T, || async {
        let jobs = topo.list_jobs().await?;
        Ok(jobs
            .into_iter()
            .find(|j| j.value.schedule.as_deref() == Some("tonow:drill"))
            .map(|j| j.value.id))
    })
    .await
    .unwrap();
    c.cli_ok(&["schedule", "remove", "tonow"]).unwrap();
    let job = wait_for("the scheduled drill to now done", T, || async {
        let j = topo.get::<Job>(&topo.keys().job(&id)).await?;
        Ok(j.map(|j| j.value).filter(|j| j.state.is_final()))
    })
    .await
    .unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(job.backup_name.as_deref(), Some(full.as_str()));
    let pit = job.point_in_time.clone().expect("a drill to now");
    let reached = pit.restored_to.unwrap_or_default();
    assert!(reached.starts_with(&format!("MariaDB/{end} ")), "{reached}");
    assert!(
        pit.plan.iter().any(|l| l.contains("archive")),
        "{:?}",
        pit.plan
    );
    wait_for("no drill running", T, || async {
        let jobs = topo.list_jobs().await?;
        let running = jobs
            .iter()
            .any(|j| j.value.kind == JobKind::Drill && !j.value.state.is_final());
        Ok((!running).then_some(()))
    })
    .await
    .unwrap();
    assert_nothing_left(r);
    assert_nothing_left(s);

    // One segment gone: the drill fails naming the hole, and leaves nothing.
    let st = FileStorage::new(c.backup_root());
    let segs: Vec<_> = list_segments(&st, "ks", "0")
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let batch1 = *parse_gtid_list(&first).unwrap().last().unwrap();
    let last = *parse_gtid_list(&end).unwrap().last().unwrap();
    let gone = find_by_gtid(&segs, batch1)
        .expect("a segment holds the first batch")
        .clone();
    assert!(
        gone.last_gtid.is_some_and(|g| g.seq < last.seq),
        "the second batch has a segment of its own: {segs:?}"
    );
    st.remove_blob(&archive_dir("ks", "0"), &gone.format())
        .await
        .unwrap();
    let (code, out, text) = drill(c, &["--backup", &full, "--to-now"]);
    assert_eq!(code, 1, "{text}");
    assert_eq!(out["state"], "FAILED", "{out}");
    assert_eq!(out["drill_result"], "failed", "{out}");
    let why = record(topo, &full).await.drill_error.unwrap();
    assert!(
        why.contains("cannot reach") && why.contains(&format!("0-*-{}", batch1.seq)),
        "{why}"
    );
    println!("drill to now across a deleted segment: {why}");
    assert_nothing_left(r);
    assert_nothing_left(s);
    assert_eq!(r.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(), "3300");
    drop(coord);
}
