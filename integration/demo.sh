#!/usr/bin/env bash
# The demo: Caddy, built with this module, proxying to a Kubernetes Service
# whose Pods come and go, against a real local API server.
#
#   bash integration/demo.sh            run the demo, then clean up
#   bash integration/demo.sh --keep     leave everything running afterwards
#   bash integration/demo.sh --stop     clean up what a --keep run left
#   bash integration/demo.sh --build-caddy
#                                       only build caddy; prints its path
#
# Needs root (network namespace; apt-get for missing etcd-server, openssl,
# curl, iproute2) and Go; everything else comes from the Go module proxy.
# First run: ~5 min (kube-apiserver and caddy are built and cached in
# CADDY_DISCOVERY_CACHE, default ~/.cache/caddy-discovery); later runs ~30 s.
#
# What it does:
#   1. builds caddy with xcaddy (`--with github.com/caddy-discovery/caddy-discovery=<repo>`),
#      rebuilt when the module's sources change, and a tiny backend server;
#   2. starts etcd, kube-apiserver and kube-controller-manager
#      (integration/start-kube.sh) on 127.0.0.1:$KUBE_PORT (default 17443,
#      away from the tests' 16443), state in $DEMO_DIR (default
#      /tmp/caddy-discovery-demo);
#   3. creates the network namespace cd-demo, joined by the veth pair
#      cddemo0 (10.252.0.1, root side) / cddemo1; each Pod's backend listens
#      on its own address inside it, 10.252.0.11.. port 8080;
#   4. plays the kubelet with curl: a Node, the Service shop/web (port http
#      80 -> targetPort 8080, selector app=web), Pods with status written
#      through pods/status; the controller-manager makes the EndpointSlices;
#   5. runs caddy with integration/demo/Caddyfile on 127.0.0.1:8080 (admin
#      localhost:2019) and shows where requests go as Pods are added, become
#      NotReady, Ready again, and are deleted.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
MODULE=github.com/caddy-discovery/caddy-discovery
CACHE=${CADDY_DISCOVERY_CACHE:-$HOME/.cache/caddy-discovery}
DEMO_DIR=${DEMO_DIR:-${TMPDIR:-/tmp}/caddy-discovery-demo}
export KUBE_PORT=${KUBE_PORT:-17443} ETCD_PORT=${ETCD_PORT:-24790} KCM_PORT=${KCM_PORT:-10457}
SERVER=https://127.0.0.1:$KUBE_PORT
NS=cd-demo VETH_OUT=cddemo0 VETH_IN=cddemo1
NET=10.252.0 # .1 root side of the veth, .11.. the Pods
CADDY_ADDR=127.0.0.1:8080

mode=run
case "${1:-}" in
"") ;;
--keep) mode=keep ;;
--stop) mode=stop ;;
--build-caddy) mode=build ;;
*) echo "usage: $0 [--keep | --stop | --build-caddy]" >&2; exit 2 ;;
esac
(($# <= 1)) || { echo "usage: $0 [--keep | --stop | --build-caddy]" >&2; exit 2; }

# Progress goes to stdout, except with --build-caddy, whose stdout is the path.
if [[ $mode == build ]]; then exec 3>&2; else exec 3>&1; fi
say() { echo "$*" >&3; }
heading() { say; say "==> $*"; }
die() { echo "demo: error: $*" >&2; exit 1; }

[[ -x /usr/local/go/bin/go ]] && PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "Go is not installed (expected /usr/local/go/bin/go)"
PATH=$PATH:$(go env GOPATH)/bin

# run_long LABEL LOG CMD...: runs CMD with its output in LOG, saying it is
# still busy every 10 s; on failure shows the end of LOG.
run_long() {
	local label=$1 log=$2 pid t=0 rc=0
	shift 2
	"$@" >"$log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		t=$((t + 1))
		if ((t % 10 == 0)); then say "    ... still $label (${t}s)"; fi
	done
	wait "$pid" || rc=$?
	if ((rc != 0)); then
		echo "demo: $label failed (exit $rc); last lines of $log:" >&2
		tail -n 30 "$log" >&2
		exit "$rc"
	fi
}

# --- build --------------------------------------------------------------------
build_caddy() {
	local out=$CACHE/demo
	mkdir -p "$out"
	if ! command -v xcaddy >/dev/null; then
		say "--- installing xcaddy (go install github.com/caddyserver/xcaddy/cmd/xcaddy@latest)"
		run_long "installing xcaddy" "$out/xcaddy-install.log" \
			go install github.com/caddyserver/xcaddy/cmd/xcaddy@latest
	fi
	local caddy_version key
	caddy_version=$(sed -n -E 's#^[[:space:]]*github.com/caddyserver/caddy/v2 (v[^ ]+).*#\1#p' "$ROOT/go.mod" | head -n 1)
	[[ -n $caddy_version ]] || die "cannot find the caddy version in $ROOT/go.mod"
	# Rebuild when the module's sources, caddy, xcaddy or Go change.
	key=$({
		echo "$caddy_version $(go env GOVERSION) $(command -v xcaddy) $ROOT"
		cd "$ROOT" && find . -path ./.git -prune -o -type f \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) -print |
			LC_ALL=C sort | xargs sha256sum
	} | sha256sum | cut -d' ' -f1)
	if [[ -x $out/caddy && -f $out/caddy.key && $(cat "$out/caddy.key") == "$key" ]]; then
		say "--- caddy is up to date ($out/caddy)"
		return
	fi
	say "--- building caddy $caddy_version with $MODULE=$ROOT (xcaddy; cold: ~4 min)"
	rm -f "$out/caddy.key"
	# The explicit (zero pseudo-)version makes xcaddy's `go get` resolve the
	# module through the replacement alone; without one it asks the module
	# proxy for the latest published version first, and fails offline.
	run_long "building caddy" "$out/xcaddy-build.log" \
		env CGO_ENABLED=0 GOFLAGS=-buildvcs=false xcaddy build "$caddy_version" \
		--output "$out/caddy.tmp" --with "$MODULE@v0.0.0-00010101000000-000000000000=$ROOT"
	mv "$out/caddy.tmp" "$out/caddy"
	echo "$key" >"$out/caddy.key"
	say "    built $out/caddy"
}

if [[ $mode == build ]]; then
	build_caddy
	echo "$CACHE/demo/caddy"
	exit 0
fi

# --- clean-up -----------------------------------------------------------------
cleanup() {
	local f pid
	say
	say "==> Cleaning up"
	for f in "$DEMO_DIR"/caddy.pid "$DEMO_DIR"/backend-*.pid; do
		[[ -f $f ]] || continue
		pid=$(cat "$f")
		rm -f "$f"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	done
	if [[ -d $DEMO_DIR/kube ]]; then "$HERE/stop-kube.sh" "$DEMO_DIR/kube" 2>&1 | sed 's/^/    /' >&3 || true; fi
	ip netns del "$NS" 2>/dev/null || true
	ip link del "$VETH_OUT" 2>/dev/null || true
	rm -rf "$DEMO_DIR"
	say "    stopped caddy, the backends and the API server; removed netns $NS and $DEMO_DIR"
}

[[ $(id -u) -eq 0 ]] || die "run as root (it creates a network namespace)"
if [[ $mode == stop ]]; then
	cleanup
	exit 0
fi

# --- packages -----------------------------------------------------------------
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
	heading "Installing ${missing[*]} (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	if ! run_long "installing packages" "${TMPDIR:-/tmp}/caddy-discovery-demo-apt.log" \
		apt-get install -y -q --no-install-recommends "${missing[@]}" 2>/dev/null; then
		run_long "updating the package lists" "${TMPDIR:-/tmp}/caddy-discovery-demo-apt.log" apt-get update -q
		run_long "installing packages" "${TMPDIR:-/tmp}/caddy-discovery-demo-apt.log" \
			apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
fi

# A previous --keep run (or a crashed one) may have left things behind.
if [[ -d $DEMO_DIR ]] || ip netns list 2>/dev/null | grep -qw "$NS"; then
	say "(a previous demo is still set up: removing it first)"
	cleanup
fi
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
port_open 127.0.0.1 8080 && die "127.0.0.1:8080 is already in use"
port_open 127.0.0.1 2019 && die "localhost:2019 (caddy's admin endpoint) is already in use; is another caddy running?"

heading "Building (cached after the first run)"
mkdir -p "$CACHE/demo"
build_caddy
CADDY=$CACHE/demo/caddy
say "--- building the demo backend (integration/demo/backend)"
(cd "$ROOT" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -o "$CACHE/demo/backend" ./integration/demo/backend)
BACKEND=$CACHE/demo/backend
say "--- building kube-apiserver and kube-controller-manager (integration/build-kube.sh; cold: ~4 min, ~2 GB RAM)"
run_long "building kube-apiserver" "$CACHE/demo/build-kube.log" "$HERE/build-kube.sh"
say "    ready"

if [[ $mode == run ]]; then trap cleanup EXIT; fi
trap 'exit 130' INT TERM
mkdir -p "$DEMO_DIR"

# --- API server -----------------------------------------------------------------
heading "Starting etcd, kube-apiserver and kube-controller-manager on $SERVER"
run_long "starting the API server" "$DEMO_DIR/start-kube.log" "$HERE/start-kube.sh" "$DEMO_DIR/kube"
sed 's/^/    /' "$DEMO_DIR/start-kube.log" >&3
export KUBECONFIG=$DEMO_DIR/kube/admin.kubeconfig
TOKEN=$(cat "$DEMO_DIR/kube/admin.token")

# api METHOD PATH [JSON [CONTENT-TYPE]]: one API request; fails loudly.
api() {
	local code
	code=$(curl -sS -o "$DEMO_DIR/api.out" -w '%{http_code}' --cacert "$DEMO_DIR/kube/ca.crt" \
		-H "Authorization: Bearer $TOKEN" -H "Content-Type: ${4:-application/json}" \
		-X "$1" ${3:+--data "$3"} "$SERVER$2") || die "$1 $2: curl failed"
	[[ $code == 2* ]] || die "$1 $2: HTTP $code: $(cat "$DEMO_DIR/api.out")"
}

# --- network namespace ------------------------------------------------------------
heading "Creating network namespace $NS ($NET.0/24; the root side is $NET.1)"
ip -4 addr show | grep -q "inet $NET\." && die "$NET.0/24 is already used by an interface here"
ip netns add "$NS"
ip link add "$VETH_OUT" type veth peer name "$VETH_IN"
ip link set "$VETH_IN" netns "$NS"
ip addr add "$NET.1/24" dev "$VETH_OUT"
ip link set "$VETH_OUT" up
ip -n "$NS" link set lo up
ip -n "$NS" link set "$VETH_IN" up
say "    veth $VETH_OUT <-> $NS:$VETH_IN"

# start_backend NAME IP: the "container" of a Pod, listening on IP:8080 in the namespace.
start_backend() {
	ip -n "$NS" addr add "$2/24" dev "$VETH_IN"
	setsid ip netns exec "$NS" "$BACKEND" -name "$1" -listen "$2:8080" >>"$DEMO_DIR/backend-$1.log" 2>&1 </dev/null &
	echo $! >"$DEMO_DIR/backend-$1.pid"
	for _ in $(seq 50); do
		if ip netns exec "$NS" curl -fsS -o /dev/null --max-time 1 "http://$2:8080/" 2>/dev/null; then
			say "    backend $1 answers on $2:8080 (inside $NS)"
			return
		fi
		sleep 0.1
	done
	die "backend $1 did not start; see $DEMO_DIR/backend-$1.log"
}
stop_backend() {
	local pid
	pid=$(cat "$DEMO_DIR/backend-$1.pid")
	rm -f "$DEMO_DIR/backend-$1.pid"
	kill "$pid" 2>/dev/null || true
	say "    backend $1 stopped"
}

# --- Kubernetes objects -----------------------------------------------------------
# There is no kubelet: the demo creates Pods bound to a Node and writes their
# status itself, which is all the EndpointSlice controller looks at.
pod_ip() { echo "$NET.$((10 + ${1#web-}))"; }
create_pod() { # NAME
	local ip
	ip=$(pod_ip "$1")
	api POST /api/v1/namespaces/shop/pods "{\"metadata\":{\"name\":\"$1\",\"labels\":{\"app\":\"web\"}},
		\"spec\":{\"nodeName\":\"demo-node\",\"containers\":[{\"name\":\"web\",\"image\":\"demo/web\",\"ports\":[{\"name\":\"http\",\"containerPort\":8080}]}]}}"
	set_ready "$1" True
	say "    Pod shop/$1 created, podIP $ip, Ready=True"
}
set_ready() { # NAME True|False
	local ip
	ip=$(pod_ip "$1")
	api PATCH "/api/v1/namespaces/shop/pods/$1/status" "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"podIPs\":[{\"ip\":\"$ip\"}],
		\"conditions\":[{\"type\":\"Ready\",\"status\":\"$2\"},{\"type\":\"ContainersReady\",\"status\":\"$2\"}]}}" \
		application/merge-patch+json
}
delete_pod() { # NAME
	api DELETE "/api/v1/namespaces/shop/pods/$1?gracePeriodSeconds=0"
	say "    Pod shop/$1 deleted"
}

heading "Creating Node demo-node, Namespace shop, Service shop/web (port http 80 -> targetPort 8080)"
api POST /api/v1/nodes '{"metadata":{"name":"demo-node"},"status":{"addresses":[{"type":"InternalIP","address":"'"$NET.1"'"}]}}'
api POST /api/v1/namespaces '{"metadata":{"name":"shop"}}'
api POST /api/v1/namespaces/shop/services '{"metadata":{"name":"web"},"spec":{"selector":{"app":"web"},
	"ports":[{"name":"http","port":80,"targetPort":8080}]}}'
say "    done"

heading "Starting 2 Pods: web-1 and web-2"
for p in web-1 web-2; do
	start_backend "$p" "$(pod_ip "$p")"
	create_pod "$p"
done

# --- caddy ------------------------------------------------------------------------
heading "Starting caddy on http://$CADDY_ADDR with integration/demo/Caddyfile"
sed 's/^/    | /' "$HERE/demo/Caddyfile" >&3
mkdir -p "$DEMO_DIR/xdg"
(cd "$DEMO_DIR" && exec env XDG_DATA_HOME="$DEMO_DIR/xdg" XDG_CONFIG_HOME="$DEMO_DIR/xdg" \
	setsid "$CADDY" run --config "$HERE/demo/Caddyfile" --adapter caddyfile >"$DEMO_DIR/caddy.log" 2>&1 </dev/null) &
echo $! >"$DEMO_DIR/caddy.pid"
for i in $(seq 100); do
	port_open 127.0.0.1 8080 && break
	kill -0 "$(cat "$DEMO_DIR/caddy.pid")" 2>/dev/null || { tail -n 20 "$DEMO_DIR/caddy.log" >&2; die "caddy exited"; }
	((i < 100)) || die "caddy did not start listening; see $DEMO_DIR/caddy.log"
	sleep 0.1
done
say "    caddy is up (pid $(cat "$DEMO_DIR/caddy.pid"), log $DEMO_DIR/caddy.log)"

# --- traffic ------------------------------------------------------------------------
# request: prints which backend answered one request (or the HTTP error).
request() {
	local out code
	out=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://$CADDY_ADDR/" 2>/dev/null) || { echo "(no answer)"; return; }
	code=${out##*$'\n'}
	if [[ $code == 200 ]]; then head -n 1 <<<"$out"; else echo "HTTP $code"; fi
}
# wait_for NAMES...: sends requests until exactly these backends answer (6
# requests cover up to 6 upstreams with round_robin).
wait_for() {
	local want got start=$EPOCHREALTIME i
	want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
	for _ in $(seq 200); do
		got=$(for i in $(seq 6); do request; done | sort -u | tr '\n' ' ')
		if [[ $got == "$want" ]]; then
			say "    caddy follows: requests now go to ${want% } (after $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $start}")s)"
			return
		fi
		sleep 0.1
	done
	die "requests still go to ${got:-nothing}, expected ${want% }; see $DEMO_DIR/caddy.log"
}
# show: 12 requests, counted per backend.
show() {
	local name n
	say "    12 requests to http://$CADDY_ADDR/:"
	for _ in $(seq 12); do request; done | sort | uniq -c | while read -r n name; do
		say "$(printf '      %-8s %2d  %s' "$name" "$n" "$(printf '%*s' "$n" '' | tr ' ' '#')")"
	done
}

heading "Step 1: shop/web has 2 ready Pods"
wait_for web-1 web-2
show

heading "Step 2: scale up to 3 Pods (web-3 starts and becomes Ready)"
start_backend web-3 "$(pod_ip web-3)"
create_pod web-3
wait_for web-1 web-2 web-3
show

heading "Step 3: web-2 becomes NotReady (its backend keeps running: no health check involved)"
set_ready web-2 False
say "    Pod shop/web-2 Ready=False"
wait_for web-1 web-3
show

heading "Step 4: web-2 is Ready again"
set_ready web-2 True
say "    Pod shop/web-2 Ready=True"
wait_for web-1 web-2 web-3
show

heading "Step 5: scale down to 1 Pod (web-2 and web-3 deleted)"
delete_pod web-3
delete_pod web-2
wait_for web-1
show
stop_backend web-2
stop_backend web-3

heading "Done: caddy followed every change of shop/web's Pods without a reload"
if [[ $mode == keep ]]; then
	say "    still running (--keep): caddy on http://$CADDY_ADDR (admin localhost:2019),"
	say "    API server $SERVER with KUBECONFIG=$KUBECONFIG, backends in netns $NS."
	say "    Try: curl http://$CADDY_ADDR/   Clean up with: bash integration/demo.sh --stop"
fi
