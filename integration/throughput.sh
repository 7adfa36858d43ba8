#!/usr/bin/env bash
# End-to-end throughput benchmark (issue 10): wrk against one real Caddy
# whose three sites proxy to the same 1, 10 and 100 backends through static
# upstreams, `dynamic k8s` (real kube-apiserver) and `dynamic nacos` (real
# Polaris). A measurement, not a test: .ci/run never runs it (build tag
# `throughput`). Needs root (network namespaces), wrk, and the servers that
# integration/build-kube.sh and build-polaris.sh build (cached).
#
#   integration/throughput.sh [go test flags]
#
# Environment: THROUGHPUT_SIZES (1,10,100), THROUGHPUT_ROUNDS (5),
# THROUGHPUT_DURATION (10s), THROUGHPUT_PROFILE (auto: CPU profiles of Caddy
# for a source below 0.97x static and for static; all; none), THROUGHPUT_OUT
# (where the table, results.md, and the profiles go; default a new directory
# under $TMPDIR). See integration/throughput_test.go.
#
# The machine's cores are shared by wrk, Caddy and the backends, so the run
# takes THROUGHPUT_LOCK (default /tmp/heavy.lock; empty: none) with flock
# first, to wait for other heavy work; do not wrap it in a flock of the same
# file yourself.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH=$PATH:/usr/local/go/bin
cmd=(go test -tags 'integration throughput' -run '^TestThroughput$' -count=1 -timeout 90m -v ./integration/ "$@")
lock=${THROUGHPUT_LOCK-/tmp/heavy.lock}
if [[ -n $lock ]]; then
	cmd=(flock "$lock" "${cmd[@]}")
fi
echo "throughput: ${cmd[*]}" >&2
exec "${cmd[@]}"
