#!/usr/bin/env bash
# Stops what start-kube.sh DIR started (controller-manager, apiserver, etcd,
# in that order), keeping DIR's data and credentials:
#
#   integration/stop-kube.sh DIR
#
# Sends TERM and waits up to KUBE_STOP_TIMEOUT seconds (default 15), then
# KILL (~3 s in all). A no-op for components that are not running.
set -euo pipefail

# shellcheck source=integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
TIMEOUT=${KUBE_STOP_TIMEOUT:-15}

# Stops the named components together: TERM, KILL after TIMEOUT.
stop() {
	local name pidfile pid jobs=() rc=0
	for name in "$@"; do
		pidfile=$DIR/$name.pid
		[[ -f $pidfile ]] || continue
		pid=$(cat "$pidfile")
		# The pid file may outlive the process; only signal the expected binary.
		if ! kill -0 "$pid" 2>/dev/null || [[ $(readlink "/proc/$pid/exe" 2>/dev/null || true) != */"$name" ]]; then
			rm -f "$pidfile"
			continue
		fi
		log "stopping $name (pid $pid)"
		stop_pid "$pidfile" "$TIMEOUT" &
		jobs+=($!)
	done
	for pid in "${jobs[@]}"; do wait "$pid" || rc=1; done
	return "$rc"
}

# etcd last: the apiserver's shutdown still talks to it.
stop kube-controller-manager kube-apiserver
stop etcd
