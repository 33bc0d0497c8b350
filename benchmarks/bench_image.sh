#!/usr/bin/env bash
# Container image figures for benchmarks/RESULTS.md ("Container image"): build time from
# nothing and after a source-only edit (the dependency layer is reused: Dockerfile layer
# order), image size, and the demo's wall time inside the read-only, UID 1000,
# networkless container. Builds through scripts/build_image.sh (podman). The test stage
# is `bash scripts/build_image.sh --test` (its pytest step is cached once it passed).
# Usage: bash benchmarks/bench_image.sh      (about half an hour on 2 cores)
#   BENCH_COLD=0         skip the build from nothing (the image of this tree is built already)
#   BENCH_DEMO_DIR=DIR   keep the demo's dataset and outputs in DIR
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-hemocoupling/hemocoupling:$(cat version)}
export IMAGE=$image TEMPLATEFLOW_SOURCE=${TEMPLATEFLOW_SOURCE:-$(realpath -m ../shared/data/templateflow)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
timed() { local t=$SECONDS; "$@" > "$tmp/log" 2>&1 || { tail -30 "$tmp/log"; exit 1; }; echo $((SECONDS - t)); }

if [ "${BENCH_COLD:-1}" = 1 ]; then
    # From nothing but the base: every other image (so every layer) and the pip cache mount
    # removed. (Not --no-cache: buildah then keeps two layer chains and a later build may
    # follow the stale one.)
    base=$(podman image inspect --format '{{.Id}}' "${BASE_IMAGE:-localhost/hemocoupling-base:bookworm-py3.11}")
    podman images -aq --no-trunc | grep -v "$base" | xargs -r podman rmi -f >/dev/null 2>&1 || true
    rm -rf /var/tmp/buildah-cache*
    cold=$(timed bash scripts/build_image.sh)
    echo "build from the base, no cached layer, empty pip cache: $cold s"
fi
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image size: $(awk -v b="$size" 'BEGIN {printf "%.2f GB (%d bytes)", b / 1e9, b}')"

# A source-only edit, in a copy of the tree so the checkout stays clean.
mkdir "$tmp/tree"
git ls-files -z | xargs -0 cp -p --parents -t "$tmp/tree/"  # -p: same mtimes, same layers
echo "# source-only edit" >> "$tmp/tree/bids_app/__init__.py"
edit=$(timed bash "$tmp/tree/scripts/build_image.sh")
echo "rebuild after a source-only edit: $edit s"
grep -c "Using cache" "$tmp/log" | sed 's/^/  steps taken from the cache: /'
rm -rf "$tmp/tree"
timed bash scripts/build_image.sh >/dev/null  # back to the image of this tree

podman run --rm --network none "$image" --version
demo=${BENCH_DEMO_DIR:-$tmp/demo}  # set it to keep the demo's outputs
wall=$(DEMO_IMAGE=$image DEMO_DIR=$demo timed bash scripts/demo.sh)
echo "demo in the read-only container (simulate + participant + group): $wall s"
grep -E "^== done" "$tmp/log"
echo "outputs: $(find "$demo/out" -type f | wc -l) files; group warnings:"
grep -h "WARNING" "$demo"/out/logs/hemocoupling_group_*.log | sed 's/^/  /'
