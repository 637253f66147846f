//! Recovery of an interrupted restore, at every start whatever the flags: what the
//! tablet directory holds after a crash at any step of a restore (the
//! `restore_in_progress` marker, `data/`, `data.before-restore/`) decides whether the
//! kept old data comes back ([`Recovery::RollBack`]), the restore is redone from the
//! backup the marker names ([`Recovery::Redo`]), or nothing needs doing. The decision
//! is the pure [`plan_recovery`] (table-tested); [`Agent::recover_interrupted_restore`]
//! applies it with renames made durable (the tablet directory is fsynced).
//!
//! Also owns the marker's format ([`Marker`]) and the durable file operations both
//! kinds of restore use. Calls `common` and the agent's own state only.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context};

use super::agent::Agent;

/// The marker file: written before a restore touches the data directory, removed
/// once the restored data serves from the backup's position.
pub const MARKER: &str = "restore_in_progress";
/// Where an in-place restore keeps the old data until the restored data serves.
pub const BEFORE_RESTORE: &str = "data.before-restore";
/// Where a restore is built and verified before it is swapped in.
pub const STAGING: &str = "data.restore-staging";
/// Where restored data that did not start (or was rolled back) is kept for a look.
pub const FAILED_RESTORE: &str = "data.failed-restore";

/// Which restore wrote the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// A restore at start: there is no old data to go back to.
    AtStart,
    /// An in-place restore: the old data is kept in `data.before-restore`.
    InPlace,
}

/// The marker's content: the backup being restored and which restore it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The backup's name (empty if the marker was unreadable).
    pub backup: String,
    /// Which restore wrote it.
    pub kind: MarkerKind,
}

impl Marker {
    /// Parses `<backup>\n[in-place|at-start]\n`; a marker of one line (older agents)
    /// is a restore at start.
    pub fn parse(text: &str) -> Marker {
        let mut lines = text.lines().map(str::trim);
        let backup = lines.next().unwrap_or("").to_string();
        let kind = match lines.next() {
            Some("in-place") => MarkerKind::InPlace,
            _ => MarkerKind::AtStart,
        };
        Marker { backup, kind }
    }

    /// The file's content.
    pub fn render(&self) -> String {
        let kind = match self.kind {
            MarkerKind::AtStart => "at-start",
            MarkerKind::InPlace => "in-place",
        };
        format!("{}\n{kind}\n", self.backup)
    }
}

/// What a start does about an interrupted restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No restore was interrupted.
    Nothing,
    /// A restore finished but its old data was not removed yet: remove it.
    DiscardOld,
    /// An in-place restore died before it moved anything: the data is the old data,
    /// intact; drop the marker.
    DropMarker,
    /// Put the kept old data back (the restored data, if any, is moved aside) and
    /// drop the marker.
    RollBack,
    /// Restore this backup again (a restore at start has no old data to go back to).
    Redo(String),
    /// Do not start: say why.
    Refuse(String),
}

/// Decides what to do about an interrupted restore from what the tablet directory
/// holds: the marker (if any), whether `data/` has anything in it and whether
/// `data.before-restore/` exists; `is_primary`: the Shard record names this tablet
/// primary (a primary is never restored over). Old data, when kept, always wins:
/// it is consistent (mysqld was shut down cleanly before the swap). Pure.
pub fn plan_recovery(
    marker: Option<&Marker>,
    data_exists: bool,
    before_restore_exists: bool,
    is_primary: bool,
) -> Recovery {
    match (marker, before_restore_exists) {
        (None, false) => Recovery::Nothing,
        // The marker goes before the old data: the restore finished.
        (None, true) if data_exists => Recovery::DiscardOld,
        // Only the old data is left (a failed swap being put back): put it back.
        (None, true) => Recovery::RollBack,
        (Some(_), true) => Recovery::RollBack,
        (Some(m), false) if m.kind == MarkerKind::InPlace && data_exists => Recovery::DropMarker,
        (Some(m), false) if m.backup.is_empty() => Recovery::Refuse(format!(
            "a restore was interrupted ({MARKER} is present) but its marker names no backup and no old data is kept: remove {MARKER} to start anyway, or restore again"
        )),
        (Some(_), false) if is_primary => Recovery::Refuse(format!(
            "a restore was interrupted but the shard names this tablet primary: a primary is never restored over; make another tablet primary, or remove {MARKER} to keep this data"
        )),
        (Some(m), false) => Recovery::Redo(m.backup.clone()),
    }
}

/// Whether `dir` holds anything (a missing or unreadable dir holds nothing).
pub fn dir_has_entries(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Makes the entries of `dir` (renames, new and removed files) durable.
pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Writes the marker durably (file and directory).
pub fn write_marker(dir: &Path, m: &Marker) -> anyhow::Result<()> {
    let path = dir.join(MARKER);
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let write = || -> std::io::Result<()> {
        let f = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &f, m.render().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().with_context(|| format!("writing {}", path.display()))?;
    sync_dir(dir)
}

/// Removes the marker durably; a marker that cannot be removed is an error (the
/// next start would act on it).
pub fn remove_marker(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(MARKER);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    sync_dir(dir)
}

/// Renames `from` to `to` and makes it durable.
pub fn rename_durably(dir: &Path, from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::rename(from, to)
        .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    sync_dir(dir)
}

/// Removes a directory tree; a missing one is fine.
pub fn remove_dir_if_exists(p: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

/// Reads the marker; `None` if absent. An unreadable marker is an error: the start
/// cannot decide without it.
pub fn read_marker(dir: &Path) -> anyhow::Result<Option<Marker>> {
    let path = dir.join(MARKER);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(Marker::parse(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Puts the kept old data back in `data` (anything there is moved aside to
/// `data.failed-restore`), durably, then drops the marker.
pub fn roll_back(dir: &Path, data: &Path) -> anyhow::Result<()> {
    let old = dir.join(BEFORE_RESTORE);
    let failed = dir.join(FAILED_RESTORE);
    if data.exists() {
        remove_dir_if_exists(&failed)?;
        rename_durably(dir, data, &failed).context("moving the restored data aside")?;
    }
    rename_durably(dir, &old, data).context("putting the old data back")?;
    remove_marker(dir)
}

impl Agent {
    /// Applies [`plan_recovery`] to the tablet directory before mysqld starts.
    /// Returns the backup to restore again if a restore at start was interrupted
    /// (its marker stays until that restore finishes); errors if the tablet must
    /// not start.
    pub(super) async fn recover_interrupted_restore(
        &self,
        is_primary: bool,
        data: &Path,
    ) -> anyhow::Result<Option<String>> {
        let dir = &self.cfg.tablet_dir;
        let marker = read_marker(dir)?;
        let old = dir.join(BEFORE_RESTORE);
        let plan = plan_recovery(
            marker.as_ref(),
            dir_has_entries(data),
            old.exists(),
            is_primary,
        );
        if plan != Recovery::Nothing {
            tracing::warn!(?marker, recovery = ?plan, "found an interrupted restore");
        }
        let staging = dir.join(STAGING);
        if matches!(plan, Recovery::RollBack | Recovery::Redo(_)) {
            // A killed agent leaves its mysqld running, perhaps on the data about to
            // be moved: stop it first.
            self.stop_orphan_mysqld(data).await?;
        }
        match plan {
            Recovery::Nothing => {}
            Recovery::DiscardOld => {
                if let Err(e) = remove_dir_if_exists(&old) {
                    tracing::warn!(error = %format!("{e:#}"), "cannot remove the pre-restore data");
                }
            }
            Recovery::DropMarker => {
                remove_dir_if_exists(&staging)?;
                remove_marker(dir)?;
                tracing::warn!(
                    "the interrupted in-place restore had not touched the data; keeping it"
                );
            }
            Recovery::RollBack => {
                remove_dir_if_exists(&staging)?;
                roll_back(dir, data)?;
                tracing::warn!("rolled back to the data kept before the interrupted restore");
            }
            Recovery::Redo(name) => return Ok(Some(name)),
            Recovery::Refuse(why) => bail!("{why}"),
        }
        Ok(None)
    }
}

impl Agent {
    /// Stops a mysqld that a killed agent left running on this tablet's data
    /// directory (its pid file names it and its command line names the data dir):
    /// SIGTERM, then SIGKILL after two minutes. Nothing running is fine.
    pub(super) async fn stop_orphan_mysqld(&self, data: &Path) -> anyhow::Result<()> {
        let pid_file = self.mysqld.lock().await.pid_file();
        let Some(pid) = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 0 && serves_datadir(*pid, data))
        else {
            return Ok(());
        };
        tracing::warn!(
            pid,
            "stopping the mysqld left running by the interrupted restore"
        );
        for (sig, wait) in [(libc::SIGTERM, 120), (libc::SIGKILL, 30)] {
            // SAFETY: kill(2) on a pid whose command line names our data directory.
            unsafe { libc::kill(pid, sig) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
            while std::time::Instant::now() < deadline {
                if !alive(pid) {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        bail!(
            "the mysqld left running (pid {pid}) on {} does not stop",
            data.display()
        )
    }
}

/// Whether `pid` is a live process whose command line names `data`.
fn serves_datadir(pid: i32, data: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let mut want = b"--datadir=".to_vec();
    want.extend_from_slice(data.as_os_str().as_encoded_bytes());
    alive(pid) && cmdline.split(|b| *b == 0).any(|arg| arg == want.as_slice())
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[cfg(test)]
#[path = "recovery/tests.rs"]
mod tests;
