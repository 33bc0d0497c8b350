#!/usr/bin/env bash
# Container image figures for benchmarks/RESULTS.md ("Container image"): build time from
# nothing and after a source-only edit (the dependency layer is reused: Dockerfile layer
# order), image size, and the demo's wall time inside the read-only, UID 1000,
# networkless container. Builds through scripts/build_image.sh (podman). The test stage
# is `bash scripts/build_image.sh --test` (its pytest step is cached once it passed).
# Usage: bash benchmarks/bench_image.sh      (about half an hour on 2 cores; clears the
#        pip cache mount and builds with --no-cache first)
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-hemocoupling/hemocoupling:$(cat version)}
export IMAGE=$image TEMPLATEFLOW_SOURCE=${TEMPLATEFLOW_SOURCE:-$(realpath -m ../shared/data/templateflow)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
timed() { local t=$SECONDS; "$@" > "$tmp/log" 2>&1 || { tail -30 "$tmp/log"; exit 1; }; echo $((SECONDS - t)); }

rm -rf /var/tmp/buildah-cache*  # the pip cache mount: a cold build downloads and compiles all
cold=$(timed bash scripts/build_image.sh --no-cache)
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "build from nothing (--no-cache, empty pip cache): $cold s"
echo "image size: $(awk -v b="$size" 'BEGIN {printf "%.2f GB (%d bytes)", b / 1e9, b}')"

# A source-only edit, in a copy of the tree so the checkout stays clean.
mkdir "$tmp/tree"
git ls-files -z | xargs -0 cp --parents -t "$tmp/tree/"
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
