//! The long `--help` text of every command, man-page style: what it does, what
//! it changes (or that it changes nothing), its exit status, and examples.
//! `-h` shows the one-line summary from the doc comment instead. Text only; a
//! test walks every subcommand and requires each to have one.

pub const TABLET: &str = "Run the tablet agent of one mysqld: registers the tablet in etcd, \
initializes the data directory when it is empty (or, with --restore-from-backup, restores the \
shard's newest backup into it first, waiting up to --wait-for-backup-interval for one to exist), \
starts and supervises mysqld, follows the shard's primary, publishes health every \
--health-interval, and runs the jobs the coordinator and the admin commands give it (backups, \
restores, continuous binlog archiving, restore drills). Runs until SIGTERM or SIGINT, then stops \
mysqld cleanly.\n\n\
Changes: the tablet's records in etcd, its --tablet-dir (data, socket, logs), and, through its \
jobs, backup storage. Never restores over a primary. Exit 0 on a clean stop, 1 when it cannot \
start (the reason on one line), 2 for bad flags.\n\n\
Examples:\n  \
cairn tablet --tablet-uid 101 --init-keyspace commerce --init-shard 0 \\\n    \
--tablet-dir /var/lib/cairn/101 --mysql-port 17101 --file-backup-storage-root /var/backups/cairn\n  \
cairn tablet --tablet-uid 102 --init-keyspace commerce --init-shard 0 \\\n    \
--tablet-dir /var/lib/cairn/102 --mysql-port 17102 --restore-from-backup --wait-for-backup-interval 10m \\\n    \
--backup-storage-implementation s3 --s3-backup-storage-bucket backups";

pub const COORDINATOR: &str = "Run the cluster-wide coordinator. Several may run; one is \
elected leader through etcd and the others wait to take over. The leader runs the schedules \
(one job per shard and slot, on the healthiest eligible replica, with retries), applies each \
schedule's retention, keeps the backup catalog in etcd in step with storage, places and moves \
continuous binlog archiving and restore drills, and snapshots etcd into storage under _topo/. \
Serves /healthz, /metrics, /api/v1/status and a status page at / on --port.\n\n\
Changes: jobs, schedules' run records, backup records and archive records in etcd; deletes \
backups that a schedule's retention no longer keeps (never one it could not read); writes etcd \
snapshots. Exit 0 on SIGTERM or SIGINT, 1 when it cannot start, 2 for bad flags.\n\n\
Examples:\n  \
cairn coordinator --port 15000 --file-backup-storage-root /var/backups/cairn\n  \
cairn coordinator --port 15000 --backup-storage-implementation s3 \\\n    \
--s3-backup-storage-bucket backups --backup-encryption-recipients-file /etc/cairn/recipients.txt";

pub const BACKUP: &str = "Back up one tablet: writes a BACKUP job for its agent and waits for \
the outcome. The builtin engine stops that tablet's mysqld (the tablet is in BACKUP type \
meanwhile) and copies its files; the xtrabackup engine streams a hot backup and the tablet keeps \
serving. With --incremental-from-pos only the binary logs since that point are stored. The \
MANIFEST is written last: a backup without one is never listed as complete nor restored. A \
PRIMARY is refused unless --allow-primary.\n\n\
Changes: a new backup in storage and its record in etcd; one job record. Prints the backup name \
(--json: job, backup_name, tablet_alias). Exit 0 when the backup is complete, 1 when it failed \
(the job's reason on one line; the tablet is back in service), 2 for bad flags.\n\n\
Examples:\n  \
cairn backup zone1-0000000102\n  \
cairn backup zone1-0000000102 --backup-engine xtrabackup --json\n  \
cairn backup zone1-0000000102 --incremental-from-pos auto";

pub const BACKUP_SHARD: &str = "Back up a shard on the healthiest eligible tablet the command \
picks: a replica serving, replicating, lagging less than --max-lag, not busy (the primary only \
with --allow-primary and when no replica qualifies). Otherwise as `cairn backup`.\n\n\
Changes: a new backup in storage and its record in etcd; one job record. Exit 0 when the \
backup is complete, 1 when no tablet is eligible or the backup failed, 2 for bad flags.\n\n\
Examples:\n  \
cairn backup-shard commerce/0\n  \
cairn backup-shard commerce/-80 --max-lag 10s --no-wait";

pub const LIST_BACKUPS: &str = "List a shard's backups, oldest first: name, time, engine, size, \
position, and whether each is complete, incremental or unreadable (--json adds the last \
restore drill's outcome). \
With storage configured (flags or CAIRN_* environment variables) the list is storage's; without \
any, the catalog in etcd is listed and stderr says storage was not consulted.\n\n\
Changes nothing. Exit 0, 1 when etcd or storage cannot be read, 2 for bad flags.\n\n\
Examples:\n  \
cairn list-backups commerce/0 --file-backup-storage-root /var/backups/cairn\n  \
cairn list-backups commerce/0 --limit 5 --json";

pub const REMOVE_BACKUP: &str = "Delete one backup: its objects from storage first, then its \
record from etcd.\n\n\
Changes: removes the backup for good (there is no undo). Exit 0 when it is gone, 1 when it does \
not exist or cannot be removed (nothing else is touched), 2 for bad flags.\n\n\
Examples:\n  \
cairn remove-backup commerce/0 2026-11-25.020000.zone1-0000000102 \\\n    \
--file-backup-storage-root /var/backups/cairn";

pub const RESTORE_FROM_BACKUP: &str =
    "Restore a running tablet in place: writes a RESTORE job for \
its agent, which stops mysqld (the tablet is in RESTORE type meanwhile), replaces its data with \
the shard's newest complete backup (or the newest at or before --backup-timestamp), starts \
mysqld and resumes replication. With --restore-to-pos or --restore-to-timestamp it also applies \
the incremental backups and archived binary logs up to that point and the tablet ends DRAINED \
with replication stopped, holding the past for an operator to inspect; --dry-run prints that \
chain and changes nothing. A PRIMARY is refused. Every object is fetched and verified before the \
data is touched: a restore that cannot read its backup leaves the tablet as it was.\n\n\
Changes: the tablet's data directory and type; one job record. Exit 0 when restored, 1 when the \
restore failed or the chain has a gap (naming the missing GTIDs and the nearest reachable \
point), 2 for bad flags.\n\n\
Examples:\n  \
cairn restore-from-backup zone1-0000000103\n  \
cairn restore-from-backup zone1-0000000103 --backup-timestamp 2026-11-25.020000\n  \
cairn restore-from-backup zone1-0000000103 --restore-to-timestamp 2026-11-25T14:02:59Z --dry-run";

pub const GET_TABLETS: &str = "List tablets with their keyspace, shard, type and \
health (mysqld up, replication threads and lag, the job a tablet is busy with), optionally of one \
keyspace or shard.\n\n\
Changes nothing. Exit 0, 1 when etcd cannot be read, 2 for bad flags.\n\n\
Examples:\n  \
cairn get-tablets\n  \
cairn get-tablets --keyspace commerce --shard 0 --json";

pub const GET_SHARD: &str = "Show a shard: its primary, newest backup, and, with point-in-time \
recovery, the archive's state, the loss window, the recoverable window and any gap.\n\n\
Changes nothing. Exit 0, 1 when the shard does not exist or etcd cannot be read, 2 for bad \
flags.\n\n\
Examples:\n  \
cairn get-shard commerce/0\n  \
cairn get-shard commerce/0 --json";

pub const INIT_SHARD_PRIMARY: &str = "Make a tablet the primary of its shard: writes the shard \
record's primary, and waits (up to --wait-timeout) until that tablet serves as PRIMARY. The \
shard's other tablets then replicate from it.\n\n\
Changes: the shard record in etcd; the named tablet turns writable and the others point their \
replication at it. Exit 0 once it is PRIMARY, 1 when it did not become so in time, 2 for bad \
flags.\n\n\
Examples:\n  \
cairn init-shard-primary commerce/0 zone1-0000000101\n  \
cairn init-shard-primary commerce/-80 zone1-0000000201 --no-wait";

pub const SCHEDULE: &str = "Manage backup schedules: each names a cron, a target (a keyspace or \
one shard), a retention rule, and optionally incremental runs and restore drills. The leading \
coordinator runs them.\n\n\
Examples:\n  \
cairn schedule set nightly --cron '0 2 * * *' --target commerce --keep-count 7\n  \
cairn schedule list";

pub const SCHEDULE_SET: &str = "Create or replace a schedule. On every slot of --cron the leading \
coordinator backs up each shard of --target once, on the healthiest eligible replica, retrying a \
failed run; a slot that cannot run is recorded as skipped with the reason. Retention keeps \
--keep-count backups and/or those younger than --keep-for (never breaking a chain a kept full \
backup needs). --incremental takes binary-log backups chained from the newest backup; \
--drill-cron also runs restore drills of each shard's newest full backup, and \
--drill-to-now takes those drills on to the newest archived transaction.\n\n\
Changes: the schedule record in etcd (it takes effect at the next slot). Exit 0, 1 when etcd \
cannot be written, 2 for a bad cron, target or duration.\n\n\
Examples:\n  \
cairn schedule set nightly --cron '0 2 * * *' --target commerce --keep-count 7\n  \
cairn schedule set hourly-incr --cron '0 * * * *' --target commerce/0 --incremental --keep-for 48h\n  \
cairn schedule set nightly --cron '0 2 * * *' --target commerce --keep-for 336h \\\n    --drill-cron '0 4 * * 0'";

pub const SCHEDULE_LIST: &str = "List schedules with their cron, target, retention, state \
(active or paused), last and next run, and skipped runs with the last reason.\n\n\
Changes nothing. Exit 0, 1 when etcd cannot be read.\n\n\
Examples:\n  \
cairn schedule list\n  \
cairn schedule list --json";

pub const SCHEDULE_REMOVE: &str = "Delete a schedule. Its backups stay in storage, and jobs \
already running finish.\n\n\
Changes: removes the schedule record from etcd. Exit 0, 1 when it does not exist.\n\n\
Examples:\n  \
cairn schedule remove nightly";

pub const SCHEDULE_PAUSE: &str = "Stop a schedule from firing, keeping its definition and \
history.\n\n\
Changes: the schedule record's state. Exit 0, 1 when it does not exist.\n\n\
Examples:\n  \
cairn schedule pause nightly";

pub const SCHEDULE_RESUME: &str = "Let a paused schedule fire again from its next slot.\n\n\
Changes: the schedule record's state. Exit 0, 1 when it does not exist.\n\n\
Examples:\n  \
cairn schedule resume nightly";

pub const SCHEDULE_PRUNE: &str = "Apply a schedule's retention rule now instead of waiting for \
the coordinator: removes the backups the rule no longer keeps, and incomplete backups older than \
--incomplete-grace. A backup whose MANIFEST cannot be read is never removed. --dry-run prints \
what would go and removes nothing.\n\n\
Changes: deletes backups from storage and their records from etcd (none with --dry-run). Exit \
0, 1 when storage or etcd cannot be read (nothing is removed then), 2 for bad flags.\n\n\
Examples:\n  \
cairn schedule prune nightly --dry-run --file-backup-storage-root /var/backups/cairn\n  \
cairn schedule prune nightly --json";

pub const ARCHIVE: &str = "Continuous binary-log archiving for point-in-time recovery: one \
supervised job per shard streams the primary's binary log and stores it as segments every \
--interval, so the loss window is seconds.\n\n\
Examples:\n  \
cairn archive set commerce --interval 1s\n  \
cairn archive list";

pub const ARCHIVE_SET: &str = "Archive the binary log of every shard of a keyspace (or one \
shard) continuously. The leading coordinator places one ARCHIVE job per shard on a healthy \
replica (else the primary), moves it when its tablet dies or the primary changes, and the \
archive resumes from the GTIDs already stored, with no gap and no duplicate. Segments go under \
_binlog/KEYSPACE/SHARD/ in backup storage and are compacted over time.\n\n\
Changes: the shard's archive record in etcd (the coordinator then starts the job). Exit 0, 1 \
when etcd cannot be written, 2 for a bad target or an --interval under 1s.\n\n\
Examples:\n  \
cairn archive set commerce\n  \
cairn archive set commerce/-80 --interval 1s";

pub const ARCHIVE_LIST: &str =
    "List archived shards: state, tablet archiving, the newest archived \
GTID and its commit time, the loss window, and gaps.\n\n\
Changes nothing. Exit 0, 1 when etcd cannot be read.\n\n\
Examples:\n  \
cairn archive list\n  \
cairn archive list --json";

pub const ARCHIVE_REMOVE: &str = "Stop archiving a keyspace's shards (or one shard): the \
coordinator cancels their ARCHIVE jobs. Stored segments stay, and restores still use \
them.\n\n\
Changes: the archive records in etcd; no stored segment is deleted. Exit 0, 1 when no archive \
matches.\n\n\
Examples:\n  \
cairn archive remove commerce/-80";

pub const JOBS: &str = "List jobs (backups, restores, archiving, drills): kind, \
shard, tablet, state, progress and outcome, optionally of one keyspace or shard.\n\n\
Changes nothing. Exit 0, 1 when etcd cannot be read, 2 for bad flags.\n\n\
Examples:\n  \
cairn jobs\n  \
cairn jobs --keyspace commerce --shard 0 --json";

pub const TOPO: &str = "Topology server maintenance.\n\n\
Examples:\n  \
cairn topo snapshot /var/backups/etcd-$(date +%F).db";

pub const TOPO_SNAPSHOT: &str = "Save a snapshot of etcd (every key cairn and others keep there) \
to FILE, and check its integrity hash before keeping it; `etcdutl snapshot restore` restores it. \
The coordinator also takes them on its own into storage under _topo/.\n\n\
Changes: writes FILE only, atomically (a temporary file beside it, renamed once checked: \
nothing is left at FILE when anything fails). Exit 0, 1 \
when etcd cannot be read or the snapshot fails its check.\n\n\
Examples:\n  \
cairn topo snapshot /var/backups/etcd-$(date +%F).db";

pub const VERIFY: &str = "Check a shard's backups where they are stored, without restoring them and \
without a decryption key: each MANIFEST parses and is restorable, every object it lists exists \
with the recorded size and hash (read in full, several at once), the chain of incremental \
backups and archived binlog segments from each full backup to now has no gap (per GTID domain), \
and the newest good backup is younger than its schedule's period plus the usual backup duration. Prints OK, WARNING or FAILURE \
per backup with one line per problem. Exit 0 when nothing failed, 1 otherwise. Reads storage \
and etcd only; changes nothing.\n\nExamples:\n  \
cairn verify commerce/0 --file-backup-storage-root /var/backups/cairn\n  \
cairn verify commerce/0 --backup 2026-11-25.020000.zone1-0000000101 --json";

pub const STATUS: &str =
    "Every shard's recoverability, one line per shard: its health (green, amber, \
red), the newest complete full backup's age against what its schedule allows (the longest gap \
between runs plus the usual backup duration), the last restore drill and its recovery time, the \
point-in-time loss window, and why the shard is not green. Amber: one run missed, or no active \
schedule covers the shard. Red: more than twice the allowed age, no backup under a schedule, or \
the last drill failed. Says 'no coordinator leader' when none leads. Reads etcd only (no \
coordinator needed); changes nothing. Exit 0 when no shard is red, 1 when any is.\n\n\
Examples:\n  \
cairn status\n  \
cairn status --json | jq '.[] | select(.health != \"green\")'";

pub const DRILL: &str = "Run a restore drill of one backup of a shard (the newest complete full one \
unless --backup names another): a DRILL job on a SPARE tablet, else a healthy REPLICA or RDONLY \
(never the primary, never a busy tablet), only where the disk has room: a tablet whose Health \
reports less free disk than the backup's restored size plus the drill's margin (the agent's own \
rule) is passed over; when no tablet fits, exit 1 naming each one and why (busy, primary, not \
healthy, \"needs 2.1 GiB, has 800.0 MiB free\"). Its agent restores the backup through the real restore \
code into a scratch directory beside its data, starts a second mariadbd on it on a loopback port, \
runs CHECK TABLE on every table, compares the restored GTID position with the MANIFEST's and \
counts the rows of the largest tables, then stops that server and removes the scratch directory. \
With --to-now it also plans the chain of incremental backups and archived binlog segments from \
that backup up to the newest archived transaction (the archive's recorded position; with no \
archive, the newest incremental's), downloads and verifies those binlogs, applies them to the \
scratch server (mariadb-binlog | mariadb, TZ=UTC, as a point-in-time restore does) and checks \
the position against the chain's end; a gap in the chain fails the drill naming the missing \
GTIDs. The tablet keeps serving throughout; its own mysqld and data are never touched. A drill the disk \
cannot hold is refused before anything is written. Changes: one job record, and the backup's \
record gets verified_at, drill_seconds, drill_result (and drill_error). Waits for the job and \
prints the outcome with the time of each stage; exit 0 when the drill succeeded, 1 otherwise.\n\n\
Examples:\n  \
cairn drill commerce/0\n  \
cairn drill commerce/0 --backup 2026-11-25.020000.zone1-0000000101 --json\n  \
cairn drill commerce/0 --to-now\n  \
cairn drill commerce/-80 --no-wait";

pub const COMPLETIONS: &str =
    "Print a shell completion script for cairn on stdout. Changes nothing.\n\n\
Examples:\n  \
source <(cairn completions bash)\n  \
cairn completions bash > /etc/bash_completion.d/cairn\n  \
cairn completions zsh > \"${fpath[1]}/_cairn\"\n  \
cairn completions fish > ~/.config/fish/completions/cairn.fish";
