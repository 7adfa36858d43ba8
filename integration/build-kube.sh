#!/usr/bin/env bash
# Builds a real kube-apiserver and kube-controller-manager from the Go module
# k8s.io/kubernetes, offline apart from the Go module proxy.
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod maps
# every k8s.io/<staging> module to ./staging/..., which only exists in the git
# tree. A small wrapper module requires k8s.io/kubernetes and points each of
# those at the published v0.X.Y release of the same staging module instead.
#
# The binaries are cached outside the repository (cold build: ~12 min on 2 cores, ~2.2 GB
# peak RSS); a second run is a no-op. Prints the bin directory on stdout.
set -euo pipefail

# shellcheck source=integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
STAGING_VERSION=v0.${KUBE_VERSION#v1.}
CACHE=$(cache_dir)
BIN=$CACHE/kube-$KUBE_VERSION/bin

if [[ -x $BIN/kube-apiserver && -x $BIN/kube-controller-manager ]]; then
	echo "$BIN"
	exit 0
fi

work=$CACHE/kube-$KUBE_VERSION/src
mkdir -p "$work" "$BIN"
cd "$work"

log "downloading k8s.io/kubernetes $KUBE_VERSION from the Go module proxy"
gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
[[ -n $gomod ]] || { log "could not find the go.mod of k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }

{
	echo "module caddy-discovery.local/kubebuild"
	echo
	echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
	echo
	echo "require k8s.io/kubernetes $KUBE_VERSION"
	echo
	# "	k8s.io/api => ./staging/src/k8s.io/api" becomes "replace k8s.io/api => k8s.io/api v0.34.4"
	sed -n -E "s#^[[:space:]]*(k8s\.io/[^ ]+) => \./staging/.*#replace \1 => \1 $STAGING_VERSION#p" "$gomod"
} >go.mod
cat >tools.go <<'GO'
//go:build tools

package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO

log "resolving dependencies (go mod tidy -e)"
go mod tidy -e >/dev/null 2>&1 || true

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION")"
for cmd in kube-apiserver kube-controller-manager; do
	log "building $cmd (cold, both: ~12 min on 2 cores, ~2 GB RAM)"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
	mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done
log "built into $BIN"
echo "$BIN"
