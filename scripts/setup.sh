#!/usr/bin/env bash
# Installs what cairn needs on a Debian machine, only where it is missing:
# the servers the tests and the demo run (etcd, MariaDB, mariabackup), what
# etcd-client's build needs (protoc and the protobuf well-known types), the
# standard tools a backup is restored with by hand (zstd, lz4, age, jq, b3sum, the AWS CLI),
# and the checkers of the examples and the status page (promtool, chromium).
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have_cmd etcd || need+=(etcd-server)
have_cmd etcdctl || need+=(etcd-client)
have_cmd mariadbd || need+=(mariadb-server)
have_cmd mariadb-install-db || need+=(mariadb-server)
have_cmd mariabackup || need+=(mariadb-backup)
have_cmd protoc || need+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need+=(libprotobuf-dev)
have_cmd zstd || need+=(zstd)
# The s3 storage tests run moto (an S3 server) from a virtualenv, below.
have_cmd python3 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The etcd TLS tests make their certificates with the openssl command line.
have_cmd openssl || need+=(openssl)
# The restore-by-hand and encryption tests use the reference tools, as an operator would.
have_cmd lz4 || need+=(lz4)
have_cmd age || need+=(age)
have_cmd jq || need+=(jq)
# The example systemd units are checked with systemd-analyze.
have_cmd systemd-analyze || need+=(systemd)
# tests/restore_by_hand.rs fetches backups from S3 with the real AWS CLI.
have_cmd aws || need+=(awscli)
have_cmd b3sum || need+=(b3sum)
# The example alert rules are checked with promtool (package prometheus; its own
# server is not started: see policy-rc.d below). The status page is tested in
# headless Chromium.
have_cmd promtool || need+=(prometheus)
have_cmd chromium || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # The packages' own services must not start on the default ports: cairn's demo and
  # tests start their own servers on free loopback ports.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    remove_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "${remove_policy:-0}" = 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
  # Only promtool is wanted: the package enables a Prometheus server (port 9090)
  # for the next boot; disable it (systemctl disable works without a running systemd).
  case " ${need[*]} " in
    *" prometheus "*) $sudo systemctl disable prometheus.service >/dev/null 2>&1 || true ;;
  esac
fi

# mariadbd lives in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) echo "setup: add /usr/sbin to PATH (mariadbd lives there)" >&2 ;; esac

# moto server (PyPI moto[server]) for the s3 storage tests, in a virtualenv under the
# ignored target/ directory: never into the system Python. The tests find it there.
venv="$(cd "$(dirname "$0")/.." && pwd)/target/moto-venv"
# A virtualenv is tied to its path: one that was moved (or half installed) is made again.
if ! "$venv/bin/moto_server" --help >/dev/null 2>&1; then
  echo "setup: installing moto[server] into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]>=5.1,<6'
fi

command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found: install a Rust toolchain (rustup)" >&2; exit 1; }
