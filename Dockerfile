# kb-ingest: one image for every role.
#   docker build -t kb-ingest:0.1.0 .
#   docker run --rm kb-ingest:0.1.0 run consumer      (producer | consumer | aggregator | api)
#   docker run --rm kb-ingest:0.1.0 migrate
# Both stages must use the same base image: the venv copied into the final stage points at the
# interpreter in /usr/local/bin. Pin a digest (python:3.11-slim@sha256:...) for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: resolve the dependencies and build the project's wheel into /opt/venv ----------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, read from pyproject.toml, so that this layer stays cached while only the
# source changes. Every dependency ships manylinux wheels: no compiler or system library needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself, as a wheel (no editable install: the venv must not point at /src).
# README.md* is a glob (next to a file that always exists) so that the build works whether or
# not the README is there: pyproject.toml names it, setuptools only warns when it is missing.
COPY pyproject.toml README.md* ./
COPY service ./service
RUN pip wheel --no-deps --wheel-dir /tmp/dist . \
    && pip install --no-deps /tmp/dist/*.whl \
    && pip check \
    && kb-ingest --help > /dev/null

# ---- runtime: the interpreter, the venv, a non-root user; nothing else -----------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kb-ingest" \
      org.opencontainers.image.description="Knowledge-base ingestion service: Kafka in, phased pipeline, searchable KB in Postgres." \
      org.opencontainers.image.version="${VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# A numeric USER lets Kubernetes verify runAsNonRoot without a runAsUser in the pod spec.
RUN groupadd --system --gid 10001 kb \
    && useradd --system --uid 10001 --gid kb --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kb

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# 8080: the api role (API, /healthz, /readyz, /metrics); 8081: the worker roles' health server.
EXPOSE 8080 8081

# No HEALTHCHECK: the port depends on the role; Kubernetes probes and compose healthchecks
# call /healthz and /readyz on the right one.
# The process handles SIGTERM itself (graceful shutdown within KB_INGEST_SHUTDOWN_GRACE_S)
# and starts no child processes, so it can run as PID 1 without an init.
ENTRYPOINT ["kb-ingest"]
CMD ["run", "api"]
