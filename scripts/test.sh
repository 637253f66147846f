#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, then lints and tests every
# crate against real etcd and MariaDB servers that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Every test binary, three at a time (see the script for why).
scripts/test-lanes.sh
