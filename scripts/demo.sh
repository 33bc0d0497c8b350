#!/usr/bin/env bash
# The README's demo: set up the environment (scripts/install.sh), simulate a small
# 2-subject fsaverage5 dataset with known HRF maps into ./demo/, run the participant level
# (with a light single bootstrap) and the group level, and say where everything is.
# Usage: bash scripts/demo.sh
#   DEMO_DIR=demo           where the dataset and outputs go
#   DEMO_BOOTSTRAP="--bootstrap single --n-boot 20"   bootstrap options of the participant level
#   DEMO_IMAGE=IMAGE        run every step in this container image instead, as a cluster
#                           would: podman, read-only root, UID 1000, no network
# Re-running reuses the simulated dataset and skips participants already finished.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HEMOCOUPLING_VENV:-.venv}
demo=${DEMO_DIR:-demo}
read -r -a bootstrap <<< "${DEMO_BOOTSTRAP:---bootstrap single --n-boot 20}"
if [ -n "${DEMO_IMAGE:-}" ]; then
    # The folder is bound at the same path, so every path below holds inside and out.
    demo=$(realpath -m "$demo")
    mkdir -p "$demo"
    [ "$(id -u)" = 0 ] && chown 1000:1000 "$demo"
    in_image() {
        podman run --rm --read-only --tmpfs /tmp -u 1000:1000 --network none \
            -v "$demo:$demo" --entrypoint "$1" "$DEMO_IMAGE" "${@:2}"
    }
    simulate=(in_image hemocoupling-simulate)
    app=(in_image hemocoupling)
else
    bash scripts/install.sh
    simulate=("$venv/bin/hemocoupling-simulate")
    app=("$venv/bin/hemocoupling")
    export MPLBACKEND=Agg
    # Offline template copy beside the project when there is one (as CI uses); otherwise
    # TemplateFlow downloads the fsaverage5 meshes once into ~/.cache/templateflow.
    if [ -z "${TEMPLATEFLOW_HOME:-}" ] && [ -d ../shared/data/templateflow ]; then
        export TEMPLATEFLOW_HOME=$PWD/../shared/data/templateflow TEMPLATEFLOW_AUTOUPDATE=0
    fi
fi

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS
if [ ! -f "$demo/bids/dataset_description.json" ]; then
    step "simulating 2 subjects on fsaverage5 (TR 1.4 s, 300 frames) into $demo/bids"
    "${simulate[@]}" "$demo/bids" --mesh fsaverage5 --subjects 2 \
        --tr 1.4 --frames 300 --model 1p --seed 1
fi
t_sim=$((SECONDS - started))

step "participant level: hemocoupling $demo/bids $demo/out participant ${bootstrap[*]}"
"${app[@]}" "$demo/bids" "$demo/out" participant "${bootstrap[@]}" \
    --random-seed 1 -w "$demo/work" -v
t_part=$((SECONDS - started - t_sim))

step "group level: hemocoupling $demo/bids $demo/out group"
"${app[@]}" "$demo/bids" "$demo/out" group -w "$demo/work" -v
t_group=$((SECONDS - started - t_sim - t_part))

step "done in $((SECONDS - started)) s (simulate ${t_sim} s, participant ${t_part} s, group ${t_group} s)"
echo "simulated inputs:   $demo/bids   (ground truth in $demo/bids/sourcedata/truth/)"
echo "derivatives:        $demo/out"
echo "participant maps:   $(find "$demo/out" -path '*/func/*_boldmap.func.gii' | wc -l) files under $demo/out/sub-*/func/"
echo "reports:"
find "$demo/out" -maxdepth 1 -name '*.html' | sort | sed 's/^/  /'
echo "report figures:     $demo/out/sub-*/figures/ (rebuild the reports: add --reports-only)"
echo "logs:               $demo/out/logs/"
if [ "${bootstrap[*]}" = "--bootstrap single --n-boot 20" ]; then
    echo "intervals:          a light single bootstrap (B = 20): nominal 95 % intervals, not"
    echo "                    calibrated, and they cover the demo's true maps far less often"
    echo "                    (benchmarks/RESULTS.md); the default --bootstrap double calibrates them"
fi
