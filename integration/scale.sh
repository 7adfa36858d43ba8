#!/usr/bin/env bash
# Scale benchmark (issue 10): one real Caddy following 1,000 Kubernetes
# Services out of 10,000 (100,000 endpoints, real kube-apiserver and etcd),
# and one following 1,000 Nacos services of 10 instances (real Polaris):
# time until all are served, memory per endpoint, watches and connections
# held, and the cost of one EndpointSlice event at 1,000 and at 10,000
# Services in the namespace. A measurement, not a test: .ci/run never runs
# it (build tag `scale`). Needs root and the servers that
# integration/build-kube.sh and build-polaris.sh build (cached); starts
# servers of its own on ports 16483, 23850-23851 and 11858, 12858 and 13858.
#
#   integration/scale.sh [go test flags]
#
# Sizes, deadlines and the output directory come from the environment: see
# the comment at the top of integration/scale_test.go (SCALE_*). For a
# small trial run:
#
#   SCALE_NAMESPACES=2 SCALE_SERVICES=100 SCALE_REFERENCED=20 \
#   SCALE_BIG_SERVICES=500 SCALE_HOT=10 SCALE_NACOS_SERVICES=50 integration/scale.sh
#
# The machine's cores are shared by the servers, Caddy and the test, so the
# run takes SCALE_LOCK (default /tmp/heavy.lock; empty: none) with flock
# first, to wait for other heavy work; do not wrap it in a flock of the same
# file yourself.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH=$PATH:/usr/local/go/bin
cmd=(go test -tags 'integration scale' -run '^TestScale$' -count=1 -timeout 90m -v ./integration/ "$@")
lock=${SCALE_LOCK-/tmp/heavy.lock}
if [[ -n $lock ]]; then
	cmd=(flock "$lock" "${cmd[@]}")
fi
echo "scale: ${cmd[*]}" >&2
exec "${cmd[@]}"
