# syntax=docker/dockerfile:1
# spendwatch worker image: `spendwatch worker` serving /health and /metrics on port 6066.
# Built by docker-compose.yml (`docker compose up -d`); alone:
#   docker build -t spendwatch:local .
#   docker run --rm -p 6066:6066 -e SPENDWATCH_KAFKA__BOOTSTRAP_SERVERS=broker:9092 spendwatch:local
# The config files (config/) are not part of any package: they are copied to /app/config and
# the worker is started with --config /app/config/spendwatch.yaml (paths in it are relative
# to that file). docker-compose.yml bind-mounts ./config over /app/config instead.

# Build stage: wheels for spendwatch and all of its dependencies (no dev extras).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY detectors ./detectors
RUN pip wheel --wheel-dir /wheels .

# Runtime stage: the installed `spendwatch` console script, the config, a non-root user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels spendwatch
RUN groupadd --system --gid 10001 spendwatch \
    && useradd --system --uid 10001 --gid spendwatch --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin spendwatch \
    && install -d -o spendwatch -g spendwatch /var/lib/spendwatch /data
WORKDIR /app
COPY config/ /app/config/

# Listen on all interfaces inside the container (the default 127.0.0.1 cannot be published);
# faust's data directory is writable by the spendwatch user.
ENV SPENDWATCH_WORKER__WEB_HOST=0.0.0.0 \
    SPENDWATCH_WORKER__DATA_DIR=/var/lib/spendwatch
USER 10001:10001
EXPOSE 6066

# No curl in slim images: python's urllib. Non-2xx or no answer exits non-zero (unhealthy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SPENDWATCH_WORKER__WEB_PORT', '6066') + '/health', timeout=4)"]

ENTRYPOINT ["spendwatch"]
CMD ["worker", "--config", "/app/config/spendwatch.yaml"]
