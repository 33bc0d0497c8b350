#!/usr/bin/env bash
# Build the image with podman (buildah) from local sources, for machines that reach the
# Debian archive and PyPI but not Docker Hub, PyTorch's wheel index or TemplateFlow's S3.
# The Dockerfile's build arguments are pointed at:
#   PYTHON_IMAGE              a bookworm base with Python 3.11, made with mmdebstrap when absent
#   HEMOCOUPLING_TORCH_INDEX  the folder holding the locked CPU torch wheel, served on 127.0.0.1
#   TEMPLATEFLOW_ARCHIVE      a tar of a local TemplateFlow home, served on 127.0.0.1
# Usage: bash scripts/build_image.sh [--test] [podman build options, e.g. --no-cache]
#   --test  also builds the test stage (--version, CHOLMOD, pytest as UID 1000)
#   IMAGE=hemocoupling/hemocoupling:<version>   tag of the runtime image
#   BASE_IMAGE=localhost/hemocoupling-base:bookworm-py3.11
#   TORCH_WHEELS=/opt/wheels                      folder with torch-<locked version>+cpu-*.whl
#   TEMPLATEFLOW_SOURCE=../shared/data/templateflow
#   SERVE_PORT=47689                              127.0.0.1 port serving the wheel and the tar
#   CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt  certificates pip trusts in the build (this
#                                                 machine's, so a TLS-inspecting proxy works)
# Where Docker Hub and the public sources are reachable, plain
# `docker build --target runtime .` needs none of this.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(cat version)
image=${IMAGE:-hemocoupling/hemocoupling:$version}
base=${BASE_IMAGE:-localhost/hemocoupling-base:bookworm-py3.11}
wheels=${TORCH_WHEELS:-/opt/wheels}
templates=${TEMPLATEFLOW_SOURCE:-../shared/data/templateflow}
ca=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# chroot isolation: RUN steps need no cgroups or user namespaces (works inside containers).
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

fail() { echo "build_image: $*" >&2; exit 66; }
command -v podman >/dev/null || fail "podman not found; apt-get install podman buildah mmdebstrap"
torch=$(grep -E '^torch==' requirements.lock | cut -d= -f3)
compgen -G "$wheels/torch-$torch+cpu-*.whl" >/dev/null \
    || fail "no torch-$torch+cpu wheel in $wheels; set TORCH_WHEELS to the folder holding it"
[ -d "$templates" ] || fail "no TemplateFlow home at $templates; set TEMPLATEFLOW_SOURCE"

if ! podman image exists "$base"; then
    command -v mmdebstrap >/dev/null || fail "$base missing and mmdebstrap not found"
    echo "== making $base with mmdebstrap (Debian bookworm, python3 3.11)"
    mmdebstrap --variant=minbase --include=python3,python3-venv,python3-dev,ca-certificates \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        bookworm - "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" \
        | podman import --change 'CMD ["/bin/bash"]' - "$base"
fi

# A throw-away HTTP server: a PEP 503 page for torch and the TemplateFlow tar.
serve=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server"; rm -rf "$serve"; }
trap cleanup EXIT
mkdir -p "$serve/simple/torch"
ln -s "$(realpath "$wheels")"/torch-"$torch"+cpu-*.whl "$serve/simple/torch/"
tar -C "$templates" -cf "$serve/templateflow.tar" .
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$serve/pip.conf"
# A fixed port: the URLs are build arguments, and a changed one would re-run every step after.
port=${SERVE_PORT:-47689}
python3 -m http.server --bind 127.0.0.1 --directory "$serve" "$port" >/dev/null 2>&1 &
server=$!
url=http://127.0.0.1:$port
for _ in $(seq 50); do python3 -c "import urllib.request as u; u.urlopen('$url/')" 2>/dev/null && break; sleep 0.1; done
kill -0 "$server" 2>/dev/null || fail "cannot serve on 127.0.0.1:$port; set SERVE_PORT to a free port"

build() {
    # docker format: OCI images drop SHELL (bash -o pipefail) from the Dockerfile
    # RUN steps see the host's CA bundle and a pip.conf naming it (bind mounts, not layers)
    podman build --format docker --network host --build-arg PYTHON_IMAGE="$base" \
        -v "$(realpath "$ca")":/etc/ssl/certs/ca-certificates.crt:ro \
        -v "$serve/pip.conf":/etc/pip.conf:ro \
        --build-arg HEMOCOUPLING_TORCH_INDEX="$url/simple" \
        --build-arg TEMPLATEFLOW_ARCHIVE="$url/templateflow.tar" \
        --build-arg VERSION="$version" \
        --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        --build-arg VCS_REF="$(git rev-parse HEAD 2>/dev/null || echo unknown)" "$@" .
}

run_test=0
[ "${1:-}" = "--test" ] && { run_test=1; shift; }
started=$SECONDS
build "$@" --target runtime -t "$image"
echo "build_image: built $image in $((SECONDS - started)) s," \
    "$(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1 / 1e9}')"
if [ "$run_test" = 1 ]; then
    started=$SECONDS
    build "$@" --target test -t "$image-test"
    echo "build_image: test stage passed in $((SECONDS - started)) s"
fi
