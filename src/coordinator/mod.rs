//! The cluster-wide coordinator: election, scheduler, replica selection, job
//! supervision, retention, catalog reconciliation, etcd snapshots, HTTP status.
//!
//! It may call `backup` (storage), `common` and `cairn-topo`; never `tablet` or
//! `cli`. Decisions are pure functions over plain data (the rules below, each with
//! table tests); the passes around them read the cache, call a rule, apply it.
//!
//! Entry and shared state:
//! - [`run`]: `cairn coordinator`: loads the topology, serves HTTP, campaigns.
//! - [`shared`]: [`shared::Shared`], the state the loop, passes and HTTP share.
//! - `leader`: the campaign (lead, lose leadership, campaign again) and the
//!   leader loop that runs the passes below while leading.
//! - [`config`]: [`CoordinatorConfig`](config::CoordinatorConfig), built by the CLI.
//! - [`cache`]: the watched in-memory topology, [`TopoView`](cache::TopoView).
//! - [`http`]: `/healthz`, `/metrics`, `/api/v1/status`, and `/`, the status
//!   page rendered by [`page`].
//! - [`metrics`]: the Prometheus metrics the passes update and `/metrics` renders.
//!
//! Passes of the leader loop (IO, thin):
//! - `scheduler_pass`: due schedule slots into jobs.
//! - `supervisor_pass`: failing stuck jobs, writing retries.
//! - `history`: forgetting old finished jobs.
//! - `snapshot_pass`: etcd snapshots on the snapshot cron.
//! - `archive_pass`: one ARCHIVE job per archived shard placed, moved, cancelled;
//!   the loss window gauge.
//! - `recoverable_pass`: each shard's recoverable window and archive gaps
//!   (gauges, status, the archive record's gaps).
//! - [`prune`]: retention carried out, by the leader after each scheduled backup
//!   and by `schedule prune`, through the backup catalog.
//! - [`reconcile`]: the catalog reconciler (topo's records follow storage).
//!
//! Pure rules:
//! - [`schedule`]: cron, targets and their shards, when a schedule is due, the
//!   slot plan ([`schedule::plan_slot`]), the scheduled job, the stagger.
//! - [`supervise`]: what to do with a job, which retries are due, the retry's
//!   tablet, which jobs the history forgets.
//! - [`select`]: which tablet of a shard to back up (shared with `backup-shard`).
//! - [`retention`]: which backups a schedule's rule removes.
//! - [`recoverability`]: each shard's recoverability picture (backup ages
//!   against the schedule, drills, loss window, a green/amber/red light).
//! - [`archive_plan`]: where a shard's ARCHIVE job runs, what the leader does
//!   about its jobs, the shard's loss window.
//! - [`recoverable`]: a shard's recoverable window and gaps.
//!
//! etcd snapshots:
//! - [`etcd_snapshot`]: streaming, verifying, storing and pruning etcd snapshots
//!   (also `cairn topo snapshot`).

mod archive_pass;
pub mod archive_plan;
pub mod cache;
pub mod config;
pub mod etcd_snapshot;
mod history;
pub mod http;
mod leader;
pub mod metrics;
pub mod page;
pub mod prune;
pub mod reconcile;
pub mod recoverability;
pub mod recoverable;
pub mod recoverable_pass;
pub mod retention;
pub mod run;
pub mod schedule;
mod scheduler_pass;
pub mod select;
pub mod shared;
mod snapshot_pass;
pub mod supervise;
mod supervisor_pass;
