#!/usr/bin/env bash
# Starts a Polaris server speaking the Nacos protocol in the background:
#
#   integration/start-polaris.sh DIR
#
# DIR holds everything the server writes: conf/ (generated config), the
# boltdb store, log/, polaris.out (stdout and stderr) and polaris.pid. Starting
# again with the same DIR keeps the registered data. Everything listens on
# 127.0.0.1:
#
#   NACOS_HTTP_PORT     Nacos v1 HTTP API (default 8848)
#   NACOS_HTTP_PORT+1000  Nacos v2 gRPC API (fixed offset, as in Nacos and its SDKs)
#   POLARIS_GRPC_PORT   Polaris's own gRPC API (default NACOS_HTTP_PORT+2000).
#                       Polaris registers itself there as polaris.checker, and
#                       its health checker needs that registration.
#
#   EUREKA_PORT         Eureka REST API (/eureka/apps...), only when set: the
#                       apiserver service-eureka, in the Polaris namespace
#                       "default" (the one Nacos's "public" maps to), its
#                       answers refreshed from Polaris's cache every 1 s
#                       (deltas kept 60 s). Unset: no Eureka API.
#
# So a second server only needs another NACOS_HTTP_PORT (and a second DIR).
# POLARIS_NACOS_AUTH=1 turns on client auth (off by default): Nacos naming
# requests then need the accessToken of a login (POST /nacos/v1/auth/users/login,
# patch fix 5) as Polaris's built-in user "polaris", password "polaris"; the
# others are refused with 403. Logins are checked either way.
# POLARIS_START_TIMEOUT (seconds, default 30) bounds the wait for readiness.
# The binary comes from build-polaris.sh (built on first use), or from
# POLARIS_DIR if set. Prints nothing on stdout; exits once both Nacos ports
# (and EUREKA_PORT, if set) answer. Stop it with stop-polaris.sh DIR.
#
# How this server departs from a Java Nacos server (measured with
# nacos-sdk-go v2.3.5), so that tests do not take a quirk for a bug:
#   - disabled instances (Enable=false) are left out of pushes and lists
#     altogether, rather than pushed with enabled=false;
#   - after a crash (kill -9) instances survive in boltdb and those whose
#     client connection is gone turn healthy=false ~3 s after the restart, for
#     good; after a graceful stop they are deleted;
#   - one client may register several instances of a service (real Nacos 2
#     keeps one per client and service): use one SDK client per instance for
#     tests that must behave the same on both;
#   - a push arrives ~1 s after a change (1 s cache refresh tick);
#   - namespaces are created on first register; there is no namespace API;
#   - every instance carries internal-nacos-* metadata keys.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)

NACOS_HTTP_PORT=${NACOS_HTTP_PORT:-8848}
NACOS_GRPC_PORT=$((NACOS_HTTP_PORT + 1000))
POLARIS_GRPC_PORT=${POLARIS_GRPC_PORT:-$((NACOS_HTTP_PORT + 2000))}
TIMEOUT=${POLARIS_START_TIMEOUT:-30}
case ${POLARIS_NACOS_AUTH:-0} in
1) CLIENT_AUTH=true ;;
0) CLIENT_AUTH=false ;;
*) log "POLARIS_NACOS_AUTH must be 0 or 1, not ${POLARIS_NACOS_AUTH}"; exit 2 ;;
esac
EUREKA_PORT=${EUREKA_PORT:-}
[[ -z $EUREKA_PORT || $EUREKA_PORT =~ ^[1-9][0-9]*$ ]] || { log "EUREKA_PORT must be a port number, not $EUREKA_PORT"; exit 2; }
HEALTH_URL="http://127.0.0.1:$NACOS_HTTP_PORT/nacos/v1/ns/service/list?pageNo=1&pageSize=1"

ready() {
	curl -fsS -o /dev/null --max-time 2 "$HEALTH_URL" 2>/dev/null && port_open "$NACOS_GRPC_PORT" &&
		{ [[ -z $EUREKA_PORT ]] || port_open "$EUREKA_PORT"; }
}
running() { [[ -f $DIR/polaris.pid ]] && kill -0 "$(cat "$DIR/polaris.pid")" 2>/dev/null; }

if running; then
	if ready; then
		log "already running (pid $(cat "$DIR/polaris.pid")) in $DIR"
		exit 0
	fi
	log "pid $(cat "$DIR/polaris.pid") from $DIR/polaris.pid is alive but not answering on $NACOS_HTTP_PORT${EUREKA_PORT:+ and $EUREKA_PORT}; stop it first"
	exit 1
fi
for port in "$NACOS_HTTP_PORT" "$NACOS_GRPC_PORT" "$POLARIS_GRPC_PORT" $EUREKA_PORT; do
	if port_open "$port"; then
		log "127.0.0.1:$port is already in use (set NACOS_HTTP_PORT / POLARIS_GRPC_PORT / EUREKA_PORT)"
		exit 1
	fi
done

bin_dir=${POLARIS_DIR:-$("$HERE/build-polaris.sh")}
mkdir -p "$DIR/conf" "$DIR/log"
eureka_logger='' eureka_apiserver=''
if [[ -n $EUREKA_PORT ]]; then
	eureka_logger='
    eureka:
      rotateOutputPath: log/runtime/polaris-eureka.log
      errorRotateOutputPath: log/runtime/polaris-eureka-error.log
      rotationMaxSize: 50
      rotationMaxBackups: 2
      rotationMaxAge: 1
      outputLevel: info'
	# Option names: apiserver/eurekaserver/config.go of Polaris v1.18.1.
	eureka_apiserver="
  # Eureka REST API (EUREKA_PORT).
  - name: service-eureka
    option:
      listenIP: 127.0.0.1
      listenPort: $EUREKA_PORT
      # The Polaris namespace Eureka applications live in.
      namespace: default
      # Seconds between refreshes of the answers from Polaris's cache.
      refreshInterval: 1
      # Seconds a change stays in /eureka/apps/delta.
      deltaExpireInterval: 60"
fi
rm -rf "$DIR/conf/i18n"
cp -r "$bin_dir/i18n" "$DIR/conf/i18n"

# Relative paths (the default log/... ones included) resolve against DIR: the
# server runs with DIR as its working directory.
cat >"$DIR/conf/polaris-server.yaml" <<YAML
# Generated by integration/start-polaris.sh; edits are overwritten.
bootstrap:
  logger:
    nacos-apiserver:
      rotateOutputPath: log/runtime/nacos-apiserver.log
      errorRotateOutputPath: log/runtime/nacos-apiserver-error.log
      rotationMaxSize: 50
      rotationMaxBackups: 2
      rotationMaxAge: 1
      outputLevel: info$eureka_logger
  polaris_service:
    self_address: 127.0.0.1
    enable_register: true
    isolated: false
    services:
      - name: polaris.checker
        protocols:
          - service-grpc
apiservers:
  # Polaris's own gRPC API: the polaris.checker self-registration above points
  # at it, and the health checker uses that registration.
  - name: service-grpc
    option:
      listenIP: 127.0.0.1
      listenPort: $POLARIS_GRPC_PORT
      enableCacheProto: true
      sizeCacheProto: 128
    api:
      client:
        enable: true
        include: [discover, register, healthcheck]
  # Nacos v1 HTTP on listenPort, Nacos v2 gRPC on listenPort+1000.
  - name: service-nacos
    option:
      listenIP: 127.0.0.1
      listenPort: $NACOS_HTTP_PORT
      # The Polaris namespace that Nacos's "public" namespace maps to.
      defaultNamespace: default$eureka_apiserver
auth:
  user:
    name: defaultUser
    option:
      salt: polarismesh@2021
  strategy:
    name: defaultStrategy
    option:
      consoleOpen: true
      consoleStrict: true
      # POLARIS_NACOS_AUTH; strict, or a bad token is taken for an anonymous user.
      clientOpen: $CLIENT_AUTH
      clientStrict: $CLIENT_AUTH
namespace:
  autoCreate: true
naming:
  autoCreate: true
  batch:
    register:
      open: true
      queueSize: 10240
      waitTime: 32ms
      maxBatchCount: 128
      concurrency: 128
      dropExpireTask: true
      taskLife: 30s
    deregister:
      open: true
      queueSize: 10240
      waitTime: 32ms
      maxBatchCount: 128
      concurrency: 128
healthcheck:
  open: true
  service: polaris.checker
  slotNum: 30
  minCheckInterval: 1s
  maxCheckInterval: 30s
  clientReportInterval: 120s
  batch:
    heartbeat:
      open: true
      queueSize: 10240
      waitTime: 32ms
      maxBatchCount: 32
      concurrency: 64
  checkers:
    - name: heartbeatMemory
config:
  # The Nacos API server needs the config module (it panics at startup without).
  open: true
  contentMaxLength: 20000
cache:
  # The caches load changes from the store incrementally, looking back diffTime.
  # With the default 5s, a deregistration of an instance last written more
  # than 5 s earlier never reaches the cache (nor a push).
  diffTime: 24h
store:
  name: boltdbStore
  option:
    path: $DIR/polaris.bolt
plugin:
  crypto:
    entries:
      - name: AES
  cmdb:
    name: memory
    option:
      url: ""
      interval: 60s
  history:
    entries:
      - name: HistoryLogger
  discoverEvent:
    entries:
      - name: discoverEventLocal
  statis:
    entries:
      - name: local
        option:
          interval: 60
  ratelimit:
    name: token-bucket
    option:
      enable: false
YAML

log "starting polaris-server in $DIR (nacos http 127.0.0.1:$NACOS_HTTP_PORT, grpc :$NACOS_GRPC_PORT, polaris grpc :$POLARIS_GRPC_PORT${EUREKA_PORT:+, eureka :$EUREKA_PORT})"
(
	cd "$DIR"
	exec setsid "$bin_dir/polaris-server" start -c "$DIR/conf/polaris-server.yaml" \
		>>"$DIR/polaris.out" 2>&1 </dev/null
) &
pid=$!
echo "$pid" >"$DIR/polaris.pid"

up() { ready || ! kill -0 "$pid" 2>/dev/null; } # ready, or exited
if ! wait_for "$TIMEOUT" "polaris-server to answer" up; then
	log "not ready after ${TIMEOUT}s; stopping it. Last lines of $DIR/polaris.out:"
	tail -n 20 "$DIR/polaris.out" >&2 || true
	"$HERE/stop-polaris.sh" "$DIR" || true
	exit 1
fi
if ! kill -0 "$pid" 2>/dev/null; then
	log "polaris-server exited during startup; last lines of $DIR/polaris.out:"
	tail -n 20 "$DIR/polaris.out" >&2 || true
	rm -f "$DIR/polaris.pid"
	exit 1
fi
log "ready (pid $pid)"
