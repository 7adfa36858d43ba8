#!/usr/bin/env bash
# Stops what start-kube.sh DIR started (controller-manager, apiserver, etcd,
# in that order), keeping DIR's data and credentials:
#
#   integration/stop-kube.sh DIR
#
# Sends TERM and waits up to KUBE_STOP_TIMEOUT seconds (default 15), then
# KILL (~3 s in all). A no-op for components that are not running.
set -euo pipefail

log() { echo "stop-kube: $*" >&2; }

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
TIMEOUT=${KUBE_STOP_TIMEOUT:-15}

# Stops the named components: TERM to all, then wait for all (KILL after TIMEOUT).
stop() {
	local name pid pids=() deadline
	for name in "$@"; do
		pidfile=$DIR/$name.pid
		[[ -f $pidfile ]] || continue
		pid=$(cat "$pidfile")
		rm -f "$pidfile"
		# The pid file may outlive the process; only signal the expected binary.
		kill -0 "$pid" 2>/dev/null || continue
		[[ $(readlink "/proc/$pid/exe" 2>/dev/null || true) == */"$name" ]] || continue
		log "stopping $name (pid $pid)"
		kill -s TERM "$pid" 2>/dev/null || true
		pids+=("$pid")
	done
	deadline=$((SECONDS + TIMEOUT))
	for pid in "${pids[@]}"; do
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "pid $pid still running after ${TIMEOUT}s; sending KILL"
				kill -s KILL "$pid" 2>/dev/null || true
				deadline=$((SECONDS + 5))
			fi
			sleep 0.1
		done
	done
}

# etcd last: the apiserver's shutdown still talks to it.
stop kube-controller-manager kube-apiserver
stop etcd
