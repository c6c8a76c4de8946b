# syntax=docker/dockerfile:1
#
# SOR daemon image. Two stages: a builder with a compiler turns the project
# and every dependency into wheels (quickfix has no binary wheel and compiles
# from source, ~6 min on 2 cores), and a slim runtime that installs only
# those wheels: no compiler, no build tools, a non-root user.
#
#   DOCKER_BUILDKIT=1 docker build -t sor .
#   docker run --rm --init \
#       -v /srv/sor/sor.toml:/etc/sor/sor.toml:ro \
#       -v sor-state:/var/lib/sor \
#       -p 9870:9870 -p 127.0.0.1:9108:9108 \
#       --stop-timeout 30 sor
#
# Configuration: the image ships config/ (the simulator-on-loopback default)
# in /etc/sor; an operator mounts its own sor.toml over /etc/sor/sor.toml.
# In that file:
#   - fix.state_dir must be in the writable state dir: leave it relative (the
#     default "var/fix" lands in /var/lib/sor/var/fix, the WORKDIR) or set it
#     to an absolute path under /var/lib/sor. Everything else in the image is
#     read-only to the sor user.
#   - metrics.host defaults to 127.0.0.1, which inside a container is the
#     container's own loopback: Prometheus outside cannot scrape it. Set
#     metrics.host = "0.0.0.0" to scrape through the published port (the
#     HEALTHCHECK below works either way: it runs inside the container).
#   - oms.allowed_remote: quickfix 1.16 cannot bind an acceptor to one
#     address, so the OMS acceptor listens on every interface of the
#     container and refuses logons from peers not in this list. The default
#     is 127.0.0.1 only, which inside a container refuses every outside OMS:
#     list the OMS addresses as the container sees them (with Docker's NAT
#     that is usually the bridge gateway). Publish 9870 only towards the OMS
#     network.
# The FIX file stores in /var/lib/sor hold the sequence numbers, which must
# survive a restart: mount a named volume or a host directory there (an
# anonymous volume is a new, empty one for every `docker run`).
# Log level: `docker run ... sor --log-level INFO run --config /etc/sor/sor.toml`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# Unpinned on purpose: build-essential only compiles quickfix in this stage and
# never reaches the runtime image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a source change does
# not rebuild quickfix. The BuildKit cache mount keeps pip's wheel cache
# across builds as well, so even a dependency change reuses the compiled
# quickfix wheel.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep=chr(10))" \
        > /tmp/requirements.txt \
 && pip wheel --wheel-dir /wheels -r /tmp/requirements.txt

# Then the project itself (.dockerignore keeps tests, venvs, state and caches
# out of the context).
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels --no-deps .

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="sor" \
      org.opencontainers.image.description="Machine-learning smart order router: FIX in, scored venue waterfall out" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A dedicated user with a fixed uid/gid, so a mounted state volume can be
# owned by 10001 on the host; it has no login shell and owns only its state.
RUN groupadd --gid 10001 sor \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/sor --no-create-home \
        --shell /usr/sbin/nologin sor \
 && install -d -o sor -g sor -m 0750 /var/lib/sor

# Wheels only, offline (--no-index: nothing is fetched or compiled here), then
# a smoke import of the compiled and binary dependencies. The wheels are
# bind-mounted from the builder, so they never become a layer of this image.
# The versions are the ones the builder resolved: pinning happens there.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels sor \
 && python -c "import quickfix, onnxruntime, uvloop, numpy, msgspec, prometheus_client, router.cli, fix.codec" \
 && sor --help > /dev/null

COPY config/ /etc/sor/

# Relative paths in the config (fix.state_dir = "var/fix") resolve here.
WORKDIR /var/lib/sor
VOLUME ["/var/lib/sor"]

USER 10001:10001

# 9870: the OMS FIX acceptor (oms.port); 9108: Prometheus metrics (metrics.port).
EXPOSE 9870 9108

# The daemon stops on SIGTERM: it logs the OMS and venue sessions out, then exits.
STOPSIGNAL SIGTERM

# No curl in slim images: Python's urllib does the probe. The URL assumes the
# default metrics.port and metrics.enabled = true; change it with the config.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/metrics', timeout=3).read(1)"]

ENTRYPOINT ["sor"]
CMD ["run", "--config", "/etc/sor/sor.toml"]
