#!/usr/bin/env bash
# Builds a real Consul v1.14.8 agent from the Go module github.com/hashicorp/consul,
# offline apart from the Go module proxy:
#
#   integration/build-consul.sh
#
# `go build github.com/hashicorp/consul` does not compile when consul is a
# dependency: its go.mod replaces github.com/hashicorp/consul/api with ./api,
# replaces apply only in the main module, and command/operator/raft/listpeers
# uses a field the published api v1.18.0 lacks. The wrapper module
# integration/consul-server/ (its own go.mod, so the root module's
# go test ./... leaves it out) has a main.go registering only the agent and
# version commands, and a go.mod/go.sum that pin consul's dependency graph.
#
# The binary is cached outside the repository, in
# CADDY_DISCOVERY_CACHE/consul-v1.14.8/consul. Cold, measured: 104 s to
# download the 194 modules (kube's and Polaris's already cached), 683 s to
# compile on 2 cores shared with other work (~6 min idle), 1.4 GB peak RSS for
# one process, 1.8 GB in use on the machine. A second run (0.3 s) is a no-op
# unless the wrapper's sources changed: their sha256 is stored beside the
# binary. Prints the path of the binary on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

CONSUL_VERSION=v1.14.8
SRC=$HERE/consul-server
OUT=$(cache_dir)/consul-$CONSUL_VERSION
BIN=$OUT/consul

sum=$(cd "$SRC" && cat go.mod go.sum main.go | sha256sum | cut -d' ' -f1)
if [[ -x $BIN && -f $BIN.sha256 && $(cat "$BIN.sha256") == "$sum" ]]; then
	echo "$BIN"
	exit 0
fi
grep -q "github.com/hashicorp/consul $CONSUL_VERSION\$" "$SRC/go.mod" ||
	{ log "$SRC/go.mod does not require github.com/hashicorp/consul $CONSUL_VERSION"; exit 1; }

mkdir -p "$OUT"
rm -f "$BIN.sha256"
cd "$SRC"
# -mod=readonly: the build never rewrites the committed go.mod or go.sum.
export GOWORK=off GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"

t=$SECONDS
log "downloading github.com/hashicorp/consul@$CONSUL_VERSION and its dependencies from the Go module proxy (cold: ~2 min)"
go mod download
log "downloaded in $((SECONDS - t))s"

t=$SECONDS
log "building consul (cold: ~5 min on an idle 2-core box, ~1.8 GB RAM)"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" .
log "built in $((SECONDS - t))s"
"$BIN.tmp" version | grep -q "^Consul ${CONSUL_VERSION}\$" ||
	{ log "$BIN.tmp version does not say Consul $CONSUL_VERSION: $("$BIN.tmp" version | head -n 1)"; exit 1; }
mv "$BIN.tmp" "$BIN"
echo "$sum" >"$BIN.sha256"
log "built $BIN"
echo "$BIN"
