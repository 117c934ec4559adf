#!/usr/bin/env bash
# Makes a local Docker engine answer, for runtime-docker's tests on a Debian host (CI).
#
# Installs docker.io and busybox-static (for scripts/docker-test-image.sh) with apt-get when
# they are missing, then starts dockerd in the background unless `docker info` already
# answers. Safe to run twice, and while another run is starting the daemon: it installs only
# what is missing and starts dockerd only when no daemon is running.
#
# dockerd runs with its defaults, and the defaults matter:
#   - iptables stays on. Docker's DOCKER-ISOLATION chains are what stop one bottle's network
#     from reaching another's; with --iptables=false the host routes between the bridges and
#     bundles reach each other (checked on Debian 12, docker.io 20.10). Publishing itself
#     works either way, since connections to a loopback alias go through docker-proxy.
#   - the userland proxy stays on: it binds ALIAS:PORT and nothing else, so nothing answers
#     on 127.0.0.1 or on another alias.
# A host whose kernel lacks iptables support fails here, loudly, rather than running bundles
# that are not isolated.
#
# Environment: DOCKERD_LOG (default /var/log/bottle-dockerd.log), DOCKER_WAIT_SECS (60).
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/bottle-dockerd.log}
wait_secs=${DOCKER_WAIT_SECS:-60}
pidfile=/var/run/docker.pid

say() { echo "start-docker: $*"; }
die() { echo "start-docker: $*" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

missing=()
if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
    missing+=(docker.io)
fi
if ! installed busybox-static; then
    missing+=(busybox-static)
fi
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing ${missing[*]}, and this host has no apt-get"
    ((EUID == 0)) || die "missing ${missing[*]}; run as root to install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi

if docker info >/dev/null 2>&1; then
    say "docker is answering"
    exit 0
fi

running_pid() {
    [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"
}

if pid=$(running_pid); then
    say "dockerd is already starting (pid $pid)"
else
    ((EUID == 0)) || die "docker is not answering; run as root to start dockerd"
    say "starting dockerd, log in $log"
    setsid nohup dockerd >>"$log" 2>&1 </dev/null &
fi

for ((i = 0; i < wait_secs; i++)); do
    if docker info >/dev/null 2>&1; then
        say "docker is answering"
        exit 0
    fi
    sleep 1
done

echo "start-docker: docker did not answer within ${wait_secs}s; last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
