#!/usr/bin/env bash
# Runs the benchmarks (benches/) in release mode and prints their figures:
#   bench_tablet  tablet start/restart to Health in topo, init-shard-primary and a
#                 re-parent until the replicas follow (medians over --runs runs);
#   bench_backup  builtin and xtrabackup backups and a restore against tar/zstd/cat/
#                 mariabackup shell pipelines on a generated InnoDB data set;
#                 it also measures encryption's cost: the builtin zstd backup with
#                 and without age (`--only encryption` runs just that pass);
#                 `--only s3`: the builtin zstd backup into an S3 server (s3s-fs,
#                 installed into target/tools on first use) and its restore against
#                 `tar|zstd -T2 -1|aws s3 cp -` and `aws s3 cp -|zstd -d|tar -x`,
#                 with each side's peak RSS;
#                 `--only copy` runs what issue 9 measures: builtin `none` against
#                 `cat FILES > out; sync`, zstd with and without age, and the peak
#                 RSS of a backup and a restore;
#   bench_coordinator  a coordinator over 10,000 synthetic tablets in 2,500 shards:
#                 load time, memory, job creation, Health throughput, seed latency;
#   bench_growth  what one shard (primary + replica) and a coordinator write to etcd
#                 at the default settings: puts, new keys, bytes per shard per day
#                 (only with --only growth: it idles for minutes by design);
#   bench_archive continuous binlog archiving: loss window p50/p99 under a write every
#                 100 ms with --interval 1s against the default 5s, and the storage
#                 requests and bytes per hour (only with --only archive: 2+ minutes);
#   bench_drill   a restore drill of the --size data set on a replica: time per stage
#                 and the replica's replication lag during it against before it
#                 (only with --only drill);
#   bench_recovery  issue 10's apply speed and time to recover: a new tablet restored
#                 to the last GTID of --binlog-size of binlog after a full backup,
#                 against `mariadb-binlog | mariadb` by hand (only with --only apply),
#                 and issue 11's `cairn verify` throughput against `cat` (file) and
#                 `aws s3 cp -` (moto) (only with --only verify).
# Everything runs on loopback in temporary directories that are removed afterwards.
#
#   scripts/bench.sh [--size 2G] [--runs N] [--concurrency 4] [--binlog-size 256M] [--seconds N]
#                    [--only tablet|backup|encryption|copy|s3|coordinator|growth|archive|drill|apply|verify]
#
# --size is the data set of bench_backup (default 2G; e.g. 256M for a quick run);
# --runs the repetitions of each measurement (default: 5 for bench_tablet, 3 for
# bench_backup); --concurrency the files copied at once by bench_backup (default 4).
# bench_backup needs about 4x --size of free space in $TMPDIR (/tmp). Other work on
# the machine skews the figures: both print the load average. --binlog-size is
# bench_recovery's binlog for --only apply (default 256M); --seconds is bench_archive's
# writes per interval (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

size="" runs="" conc="" only="" binlog_size="" seconds=""
# The S3 server of `--only s3` (see above).
S3S_FS_VERSION="${S3S_FS_VERSION:-0.14.1}"
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="${2:?--size needs a value}"; shift 2 ;;
    --size=*) size="${1#--size=}"; shift ;;
    --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
    --runs=*) runs="${1#--runs=}"; shift ;;
    --concurrency) conc="${2:?--concurrency needs a value}"; shift 2 ;;
    --concurrency=*) conc="${1#--concurrency=}"; shift ;;
    --binlog-size) binlog_size="${2:?--binlog-size needs a value}"; shift 2 ;;
    --binlog-size=*) binlog_size="${1#--binlog-size=}"; shift ;;
    --seconds) seconds="${2:?--seconds needs a value}"; shift 2 ;;
    --seconds=*) seconds="${1#--seconds=}"; shift ;;
    --only) only="${2:?--only needs tablet or backup}"; shift 2 ;;
    --only=*) only="${1#--only=}"; shift ;;
    -h|--help) sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$only" in ""|tablet|backup|encryption|copy|s3|coordinator|growth|archive|drill|apply|verify) ;; *) echo "bench.sh: --only takes tablet, backup, encryption, copy, s3, coordinator, growth, archive, drill, apply or verify" >&2; exit 2 ;; esac

scripts/setup.sh
# The benchmarks are bench targets (benches/, harness = false): build them and take
# each one's executable from cargo's own report instead of guessing its hashed name.
# The cairn binary they start is built last, as `cargo build` builds it.
bench_json="$(cargo bench --no-run --message-format=json-render-diagnostics)"
cargo build --release --bin cairn
bench_exe() {
  printf '%s\n' "$bench_json" \
    | grep '"reason":"compiler-artifact"' \
    | grep '"kind":\["bench"\]' \
    | grep "\"name\":\"$1\"" \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' \
    | tail -n 1
}
tablet_exe="$(bench_exe bench_tablet)" backup_exe="$(bench_exe bench_backup)" coordinator_exe="$(bench_exe bench_coordinator)"
growth_exe="$(bench_exe bench_growth)" archive_exe="$(bench_exe bench_archive)" drill_exe="$(bench_exe bench_drill)"
recovery_exe="$(bench_exe bench_recovery)"
for exe in "$tablet_exe" "$backup_exe" "$coordinator_exe" "$growth_exe" "$archive_exe" "$drill_exe" "$recovery_exe"; do
  [ -n "$exe" ] && [ -x "$exe" ] || { echo "bench.sh: cargo reported no executable for a benchmark" >&2; exit 1; }
done
export CAIRN_BIN="$PWD/target/release/cairn"

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(uname -srm)"
echo "== $(mariadbd --version 2>/dev/null | head -1)"
if [ -z "$only" ] || [ "$only" = tablet ]; then
  echo "== bench_tablet"
  "$tablet_exe" ${runs:+--runs "$runs"}
fi
if [ -z "$only" ] || [ "$only" = backup ]; then
  echo "== bench_backup"
  "$backup_exe" ${size:+--size "$size"} ${runs:+--runs "$runs"} ${conc:+--concurrency "$conc"}
fi
if [ "$only" = encryption ]; then
  echo "== bench_backup --encryption-only"
  "$backup_exe" --encryption-only ${size:+--size "$size"} ${runs:+--runs "$runs"} ${conc:+--concurrency "$conc"}
fi
if [ "$only" = s3 ]; then
  # A fast S3 server for throughput figures, built apart from cairn's own crates
  # (no dependency of the project): s3s-fs, into the ignored target/tools.
  if [ ! -x target/tools/bin/s3s-fs ]; then
    echo "bench.sh: installing s3s-fs $S3S_FS_VERSION into target/tools" >&2
    cargo install --quiet --locked s3s-fs --version "$S3S_FS_VERSION" --features binary --root target/tools
  fi
  echo "== bench_backup --s3-only"
  "$backup_exe" --s3-only ${size:+--size "$size"} ${runs:+--runs "$runs"} ${conc:+--concurrency "$conc"}
fi
if [ "$only" = copy ]; then
  echo "== bench_backup --copy-only"
  "$backup_exe" --copy-only ${size:+--size "$size"} ${runs:+--runs "$runs"} ${conc:+--concurrency "$conc"}
fi
if [ -z "$only" ] || [ "$only" = coordinator ]; then
  echo "== bench_coordinator"
  "$coordinator_exe"
fi
if [ "$only" = growth ]; then
  echo "== bench_growth"
  "$growth_exe"
fi
if [ "$only" = archive ]; then
  echo "== bench_archive"
  "$archive_exe" ${seconds:+--seconds "$seconds"}
fi
if [ "$only" = drill ]; then
  echo "== bench_drill"
  "$drill_exe" ${size:+--size "$size"}
fi
if [ "$only" = apply ]; then
  echo "== bench_recovery --only apply"
  "$recovery_exe" --only apply ${size:+--size "$size"} ${binlog_size:+--binlog-size "$binlog_size"} ${runs:+--runs "$runs"}
fi
if [ "$only" = verify ]; then
  echo "== bench_recovery --only verify"
  "$recovery_exe" --only verify ${size:+--size "$size"} ${runs:+--runs "$runs"} ${conc:+--concurrency "$conc"}
fi
