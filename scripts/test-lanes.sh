#!/usr/bin/env bash
# Runs every test binary of the workspace, several binaries at once.
#
# `cargo test` runs one test binary after the other. Most of cairn's tests wait on
# real servers (etcd elections, mysqld start, lease expiry), so on a 2-core machine
# one binary at a time leaves the CPU idle most of the suite. This builds all test
# targets once, then runs the binaries in LANES parallel lanes (longest first, each
# binary with --test-threads=2), prints each binary's output whole when it ends, and
# fails if any binary failed, naming them all at the end.
#
# Usage: scripts/test-lanes.sh [LANES]   (default 3; CAIRN_TEST_LANES overrides)
#        CAIRN_TEST_ONLY=REGEX runs only the binaries whose name matches;
#        CAIRN_TEST_TIMEOUT=SECONDS caps each binary (default 900).
set -euo pipefail
cd "$(dirname "$0")/.."
lanes="${1:-${CAIRN_TEST_LANES:-3}}"
target_dir="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
out="$target_dir/test-lanes"
rm -rf "$out"
mkdir -p "$out"
touch "$out/times"

# Build every test target once; keep (executable, package dir, name) of each.
# Benchmarks are not built here: clippy --all-targets has already compiled them,
# and under `cargo test` they do nothing.
cargo test --workspace --lib --bins --tests --no-run --message-format=json-render-diagnostics \
  | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test == true)
           | [.executable, (.manifest_path | sub("/Cargo.toml$"; "")), .target.name, (.target.kind[0])] | @tsv' \
  > "$out/binaries.tsv"

# Longest first (figures from earlier runs, seconds); the rest after, in any order.
slow_first="safety_etcd_restart coordinator safety_kills_leader safety_shutdown safety_retention
s3_cluster safety_replication backup safety_lease safety_manifest safety_growth safety_restore
safety_etcd_cluster tablet s3_faults store encryption mysqld"
{
  for name in $slow_first; do awk -F'\t' -v n="$name" '$3 == n' "$out/binaries.tsv"; done
  awk -F'\t' -v list=" $(echo $slow_first) " 'index(list, " " $3 " ") == 0' "$out/binaries.tsv"
} | awk -F'\t' -v re="${CAIRN_TEST_ONLY:-.}" '$3 ~ re' > "$out/order.tsv"

run_one() {
  local exe="$1" dir="$2" name="$3" kind="$4"
  local log="$out/$kind-$name.log"
  local start=$SECONDS rc=0
  # What `cargo test` sets for a test binary it runs.
  (cd "$dir" && CARGO_MANIFEST_DIR="$dir" CARGO_PKG_NAME="$(basename "$dir")" \
    timeout --kill-after=30s "$limit" "$exe" --test-threads=2) >"$log" 2>&1 || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "===== $kind $name did not finish within ${limit}s: stopped (a hang)" >>"$log"
  fi
  local took=$((SECONDS - start))
  {
    echo "===== $kind $name ($dir): exit $rc in ${took}s"
    cat "$log"
  } | flock "$out/print.lock" cat
  if [ "$rc" -ne 0 ]; then
    echo "$kind $name" >>"$out/failed"
  fi
  echo "$took $kind $name" >>"$out/times"
}
export -f run_one
# At most this long per test binary (seconds): a hang fails the run, naming the
# binary, instead of eating CI's time limit. CAIRN_TEST_TIMEOUT overrides.
limit="${CAIRN_TEST_TIMEOUT:-900}"
export out limit

echo "===== built $(wc -l <"$out/binaries.tsv") test binaries; target dir holds $(du -sh "$target_dir" | cut -f1), $(df -h --output=avail "$target_dir" | tail -1 | tr -d ' ') free"
start=$SECONDS
tr '\t' '\n' <"$out/order.tsv" | tr '\n' '\0' \
  | xargs -0 -r -n 4 -P "$lanes" bash -c 'run_one "$@"' _ || true
echo "===== all test binaries ran in $((SECONDS - start))s ($lanes lanes); slowest:"
sort -rn "$out/times" | head -8
if [ -s "$out/failed" ]; then
  echo "===== FAILED test binaries:"
  cat "$out/failed"
  exit 1
fi
echo "===== every test binary passed"
