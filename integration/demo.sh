#!/usr/bin/env bash
# The demo: Caddy, built with this module, proxying to a Kubernetes Service
# whose Pods come and go, against a real local API server, to a Nacos
# service whose instances register and deregister themselves, against a real
# local Nacos-protocol server (Polaris), to a Eureka application (Polaris's
# Eureka API), to a Consul service (a real Consul dev agent), to the
# instances of a service registered in etcd (Debian's etcd) and to those of
# a Spring Cloud Zookeeper service registered through Curator in ZooKeeper
# (Debian's zookeeper and libcurator-discovery-java).
#
#   bash integration/demo.sh            run the demo, then clean up
#   bash integration/demo.sh --keep     leave everything running afterwards
#   bash integration/demo.sh --stop     clean up what a --keep run left
#   bash integration/demo.sh --build-caddy
#                                       only build caddy; prints its path
#
# Needs root (network namespace; apt-get for missing etcd-server, openssl,
# curl, iproute2, patch, zookeeper, libcurator-discovery-java and a JDK) and
# Go; everything else comes from the Go module proxy.
# First run: ~16 min (kube-apiserver, Polaris, Consul and caddy are built and
# cached in CADDY_DISCOVERY_CACHE, default ~/.cache/caddy-discovery); later
# runs ~65 s.
#
# What it does:
#   1. builds caddy with xcaddy (`--with github.com/caddy-discovery/caddy-discovery=<repo>`),
#      rebuilt when the module's sources change, a tiny backend server
#      (integration/demo/backend), Polaris (integration/build-polaris.sh) and
#      Consul v1.14.8 (integration/build-consul.sh);
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
#   5. starts Polaris (integration/start-polaris.sh), whose Nacos API is on
#      127.0.0.1:$NACOS_HTTP_PORT (default 8848, or 1848 if 8848, 9848 or
#      10848 is taken; gRPC on +1000, Polaris's own gRPC on +2000) and its
#      Eureka API on 127.0.0.1:$EUREKA_PORT (default 8761, or 1761), and a
#      Consul dev agent (integration/start-consul.sh) on
#      127.0.0.1:$CONSUL_HTTP_PORT (default 8500, or 1500; server RPC and
#      serf on -200..-198: 8300-8302; gRPC TLS on 8503), and an etcd for
#      registrations on 127.0.0.1:$ETCD_REGISTRY_PORT (default 2379, or
#      1379; peer port +1), and ZooKeeper on 127.0.0.1:$ZK_PORT (default
#      2181, or 1181);
#   6. runs caddy with integration/demo/Caddyfile on 127.0.0.1:8080 (k8s),
#      :8081 (nacos), :8082 (nacos, metadata version=v2 only), :8083
#      (nacos, lb_policy registry_weighted), :8084 (eureka), :8085
#      (consul), :8086 (etcd), :8087 (zookeeper) and :8088 (one route for
#      all), admin localhost:2019,
#      and shows
#      where requests go as Pods are added, become NotReady, Ready again, and
#      are deleted;
#   7. starts backends that register themselves in Nacos as ephemeral
#      instances of shop-api (10.252.0.21.. port 8080 in the namespace, the
#      process itself in the root namespace, next to Polaris) and shows where
#      requests go as instances register, deregister (SIGTERM) and crash;
#   8. registers 3 instances of shop-pricing with Nacos weights 1, 2 and 7,
#      shows the share of 100 requests each gets through lb_policy
#      registry_weighted (10/20/70), and the caddy_discovery_backends line of
#      Caddy's /metrics (admin endpoint);
#   9. plays a Java eureka-client with curl: registers instances of SHOP-CART
#      ($NET.31..), renews their leases from a background loop, sets one
#      OUT_OF_SERVICE and cancels one (each change reaches caddy within
#      Polaris's 1 s cache refresh plus caddy's 1 s refresh_interval);
#  10. registers instances of the Consul service shop-stock ($NET.41..)
#      through the agent API, each with a TTL check, and shows requests
#      following a failing check, maintenance mode and a deregistration;
#  11. registers instances of shop-search ($NET.51..) in etcd as etcd's gRPC
#      naming library writes them, each under a 5 s lease renewed every 2 s
#      (over etcd's JSON gateway, with curl), and shows requests following a
#      deletion and a crash (its lease expires);
#  12. registers instances of shop-reviews ($NET.61..) in ZooKeeper through
#      Curator's service discovery, as Spring Cloud Zookeeper does
#      (integration/zk-registrar, compiled with javac), and shows requests
#      following an instance_status OUT_OF_SERVICE and a crash (its session
#      ends, and ZooKeeper deletes its node);
#  13. registers one more service in each registry and sends one route
#      (:8088, /<registry>/<service>/...) requests for two services of each:
#      the new ones are served by their first request; a denied, a
#      disallowed and unknown names get 404.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=integration/lib.sh
source "$HERE/lib.sh"
CACHE=$(cache_dir)
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

CADDY=$CACHE/caddy/caddy
if [[ $mode == build ]]; then
	build_caddy "$CADDY"
	echo "$CADDY"
	exit 0
fi

# --- clean-up -----------------------------------------------------------------
cleanup() {
	local f
	say
	say "==> Cleaning up"
	for f in "$DEMO_DIR"/caddy.pid "$DEMO_DIR"/eureka-leases.pid "$DEMO_DIR"/etcd-leases.pid "$DEMO_DIR"/etcd-registry.pid \
		"$DEMO_DIR"/registrar-*.pid "$DEMO_DIR"/zookeeper.pid "$DEMO_DIR"/backend-*.pid; do
		stop_pid "$f" 5 || true
	done
	# KILL: Polaris's graceful stop sleeps 5 s, and its data is deleted below.
	if [[ -d $DEMO_DIR/polaris ]]; then
		POLARIS_STOP_SIGNAL=KILL "$HERE/stop-polaris.sh" "$DEMO_DIR/polaris" 2>&1 | sed 's/^/    /' >&3 || true
	fi
	if [[ -d $DEMO_DIR/consul ]]; then "$HERE/stop-consul.sh" "$DEMO_DIR/consul" 2>&1 | sed 's/^/    /' >&3 || true; fi
	if [[ -d $DEMO_DIR/kube ]]; then "$HERE/stop-kube.sh" "$DEMO_DIR/kube" 2>&1 | sed 's/^/    /' >&3 || true; fi
	ip netns del "$NS" 2>/dev/null || true
	ip link del "$VETH_OUT" 2>/dev/null || true
	rm -rf "$DEMO_DIR"
	say "    stopped caddy, the backends, the lease renewals, the Curator registrars, Polaris, Consul, the registry etcd, ZooKeeper and the API server; removed netns $NS and $DEMO_DIR"
}

[[ $(id -u) -eq 0 ]] || die "run as root (it creates a network namespace)"
if [[ $mode == stop ]]; then
	cleanup
	exit 0
fi

# --- packages -----------------------------------------------------------------
mapfile -t missing < <(apt_missing iproute2 curl etcd-server openssl patch zookeeper libcurator-discovery-java)
command -v javac >/dev/null || missing+=(default-jdk-headless)
if ((${#missing[@]})); then
	heading "Installing ${missing[*]} (apt-get)"
	run_long "installing packages" "${TMPDIR:-/tmp}/caddy-discovery-demo-apt.log" apt_install "${missing[@]}"
fi

# A previous --keep run (or a crashed one) may have left things behind.
if [[ -d $DEMO_DIR ]] || ip netns list 2>/dev/null | grep -qw "$NS"; then
	say "(a previous demo is still set up: removing it first)"
	cleanup
fi
port_open 8080 && die "127.0.0.1:8080 is already in use"
port_open 2019 && die "localhost:2019 (caddy's admin endpoint) is already in use; is another caddy running?"
for port in 8081 8082 8083 8084 8085 8086 8087 8088; do port_open $port && die "127.0.0.1:$port is already in use"; done
# Nacos's usual port if it and its +1000/+2000 companions are free, else 1848.
# (Fallbacks stay below the ephemeral ports, 32768 and up, which outgoing
# connections may hold.)
nacos_ports_free() { ! port_open "$1" && ! port_open $(($1 + 1000)) && ! port_open $(($1 + 2000)); }
if [[ -z ${NACOS_HTTP_PORT:-} ]]; then
	NACOS_HTTP_PORT=8848
	nacos_ports_free 8848 || NACOS_HTTP_PORT=1848
fi
nacos_ports_free "$NACOS_HTTP_PORT" || die "127.0.0.1:$NACOS_HTTP_PORT, +1000 or +2000 is already in use; set NACOS_HTTP_PORT"
export NACOS_HTTP_PORT
unset POLARIS_GRPC_PORT # start-polaris.sh: NACOS_HTTP_PORT + 2000
NACOS=127.0.0.1:$NACOS_HTTP_PORT
# Eureka's usual port if free, else 1761.
if [[ -z ${EUREKA_PORT:-} ]]; then
	EUREKA_PORT=8761
	port_open 8761 && EUREKA_PORT=1761
fi
port_open "$EUREKA_PORT" && die "127.0.0.1:$EUREKA_PORT is already in use; set EUREKA_PORT"
# Consul's usual ports if free: HTTP 8500, server RPC 8300, serf LAN and WAN
# 8301 and 8302; else 1500 and 1300-1302. Not start-consul.sh's HTTP+1..+3:
# a Consul server also opens gRPC TLS on 8503 (-dev leaves it on), so serf
# WAN on 8503 makes the agent exit.
consul_ports() { echo "$1" $(($1 - 200)) $(($1 - 199)) $(($1 - 198)); }
consul_ports_free() { local p; for p in $(consul_ports "$1"); do ! port_open "$p" || return 1; done; }
if [[ -z ${CONSUL_HTTP_PORT:-} ]]; then
	CONSUL_HTTP_PORT=8500
	consul_ports_free 8500 || CONSUL_HTTP_PORT=1500
fi
if ! [[ $CONSUL_HTTP_PORT =~ ^[0-9]+$ ]] || ((CONSUL_HTTP_PORT <= 1200 || CONSUL_HTTP_PORT > 65535)); then
	die "CONSUL_HTTP_PORT must be a port above 1200 (server RPC and serf use it -200..-198), not $CONSUL_HTTP_PORT"
fi
consul_ports_free "$CONSUL_HTTP_PORT" ||
	die "127.0.0.1:$CONSUL_HTTP_PORT or one of $((CONSUL_HTTP_PORT - 200))-$((CONSUL_HTTP_PORT - 198)) is already in use; set CONSUL_HTTP_PORT"
port_open 8503 && die "127.0.0.1:8503 is already in use (a Consul dev server opens gRPC TLS there)"
read -r _ CONSUL_SERVER_PORT CONSUL_SERF_LAN_PORT CONSUL_SERF_WAN_PORT < <(consul_ports "$CONSUL_HTTP_PORT")
export EUREKA_PORT CONSUL_HTTP_PORT CONSUL_SERVER_PORT CONSUL_SERF_LAN_PORT CONSUL_SERF_WAN_PORT
unset CONSUL_ACL # no ACLs
EUREKA=http://127.0.0.1:$EUREKA_PORT/eureka CONSUL=http://127.0.0.1:$CONSUL_HTTP_PORT
# The registry etcd (not the API server's): etcd's usual client port if free,
# else 1379; its peer port is the next one.
if [[ -z ${ETCD_REGISTRY_PORT:-} ]]; then
	ETCD_REGISTRY_PORT=2379
	{ port_open 2379 || port_open 2380; } && ETCD_REGISTRY_PORT=1379
fi
{ port_open "$ETCD_REGISTRY_PORT" || port_open $((ETCD_REGISTRY_PORT + 1)); } &&
	die "127.0.0.1:$ETCD_REGISTRY_PORT or the next port is already in use; set ETCD_REGISTRY_PORT"
export ETCD_REGISTRY_PORT
ETCD=http://127.0.0.1:$ETCD_REGISTRY_PORT
# ZooKeeper's usual client port if free, else 1181.
if [[ -z ${ZK_PORT:-} ]]; then
	ZK_PORT=2181
	port_open 2181 && ZK_PORT=1181
fi
port_open "$ZK_PORT" && die "127.0.0.1:$ZK_PORT is already in use; set ZK_PORT"
export ZK_PORT
ZK=127.0.0.1:$ZK_PORT

heading "Building (cached after the first run)"
mkdir -p "$CACHE/demo"
build_caddy "$CADDY"
say "--- building the demo backend (integration/demo/backend)"
run_long "building the backend" "$CACHE/demo/build-backend.log" \
	env -C "$ROOT" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -o "$CACHE/demo/backend" ./integration/demo/backend
BACKEND=$CACHE/demo/backend
say "--- building kube-apiserver and kube-controller-manager (integration/build-kube.sh; cold: ~4 min, ~2 GB RAM)"
run_long "building kube-apiserver" "$CACHE/demo/build-kube.log" "$HERE/build-kube.sh"
say "--- building Polaris, a Nacos-protocol server (integration/build-polaris.sh; cold: ~1 min, ~650 MB RAM)"
run_long "building Polaris" "$CACHE/demo/build-polaris.log" "$HERE/build-polaris.sh"
say "--- building Consul v1.14.8 (integration/build-consul.sh; cold: ~10 min, ~1.8 GB RAM)"
run_long "building Consul" "$CACHE/demo/build-consul.log" "$HERE/build-consul.sh"
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

# --- Nacos server -------------------------------------------------------------------
heading "Starting Polaris, a Nacos-protocol server: Nacos HTTP on $NACOS, gRPC on :$((NACOS_HTTP_PORT + 1000)), Eureka on $EUREKA"
run_long "starting Polaris" "$DEMO_DIR/start-polaris.log" "$HERE/start-polaris.sh" "$DEMO_DIR/polaris"
sed 's/^/    /' "$DEMO_DIR/start-polaris.log" >&3

# --- Consul agent -------------------------------------------------------------------
heading "Starting a Consul v1.14.8 dev agent on $CONSUL"
CONSUL_LOG_LEVEL=info run_long "starting Consul" "$DEMO_DIR/start-consul.log" "$HERE/start-consul.sh" "$DEMO_DIR/consul"
sed 's/^/    /' "$DEMO_DIR/start-consul.log" >&3

# --- registry etcd ------------------------------------------------------------------
heading "Starting an etcd for service registrations on $ETCD (Debian's etcd-server)"
setsid etcd --name registry --data-dir "$DEMO_DIR/etcd-registry" --unsafe-no-fsync \
	--listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
	--listen-peer-urls "http://127.0.0.1:$((ETCD_REGISTRY_PORT + 1))" \
	--initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_REGISTRY_PORT + 1))" \
	--initial-cluster "registry=http://127.0.0.1:$((ETCD_REGISTRY_PORT + 1))" \
	>"$DEMO_DIR/etcd-registry.log" 2>&1 </dev/null &
echo $! >"$DEMO_DIR/etcd-registry.pid"
etcd_up() { curl -fsS --max-time 1 "$ETCD/health" | grep -q '"health":"true"'; }
wait_for 20 "etcd" etcd_up || die "etcd did not start; see $DEMO_DIR/etcd-registry.log"
say "    etcd answers on $ETCD"

# --- ZooKeeper ----------------------------------------------------------------------
heading "Starting ZooKeeper on $ZK (Debian's zookeeper)"
mkdir -p "$DEMO_DIR/zookeeper"
printf '%s\n' "tickTime=2000" "dataDir=$DEMO_DIR/zookeeper/data" "clientPort=$ZK_PORT" "admin.enableServer=false" \
	>"$DEMO_DIR/zookeeper/zoo.cfg"
setsid java -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
	org.apache.zookeeper.server.ZooKeeperServerMain "$DEMO_DIR/zookeeper/zoo.cfg" \
	>"$DEMO_DIR/zookeeper.log" 2>&1 </dev/null &
echo $! >"$DEMO_DIR/zookeeper.pid"
wait_for 30 "ZooKeeper" port_open "$ZK_PORT" || die "ZooKeeper did not start; see $DEMO_DIR/zookeeper.log"
say "    ZooKeeper answers on $ZK"
# The Curator registrar that plays a Spring Cloud Zookeeper service.
CURATOR_CP=$(printf '/usr/share/java/%s.jar:' curator-x-discovery curator-framework curator-client zookeeper zookeeper-jute \
	jackson-databind jackson-core jackson-annotations guava)
mkdir -p "$DEMO_DIR/zk-registrar"
(cd "$HERE/zk-registrar" && javac -d "$DEMO_DIR/zk-registrar" -cp "$CURATOR_CP" Registrar.java \
	org/springframework/cloud/zookeeper/discovery/ZookeeperInstance.java) >"$DEMO_DIR/javac.log" 2>&1 ||
	die "compiling integration/zk-registrar failed; see $DEMO_DIR/javac.log"
say "    compiled integration/zk-registrar (a Curator ServiceDiscovery registrar, as Spring Cloud Zookeeper registers)"

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

answers() { ip netns exec "$NS" curl -fsS -o /dev/null --max-time 1 "http://$1:8080/" 2>/dev/null; } # IP
# start_backend NAME IP: the "container" of a Pod, listening on IP:8080 in the namespace.
start_backend() {
	ip -n "$NS" addr add "$2/24" dev "$VETH_IN"
	setsid ip netns exec "$NS" "$BACKEND" -name "$1" -listen "$2:8080" >>"$DEMO_DIR/backend-$1.log" 2>&1 </dev/null &
	echo $! >"$DEMO_DIR/backend-$1.pid"
	wait_for 5 "backend $1" answers "$2" || die "backend $1 did not start; see $DEMO_DIR/backend-$1.log"
	say "    backend $1 answers on $2:8080 (inside $NS)"
}
stop_backend() {
	stop_pid "$DEMO_DIR/backend-$1.pid" 5
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
caddy_alive() { kill -0 "$(cat "$DEMO_DIR/caddy.pid")" 2>/dev/null; }
caddy_up() { (port_open 8080 && port_open 8081 && port_open 8082 && port_open 8083 && port_open 8084 && port_open 8085) || ! caddy_alive; } # listening, or exited
wait_for 10 "caddy to listen" caddy_up || die "caddy did not start listening; see $DEMO_DIR/caddy.log"
caddy_alive || { tail -n 20 "$DEMO_DIR/caddy.log" >&2; die "caddy exited"; }
say "    caddy is up (pid $(cat "$DEMO_DIR/caddy.pid"), log $DEMO_DIR/caddy.log)"

# --- traffic ------------------------------------------------------------------------
TARGET=$CADDY_ADDR # where request, await_backends and show send requests
# request: prints which backend answered one request (or the HTTP error).
request() {
	local out code
	out=$(curl -sS --max-time 5 -w '\n%{http_code}' "http://$TARGET/" 2>/dev/null) || { echo "(no answer)"; return; }
	code=${out##*$'\n'}
	if [[ $code == 200 ]]; then head -n 1 <<<"$out"; else echo "HTTP $code"; fi
}
# await_backends NAMES...: sends requests until exactly these backends answer
# (6 requests cover up to 6 upstreams with round_robin; AWAIT_REQUESTS sets
# another number).
await_backends() {
	local want got start=$EPOCHREALTIME
	want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
	for _ in $(seq 200); do
		got=$(for _ in $(seq "${AWAIT_REQUESTS:-6}"); do request; done | sort -u | tr '\n' ' ')
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
	say "    12 requests to http://$TARGET/:"
	for _ in $(seq 12); do request; done | sort | uniq -c | while read -r n name; do
		say "$(printf '      %-10s %2d  %s' "$name" "$n" "$(printf '%*s' "$n" '' | tr ' ' '#')")"
	done
}

heading "Step 1: shop/web has 2 ready Pods"
await_backends web-1 web-2
show

heading "Step 2: scale up to 3 Pods (web-3 starts and becomes Ready)"
start_backend web-3 "$(pod_ip web-3)"
create_pod web-3
await_backends web-1 web-2 web-3
show

heading "Step 3: web-2 becomes NotReady (its backend keeps running: no health check involved)"
set_ready web-2 False
say "    Pod shop/web-2 Ready=False"
await_backends web-1 web-3
show

heading "Step 4: web-2 is Ready again"
set_ready web-2 True
say "    Pod shop/web-2 Ready=True"
await_backends web-1 web-2 web-3
show

heading "Step 5: scale down to 1 Pod (web-2 and web-3 deleted)"
delete_pod web-3
delete_pod web-2
await_backends web-1
show
stop_backend web-2
stop_backend web-3

say "    caddy followed every change of shop/web's Pods without a reload"

# --- Nacos ------------------------------------------------------------------------
# Here the demo plays no registry client: each backend registers itself in
# Nacos (an ephemeral instance of shop-api, over the SDK's gRPC connection),
# deregisters when stopped, and is dropped by the server when it dies. The
# process stays in the root namespace, next to Nacos on 127.0.0.1; only its
# listener is opened inside the namespace.
registered() { grep -q 'registered' "$2" || ! kill -0 "$1" 2>/dev/null; } # PID LOG: or exited
instances=0 # started so far; the next one listens on $NET.(21+instances)
# start_instance NAME VERSION WEIGHT [SERVICE]: an instance of SERVICE
# (shop-api) on the next address $NET.21.., port 8080.
start_instance() {
	local ip=$NET.$((21 + instances)) service=${4:-shop-api} pid
	instances=$((instances + 1))
	ip -n "$NS" addr add "$ip/24" dev "$VETH_IN"
	setsid "$BACKEND" -name "$1" -netns "$NS" -listen "$ip:8080" -nacos "$NACOS" -service "$service" \
		-weight "$3" -metadata "version=$2" -nacos-dir "$DEMO_DIR/nacos-sdk/$1" \
		>>"$DEMO_DIR/backend-$1.log" 2>&1 </dev/null &
	pid=$!
	disown "$pid" # no "Killed" from bash when step 4 kills it
	echo "$pid" >"$DEMO_DIR/backend-$1.pid"
	wait_for 10 "$1 to register" registered "$pid" "$DEMO_DIR/backend-$1.log" || die "backend $1 did not register; see $DEMO_DIR/backend-$1.log"
	kill -0 "$pid" 2>/dev/null || die "backend $1 exited: $(tail -n 5 "$DEMO_DIR/backend-$1.log")"
	say "    $1 listens on $ip:8080 (inside $NS) and registered itself: $service, version=$2, weight $3"
}
# stop_instance NAME SIGNAL: TERM deregisters first; KILL is a crash.
stop_instance() {
	stop_pid "$DEMO_DIR/backend-$1.pid" 5 "$2"
	if [[ $2 == KILL ]]; then
		say "    $1 killed (SIGKILL): no deregistration; its gRPC connection to Nacos is gone"
	else
		say "    $1 stopped (SIG$2): $(grep -o 'deregistered from Nacos\|deregistering: .*' "$DEMO_DIR/backend-$1.log" | tail -n 1)"
	fi
}

heading "Nacos step 1: 2 instances of shop-api register themselves (caddy: http://127.0.0.1:8081, dynamic nacos shop-api)"
TARGET=127.0.0.1:8081
start_instance shop-api-1 v1 1
start_instance shop-api-2 v1 1
await_backends shop-api-1 shop-api-2
show
TARGET=127.0.0.1:8082
say "    http://$TARGET/ takes only metadata version=v2, and there is none yet:"
show

heading "Nacos step 2: a third instance, version v2, registers"
start_instance shop-api-3 v2 2
TARGET=127.0.0.1:8081
await_backends shop-api-1 shop-api-2 shop-api-3
show
TARGET=127.0.0.1:8082
say "    http://$TARGET/ (metadata version v2):"
await_backends shop-api-3
show
say "    caddy's view (curl localhost:2019/discovery/upstreams; weights kept for weighted policies):"
curl -sS --max-time 5 localhost:2019/discovery/upstreams | awk -F'"' '
	/"source":/ { src = $4 }
	/"service":/ && src == "nacos" { svc = $4; order[++n] = svc }
	/"dial":/ { dial = $4 }
	/"weight":/ && src == "nacos" { w = $3; gsub(/[^0-9.]/, "", w); ups[svc] = ups[svc] (ups[svc] == "" ? " " : ", ") dial " (weight " w ")" }
	END { for (i = 1; i <= n; i++) printf "      %s:%s\n", order[i], (ups[order[i]] == "" ? " (no instances yet)" : ups[order[i]]) }' >&3 || true

heading "Nacos step 3: shop-api-1 is stopped (SIGTERM: it deregisters itself)"
TARGET=127.0.0.1:8081
stop_instance shop-api-1 TERM
await_backends shop-api-2 shop-api-3
show

heading "Nacos step 4: shop-api-2 crashes (SIGKILL: the server drops its ephemeral instance)"
stop_instance shop-api-2 KILL
await_backends shop-api-3
show

heading "Nacos step 5: shop-pricing has 3 instances with Nacos weights 1, 2 and 7 (caddy: http://127.0.0.1:8083, lb_policy registry_weighted)"
TARGET=127.0.0.1:8083
start_instance pricing-1 v1 1 shop-pricing
start_instance pricing-2 v1 2 shop-pricing
start_instance pricing-3 v1 7 shop-pricing
AWAIT_REQUESTS=20 await_backends pricing-1 pricing-2 pricing-3
n=100
say "    $n requests to http://$TARGET/, each backend's share:"
for _ in $(seq "$n"); do request; done | sort | uniq -c | while read -r count name; do
	say "$(printf '      %-10s %3d  %3d%%  %s' "$name" "$count" $((count * 100 / n)) "$(printf '%*s' $((count / 2)) '' | tr ' ' '#')")"
done
say "    Caddy's Prometheus metrics are on its admin endpoint: curl -s localhost:2019/metrics | grep caddy_discovery_"
curl -sS --max-time 5 localhost:2019/metrics | grep '^caddy_discovery_backends{.*shop-pricing' | sed 's/^/      /' >&3 ||
	say "      (no caddy_discovery_backends line for shop-pricing; see curl -s localhost:2019/metrics)"

# --- Eureka -----------------------------------------------------------------------
# The demo plays a Java eureka-client with curl against Polaris's Eureka API:
# it registers instances of SHOP-CART (POST /eureka/apps/SHOP-CART), renews
# their leases from a background loop (PUT .../SHOP-CART/<id> every 3 s), sets
# their status (PUT .../<id>/status?value=...) and cancels them (DELETE). The
# backends are plain ones, in the namespace like the Pods' ($NET.31..).
# call METHOD URL [JSON]: one request to a registry's HTTP API; fails loudly.
call() {
	local code
	code=$(curl -sS --max-time 5 -o "$DEMO_DIR/call.out" -w '%{http_code}' -H 'Content-Type: application/json' \
		-X "$1" ${3:+--data "$3"} "$2") || die "$1 $2: curl failed"
	[[ $code == 2* ]] || die "$1 $2: HTTP $code: $(cat "$DEMO_DIR/call.out")"
}
cart_ip() { echo "$NET.$((30 + ${1#cart-}))"; }
# renew_leases: every 3 s, a heartbeat for each instance in eureka-leases.
renew_leases() {
	trap '[[ -z ${!:-} ]] || kill "$!" 2>/dev/null; exit 0' TERM
	while :; do
		while read -r app id; do
			curl -sS -o /dev/null --max-time 2 -X PUT "$EUREKA/apps/$app/$id" || true
		done <"$DEMO_DIR/eureka-leases"
		sleep 3 &
		wait $! || true
	done
}
: >"$DEMO_DIR/eureka-leases"
renew_leases >"$DEMO_DIR/eureka-leases.log" 2>&1 </dev/null &
echo $! >"$DEMO_DIR/eureka-leases.pid"
disown $!
eureka_register() { # ID [APP IP]
	local app=${2:-SHOP-CART} ip=${3:-$(cart_ip "$1")}
	# shellcheck disable=SC2016 # "$" is a JSON key in the Eureka format
	call POST "$EUREKA/apps/$app" '{"instance":{"instanceId":"'"$1"'","app":"'"$app"'","hostName":"'"$ip"'",
		"ipAddr":"'"$ip"'","status":"UP","port":{"$":8080,"@enabled":"true"},"securePort":{"$":443,"@enabled":"false"},
		"dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
		"leaseInfo":{"renewalIntervalInSecs":5,"durationInSecs":15}}}'
	echo "$app $1" >>"$DEMO_DIR/eureka-leases"
	say "    $1 registered: POST /eureka/apps/$app ($ip:8080, status UP; lease renewed every 3 s)"
}

heading "Eureka step 1: 3 instances of SHOP-CART register (caddy: http://127.0.0.1:8084, dynamic eureka SHOP-CART)"
say "    (Polaris's Eureka API refreshes its answers from its cache every second, and caddy asks for"
say "    changes every second: a change shows in about 1.5 s; 1.4-2.2 s measured)"
TARGET=127.0.0.1:8084
for c in cart-1 cart-2 cart-3; do
	start_backend "$c" "$(cart_ip "$c")"
	eureka_register "$c"
done
await_backends cart-1 cart-2 cart-3
show

heading "Eureka step 2: cart-2 is taken out of service (its backend keeps running)"
call PUT "$EUREKA/apps/SHOP-CART/cart-2/status?value=OUT_OF_SERVICE"
say "    PUT /eureka/apps/SHOP-CART/cart-2/status?value=OUT_OF_SERVICE"
await_backends cart-1 cart-3
show

heading "Eureka step 3: cart-3 shuts down (cancels its lease, then stops)"
grep -vx 'SHOP-CART cart-3' "$DEMO_DIR/eureka-leases" >"$DEMO_DIR/eureka-leases.new" || true
mv "$DEMO_DIR/eureka-leases.new" "$DEMO_DIR/eureka-leases"
call DELETE "$EUREKA/apps/SHOP-CART/cart-3"
say "    DELETE /eureka/apps/SHOP-CART/cart-3"
await_backends cart-1
show
stop_backend cart-3

# --- Consul -------------------------------------------------------------------------
# Instances of shop-stock are registered through the local agent's API, each
# with a TTL check that passes until told otherwise, as a service's own
# health reporting does; caddy's blocking query on /v1/health/service/
# shop-stock?passing answers as soon as something changes.
stock_ip() { echo "$NET.$((40 + ${1#stock-}))"; }

heading "Consul step 1: 4 instances of shop-stock register (caddy: http://127.0.0.1:8085, dynamic consul shop-stock)"
TARGET=127.0.0.1:8085
for c in stock-1 stock-2 stock-3 stock-4; do
	start_backend "$c" "$(stock_ip "$c")"
	call PUT "$CONSUL/v1/agent/service/register" '{"ID":"'"$c"'","Name":"shop-stock","Address":"'"$(stock_ip "$c")"'","Port":8080,
		"Check":{"CheckID":"'"$c"'-ttl","Name":"alive","TTL":"1h","Status":"passing"}}'
	say "    $c registered: PUT /v1/agent/service/register ($(stock_ip "$c"):8080, TTL check $c-ttl passing)"
done
await_backends stock-1 stock-2 stock-3 stock-4
show

heading "Consul step 2: stock-2's health check fails"
call PUT "$CONSUL/v1/agent/check/fail/stock-2-ttl?note=out+of+disk"
say "    PUT /v1/agent/check/fail/stock-2-ttl"
await_backends stock-1 stock-3 stock-4
show

heading "Consul step 3: stock-3 goes into maintenance mode"
call PUT "$CONSUL/v1/agent/service/maintenance/stock-3?enable=true&reason=upgrade"
say "    PUT /v1/agent/service/maintenance/stock-3?enable=true"
await_backends stock-1 stock-4
show

heading "Consul step 4: stock-4 deregisters and stops"
call PUT "$CONSUL/v1/agent/service/deregister/stock-4"
say "    PUT /v1/agent/service/deregister/stock-4"
await_backends stock-1
show
stop_backend stock-4

# --- etcd -------------------------------------------------------------------------
# Instances of shop-search register as etcd's gRPC naming library does
# (go.etcd.io/etcd/client/v3/naming/endpoints): key shop-search/<id>, value
# {"Op":0,"Addr":"ip:port"}, under a 5 s lease each renews every 2 s, over
# etcd's JSON gateway. caddy's etcd watch sees every put, delete and lease
# expiry.
search_ip() { echo "$NET.$((50 + ${1#search-}))"; }
b64() { printf '%s' "$1" | base64 -w0; }
# etcd_lease ID: grants a 5 s lease for instance ID and notes it for renewal.
etcd_lease() {
	call POST "$ETCD/v3/lease/grant" '{"TTL":5}'
	sed -n 's/.*"ID":"\([0-9]*\)".*/\1/p' "$DEMO_DIR/call.out"
}
# renew_etcd_leases: every 2 s, a keep-alive for each lease in etcd-leases.
renew_etcd_leases() {
	trap '[[ -z ${!:-} ]] || kill "$!" 2>/dev/null; exit 0' TERM
	while :; do
		while read -r _ lease; do
			curl -sS -o /dev/null --max-time 1 -X POST "$ETCD/v3/lease/keepalive" --data '{"ID":"'"$lease"'"}' || true
		done <"$DEMO_DIR/etcd-leases"
		sleep 2 &
		wait $! || true
	done
}
: >"$DEMO_DIR/etcd-leases"
renew_etcd_leases >"$DEMO_DIR/etcd-leases.log" 2>&1 </dev/null &
echo $! >"$DEMO_DIR/etcd-leases.pid"
disown $!

heading "etcd step 1: 3 instances of shop-search register (caddy: http://127.0.0.1:8086, dynamic etcd shop-search)"
TARGET=127.0.0.1:8086
for c in search-1 search-2 search-3; do
	start_backend "$c" "$(search_ip "$c")"
	lease=$(etcd_lease)
	call POST "$ETCD/v3/kv/put" '{"key":"'"$(b64 "shop-search/$c")"'","value":"'"$(b64 '{"Op":0,"Addr":"'"$(search_ip "$c")"':8080"}')"'","lease":"'"$lease"'"}'
	echo "$c $lease" >>"$DEMO_DIR/etcd-leases"
	say "    $c registered: shop-search/$c = {\"Op\":0,\"Addr\":\"$(search_ip "$c"):8080\"} (lease $lease, 5 s, renewed every 2 s)"
done
await_backends search-1 search-2 search-3
show

heading "etcd step 2: search-2 deregisters (deletes its key)"
call POST "$ETCD/v3/kv/deleterange" '{"key":"'"$(b64 shop-search/search-2)"'"}'
say "    deleted shop-search/search-2"
await_backends search-1 search-3
show

heading "etcd step 3: search-3 crashes (its lease is no longer renewed; etcd deletes its key within 5 s)"
grep -v '^search-3 ' "$DEMO_DIR/etcd-leases" >"$DEMO_DIR/etcd-leases.new" || true
mv "$DEMO_DIR/etcd-leases.new" "$DEMO_DIR/etcd-leases"
stop_backend search-3
await_backends search-1
show

# --- ZooKeeper ----------------------------------------------------------------------
# Instances of shop-reviews register through Curator's ServiceDiscovery the
# way Spring Cloud Zookeeper does (an ephemeral node per instance under
# /services/shop-reviews, with a session timeout of 4 s). Each registrar
# reads commands from a FIFO the demo keeps open.
review_ip() { echo "$NET.$((60 + ${1#review-}))"; }
review_said() { (($(grep -c "^$2" "$DEMO_DIR/registrar-$1.log" || true) > $3)); } # ID LINE N: more than N such lines
# register_review ID [SERVICE IP]: starts its registrar (of shop-reviews)
# and waits until it has registered.
register_review() {
	local fifo=$DEMO_DIR/registrar-$1.in
	mkfifo "$fifo"
	setsid java -Dsession=4000 -cp "$DEMO_DIR/zk-registrar:$CURATOR_CP" Registrar "$ZK" /services "${2:-shop-reviews}" "$1" "${3:-$(review_ip "$1")}" 8080 \
		<"$fifo" >"$DEMO_DIR/registrar-$1.log" 2>&1 &
	echo $! >"$DEMO_DIR/registrar-$1.pid"
	disown $!
	exec {REGISTRAR_FD}>"$fifo"
	eval "REGISTRAR_FD_${1//-/_}=$REGISTRAR_FD"
	wait_for 30 "the registrar of $1" review_said "$1" registered 0 || die "$1 did not register; see $DEMO_DIR/registrar-$1.log"
}
# review_command ID COMMAND: sends the registrar a command and waits for its "ok".
review_command() {
	local fd_var=REGISTRAR_FD_${1//-/_} oks
	oks=$(grep -c '^ok' "$DEMO_DIR/registrar-$1.log" || true)
	echo "$2" >&"${!fd_var}"
	wait_for 10 "the registrar of $1" review_said "$1" ok "$oks" || die "$1 did not answer $2; see $DEMO_DIR/registrar-$1.log"
}

heading "ZooKeeper step 1: 3 instances of shop-reviews register through Curator (caddy: http://127.0.0.1:8087, dynamic zookeeper shop-reviews)"
TARGET=127.0.0.1:8087
for c in review-1 review-2 review-3; do
	start_backend "$c" "$(review_ip "$c")"
	register_review "$c"
	say "    $c registered: /services/shop-reviews/$c, a Curator ServiceInstance ($(review_ip "$c"):8080, instance_status UP)"
done
await_backends review-1 review-2 review-3
show

heading "ZooKeeper step 2: review-2 is taken out of service (instance_status OUT_OF_SERVICE, as Spring's /actuator/service-registry sets it)"
review_command review-2 "status OUT_OF_SERVICE"
say "    review-2's node now says instance_status OUT_OF_SERVICE"
await_backends review-1 review-3
show

heading "ZooKeeper step 3: review-3 crashes (kill -9: its session ends after 4 s, and ZooKeeper deletes its node)"
stop_pid "$DEMO_DIR/registrar-review-3.pid" 1 KILL
stop_backend review-3
await_backends review-1
show

# --- one route, every registry ------------------------------------------------------
# :8088 serves /<registry>/<service>/... for whichever allowed service the
# path names; a service registered now is served by its first request.
heading "One route for many services of each registry (caddy: http://127.0.0.1:8088/<registry>/<service>/, dynamic <registry> {re.<registry>.1} { allow shop-* })"
say "    a service of each registry that caddy has not seen yet registers:"
start_backend api-1 "$NET.19"
api POST /api/v1/namespaces/shop/services '{"metadata":{"name":"api"},"spec":{"selector":{"app":"api"},
	"ports":[{"name":"http","port":80,"targetPort":8080}]}}'
api POST /api/v1/namespaces/shop/pods '{"metadata":{"name":"api-1","labels":{"app":"api"}},
	"spec":{"nodeName":"demo-node","containers":[{"name":"api","image":"demo/api","ports":[{"name":"http","containerPort":8080}]}]}}'
api PATCH /api/v1/namespaces/shop/pods/api-1/status '{"status":{"phase":"Running","podIP":"'"$NET.19"'","podIPs":[{"ip":"'"$NET.19"'"}],
	"conditions":[{"type":"Ready","status":"True"},{"type":"ContainersReady","status":"True"}]}}' application/merge-patch+json
say "    Service shop/api and its Pod api-1 ($NET.19, Ready=True) created"
start_backend wish-1 "$NET.39"
eureka_register wish-1 SHOP-WISH "$NET.39"
start_backend ship-1 "$NET.49"
call PUT "$CONSUL/v1/agent/service/register" '{"ID":"ship-1","Name":"shop-ship","Address":"'"$NET.49"'","Port":8080,
	"Check":{"CheckID":"ship-1-ttl","Name":"alive","TTL":"1h","Status":"passing"}}'
say "    ship-1 registered: PUT /v1/agent/service/register (shop-ship, $NET.49:8080)"
start_backend reco-1 "$NET.59"
lease=$(etcd_lease)
call POST "$ETCD/v3/kv/put" '{"key":"'"$(b64 "shop-reco/reco-1")"'","value":"'"$(b64 '{"Op":0,"Addr":"'"$NET.59"':8080"}')"'","lease":"'"$lease"'"}'
echo "reco-1 $lease" >>"$DEMO_DIR/etcd-leases"
say "    reco-1 registered: shop-reco/reco-1 in etcd ($NET.59:8080)"
start_backend rating-1 "$NET.69"
register_review rating-1 shop-ratings "$NET.69"
say "    rating-1 registered through Curator: /services/shop-ratings/rating-1 ($NET.69:8080)"
# The first request for a new name is answered from what the registry says
# at that moment, and an unknown name is remembered as unknown for
# unknown_ttl (30 s): wait until the registries show the new services
# (Kubernetes: the EndpointSlice controller's slice; Eureka: Polaris's
# cache, refreshed every second), plus caddy's 1 s Eureka refresh.
slice_ready() { api GET "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dapi" && grep -q "$NET.19" "$DEMO_DIR/api.out"; }
eureka_has() { curl -fsS --max-time 1 -H 'Accept: application/json' "$EUREKA/apps/$1" 2>/dev/null | grep -q "$2"; }
wait_for 10 "the EndpointSlice of shop/api" slice_ready || die "shop/api has no EndpointSlice with $NET.19"
wait_for 10 "Eureka to list SHOP-WISH" eureka_has SHOP-WISH wish-1 || die "Polaris does not list SHOP-WISH"
sleep 1.5
say "    the registries show them; the first request for each new name:"
# get PATH: a request for PATH on :8088, and which backend answered.
get() { say "$(printf '    GET %-26s -> %s' "$1" "$(TARGET=127.0.0.1:8088$1 request)")"; }
for path in /k8s/web/ /k8s/api/ /nacos/shop-api/ /nacos/shop-pricing/ /eureka/shop-cart/ /eureka/shop-wish/ \
	/consul/shop-stock/ /consul/shop-ship/ /etcd/shop-search/ /etcd/shop-reco/ /zookeeper/shop-reviews/ /zookeeper/shop-ratings/; do
	get "$path"
done
say "    and names that are denied, not allowed or unknown:"
for path in /etcd/shop-admin/ /consul/billing/ /nacos/shop-none/ /zookeeper/shop-none/; do
	get "$path"
done
say "    (all 404, from discovery_error: the answer does not tell which names exist)"
say "    services chosen per request, as the metrics count them:"
curl -sS --max-time 5 localhost:2019/metrics | grep '^caddy_discovery_per_request_services{' | sed 's/^/      /' >&3 ||
	say "      (none; see curl -s localhost:2019/metrics)"


heading "Done: caddy followed every change of the Pods and of the Nacos, Eureka, Consul, etcd and ZooKeeper instances without a reload"
if [[ $mode == keep ]]; then
	say "    still running (--keep): caddy on http://$CADDY_ADDR (k8s), http://127.0.0.1:8081, :8082 and"
	say "    :8083 (nacos), :8084 (eureka), :8085 (consul), :8086 (etcd), :8087 (zookeeper), :8088 (one route"
	say "    for all: /<registry>/<service>/), admin localhost:2019;"
	say "    API server $SERVER with KUBECONFIG=$KUBECONFIG; Nacos (Polaris) on $NACOS, Eureka on $EUREKA (leases"
	say "    renewed until --stop), Consul on $CONSUL, etcd on $ETCD, ZooKeeper on $ZK; backends in netns $NS."
	say "    Try: curl http://$CADDY_ADDR/; curl http://127.0.0.1:8081/; curl localhost:2019/discovery/upstreams"
	say "    Clean up with: bash integration/demo.sh --stop"
fi
