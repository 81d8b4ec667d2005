#!/usr/bin/env bash
# System packages the integration tests need (CI starts on a bare Debian machine, as
# root): the Debian `prometheus` package and `openssl`. Installs only what is missing,
# stops on the first failure with apt-get's own error, and afterwards stops only the
# service the prometheus package itself started (the tests start their own servers on
# free ports). A Prometheus this script did not install is never touched.
# Then checks, before any long step, that Go is new enough if a tool must be built.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[system-deps] %s\n' "$*" >&2; }

declare -A provides=([prometheus]=prometheus [openssl]=openssl)  # command -> package
missing=()
for cmd in prometheus openssl; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${provides[$cmd]}")
done

if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    log "ERROR: apt-get not found; install ${missing[*]} with your package manager"
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      log "ERROR: not root and no sudo; run as root or install ${missing[*]} yourself"
      exit 1
    fi
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"

  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    pidfile=/run/prometheus/prometheus.pid
    # The package's maintainer script starts prometheus.service (systemd) or its
    # init script (/etc/init.d/prometheus, pidfile /run/prometheus/prometheus.pid).
    # Stop exactly that service, through the same manager; never by process name.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
      log "stopping and disabling the packaged prometheus.service"
      "${sudo[@]}" systemctl disable --now prometheus.service
    elif [ -x /etc/init.d/prometheus ] && [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "stopping the packaged prometheus init service (pid $(cat "$pidfile") from $pidfile)"
      "${sudo[@]}" /etc/init.d/prometheus stop
    fi  # else nothing was started (e.g. a policy-rc.d that forbids starts in containers)
  fi
  for cmd in prometheus openssl; do
    command -v "$cmd" >/dev/null 2>&1 || { log "ERROR: $cmd still missing after install"; exit 1; }
  done
fi

# Go is needed only when a binary is not cached yet; say which version if it is missing.
./hack/build-tools.sh check
