#!/usr/bin/env bash
# Makes a local Docker engine answer, for runtime-docker's tests on a Debian host (CI).
#
# Installs docker.io and busybox-static (for scripts/docker-test-image.sh) with apt-get when
# they are missing, closes a gap in Docker's isolation between networks (below), then starts
# dockerd in the background unless `docker info` already answers. Safe to run twice, and while
# another run is starting the daemon: it installs only what is missing, adds only the rules
# that are missing, and starts dockerd only when no daemon is running.
#
# dockerd runs with its defaults, and the defaults matter:
#   - iptables stays on. Docker's DOCKER-ISOLATION chains are what stop one bottle's network
#     from reaching another's; with --iptables=false the host routes between the bridges and
#     bundles reach each other (checked on Debian 12, docker.io 20.10). Publishing itself
#     works either way, since connections to a loopback alias go through docker-proxy.
#   - the userland proxy stays on: it binds ALIAS:PORT and nothing else, so nothing answers
#     on 127.0.0.1 or on another alias.
#
# The gap: each time any Docker network is created, dockerd 20.10 deletes the jump from
# FORWARD to DOCKER-ISOLATION-STAGE-1 and inserts it again at the top, in two iptables calls
# (moby/moby#43585). In between, every bridge's "-i br-X ! -o br-X -j ACCEPT" rule lets
# containers reach the containers of every other network: one bottle starting opens all
# running bottles to each other for a moment (40 network creations let 32 of a stream of
# connections through on this host). So this script adds, in the mangle table, which dockerd
# never rewrites, a rule that drops traffic routed from one Docker bridge to another. Traffic
# within one bridge is switched, not routed (`--physdev-is-bridged`), and passes. Docker 28
# reorganised these rules (moby/moby#49518, a DOCKER-FORWARD chain); when CI runs Docker 28 or
# later and runtime-docker's test `bundles_stay_apart_while_other_networks_are_created` passes
# without these rules, delete `isolate_bridges` and its call.
#
# Environment: DOCKERD_LOG (default /var/log/bottle-dockerd.log), DOCKER_WAIT_SECS (60).
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/bottle-dockerd.log}
wait_secs=${DOCKER_WAIT_SECS:-60}
pidfile=/var/run/docker.pid

say() { echo "start-docker: $*"; }
die() {
    echo "start-docker: $*" >&2
    exit 1
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

install_missing() {
    local missing=()
    if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
        missing+=(docker.io)
    fi
    if ! installed busybox-static; then
        missing+=(busybox-static)
    fi
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]}, and this host has no apt-get"
    ((EUID == 0)) || die "missing ${missing[*]}; run as root to install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
}

# Drops IPv4 traffic routed between two Docker bridges (user networks are br-*, the default
# one docker0); see the top of this file for why.
isolate_bridges() {
    if ((EUID != 0)); then
        say "not root: cannot check the rules that keep Docker networks apart (see $0)"
        return 0
    fi
    local pair in out
    for pair in "br-+ br-+" "br-+ docker0" "docker0 br-+"; do
        read -r in out <<<"$pair"
        local rule=(FORWARD -i "$in" -o "$out" -m physdev ! --physdev-is-bridged -j DROP)
        if ! iptables -t mangle -C "${rule[@]}" 2>/dev/null; then
            iptables -t mangle -A "${rule[@]}" ||
                die "cannot add a rule that keeps Docker networks apart:" \
                    "iptables -t mangle -A ${rule[*]}"
            say "added: iptables -t mangle -A ${rule[*]}"
        fi
    done
}

running_pid() {
    [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"
}

start_dockerd() {
    if docker info >/dev/null 2>&1; then
        say "docker is answering"
        return 0
    fi
    local pid
    if pid=$(running_pid); then
        say "dockerd is already starting (pid $pid)"
    else
        ((EUID == 0)) || die "docker is not answering; run as root to start dockerd"
        say "starting dockerd, log in $log"
        setsid nohup dockerd >>"$log" 2>&1 </dev/null &
    fi
    local i
    for ((i = 0; i < wait_secs; i++)); do
        if docker info >/dev/null 2>&1; then
            say "docker is answering"
            return 0
        fi
        sleep 1
    done
    echo "start-docker: docker did not answer within ${wait_secs}s; last lines of $log:" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
}

install_missing
isolate_bridges
start_dockerd
