//! Verifying backups where they are stored, without restoring them and without a
//! decryption key: the MANIFEST parses and is restorable, and every object it
//! lists exists with the recorded stored size and content hash. Reports are per
//! backup, OK / WARNING / FAILURE, one [`Problem`] per line; `cairn verify` prints
//! them, and the shard-level checks (the newest good backup's age against its
//! schedule) are added by the caller, which knows the schedules.
//!
//! The verdicts are pure functions ([`judge_object`], [`judge_listing`],
//! [`judge_freshness`], [`worst`]) with table tests; [`verify_backup`] is the thin
//! IO around them: it streams each object through its hash, several at once. It
//! only reads storage.
//!
//! Submodules: [`chain`] (the chain of incrementals and archived segments from
//! each full backup, pure) and [`segments`] (the archived segments' objects).
//!
//! May call: [`super::storage`], [`super::manifest`], [`super::pipeline`] (the
//! content hash).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

use super::manifest::{FileEntry, HashAlgorithm};
use super::pipeline::digest_reader;
use super::storage::{BackupInfo, BackupState, BackupStorage};

/// How bad a finding is. Ordered: the worst of a report is its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Nothing wrong.
    Ok,
    /// Worth a look, but every complete backup checked is restorable.
    Warning,
    /// A backup that cannot be restored as recorded, or a shard out of date.
    Failure,
}

impl Status {
    /// `OK`, `WARNING` or `FAILURE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Failure => "FAILURE",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// How bad it is.
    pub status: Status,
    /// The stored object it is about (`<backup>/<stored name>`), if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

impl Problem {
    fn new(status: Status, object: Option<String>, message: String) -> Self {
        Self {
            status,
            object,
            message,
        }
    }
}

/// The verdict on one backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The backup's name.
    pub name: String,
    /// The worst of its problems (OK when none).
    pub status: Status,
    /// What was found, one line each.
    pub problems: Vec<Problem>,
    /// Objects whose hash was checked.
    pub objects: usize,
    /// Stored bytes read and hashed.
    pub bytes: u64,
    /// Seconds the check took.
    pub seconds: f64,
}

/// The worst status of `problems` (OK when there are none).
pub fn worst<'a>(problems: impl IntoIterator<Item = &'a Problem>) -> Status {
    problems
        .into_iter()
        .map(|p| p.status)
        .max()
        .unwrap_or(Status::Ok)
}

/// What reading one stored object gave: its stored bytes and hex digest, or why
/// it could not be read.
pub type Observed = Result<(u64, String), String>;

/// The verdict on one object against its MANIFEST entry: `None` when its size
/// and hash are the recorded ones.
pub fn judge_object(backup: &str, entry: &FileEntry, observed: &Observed) -> Option<Problem> {
    let object = Some(format!("{backup}/{}", entry.stored_name));
    let fail = |m: String| Some(Problem::new(Status::Failure, object.clone(), m));
    match observed {
        Err(why) => fail(format!(
            "{} ({}) cannot be read: {why}",
            entry.stored_name, entry.name
        )),
        Ok((size, _)) if *size != entry.stored_size => fail(format!(
            "{} ({}) has {size} bytes in storage, its MANIFEST says {}",
            entry.stored_name, entry.name, entry.stored_size
        )),
        Ok((_, hash)) if !hash.eq_ignore_ascii_case(&entry.hash) => fail(format!(
            "{} ({}) has {} {hash}, its MANIFEST says {}",
            entry.stored_name, entry.name, entry.hash_algorithm, entry.hash
        )),
        Ok(_) => None,
    }
}

/// The verdict a storage listing already gives, before any object is read:
/// incomplete (no MANIFEST) is a warning, since it may still be being written;
/// an unreadable MANIFEST or a missing object is a failure.
pub fn judge_listing(info: &BackupInfo) -> Vec<Problem> {
    match info.state {
        BackupState::Complete => vec![],
        BackupState::Incomplete => vec![Problem::new(
            Status::Warning,
            None,
            format!(
                "{}: no MANIFEST (being written, or abandoned: never restored)",
                info.name
            ),
        )],
        BackupState::Unreadable => vec![Problem::new(
            Status::Failure,
            None,
            format!(
                "{}: {}",
                info.name,
                info.error.as_deref().unwrap_or("unreadable")
            ),
        )],
    }
}

/// The shard-level freshness check: the newest good backup must be younger than
/// the schedule's longest gap between runs plus how long its backups usually
/// take. `newest_good_age` is `None` when no backup verified good.
pub fn judge_freshness(
    schedule: &str,
    newest_good_age: Option<Duration>,
    period: Duration,
    usual_duration: Duration,
) -> Option<Problem> {
    let limit = period + usual_duration;
    let h = crate::common::format_duration;
    match newest_good_age {
        None => Some(Problem::new(
            Status::Failure,
            None,
            format!("no good backup, and schedule {schedule} wants one every {}", h(period)),
        )),
        Some(age) if age > limit => Some(Problem::new(
            Status::Failure,
            None,
            format!(
                "newest good backup is {} old; schedule {schedule} runs at least every {} and backups take about {}, so it should be at most {} old",
                h(age),
                h(period),
                h(usual_duration),
                h(limit)
            ),
        )),
        Some(_) => None,
    }
}

/// Checks every object of one listed backup: sizes and hashes, `concurrency`
/// objects at a time. Reads storage only.
pub async fn verify_backup(
    storage: Arc<dyn BackupStorage>,
    keyspace: &str,
    shard: &str,
    info: &BackupInfo,
    concurrency: usize,
) -> BackupReport {
    let started = Instant::now();
    let mut problems = judge_listing(info);
    let mut objects = 0;
    let mut bytes = 0;
    if let Some(manifest) = info.restorable_manifest() {
        let limit = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = Vec::new();
        for entry in manifest.file_entries.iter().cloned() {
            let (storage, limit) = (storage.clone(), limit.clone());
            let (ks, sh, name) = (keyspace.to_string(), shard.to_string(), info.name.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let observed = read_object(storage, &ks, &sh, &name, &entry).await;
                (entry, observed)
            }));
        }
        for task in tasks {
            let (entry, observed) = match task.await {
                Ok(r) => r,
                Err(e) => {
                    problems.push(Problem::new(
                        Status::Failure,
                        None,
                        format!("{}: a check stopped: {e}", info.name),
                    ));
                    continue;
                }
            };
            objects += 1;
            if let Ok((n, _)) = &observed {
                bytes += n;
            }
            problems.extend(judge_object(&info.name, &entry, &observed));
        }
    }
    BackupReport {
        name: info.name.clone(),
        status: worst(&problems),
        problems,
        objects,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Streams one stored object through the hash its entry names.
async fn read_object(
    storage: Arc<dyn BackupStorage>,
    keyspace: &str,
    shard: &str,
    name: &str,
    entry: &FileEntry,
) -> Observed {
    let Some(algorithm) = HashAlgorithm::parse(&entry.hash_algorithm) else {
        return Err(format!("unknown hash algorithm {:?}", entry.hash_algorithm));
    };
    let mut reader = storage
        .open_file(keyspace, shard, name, &entry.stored_name)
        .await
        .map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || digest_reader(&mut reader, algorithm))
        .await
        .map_err(|e| format!("hashing stopped: {e}"))?
        .map_err(|e| e.to_string())
}

pub mod chain;
pub mod segments;

#[cfg(test)]
mod tests;
