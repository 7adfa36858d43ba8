#!/usr/bin/env bash
# Builds a real Nacos-protocol server: Polaris (github.com/polarismesh/polaris),
# whose service-nacos API server speaks Nacos v1 HTTP and v2 gRPC, from the Go
# module proxy, with integration/polaris-v1.18.1.patch applied (Debian's patch
# is installed with apt-get when missing: needs root then).
#
# Polaris's go.mod has a replace directive, so it cannot be built with
# `go install module@version`: the module is copied to a writable directory,
# patched there and built with `go build .`.
#
# The binary is cached outside the repository (cold build: ~50 s, ~650 MB peak
# RSS). A second run is a no-op unless the patch changed: its sha256 is stored
# beside the binary. Prints the directory holding polaris-server on stdout;
# conf/i18n is copied into it too.
set -euo pipefail

POLARIS_VERSION=v1.18.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/lib.sh
source "$HERE/lib.sh"
PATCH=$HERE/polaris-$POLARIS_VERSION.patch
OUT=$(cache_dir)/polaris-$POLARIS_VERSION

patch_sum=$(sha256sum "$PATCH" | cut -d' ' -f1)
if [[ -x $OUT/polaris-server && -f $OUT/patch.sha256 && $(cat "$OUT/patch.sha256") == "$patch_sum" ]]; then
	echo "$OUT"
	exit 0
fi

apt_install patch
log "downloading github.com/polarismesh/polaris@$POLARIS_VERSION from the Go module proxy"
mkdir -p "$OUT"
# Run outside any module so the download is not recorded in a go.mod.
dir=$(cd "$OUT" && GOWORK=off go mod download -json "github.com/polarismesh/polaris@$POLARIS_VERSION" |
	sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -n $dir && -d $dir ]] || { log "could not download github.com/polarismesh/polaris@$POLARIS_VERSION"; exit 1; }

src=$OUT/src
log "copying the module to $src and applying $(basename "$PATCH")"
rm -rf "$src"
cp -r "$dir" "$src"
chmod -R u+w "$src"
patch -p1 --quiet --forward -d "$src" <"$PATCH"

log "building polaris-server (~50 s and ~650 MB RAM cold)"
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/polaris-server.tmp" .)
rm -rf "$OUT/i18n"
cp -r "$src/release/conf/i18n" "$OUT/i18n"
mv "$OUT/polaris-server.tmp" "$OUT/polaris-server"
echo "$patch_sum" >"$OUT/patch.sha256"
rm -rf "$src"
log "built into $OUT"
echo "$OUT"
