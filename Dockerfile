# syntax=docker/dockerfile:1
# One image recipe for every tickpipe service, chosen with a build argument. Build from the
# repository root (the build context must hold the uv workspace):
#
#   docker build --build-arg SERVICE=writer -t tickpipe/writer:0.1.0 .
#
# SERVICE is a folder of services/ (fetcher, decoder, validator, writer, tracker, api). Every
# image also carries the `tickpipe` CLI (workspace member cli/), so any of them can run
# `tickpipe db migrate`, `tickpipe topics create` (the Kubernetes setup Job, compose's one-shots),
# `tickpipe api-key …` or `tickpipe replay …`.
#
# Only the workspace members the service needs are copied: `uv sync --frozen --package` installs
# exactly what uv.lock pins, without resolving again, so the other members' folders are not needed.

# The base image is pinned to an exact release (Python patch level and Debian release): a rebuild
# does not silently move to another interpreter. Bump it deliberately, both stages at once.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/tickpipe/venv
RUN test -n "$SERVICE" || { echo "build with --build-arg SERVICE=<a folder of services/>" >&2; exit 1; }
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /src
# Third-party dependencies first: a layer that survives edits of tickpipe's own code.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/pyproject.toml
COPY cli/pyproject.toml cli/pyproject.toml
# The CLI plans dry runs with the fetcher's planner: every image carries the fetcher package.
COPY services/fetcher/pyproject.toml services/fetcher/pyproject.toml
RUN uv sync --frozen --no-dev --no-install-workspace --package "tickpipe-${SERVICE}" --package tickpipe-cli
# Then the workspace packages themselves, installed into the venv (not editable).
COPY shared/ shared/
COPY services/${SERVICE}/ services/${SERVICE}/
COPY cli/ cli/
COPY services/fetcher/ services/fetcher/
RUN uv sync --frozen --no-dev --no-editable --package "tickpipe-${SERVICE}" --package tickpipe-cli

FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/tickpipe tickpipe
COPY --from=build /opt/tickpipe/venv /opt/tickpipe/venv
ENV PATH=/opt/tickpipe/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TICKPIPE_SERVICE=${SERVICE}
USER 10001:10001
# Relative paths such as TICKPIPE_INSTRUMENT_CACHE_DIR's default resolve here (writable; on
# Kubernetes, with a read-only root filesystem, an emptyDir is mounted on it).
WORKDIR /home/tickpipe
# Ports: /metrics and /healthz on TICKPIPE_METRICS_PORT (default per service: fetcher 9101,
# decoder 9102, validator 9103, writer 9104, tracker 9105, api 9106); the API's HTTP on
# TICKPIPE_API_PORT (8000). Declared by compose and the Kubernetes manifests, not here, because
# one recipe serves every service.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; from tickpipe_shared.config import DEFAULT_METRICS_PORTS; port = int(os.environ.get('TICKPIPE_METRICS_PORT') or 0) or DEFAULT_METRICS_PORTS[os.environ['TICKPIPE_SERVICE']]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# exec: the console script becomes PID 1 and receives SIGTERM itself (graceful checkpoint).
CMD ["/bin/sh", "-c", "exec \"tickpipe-$TICKPIPE_SERVICE\""]
