#!/usr/bin/env bash
# Make sure a Docker engine answers, changing nothing where one already does.
#
# On a machine with Docker (Docker Desktop, a CI runner, a workstation) this
# only checks `docker info`. On a fresh Debian/Ubuntu machine run as root it
# installs Debian's docker.io (and debootstrap, used to bootstrap base images
# where no registry can be reached), starts dockerd in the background and
# waits until it answers. Exit status 0 means `docker info` works.
set -euo pipefail

log() { printf 'setup-engine: %s\n' "$*" >&2; }

engine_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

if engine_answers; then
  log "a Docker engine is already running; nothing to do"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  log "no Docker engine answers and this is not root: start Docker yourself (or rerun as root on Debian)"
  exit 1
fi

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" iptables ca-certificates >/dev/null
fi

DOCKERD=$(command -v dockerd || echo /usr/sbin/dockerd)
LOG=${AGENTEVAL_DOCKERD_LOG:-/var/log/agenteval-dockerd.log}
if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting $DOCKERD in the background (log: $LOG)"
  # setsid: the engine must outlive this script and the shell that ran it.
  setsid "$DOCKERD" >"$LOG" 2>&1 < /dev/null &
fi

for _ in $(seq 1 120); do
  if engine_answers; then
    log "Docker engine is up ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; last lines of $LOG:"
tail -n 20 "$LOG" >&2 || true
exit 1
