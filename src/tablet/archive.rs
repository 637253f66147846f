//! The agent's ARCHIVE job: continuous binlog archiving of its shard. The job
//! streams the shard primary's binlog into a spool directory under the tablet
//! dir (`mariadb-binlog --raw --stop-never`, [`crate::mysql::binlog_stream`]) and
//! every `--interval` stores what arrived, cut at transaction boundaries
//! ([`crate::backup::binlog_archive::cut`]), as immutable segments through the
//! backup pipeline's compression and encryption; then it records the archive's
//! state in the shard's archive record (one compare-and-swap per interval).
//!
//! An ARCHIVE job runs beside backups and restores (it reads the primary, not
//! this tablet's mysqld), at most one per agent. It resumes from storage, the
//! truth: the next segment starts where the newest stored one ends (same
//! primary), or, after the primary changed, at the first transaction the archive
//! does not hold yet. It follows the Shard record's primary by itself. It ends
//! SUCCEEDED when the archive record is removed (`archive remove`), and is
//! stopped like any job when its record is made final or the lease is lost.
//! Every so often it also compacts the shard's old segments (`compact`).
//!
//! Calls `backup` (binlog_archive, storage), `mysql` (binlog, binlog_stream,
//! gtid), the job runner's outcome writing, `common` and `cairn-topo`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::{ArchiveRecord, Job, JobKind, JobState, Tablet, TabletAlias, Versioned};
use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::agent::{Agent, JobRun};
use super::fence::{self, claim_is_ours, stale_pending_reason};
use crate::backup::binlog_archive::cut::plan_cut;
use crate::backup::binlog_archive::{
    binlog_file_index, encode_segment, list_segments, resume_point, store_segment, SegmentName,
};
use crate::backup::storage::StorageError;
use crate::common::lock;
use crate::mysql::binlog_stream::{primary_binlogs, BinlogStream, StreamSource};
use crate::mysql::gtid::{
    format_gtid_list, merge_gtid_lists, parse_gtid_list, position_contains, Gtid,
};

#[path = "archive/spool.rs"]
mod spool;

#[path = "archive/compact.rs"]
mod compact;

/// A segment holds at most this many bytes (unless one transaction is larger).
const MAX_SEGMENT: u64 = 64 << 20;
/// Read at most this much of a spooled file per pass.
const WINDOW: u64 = 256 << 20;
/// The state is written at least this often while nothing new arrives, so the
/// loss window the coordinator reports stays current.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Wait before a new session after a failed one.
const SESSION_PAUSE: Duration = Duration::from_secs(1);

/// Why an archiving session ended.
enum SessionEnd {
    /// The archive record is gone: the job is done.
    Removed,
    /// The job was stopped.
    Stopped,
    /// Start a new session (primary changed, stream ended, an error).
    Again(String),
}

/// One streaming session against one primary.
struct Session {
    source: TabletAlias,
    server_id: u32,
    stream: BinlogStream,
    spool: PathBuf,
    /// The source file the cursor is in, and the offset in it.
    file: String,
    offset: u64,
    /// Transactions already archived from an earlier primary (skipped).
    skip: Option<Vec<Gtid>>,
    next_number: u64,
}

/// What one pass stored.
#[derive(Default)]
struct Pass {
    segments: u64,
    bytes: u64,
    txns: Vec<(Gtid, u32)>,
    first_ts: Option<u32>,
    /// Everything spooled was complete and stored when the pass ended.
    caught_up: bool,
}

impl Agent {
    /// Takes a PENDING ARCHIVE job of this tablet (one at a time), or stops the
    /// running one when its record is made final elsewhere.
    pub(super) async fn consider_archive(self: &Arc<Self>, job: Versioned<Job>) {
        let j = &job.value;
        if j.state.is_final() {
            let run = lock(&self.status).archive_run.clone();
            if let Some(run) = run.filter(|r| r.id == j.id && !r.stopped()) {
                run.stop(&format!(
                    "the archive job was marked {:?} in etcd ({})",
                    j.state,
                    j.error.as_deref().unwrap_or("no reason given")
                ));
            }
            return;
        }
        if j.state != JobState::Pending {
            return;
        }
        if let Some(why) = stale_pending_reason(j, Utc::now()) {
            let _ = self.finish_job(&j.id, Err(why), None, None, None).await;
            return;
        }
        let running = lock(&self.status)
            .archive_run
            .as_ref()
            .map(|r| r.id.clone());
        if let Some(other) = running {
            if other != j.id {
                let why = format!("tablet already runs the archive job {other}");
                let _ = self.finish_job(&j.id, Err(why), None, None, None).await;
            }
            return;
        }
        let claimed = self.lease.state();
        let mut taken = j.clone();
        taken.state = JobState::Running;
        taken.started_at = Some(Utc::now());
        taken.owner_lease = Some(claimed.id);
        let key = self.topo.keys().job(&j.id);
        if let Err(e) = self.topo.update(&key, &taken, job.version).await {
            match self.read_job_back(&key).await {
                Some(found) if claim_is_ours(&taken, found.as_ref()) => {}
                _ => {
                    tracing::info!(job = %j.id, error = %e, "archive job changed before it could be taken");
                    return;
                }
            }
        }
        let run = JobRun::new(&taken.id, claimed, &self.cancel);
        lock(&self.status).archive_run = Some(run.clone());
        let agent = self.clone();
        let span = tracing::info_span!("archive", job = %taken.id);
        tokio::spawn(
            async move {
                if fence::lease_lost(claimed, agent.lease.state()) {
                    run.stop(fence::LEASE_LOST);
                }
                let watcher =
                    tokio::spawn(fence::watch_lease(run.clone(), agent.lease.subscribe()));
                let outcome = agent.run_archive(&taken, &run).await;
                watcher.abort();
                lock(&agent.status).archive_run = None;
                if agent.cancel.is_cancelled() {
                    // Shutting down: the job stays RUNNING; the next start fails it
                    // and the coordinator places a new one.
                    return;
                }
                let result =
                    outcome.map_err(|e| super::jobs::job_error(&e, run.stop_reason().as_deref()));
                agent
                    .record_outcome(&taken.id, result, None, None, (0, 0))
                    .await;
            }
            .instrument(span),
        );
    }

    /// The job's body: sessions, one per primary (or after a failure), until the
    /// archive is removed or the job stopped.
    async fn run_archive(self: &Arc<Self>, job: &Job, run: &JobRun) -> anyhow::Result<()> {
        debug_assert_eq!(job.kind, JobKind::Archive);
        loop {
            match self.archive_session(job, run).await {
                Ok(SessionEnd::Removed) => {
                    tracing::info!("the shard's archive was removed: archiving stops");
                    return Ok(());
                }
                Ok(SessionEnd::Stopped) => bail!("archiving stopped"),
                Ok(SessionEnd::Again(why)) => {
                    tracing::info!(reason = %why, "archiving session ended; starting a new one");
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::warn!(error = %why, "archiving session failed; retrying");
                    self.note_archive_error(job, &why).await;
                }
            }
            tokio::select! {
                _ = run.cancel.cancelled() => bail!("archiving stopped"),
                _ = tokio::time::sleep(SESSION_PAUSE) => {}
            }
        }
    }

    /// The shard's archive record (`None`: removed).
    async fn archive_record(&self) -> anyhow::Result<Option<Versioned<ArchiveRecord>>> {
        let key = self
            .topo
            .keys()
            .archive(&self.cfg.keyspace, &self.cfg.shard);
        Ok(self.topo.get::<ArchiveRecord>(&key).await?)
    }

    /// The primary the Shard record names, with its Tablet record.
    async fn shard_primary(&self) -> anyhow::Result<Option<Tablet>> {
        let shard = self
            .topo
            .get_shard(&self.cfg.keyspace, &self.cfg.shard)
            .await?;
        let Some(alias) = shard.and_then(|s| s.value.primary_alias) else {
            return Ok(None);
        };
        let t = self
            .topo
            .get::<Tablet>(&self.topo.keys().tablet(&alias))
            .await?;
        Ok(t.map(|t| t.value))
    }

    /// Starts streaming from where the archive ends and stores what arrives every
    /// interval until something ends the session.
    async fn archive_session(&self, job: &Job, run: &JobRun) -> anyhow::Result<SessionEnd> {
        let Some(rec) = self.archive_record().await? else {
            return Ok(SessionEnd::Removed);
        };
        let Some(primary) = self.shard_primary().await? else {
            return Ok(SessionEnd::Again("the shard has no primary yet".into()));
        };
        let mut s = self.open_session(&primary, &rec.value).await?;
        let mut interval = Duration::from_millis(rec.value.interval_ms.max(1000));
        let mut last_write = Instant::now() - HEARTBEAT;
        let (compact_after, compact_every) = compact::compaction_timing();
        let mut last_compact = Instant::now();
        let end = loop {
            tokio::select! {
                _ = run.cancel.cancelled() => break SessionEnd::Stopped,
                _ = tokio::time::sleep(interval) => {}
            }
            let read_at = Utc::now();
            let pass = self.archive_pass(&mut s).await;
            let exited = s.stream.exited();
            let (pass, error) = match pass {
                Ok(p) => (p, None),
                Err((p, e)) => (p, Some(format!("{e:#}"))),
            };
            let safe_at =
                (pass.caught_up && exited.is_none() && error.is_none()).then_some(read_at);
            if pass.segments > 0 || error.is_some() || last_write.elapsed() >= HEARTBEAT {
                match self
                    .record_archive_state(job, &s, &pass, safe_at, error.clone())
                    .await
                {
                    Ok(Some(r)) => {
                        last_write = Instant::now();
                        // `archive set` on an archived shard changes the interval.
                        interval = Duration::from_millis(r.value.interval_ms.max(1000));
                    }
                    Ok(None) => break SessionEnd::Removed,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot record the archive's state; retrying next interval")
                    }
                }
            }
            if let Some(e) = error {
                break SessionEnd::Again(e);
            }
            if let Some(why) = exited {
                break SessionEnd::Again(why);
            }
            match self.shard_primary().await {
                Ok(Some(p)) if p.alias != s.source => {
                    break SessionEnd::Again(format!("the primary is now {}", p.alias))
                }
                _ => {}
            }
            if last_compact.elapsed() >= compact_every {
                last_compact = Instant::now();
                self.compact_archive(compact_after).await;
            }
        };
        let spool = s.spool.clone();
        s.stream.stop().await;
        let _ = tokio::fs::remove_dir_all(&spool).await;
        let _ = tokio::fs::remove_file(spool.with_extension("stderr")).await;
        Ok(end)
    }

    /// Decides where to start (from storage) and starts the stream.
    async fn open_session(&self, primary: &Tablet, rec: &ArchiveRecord) -> anyhow::Result<Session> {
        let storage = self.storage()?;
        let src = StreamSource {
            host: primary.mysql_host.clone(),
            port: primary.mysql_port,
            user: self.cfg.repl_user.clone(),
            password: self.cfg.repl_password.clone(),
        };
        let pb = primary_binlogs(&src).await?;
        let Some(oldest) = pb.files.first() else {
            bail!(
                "primary {} has no binary logs (is log-bin on?)",
                primary.alias
            );
        };
        let segs: Vec<SegmentName> = list_segments(storage, &self.cfg.keyspace, &self.cfg.shard)
            .await
            .context("listing the archived segments")?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let archived = {
            let mut lists = vec![parse_gtid_list(&rec.state.position).unwrap_or_default()];
            lists.extend(segs.iter().filter_map(|s| s.last_gtid).map(|g| vec![g]));
            merge_gtid_lists(&lists)
        };
        let rp = resume_point(&segs, pb.server_id);
        let same_source = segs.last().is_some_and(|s| s.server_id == pb.server_id);
        let by_index = |idx: u64| {
            pb.files
                .iter()
                .find(|(f, _)| binlog_file_index(f) == Some(idx))
                .map(|(f, _)| f.clone())
        };
        let (file, offset, skip) = match rp.file {
            Some((_, idx, end)) if same_source => match by_index(idx) {
                Some(f) => (f, end, None),
                None => {
                    let newer = pb
                        .files
                        .iter()
                        .find(|(f, _)| binlog_file_index(f) > Some(idx));
                    let (f, _) = newer.unwrap_or(oldest);
                    tracing::error!(file_index = idx, next = %f, "the binlog the archive ends in is gone from the primary: the archive has a gap");
                    (f.clone(), 0, Some(archived.clone()))
                }
            },
            _ if segs.is_empty() && archived.is_empty() => (oldest.0.clone(), 0, None),
            _ => {
                // Another primary archived last: the newest file that starts within
                // what is archived, then skip what is archived already.
                let start = pb.files.iter().rev().find(|(_, pos)| {
                    parse_gtid_list(pos).is_ok_and(|p| position_contains(&archived, &p))
                });
                let (f, _) = start.unwrap_or_else(|| {
                    tracing::error!(archived = %format_gtid_list(&archived), "no binlog of the new primary starts within the archive: the archive has a gap");
                    oldest
                });
                (f.clone(), 0, Some(archived.clone()))
            }
        };
        // A fresh spool per session: nothing an earlier stream wrote is read.
        remove_old_spools(&self.cfg.tablet_dir).await;
        let spool = self.cfg.tablet_dir.join(format!(
            "{SPOOL_PREFIX}{}-{:08x}",
            Utc::now().format("%Y%m%dT%H%M%S"),
            rand::random::<u32>()
        ));
        let stream = BinlogStream::start(&src, &file, &spool)?;
        tracing::info!(primary = %primary.alias, %file, offset, skipping = skip.is_some(), "archiving the primary's binlog");
        Ok(Session {
            source: primary.alias.clone(),
            server_id: pb.server_id,
            stream,
            spool,
            file,
            offset,
            skip,
            next_number: rp.next_number,
        })
    }

    /// Stores what arrived since the last pass, file after file. On error, also
    /// what was stored before it.
    async fn archive_pass(&self, s: &mut Session) -> Result<Pass, (Pass, anyhow::Error)> {
        let mut pass = Pass::default();
        loop {
            let path = s.spool.join(&s.file);
            if !path.exists() {
                // The stream has not written this file yet.
                return Ok(pass);
            }
            let offset = s.offset;
            let w = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || spool::read_window(&path, offset, WINDOW))
                    .await
                    .map_err(|e| anyhow::anyhow!("reading the spool: {e}"))
                    .and_then(|r| r)
            };
            let w = match w {
                Ok(w) => w,
                Err(e) => return Err((pass, e)),
            };
            let plan = plan_cut(
                &w.summary,
                s.offset,
                w.header_end,
                s.skip.as_deref(),
                MAX_SEGMENT,
            );
            for piece in &plan.pieces {
                if let Err(e) = self.store_piece(s, &w, piece, &mut pass).await {
                    return Err((pass, e));
                }
            }
            s.offset = plan.offset;
            if plan.skip_done {
                s.skip = None;
            }
            let done =
                w.summary.closed && s.offset >= w.summary.complete_len && s.offset == w.file_len;
            if !done {
                pass.caught_up = s.offset == w.file_len;
                return Ok(pass);
            }
            let next = match (&w.summary.rotated_to, binlog_file_index(&s.file)) {
                (Some(n), _) => n.trim_end_matches('\0').to_string(),
                (None, Some(idx)) => next_file_name(&s.file, idx + 1),
                (None, None) => {
                    return Err((
                        pass,
                        anyhow::anyhow!("cannot tell the binlog after {}", s.file),
                    ))
                }
            };
            let _ = tokio::fs::remove_file(&path).await;
            s.file = next;
            s.offset = 0;
        }
    }

    /// Encodes and stores one segment.
    async fn store_piece(
        &self,
        s: &mut Session,
        w: &spool::Window,
        piece: &crate::backup::binlog_archive::cut::Piece,
        pass: &mut Pass,
    ) -> anyhow::Result<()> {
        let storage = self.storage()?;
        let Some(file_index) = binlog_file_index(&s.file) else {
            bail!("binlog file name {:?} has no index", s.file);
        };
        let compression = self.cfg.backup.compression.engine();
        let recipients = self.cfg.backup.encryption.clone();
        let name = SegmentName {
            number: s.next_number,
            server_id: s.server_id,
            file_index,
            start: piece.start,
            end: piece.end,
            first_ts: piece.txns.first().map(|t| t.started),
            last_ts: piece.txns.iter().map(|t| t.committed).max(),
            first_gtid: piece.txns.first().map(|t| t.gtid),
            last_gtid: piece.txns.last().map(|t| t.gtid),
            compression,
            encrypted: recipients.is_some(),
            moved_head: piece.moved_head,
        };
        let bytes = w.slice(piece.start, piece.end).to_vec();
        let stored = tokio::task::spawn_blocking(move || {
            encode_segment(&bytes, compression, recipients.as_ref())
        })
        .await
        .map_err(|e| anyhow::anyhow!("encoding a segment: {e}"))?
        .context("encoding a segment")?;
        match store_segment(storage, &self.cfg.keyspace, &self.cfg.shard, &name, &stored).await {
            Ok(_) => {}
            Err(StorageError::AlreadyExists(what)) => {
                bail!("{what}: another archiver stores this shard's segments")
            }
            Err(e) => return Err(anyhow::Error::new(e).context("storing a segment")),
        }
        s.next_number += 1;
        pass.segments += 1;
        pass.bytes += stored.len() as u64;
        pass.first_ts = pass.first_ts.or(name.first_ts);
        pass.txns
            .extend(piece.txns.iter().map(|t| (t.gtid, t.committed)));
        Ok(())
    }

    /// Writes the archive's state (compare-and-swap); `None`: the record is gone.
    async fn record_archive_state(
        &self,
        job: &Job,
        s: &Session,
        pass: &Pass,
        safe_at: Option<DateTime<Utc>>,
        error: Option<String>,
    ) -> anyhow::Result<Option<Versioned<ArchiveRecord>>> {
        let key = self
            .topo
            .keys()
            .archive(&self.cfg.keyspace, &self.cfg.shard);
        let alias = self.cfg.alias.clone();
        let r = self
            .topo
            .update_with::<ArchiveRecord, _>(&key, |cur| {
                let Some(mut r) = cur else { return Ok(None) };
                let st = &mut r.state;
                st.tablet = Some(alias.clone());
                st.job_id = Some(job.id.clone());
                st.source = Some(s.source.clone());
                st.source_server_id = Some(s.server_id);
                st.binlog_file = Some(s.file.clone());
                st.binlog_offset = s.offset;
                st.next_segment = s.next_number;
                if !pass.txns.is_empty() {
                    let mut lists = vec![parse_gtid_list(&st.position).unwrap_or_default()];
                    lists.push(pass.txns.iter().map(|(g, _)| *g).collect());
                    st.position = format_gtid_list(&merge_gtid_lists(&lists));
                    let newest = pass.txns.iter().map(|(_, t)| *t).max();
                    st.last_timestamp =
                        newest.and_then(|t| DateTime::from_timestamp(i64::from(t), 0));
                    if st.first_timestamp.is_none() {
                        st.first_timestamp = pass
                            .first_ts
                            .and_then(|t| DateTime::from_timestamp(i64::from(t), 0));
                    }
                }
                st.segments += pass.segments;
                st.stored_bytes += pass.bytes;
                if safe_at.is_some() {
                    st.safe_at = safe_at;
                }
                st.last_error = error.clone();
                st.updated_at = Some(Utc::now());
                Ok(Some(r))
            })
            .await?;
        Ok(r)
    }

    /// Notes a session's failure in the archive record (best effort).
    async fn note_archive_error(&self, job: &Job, why: &str) {
        let key = self
            .topo
            .keys()
            .archive(&self.cfg.keyspace, &self.cfg.shard);
        let _ = self
            .topo
            .update_with::<ArchiveRecord, _>(&key, |cur| {
                let Some(mut r) = cur else { return Ok(None) };
                if r.state.job_id.as_deref().is_some_and(|j| j != job.id) {
                    return Ok(None);
                }
                r.state.last_error = Some(why.to_string());
                r.state.updated_at = Some(Utc::now());
                Ok(Some(r))
            })
            .await;
    }
}

/// Spool directories under the tablet dir start with this.
const SPOOL_PREFIX: &str = "archive-spool-";

/// Removes what earlier sessions (of this agent or a killed one) spooled.
async fn remove_old_spools(tablet_dir: &std::path::Path) {
    let Ok(mut rd) = tokio::fs::read_dir(tablet_dir).await else {
        return;
    };
    while let Ok(Some(e)) = rd.next_entry().await {
        if e.file_name().to_string_lossy().starts_with(SPOOL_PREFIX) {
            let p = e.path();
            let _ = tokio::fs::remove_dir_all(&p).await;
            let _ = tokio::fs::remove_file(&p).await;
        }
    }
}

/// `mysql-bin.000007` from `mysql-bin.000006` and 7 (the width kept). Pure.
fn next_file_name(file: &str, index: u64) -> String {
    match file.rsplit_once('.') {
        Some((base, ext)) => format!("{base}.{index:0width$}", width = ext.len()),
        None => format!("{file}.{index:06}"),
    }
}

#[cfg(test)]
mod tests {
    use super::next_file_name;

    #[test]
    fn the_next_binlog_keeps_its_width() {
        assert_eq!(next_file_name("mysql-bin.000006", 7), "mysql-bin.000007");
        assert_eq!(
            next_file_name("mysql-bin.999999", 1_000_000),
            "mysql-bin.1000000"
        );
    }
}
