#!/usr/bin/env bash
# Stops the agent that start-consul.sh DIR started, keeping DIR:
#
#   integration/stop-consul.sh DIR
#
# Sends CONSUL_STOP_SIGNAL (default TERM) and waits up to CONSUL_STOP_TIMEOUT
# seconds (default 10; a dev agent stops in well under a second), then sends
# KILL. CONSUL_STOP_SIGNAL=KILL simulates a crash. A no-op when it is not
# running; a stale pid file naming another program is removed, not signalled.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
SIGNAL=${CONSUL_STOP_SIGNAL:-TERM}
TIMEOUT=${CONSUL_STOP_TIMEOUT:-10}
PIDFILE=$DIR/consul.pid

if [[ ! -f $PIDFILE ]]; then
	log "no $PIDFILE; nothing to stop"
	exit 0
fi
pid=$(<"$PIDFILE")
if ! [[ $pid =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
	log "pid '$pid' from $PIDFILE is not running"
	rm -f "$PIDFILE"
	exit 0
fi
# The pid file may outlive the agent and its pid be reused: only signal a
# consul (" (deleted)" when build-consul.sh replaced the binary meanwhile).
exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
if [[ ${exe% (deleted)} != */consul ]]; then
	log "pid $pid is not a consul (${exe:-unknown}); removing the stale $PIDFILE"
	rm -f "$PIDFILE"
	exit 0
fi

log "stopping pid $pid with SIG$SIGNAL"
stop_pid "$PIDFILE" "$TIMEOUT" "$SIGNAL"
log "stopped"
