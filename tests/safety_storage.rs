//! Storage faults against real etcd, MariaDB and a leading coordinator:
//!
//! - a data object of a complete backup deleted from storage, and a catalogued
//!   backup whose MANIFEST turns unreadable: both keep their records (marked
//!   unreadable with the error) and their data, the Shard's latest backup falls
//!   back to the newest restorable one (or none), `list-backups` names the
//!   missing file, and restores in place and at start refuse before touching
//!   anything; the file put back makes the backup the latest again;
//! - backup storage full (a small tmpfs): the job FAILED with ENOSPC, no MANIFEST,
//!   the replica serving; a retry once space is freed succeeds;
//! - a tablet dir too small for a restore (a small tmpfs), in place and at start:
//!   refused up front by the space check, and with the check off the restore runs
//!   out of space midway and fails cleanly (old data served, nothing half-swapped,
//!   the partial copy gone); with room again the next start finishes it.
//!
//! The tmpfs tests need `mount` (they run as root); where mounting is not
//! permitted they print why and pass without checking anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, TabletProcess};
use cairn_topo::{BackupRecord, BackupRecordState, Topo};

const T: Duration = Duration::from_secs(180);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and one replica (uid + 1) of `ks/0`, with 500 rows.
async fn shard(c: &Cluster, topo: &Topo, uid: u32) -> (TabletProcess, TabletProcess) {
    let mut p = c.spawn_tablet(&c.tablet(uid, "ks", "0").unwrap()).unwrap();
    let mut r = c
        .spawn_tablet(&c.tablet(uid + 1, "ks", "0").unwrap())
        .unwrap();
    p.wait_healthy(topo, T).await.unwrap();
    r.wait_healthy(topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &p.spec.alias()])
        .unwrap();
    p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_500")
        .unwrap();
    r.wait_rows(500, T).await.unwrap();
    (p, r)
}

/// Inserts one row on the primary and waits for it on `t`: serving, replicating.
async fn still_replicating(c: &Cluster, p: &TabletProcess, t: &TabletProcess) {
    wait_for(
        &format!("{} healthy REPLICA", t.spec.alias()),
        T,
        || async {
            let all: Vec<serde_json::Value> =
                serde_json::from_str(&c.cli_ok(&["get-tablets", "--json"])?)?;
            Ok(all
                .iter()
                .find(|r| {
                    r["alias"] == t.spec.alias() && r["type"] == "REPLICA" && r["healthy"] == true
                })
                .map(|_| ()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(20)));
    let n = p.rows().unwrap();
    p.sql(&format!("INSERT INTO app.t VALUES ({}, 'x')", 100_000 + n))
        .unwrap();
    t.wait_rows(n + 1, T).await.unwrap();
}

fn list_backups(c: &Cluster) -> Vec<serde_json::Value> {
    let root = c.backup_root().display().to_string();
    let out = c
        .cli_ok(&[
            "list-backups",
            "ks/0",
            "--json",
            "--file-backup-storage-root",
            &root,
        ])
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

fn jobs(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

fn last_job(c: &Cluster) -> serde_json::Value {
    jobs(c)
        .into_iter()
        .max_by_key(|j| j["created_at"].to_string())
        .unwrap()
}

/// A builtin backup of `t`; its name.
fn backup(c: &Cluster, t: &TabletProcess) -> String {
    c.cli_ok(&["backup", &t.spec.alias()])
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)))
        .trim()
        .to_string()
}

async fn latest(topo: &Topo) -> Option<String> {
    topo.get_shard("ks", "0")
        .await
        .unwrap()
        .and_then(|s| s.value.latest_backup)
}

async fn record(topo: &Topo, name: &str) -> Option<BackupRecord> {
    topo.list_backup_records("ks", "0")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .find(|r| r.name == name)
}

/// Every MANIFEST under `dir`, recursively.
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(manifests(&p));
            } else if p.file_name().is_some_and(|n| n == "MANIFEST") {
                out.push(p);
            }
        }
    }
    out
}

/// What a failed or refused restore must not leave in a tablet dir.
fn nothing_half_done(dir: &Path) {
    for leftover in [
        "data.restore-staging",
        "data.before-restore",
        "restore_in_progress",
    ] {
        assert!(
            !dir.join(leftover).exists(),
            "{leftover} left in {}",
            dir.display()
        );
    }
}

/// A tmpfs mounted for one test, unmounted on drop (even when the test fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`64m`) at `dir`; `None`, saying why, when this
    /// machine does not let the test mount one.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                dir: dir.to_path_buf(),
            }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs at {} ({}): {}",
                    dir.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    /// Gives it room: remounts with `size`.
    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success(), "remounting {}", self.dir.display());
    }

    /// Bytes free in it.
    fn free(&self) -> u64 {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(self.dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: statvfs(3) on a valid C string into a zeroed struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }

    /// Fills it with a file until `leave` bytes are free; the file's path.
    fn fill(&self, leave: u64) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("ballast");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        while self.free() > leave {
            let n = (self.free() - leave).min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).unwrap();
            f.flush().unwrap();
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A mysqld killed a moment ago may still hold files open: retry a little,
        // then detach it lazily (it goes once the last file is closed).
        for _ in 0..30 {
            let out = Command::new("umount").arg(&self.dir).output();
            if out.is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_file_or_unreadable_manifest_is_never_the_latest_nor_restored() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 200).await;
        let coord = c
            .spawn_coordinator("c", &["--reconcile-interval", "1s"])
            .unwrap();
        coord.wait_leader(T).await.unwrap();
        let older = backup(&c, &r);
        p.sql("INSERT INTO app.t SELECT seq, 'b' FROM app.seq_501_to_600")
            .unwrap();
        r.wait_rows(600, T).await.unwrap();
        let newer = backup(&c, &r);
        assert_eq!(latest(&topo).await.as_deref(), Some(newer.as_str()));
        let shard_dir = c.backup_root().join("ks/0");

        // The newer backup's MANIFEST turns unreadable after it was catalogued.
        let path = shard_dir.join(&newer).join("MANIFEST");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m["FormatVersion"] = 999.into();
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        wait_for("the latest back on the older backup", T, || async {
            Ok((latest(&topo).await.as_deref() == Some(older.as_str())).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        let rec = wait_for("the newer record marked", T, || async {
            Ok(record(&topo, &newer)
                .await
                .filter(|r| r.state == BackupRecordState::Unreadable))
        })
        .await
        .unwrap();
        assert!(!rec.complete, "{rec:?}");
        assert!(
            rec.error
                .as_deref()
                .unwrap_or("")
                .contains("format version 999"),
            "{rec:?}"
        );

        // One data object of the older backup is deleted.
        let path = shard_dir.join(&older).join("MANIFEST");
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let entry = m["FileEntries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Name"] == "app/t.ibd")
            .unwrap()
            .clone();
        let stored = entry["StoredName"].as_str().unwrap().to_string();
        let object = shard_dir.join(&older).join(&stored);
        let saved = std::fs::read(&object).unwrap();
        std::fs::remove_file(&object).unwrap();
        let missing = format!("stored file {stored} (app/t.ibd) is missing from storage");
        wait_for("no latest backup at all", T, || async {
            let marked = record(&topo, &older)
                .await
                .is_some_and(|r| !r.complete && r.error.as_deref() == Some(missing.as_str()));
            Ok((marked && latest(&topo).await.is_none()).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));

        // Listed, with the file named.
        let listed = list_backups(&c);
        assert_eq!(listed.len(), 2, "{listed:?}");
        let row = listed.iter().find(|b| b["name"] == older.as_str()).unwrap();
        assert_eq!(row["state"], "unreadable", "{row}");
        assert_eq!(row["error"], missing.as_str(), "{row}");

        // In place: refused before anything, the replica keeps serving its data.
        let (pid, before) = (r.mysqld_pid(), r.rows().unwrap());
        let out = c.cli(&["restore-from-backup", &r.spec.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&missing), "{err}");
        assert_eq!(last_job(&c)["state"], "FAILED");
        assert_eq!(r.mysqld_pid(), pid, "mysqld was restarted");
        assert_eq!(r.rows().unwrap(), before);
        nothing_half_done(&r.spec.dir);
        still_replicating(&c, &p, &r).await;

        // At start: refused, nothing written into the new tablet's directory.
        let mut spec = c.tablet(202, "ks", "0").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        let mut seed = c.spawn_tablet(&spec).unwrap();
        let st = seed.wait_exit(T).await.unwrap();
        assert!(!st.success());
        assert!(seed.log().contains(&missing), "{}", seed.log_tail(20));
        assert!(!spec.dir.join("data").exists());
        nothing_half_done(&spec.dir);

        // Nothing was deleted: both backups and both records are still there.
        for n in [&older, &newer] {
            assert!(shard_dir.join(n).join("MANIFEST").is_file(), "{n}");
            assert!(record(&topo, n).await.is_some(), "{n}");
        }

        // The object put back: complete again, the latest again, and it seeds.
        std::fs::write(&object, &saved).unwrap();
        wait_for("the older backup the latest again", T, || async {
            let ok = record(&topo, &older)
                .await
                .is_some_and(|r| r.complete && r.error.is_none());
            Ok((ok && latest(&topo).await.as_deref() == Some(older.as_str())).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        let mut seed = c.spawn_tablet(&spec).unwrap();
        seed.wait_healthy(&topo, T).await.unwrap();
        assert!(seed.log().contains(&older), "{}", seed.log_tail(20));
        seed.wait_rows(p.rows().unwrap(), T).await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_storage_full_fails_the_job_cleanly_and_a_retry_succeeds() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let c = cluster().await;
        let Some(storage) = Tmpfs::mount(&c.backup_root(), "64m") else {
            return;
        };
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 300).await;
        // 6 MiB that does not compress, so the backup cannot fit in what is left.
        p.sql("CREATE TABLE app.noise (id INT PRIMARY KEY, b BLOB); INSERT INTO app.noise SELECT seq, RANDOM_BYTES(1024) FROM app.seq_1_to_6000")
            .unwrap();
        r.wait_value("SELECT COUNT(*) FROM app.noise", "6000", T)
            .await
            .unwrap();
        let ballast = storage.fill(3 << 20);

        let out = c.cli(&["backup", &r.spec.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", r.log_tail(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No space left on device"), "{err}");
        let job = last_job(&c);
        assert_eq!(job["state"], "FAILED", "{job}");
        assert!(
            job["error"].as_str().unwrap_or("").contains("No space left on device"),
            "{job}"
        );
        // No MANIFEST, and the partial backup was removed.
        assert!(manifests(&c.backup_root()).is_empty());
        assert!(list_backups(&c).is_empty(), "{:?}", list_backups(&c));
        assert!(topo.list_backup_records("ks", "0").await.unwrap().is_empty());
        still_replicating(&c, &p, &r).await;

        // Space freed: the same backup succeeds.
        std::fs::remove_file(&ballast).unwrap();
        let name = backup(&c, &r);
        let listed = list_backups(&c);
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["name"], name.as_str());
        assert_eq!(listed[0]["state"], "complete");
        assert_eq!(latest(&topo).await.as_deref(), Some(name.as_str()));
        still_replicating(&c, &p, &r).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_into_a_full_tablet_dir_fail_cleanly() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 400).await;
        let name = backup(&c, &r);
        let skip = vec![(
            "CAIRN_FAULT_SKIP_CHECK".to_string(),
            "restore-space".to_string(),
        )];

        // In place, on a replica whose tablet dir (its data and the staging copy)
        // is a tmpfs with room for one data directory, not two.
        let mut spec = c.tablet(402, "ks", "0").unwrap();
        let Some(_small) = Tmpfs::mount(&spec.dir, "100m") else {
            return;
        };
        spec.env = skip.clone();
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        t.wait_rows(p.rows().unwrap(), T).await.unwrap();
        // With the space check off, the copy runs out of space midway.
        let (pid, before) = (t.mysqld_pid(), t.rows().unwrap());
        let out = c.cli(&["restore-from-backup", &t.spec.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", t.log_tail(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No space left on device"), "{err}");
        assert!(err.contains("the tablet keeps its data"), "{err}");
        assert_eq!(t.mysqld_pid(), pid, "mysqld was restarted");
        assert_eq!(t.rows().unwrap(), before);
        nothing_half_done(&t.spec.dir);
        still_replicating(&c, &p, &t).await;
        // With the check on (no fault variable), refused before anything.
        t.terminate(T).unwrap();
        spec.env = vec![];
        let t = {
            let mut t = c.spawn_tablet(&spec).unwrap();
            t.wait_healthy(&topo, T).await.unwrap();
            t
        };
        let pid = t.mysqld_pid();
        let out = c.cli(&["restore-from-backup", &t.spec.alias()]).unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", t.log_tail(20));
        let err = String::from_utf8_lossy(&out.stderr);
        let want = format!(
            "not enough space in {} to restore backup {name}",
            spec.dir.display()
        );
        assert!(err.contains(&want), "{err}");
        assert_eq!(t.mysqld_pid(), pid);
        nothing_half_done(&t.spec.dir);
        still_replicating(&c, &p, &t).await;

        // At start, into a tablet dir smaller than the backup.
        let mut spec = c.tablet(403, "ks", "0").unwrap();
        let Some(tiny) = Tmpfs::mount(&spec.dir, "40m") else {
            return;
        };
        spec.extra = vec!["--restore-from-backup".into()];
        let mut seed = c.spawn_tablet(&spec).unwrap();
        assert!(!seed.wait_exit(T).await.unwrap().success());
        assert!(
            seed.log().contains("not enough space in"),
            "{}",
            seed.log_tail(20)
        );
        assert!(!spec.dir.join("data").exists());
        nothing_half_done(&spec.dir);
        // With the check off: out of space midway; the partial copy is gone and
        // the marker stays, so the next start redoes the restore.
        spec.env = skip.clone();
        let mut seed = c.spawn_tablet(&spec).unwrap();
        assert!(!seed.wait_exit(T).await.unwrap().success());
        assert!(
            seed.log().contains("No space left on device"),
            "{}",
            seed.log_tail(20)
        );
        assert!(!spec.dir.join("data").exists());
        assert!(!spec.dir.join("data.restore-staging").exists());
        assert!(spec.dir.join("restore_in_progress").is_file());
        // Room again: a plain start (no flag) finishes the restore.
        tiny.resize("200m");
        spec.env = vec![];
        spec.extra = vec![];
        let mut seed = c.spawn_tablet(&spec).unwrap();
        seed.wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(seed.log().contains(&name), "{}", seed.log_tail(20));
        nothing_half_done(&spec.dir);
        seed.wait_rows(p.rows().unwrap(), T).await.unwrap();
    })
    .await
    .expect("test timed out");
}
