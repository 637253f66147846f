#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, then lints and tests every
# crate against real etcd and MariaDB servers that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace --all-targets --no-fail-fast -- --test-threads=2
