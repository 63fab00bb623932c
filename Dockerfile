# syntax=docker/dockerfile:1
# Production image of the inventory service: `inventory serve` (gRPC :4004, HTTP :4002).
#   docker build -t inventory-service .
#   docker run --rm inventory-service serve --role api
# The builder stage has the compilers (for any dependency without a wheel); the runtime stage
# only gets the finished virtualenv, so no build tool ships in the final image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Build tools stay in this stage. Debian package versions are not pinned: the base image
# tag pins the distribution release, and security updates should flow in on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv "$VIRTUAL_ENV"

WORKDIR /src

# Dependencies first (runtime ones only, not the `dev` extra), so that a code change does not
# reinstall them: install the project once with empty packages, then again with the code.
COPY pyproject.toml README.md ./
RUN mkdir -p service streams db \
    && touch service/__init__.py streams/__init__.py db/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall -y inventory-service

COPY service ./service
COPY streams ./streams
COPY db ./db
RUN pip install --no-cache-dir --no-deps . \
    && inventory --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="inventory-service" \
      org.opencontainers.image.description="Stock reservations from order events (Faust) and a gRPC API, on PostgreSQL with a Redis read cache" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A fixed numeric uid/gid, so that Kubernetes can check runAsNonRoot without a name lookup.
RUN groupadd --system --gid 10001 inventory \
    && useradd --system --uid 10001 --gid inventory --create-home \
       --home-dir /var/lib/inventory --shell /usr/sbin/nologin inventory

COPY --from=builder /opt/venv /opt/venv

# The working directory is writable by the service user (Faust keeps its data dir here);
# everything else can be mounted read-only.
WORKDIR /var/lib/inventory
USER 10001:10001

EXPOSE 4004 4002

# Liveness of the process (not readiness): GET /health on the HTTP port, with the standard
# library only (no curl in the image). urlopen raises on a non-2xx answer -> exit 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('INVENTORY_HTTP_PORT', '4002'), timeout=3)"]

ENTRYPOINT ["inventory"]
CMD ["serve"]
