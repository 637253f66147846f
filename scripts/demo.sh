#!/usr/bin/env bash
# Runs the local-cluster demo: etcd and a three-tablet MariaDB shard on loopback,
# a primary, replication, a backup and a tablet seeded from it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
scripts/setup.sh
cargo build --release --bin cairn --example local_cluster
exec "${CARGO_TARGET_DIR:-target}/release/examples/local_cluster" "$@"
