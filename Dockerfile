# syntax=docker/dockerfile:1
# hemocoupling BIDS-App image.
#   docker build --target runtime --build-arg VERSION="$(cat version)" \
#       -t hemocoupling/hemocoupling:"$(cat version)" .   # the last stage is test: name the target
#   docker build --target test .        # also runs --version and the test suite
# Stages: build (compilers, SuiteSparse headers, venv from the lock files through
# scripts/install.sh, TemplateFlow pre-fetch) -> runtime (runtime libraries only) -> test.
# The base and every download source are build arguments whose defaults are the public
# ones; scripts/build_image.sh overrides them to build without Docker Hub, the PyTorch
# index or TemplateFlow's S3 (docs/deployment.md).

# python:3.11-slim-bookworm, pinned by digest so rebuilds start from the same bytes.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# build-essential + SuiteSparse headers: scikit-sparse 0.4.16 (CHOLMOD) builds from source.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential=12.9 \
        libsuitesparse-dev=1:5.12.0+dfsg-2 \
        libopenblas0-pthread=0.3.21+ds-4 \
    && rm -rf /var/lib/apt/lists/*
# The same script CI runs (bash scripts/test.sh -> scripts/install.sh), pointed at /opt:
# torch from a CPU-only wheel index, everything else from requirements.lock on PIP_INDEX_URL.
ARG HEMOCOUPLING_TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV HEMOCOUPLING_VENV=/opt/hemocoupling/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first, from the lock files alone: a source edit reuses this layer instead
# of reinstalling torch and recompiling scikit-sparse (benchmarks/RESULTS.md, image build).
# The pip cache mount keeps built wheels (and downloads, where pip may cache them)
# across lock-file changes.
COPY requirements.lock requirements-dev.lock /src/
COPY scripts/install.sh /src/scripts/
RUN --mount=type=cache,target=/root/.cache/pip \
    bash scripts/install.sh --deps-only \
    && "$HEMOCOUPLING_VENV/bin/python" -c "import sksparse.cholmod"
# Templates the app can ask for, fetched now: compute nodes and read-only containers
# have no internet. Placeholders of everything else are pruned (clear "not found" offline).
# TEMPLATEFLOW_ARCHIVE (a tar URL of a TemplateFlow home) replaces TemplateFlow's S3.
ENV TEMPLATEFLOW_HOME=/home/hemocoupling/.cache/templateflow
ARG TEMPLATEFLOW_ARCHIVE=""
COPY scripts/fetch_templates.py /src/scripts/
RUN "$HEMOCOUPLING_VENV/bin/python" scripts/fetch_templates.py --prune \
        ${TEMPLATEFLOW_ARCHIVE:+--archive "$TEMPLATEFLOW_ARCHIVE"} \
    && chmod -R a+rX,go-w /home/hemocoupling/.cache
# The package itself as a wheel, installed in the runtime stage: the venv copied there is
# then the dependency layer, so a source edit ships a small layer, not a new venv.
COPY . /src
RUN "$HEMOCOUPLING_VENV/bin/python" -m pip wheel --no-deps -q -w /opt/hemocoupling/wheel .

FROM ${PYTHON_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Runtime half of SuiteSparse only (CHOLMOD and its AMD/COLAMD/METIS/BLAS dependencies),
# with OpenBLAS as the system BLAS (Debian's default reference BLAS doubles CHOLMOD's time).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libcholmod3=1:5.12.0+dfsg-2 \
        libopenblas0-pthread=0.3.21+ds-4 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/hemocoupling/venv /opt/hemocoupling/venv
COPY --from=build /home/hemocoupling /home/hemocoupling
# HOME is world-writable (sticky) for `docker run -u UID`; the templates inside are
# read-only. Every cache goes to /tmp, so `docker run --read-only --tmpfs /tmp` works and
# Singularity (which binds the host HOME over this one) still finds the templates.
RUN chmod 1777 /home/hemocoupling
COPY version /opt/hemocoupling/version
COPY --from=build /opt/hemocoupling/wheel /tmp/wheel
RUN /opt/hemocoupling/venv/bin/python -m pip install --no-cache-dir --no-deps -q /tmp/wheel/*.whl \
    && rm -rf /tmp/wheel
# Labels last: a new BUILD_DATE or VCS_REF then re-runs no step above.
ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="hemocoupling" \
      org.opencontainers.image.description="BIDS-App: vertex-wise hemodynamic coupling maps with calibrated double-bootstrap intervals from fMRIPrep surface BOLD" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="https://github.com/hemocoupling/hemocoupling" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="hemocoupling developers"
# HEMOCOUPLING_IMAGE: the tag dataset_description.json records as GeneratedBy.Container.
ENV HOME=/home/hemocoupling \
    HEMOCOUPLING_IMAGE=hemocoupling/hemocoupling:${VERSION} \
    PATH=/opt/hemocoupling/venv/bin:$PATH \
    TEMPLATEFLOW_HOME=/home/hemocoupling/.cache/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/hemocoupling-mpl \
    NUMBA_CACHE_DIR=/tmp/hemocoupling-numba \
    TORCH_HOME=/tmp/hemocoupling-torch \
    TORCHINDUCTOR_CACHE_DIR=/tmp/hemocoupling-torchinductor \
    XDG_CACHE_HOME=/tmp/hemocoupling-cache \
    DASK_TEMPORARY_DIRECTORY=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 1000:1000
ENTRYPOINT ["/opt/hemocoupling/venv/bin/hemocoupling"]
CMD ["--help"]

# Smoke test: the image answers --version with the version it is labelled with, imports
# CHOLMOD from the runtime libraries, and passes the test suite as an unprivileged user.
# Tests run from /tmp so they import the installed package, not the copied sources.
FROM runtime AS test
ARG VERSION=0.1.0
USER 0
COPY requirements-dev.lock /src/
RUN /opt/hemocoupling/venv/bin/python -m pip install --no-cache-dir -q -r /src/requirements-dev.lock
COPY . /src
USER 1000:1000
RUN test "$(hemocoupling --version)" = "hemocoupling ${VERSION}" \
    && test "$(cat /src/version)" = "${VERSION}" \
    && python -c "import sksparse.cholmod" \
    && python -m pytest -p no:cacheprovider -q -n 2 /src/tests
