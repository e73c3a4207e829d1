# The failhook orchestrator as a container image.
#
#   docker build -t failhook .
#   docker run -p 50051:50051 -v "$PWD/certs:/etc/failhook/certs:ro" -v failhook-data:/var/lib/failhook failhook
#
# BASE_IMAGE is any Debian-like image with Python >= 3.11 and its venv module (the official slim
# image, or a Debian bookworm with python3 and python3-venv). Both stages must use the same base:
# the virtual environment points at the base's interpreter.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# Only what building the two distributions needs (see .dockerignore): the SDK `failhook`
# (clients/python) and the server `failhook-orchestrator` (service), which depends on it.
COPY clients/python/ clients/python/
COPY service/ service/
# A regular (non-editable) install of the runtime dependencies only: no dev extras, no cache.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-input ./clients/python ./service \
 && /opt/venv/bin/failhook-orchestrator --help >/dev/null

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="failhook orchestrator" \
      org.opencontainers.image.description="A gRPC workflow orchestrator with a typed failure-hook contract and a dead-letter queue" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed non-root identity: mounted certificates and volumes can be given to uid/gid 10001.
RUN groupadd --gid 10001 failhook \
 && useradd --no-log-init --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/failhook \
      --shell /usr/sbin/nologin failhook \
 && mkdir -p /var/lib/failhook /etc/failhook/certs /opt/failhook \
 && chown 10001:10001 /var/lib/failhook \
 && chmod 0750 /var/lib/failhook

COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/failhook/healthcheck.py

# Every setting is a FAILHOOK_* variable (docs/runbook.md); these are the image's defaults.
# The grace period stays below the 10 s a container engine waits between SIGTERM and SIGKILL.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FAILHOOK_LISTEN=0.0.0.0:50051 \
    FAILHOOK_DATABASE=sqlite+aiosqlite:////var/lib/failhook/failhook.db \
    FAILHOOK_TLS_CA=/etc/failhook/certs/ca.pem \
    FAILHOOK_TLS_CERT=/etc/failhook/certs/orchestrator.pem \
    FAILHOOK_TLS_KEY=/etc/failhook/certs/orchestrator-key.pem \
    FAILHOOK_GRACE_PERIOD=8

USER 10001:10001
WORKDIR /var/lib/failhook
VOLUME /var/lib/failhook
EXPOSE 50051

# grpc.health.v1 over mTLS with the mounted certificates (the orchestrator's own certificate is
# also a client certificate); exits 0 only when the server answers SERVING.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["/opt/venv/bin/python", "/opt/failhook/healthcheck.py"]

STOPSIGNAL SIGTERM
# Exec form: the orchestrator is PID 1 and gets SIGTERM itself, then shuts down gracefully.
ENTRYPOINT ["/opt/venv/bin/failhook-orchestrator"]
CMD ["serve"]
