# shellcheck shell=bash
# What the integration scripts share. Source it, after `set -euo pipefail`:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It defines functions only: no shell options, no traps, nothing on stdout.
#
#   log MSG...                   "<script>: MSG" on stderr; <script> is $LIB_NAME,
#                                else $0's base name without .sh
#   say MSG...                   a progress line for people (stderr; a script
#                                may redefine it, as demo.sh does)
#   apt_missing PKG...           prints the Debian packages not installed
#   apt_install PKG...           installs the Debian packages not yet installed
#                                (apt-get update once first; needs root)
#   port_open PORT [HOST]        true when HOST (127.0.0.1) accepts TCP on PORT
#   wait_for TIMEOUT_S WHAT CMD [ARGS...]
#                                runs CMD every 0.2 s until it succeeds; after
#                                TIMEOUT_S logs "timed out after Ns waiting for
#                                WHAT" and returns 1
#   stop_pid PIDFILE [GRACE_S [SIGNAL]]
#                                sends SIGNAL (TERM) to the pid in PIDFILE if it
#                                is alive, KILL after GRACE_S (10) seconds,
#                                removes PIDFILE; quiet when nothing runs
#   cache_dir                    prints $CADDY_DISCOVERY_CACHE (default
#                                ~/.cache/caddy-discovery), created
#   run_long LABEL LOGFILE CMD...
#                                runs CMD with its output in LOGFILE, saying it
#                                is still busy every 10 s; on failure shows the
#                                end of LOGFILE and exits with CMD's status
#   build_caddy OUT [untrimmed]  builds caddy with this module from the working
#                                tree (xcaddy) into the file OUT, unless OUT is
#                                up to date; progress through say. untrimmed:
#                                with cgo and without -trimpath, as go vet and
#                                go test compile, so that they reuse the
#                                packages compiled here
#
# TIMEOUT_S and GRACE_S may have a fraction: 2.5.

_lib_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_lib_apt_updated=

log() {
	local name=${LIB_NAME:-}
	if [[ -z $name ]]; then
		name=${0##*/}
		name=${name%.sh}
	fi
	echo "$name: $*" >&2
}

say() { echo "$*" >&2; }

apt_missing() {
	local pkg
	for pkg in "$@"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) == installed ]] || echo "$pkg"
	done
}

apt_install() {
	local missing
	mapfile -t missing < <(apt_missing "$@")
	((${#missing[@]})) || return 0
	if [[ $(id -u) -ne 0 ]]; then
		log "missing Debian packages ${missing[*]}: run as root, or install them (apt-get install ${missing[*]})"
		return 1
	fi
	log "installing ${missing[*]} (apt-get)"
	if [[ -z $_lib_apt_updated ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return
		_lib_apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

port_open() { (exec 9<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# _lib_us SECONDS: sets REPLY to SECONDS (N or N.F) in microseconds.
_lib_us() {
	[[ $1 =~ ^([0-9]+)(\.([0-9]*))?$ ]] || { log "not a number of seconds: '$1'"; return 2; }
	local frac=${BASH_REMATCH[3]}000000
	REPLY=$((10#${BASH_REMATCH[1]} * 1000000 + 10#${frac:0:6}))
}
_lib_now() { REPLY=${EPOCHREALTIME//[!0-9]/}; }

# _lib_poll TIMEOUT_S INTERVAL_S CMD...: true once CMD succeeds, false after TIMEOUT_S.
_lib_poll() {
	local interval=$2 deadline
	_lib_us "$1" || return
	deadline=$REPLY
	_lib_now
	deadline=$((deadline + REPLY))
	shift 2
	until "$@"; do
		_lib_now
		((REPLY < deadline)) || return 1
		sleep "$interval"
	done
}

wait_for() {
	local timeout=$1 what=$2 rc=0
	shift 2
	_lib_poll "$timeout" 0.2 "$@" || rc=$?
	((rc != 1)) || log "timed out after ${timeout}s waiting for $what"
	return "$rc"
}

_lib_gone() { ! kill -0 "$1" 2>/dev/null; }

stop_pid() {
	local pidfile=$1 grace=${2:-10} signal=${3:-TERM} pid rc=0
	[[ -f $pidfile ]] || return 0
	pid=$(<"$pidfile")
	if [[ $pid =~ ^[0-9]+$ ]] && ! _lib_gone "$pid"; then
		kill -s "$signal" "$pid" 2>/dev/null || true
		if ! _lib_poll "$grace" 0.1 _lib_gone "$pid"; then
			log "pid $pid still running after ${grace}s; sending KILL"
			kill -s KILL "$pid" 2>/dev/null || true
			_lib_poll 5 0.1 _lib_gone "$pid" || { log "pid $pid survived KILL for 5s"; rc=1; }
		fi
	fi
	rm -f "$pidfile"
	return "$rc"
}

cache_dir() {
	local dir=${CADDY_DISCOVERY_CACHE:-$HOME/.cache/caddy-discovery}
	mkdir -p "$dir" && echo "$dir"
}

run_long() {
	local label=$1 logfile=$2 pid t=0 rc=0
	shift 2
	"$@" >"$logfile" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		t=$((t + 1))
		if ((t % 10 == 0)); then say "    ... still $label (${t}s)"; fi
	done
	wait "$pid" || rc=$?
	if ((rc != 0)); then
		log "$label failed (exit $rc); last lines of $logfile:"
		tail -n 30 "$logfile" >&2
		exit "$rc"
	fi
}

build_caddy() {
	local out=$1 mode=${2:-} dir caddy_version key
	local module=github.com/caddy-discovery/caddy-discovery
	# xcaddy's default flags (-trimpath, no cgo), or the untrimmed build's:
	# any XCADDY_GO_BUILD_FLAGS replaces the defaults.
	local flags=(CGO_ENABLED=0)
	if [[ $mode == untrimmed ]]; then
		flags=(CGO_ENABLED=1 XCADDY_GO_BUILD_FLAGS=-buildvcs=false)
	fi
	dir=$(dirname "$out")
	mkdir -p "$dir"
	if ! command -v xcaddy >/dev/null; then
		say "--- installing xcaddy (go install github.com/caddyserver/xcaddy/cmd/xcaddy@latest)"
		run_long "installing xcaddy" "$dir/xcaddy-install.log" \
			go install github.com/caddyserver/xcaddy/cmd/xcaddy@latest
		command -v xcaddy >/dev/null || PATH=$PATH:$(go env GOPATH)/bin
	fi
	caddy_version=$(sed -n -E 's#^[[:space:]]*github.com/caddyserver/caddy/v2 (v[^ ]+).*#\1#p' "$_lib_root/go.mod" | head -n 1)
	[[ -n $caddy_version ]] || { log "cannot find the caddy version in $_lib_root/go.mod"; return 1; }
	# Rebuild when the module's sources, caddy, xcaddy or Go change.
	key=$({
		echo "$caddy_version $(go env GOVERSION) $(command -v xcaddy) $_lib_root $mode"
		cd "$_lib_root" && find . -path ./.git -prune -o -type f \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) -print |
			LC_ALL=C sort | xargs sha256sum
	} | sha256sum | cut -d' ' -f1)
	if [[ -x $out && -f $out.key && $(cat "$out.key") == "$key" ]]; then
		say "--- caddy is up to date ($out)"
		return
	fi
	say "--- building caddy $caddy_version with $module=$_lib_root (xcaddy; cold: ~4 min)"
	rm -f "$out.key"
	# The explicit (zero pseudo-)version makes xcaddy's `go get` resolve the
	# module through the replacement alone; without one it asks the module
	# proxy for the latest published version first, and fails offline.
	run_long "building caddy" "$dir/xcaddy-build.log" \
		env "${flags[@]}" GOFLAGS=-buildvcs=false xcaddy build "$caddy_version" \
		--output "$out.tmp" --with "$module@v0.0.0-00010101000000-000000000000=$_lib_root"
	mv "$out.tmp" "$out"
	echo "$key" >"$out.key"
	say "    built $out"
}
