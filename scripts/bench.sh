#!/usr/bin/env bash
# Runs the benchmarks in release mode and prints their figures:
#   bench_tablet  tablet start/restart to Health in topo, init-shard-primary and a
#                 re-parent until the replicas follow (medians over --runs runs);
#   bench_backup  builtin and xtrabackup backups and a restore against tar/zstd/cat/
#                 mariabackup shell pipelines on a generated InnoDB data set;
#   bench_coordinator  a coordinator over 10,000 synthetic tablets in 2,500 shards:
#                 load time, memory, job creation, Health throughput, seed latency.
# Everything runs on loopback in temporary directories that are removed afterwards.
#
#   scripts/bench.sh [--size 2G] [--runs N] [--concurrency 4] [--only tablet|backup|coordinator]
#
# --size is the data set of bench_backup (default 2G; e.g. 256M for a quick run);
# --runs the repetitions of each measurement (default: 5 for bench_tablet, 3 for
# bench_backup); --concurrency the files copied at once by bench_backup (default 4).
# bench_backup needs about 4x --size of free space in $TMPDIR (/tmp). Other work on
# the machine skews the figures: both print the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"

size="" runs="" conc="" only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="${2:?--size needs a value}"; shift 2 ;;
    --size=*) size="${1#--size=}"; shift ;;
    --runs) runs="${2:?--runs needs a value}"; shift 2 ;;
    --runs=*) runs="${1#--runs=}"; shift ;;
    --concurrency) conc="${2:?--concurrency needs a value}"; shift 2 ;;
    --concurrency=*) conc="${1#--concurrency=}"; shift ;;
    --only) only="${2:?--only needs tablet or backup}"; shift 2 ;;
    --only=*) only="${1#--only=}"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$only" in ""|tablet|backup|coordinator) ;; *) echo "bench.sh: --only takes tablet, backup or coordinator" >&2; exit 2 ;; esac

scripts/setup.sh
cargo build --release --bin cairn --example bench_tablet --example bench_backup --example bench_coordinator

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB RAM, $(uname -srm)"
echo "== $(mariadbd --version 2>/dev/null | head -1)"
if [ -z "$only" ] || [ "$only" = tablet ]; then
  echo "== bench_tablet"
  target/release/examples/bench_tablet ${runs:+--runs "$runs"}
fi
if [ -z "$only" ] || [ "$only" = backup ]; then
  echo "== bench_backup"
  target/release/examples/bench_backup ${size:+--size "$size"} ${runs:+--runs "$runs"} ${conc:+--concurrency "$conc"}
fi
if [ -z "$only" ] || [ "$only" = coordinator ]; then
  echo "== bench_coordinator"
  target/release/examples/bench_coordinator
fi
