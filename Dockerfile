# smsmon worker image: `docker build -t smsmon .`, then `docker run smsmon worker` (the default).
# Every setting is an SMSMON_* environment variable (see README "Configuration").

# --- build: turn the repository into a wheel (the source tree stays out of the final image)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/smsmon smsmon

USER smsmon
WORKDIR /var/lib/smsmon
# Metrics must listen on all interfaces in a container (the default 127.0.0.1 is unreachable
# from Prometheus). Table state (RocksDB) lives in the container's own writable layer: it is a
# cache of the changelog topics, rebuilt after a restart, so no volume is needed.
ENV SMSMON_METRICS_ADDR=0.0.0.0 \
    SMSMON_METRICS_PORT=9108 \
    SMSMON_DATA_DIR=/var/lib/smsmon/data
EXPOSE 9108

ENTRYPOINT ["smsmon"]
CMD ["worker"]
