#!/usr/bin/env bash
# Stops the server that start-polaris.sh DIR started, keeping its data:
#
#   integration/stop-polaris.sh DIR
#
# Sends POLARIS_STOP_SIGNAL (default TERM) and waits up to
# POLARIS_STOP_TIMEOUT seconds (default 15; a graceful stop takes ~5 s, as
# Polaris deregisters itself and sleeps 5 s), then sends KILL.
# POLARIS_STOP_SIGNAL=KILL simulates a crash. A no-op when it is not running.
set -euo pipefail

# shellcheck source=integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
SIGNAL=${POLARIS_STOP_SIGNAL:-TERM}
TIMEOUT=${POLARIS_STOP_TIMEOUT:-15}
pidfile=$DIR/polaris.pid

if [[ ! -f $pidfile ]]; then
	log "no $pidfile; nothing to stop"
	exit 0
fi
pid=$(cat "$pidfile")
if ! kill -0 "$pid" 2>/dev/null; then
	log "pid $pid is not running"
	rm -f "$pidfile"
	exit 0
fi
# The pid file may outlive the process; only signal a polaris-server.
if [[ $(readlink "/proc/$pid/exe" 2>/dev/null || true) != */polaris-server ]]; then
	log "pid $pid is not a polaris-server; removing the stale $pidfile"
	rm -f "$pidfile"
	exit 0
fi

log "stopping pid $pid with SIG$SIGNAL"
stop_pid "$pidfile" "$TIMEOUT" "$SIGNAL"
log "stopped"
