#!/usr/bin/env bash
# Measures what plugin discovery and loading cost a `bottle` command: the median wall time of
# `bottle plugins --json` (which finds, opens and checks every plugin of the build directory)
# against `bottle --version` (the same process start, no plugin touched), over RUNS runs each.
#
# Usage: scripts/bench-plugin-load.sh [PROFILE]   (PROFILE: debug, the default, or release)
# Environment: RUNS (default 31).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${1:-debug}
runs=${RUNS:-31}
flags=()
[[ $profile == release ]] && flags=(--release)
cargo build -q "${flags[@]}"
bottle=target/$profile/bottle
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export BOTTLE_HOME=$home

# The median, in microseconds, of RUNS runs of the command given.
median_us() {
    local i start end
    local times=()
    "$@" >/dev/null # once to warm the page cache
    for ((i = 0; i < runs; i++)); do
        start=$(date +%s%N)
        "$@" >/dev/null
        end=$(date +%s%N)
        times+=($(((end - start) / 1000)))
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n "$((runs / 2 + 1))p"
}

plugins=$("$bottle" plugins --json | grep -c '"status": "loaded"')
base=$(median_us "$bottle" --version)
load=$(median_us "$bottle" plugins --json)
echo "profile $profile, $runs runs each, $plugins plugins loaded"
echo "bottle --version        median ${base} us"
echo "bottle plugins --json   median ${load} us"
echo "discovery and loading   $((load - base)) us"
