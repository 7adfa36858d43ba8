#!/usr/bin/env bash
# Starts a real, local, offline Kubernetes control plane in the background:
# etcd, kube-apiserver and kube-controller-manager (no kubelet, no scheduler).
#
#   integration/start-kube.sh DIR
#
# Everything listens on 127.0.0.1:
#
#   KUBE_PORT    kube-apiserver HTTPS (default 16443)
#   ETCD_PORT    etcd client port (default 23790); ETCD_PORT+1 is its peer port
#   KCM_PORT     kube-controller-manager HTTPS /healthz (default 10357; 0 = off)
#
# KUBE_START_TIMEOUT (seconds, default 90) bounds the wait for readiness.
# The binaries come from build-kube.sh (cached); the Debian packages
# etcd-server (3.4), openssl and curl are installed with apt-get when missing
# (needs root).
#
# DIR gets (kept across restarts, so tokens and data survive):
#   ca.crt ca.key                 CA of the apiserver's serving certificate
#   apiserver.crt apiserver.key   serving certificate for 127.0.0.1 / localhost
#   sa.key sa.pub                 service-account token signing key pair
#   tokens.csv                    --token-auth-file
#   admin.token                   bearer token of user "admin" (group system:masters)
#   restricted.token              bearer token of user "restricted" (no groups)
#   admin.kubeconfig restricted.kubeconfig  (server, embedded CA, token)
#   etcd/                         etcd data (--unsafe-no-fsync: fast, not crash-safe)
#   kcm-certs/                    self-signed cert of the controller-manager's /healthz
#   audit-policy.yaml audit.log   the apiserver's audit log of every list and
#                                 watch of services and endpointslices (URI,
#                                 with its labelSelector): what clients watch
#   etcd.log kube-apiserver.log kube-controller-manager.log, *.pid
#
# Prints nothing on stdout. Stop it with stop-kube.sh DIR.
#
# Without a kubelet, tests play its part: create a Node (the EndpointSlice
# controller skips pods whose spec.nodeName is not an existing Node), create
# Pods with spec.nodeName set, and write their status (phase, podIP(s),
# conditions Ready) through the pods/status subresource. The ServiceAccount
# admission plugin is disabled, so pods need no service account; the
# serviceaccount controller still creates "default" in every namespace, and
# the TokenRequest API (also bound to a Secret) and legacy token Secrets work.
# Deleting a pod that has a nodeName only marks it terminating (there is no
# kubelet to finish it; its endpoint stays, terminating=true): delete with
# gracePeriodSeconds=0, also before deleting its namespace. Controllers:
# endpointslice, endpointslice-mirroring, serviceaccount, serviceaccount-token,
# namespace, garbage-collector (removes a deleted Service's slices).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/lib.sh
source "$HERE/lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
DIR=$(cd "$1" && pwd)

KUBE_PORT=${KUBE_PORT:-16443}
ETCD_PORT=${ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
KCM_PORT=${KCM_PORT:-10357}
TIMEOUT=${KUBE_START_TIMEOUT:-90}
SERVER=https://127.0.0.1:$KUBE_PORT

# --- packages ---------------------------------------------------------------
apt_install etcd-server openssl curl

bin_dir=$("$HERE/build-kube.sh")

# --- state ------------------------------------------------------------------
pid_of() { [[ -f $DIR/$1.pid ]] && cat "$DIR/$1.pid"; }
alive() { local p; p=$(pid_of "$1") && kill -0 "$p" 2>/dev/null; }
apiserver_ready() {
	[[ -f $DIR/admin.token ]] &&
		curl -fsS -o /dev/null --max-time 2 --cacert "$DIR/ca.crt" \
			-H "Authorization: Bearer $(cat "$DIR/admin.token")" "$SERVER/readyz" 2>/dev/null
}
kcm_ready() {
	((KCM_PORT == 0)) || curl -fsSk -o /dev/null --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz" 2>/dev/null
}

all=(etcd kube-apiserver kube-controller-manager)
nalive=0
for c in "${all[@]}"; do alive "$c" && nalive=$((nalive + 1)); done
if ((nalive == ${#all[@]})) && apiserver_ready && kcm_ready; then
	log "already running in $DIR ($SERVER)"
	exit 0
fi
if ((nalive > 0)); then
	log "some components of $DIR are running but it is not ready; run stop-kube.sh $DIR first"
	exit 1
fi
ports=("$KUBE_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT")
((KCM_PORT == 0)) || ports+=("$KCM_PORT")
for port in "${ports[@]}"; do
	if port_open "$port"; then
		log "127.0.0.1:$port is already in use (set KUBE_PORT / ETCD_PORT / KCM_PORT)"
		exit 1
	fi
done

# --- credentials ------------------------------------------------------------
umask 077
if [[ ! -f $DIR/ca.crt ]]; then
	log "generating CA and serving certificate"
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=caddy-discovery-test-ca" \
		-keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
	rm -f "$DIR/apiserver.crt"
fi
if [[ ! -f $DIR/apiserver.crt ]]; then
	openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
		-keyout "$DIR/apiserver.key" -out "$DIR/apiserver.csr" 2>/dev/null
	printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1" \
		"extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature,keyEncipherment" >"$DIR/apiserver.ext"
	openssl x509 -req -in "$DIR/apiserver.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
		-days 3650 -extfile "$DIR/apiserver.ext" -out "$DIR/apiserver.crt" 2>/dev/null
	rm -f "$DIR/apiserver.csr" "$DIR/apiserver.ext" "$DIR/ca.srl"
fi
if [[ ! -f $DIR/sa.key ]]; then
	log "generating service-account signing key"
	openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
	openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
fi
for user in admin restricted; do
	[[ -s $DIR/$user.token ]] || openssl rand -hex 24 >"$DIR/$user.token"
done
admin_token=$(cat "$DIR/admin.token")
restricted_token=$(cat "$DIR/restricted.token")
# token,user,uid,"group1,group2"
cat >"$DIR/tokens.csv" <<EOF
$admin_token,admin,admin,"system:masters"
$restricted_token,restricted,restricted
EOF
ca_data=$(base64 -w0 <"$DIR/ca.crt")
for user in admin restricted; do
	cat >"$DIR/$user.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $SERVER
    certificate-authority-data: $ca_data
users:
- name: $user
  user:
    token: $(cat "$DIR/$user.token")
contexts:
- name: $user@local
  context:
    cluster: local
    user: $user
    namespace: default
current-context: $user@local
EOF
done
umask 022

# --- start ------------------------------------------------------------------
start=$SECONDS
start_real=$EPOCHREALTIME
launch() { # name command...
	local name=$1
	shift
	(exec setsid "$@" >>"$DIR/$name.log" 2>&1 </dev/null) &
	echo $! >"$DIR/$name.pid"
}
fail() { # name message
	log "$2; last lines of $DIR/$1.log:"
	tail -n 30 "$DIR/$1.log" >&2 || true
	"$HERE/stop-kube.sh" "$DIR" 2>/dev/null || true
	exit 1
}
up() { # name check-function: ready, or not running
	"$2" || ! alive "$1"
}
await() { # name check-function; all components within TIMEOUT of the start
	local left=$((start + TIMEOUT - SECONDS))
	((left > 0)) || left=0
	wait_for "$left" "$1" up "$1" "$2" || fail "$1" "$1 not ready after ${TIMEOUT}s"
	alive "$1" || fail "$1" "$1 exited"
}

log "starting etcd on 127.0.0.1:$ETCD_PORT (peer $ETCD_PEER_PORT)"
launch etcd etcd --name default --data-dir "$DIR/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
	--unsafe-no-fsync --quota-backend-bytes $((1 << 30)) --log-level warn
etcd_ready() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null; }
await etcd etcd_ready

log "starting kube-apiserver on $SERVER"
cat >"$DIR/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["list", "watch"]
  resources:
  - group: ""
    resources: ["services"]
  - group: "discovery.k8s.io"
    resources: ["endpointslices"]
- level: None
POLICY
# The apiserver's own "kubernetes" Service endpoints would need a
# non-loopback advertise address; with the reconciler off nothing uses it.
launch kube-apiserver "$bin_dir/kube-apiserver" \
	--bind-address=127.0.0.1 --secure-port="$KUBE_PORT" \
	--advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
	--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
	--tls-cert-file="$DIR/apiserver.crt" --tls-private-key-file="$DIR/apiserver.key" \
	--token-auth-file="$DIR/tokens.csv" --anonymous-auth=false \
	--authorization-mode=RBAC \
	--audit-policy-file="$DIR/audit-policy.yaml" --audit-log-path="$DIR/audit.log" \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--api-audiences=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$DIR/sa.pub" --service-account-signing-key-file="$DIR/sa.key" \
	--service-cluster-ip-range=10.96.0.0/16 --service-node-port-range=30000-32767 \
	--disable-admission-plugins=ServiceAccount \
	--profiling=false --v=1
await kube-apiserver apiserver_ready

log "starting kube-controller-manager (healthz on 127.0.0.1:$KCM_PORT)"
kcm_serving=(--secure-port="$KCM_PORT")
((KCM_PORT == 0)) || kcm_serving+=(--bind-address=127.0.0.1 --cert-dir="$DIR/kcm-certs")
launch kube-controller-manager "$bin_dir/kube-controller-manager" \
	--kubeconfig="$DIR/admin.kubeconfig" \
	--controllers=endpointslice-controller,endpointslice-mirroring-controller,serviceaccount-controller,serviceaccount-token-controller,namespace-controller,garbage-collector-controller \
	--service-account-private-key-file="$DIR/sa.key" --root-ca-file="$DIR/ca.crt" \
	--leader-elect=false --use-service-account-credentials=false \
	"${kcm_serving[@]}" --profiling=false --v=1
await kube-controller-manager kcm_ready

elapsed=$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $start_real}")
log "ready after ${elapsed}s: $SERVER (kubeconfigs in $DIR)"
