# syntax=docker/dockerfile:1
# bhuktani's image: the wheel built and installed into a venv by deploy/build.sh (the same
# steps tests/deploy runs outside Docker), copied into a slim runtime without compilers or
# pip's caches, run as a user of its own. docs/DEPLOY.md says how to run it.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
# Every dependency has a manylinux wheel for CPython 3.11: nothing is compiled.
COPY pyproject.toml README.md LICENSE ./
COPY requirements/ requirements/
COPY src/ src/
COPY deploy/build.sh deploy/build.sh
RUN deploy/build.sh wheel /wheels \
    && deploy/build.sh install /opt/bhuktani /wheels

FROM ${PYTHON_IMAGE}
# The venv's scripts name /opt/bhuktani/bin/python, which names the image's own
# /usr/local/bin/python3.11: the same base image in both stages keeps them valid.
COPY --from=builder /opt/bhuktani /opt/bhuktani
RUN groupadd --system --gid 10001 bhuktani \
    && useradd --system --uid 10001 --gid bhuktani --home-dir /var/lib/bhuktani \
        --create-home --shell /usr/sbin/nologin bhuktani
ENV PATH=/opt/bhuktani/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BHUKTANI_DATABASE_URL=sqlite:////var/lib/bhuktani/bhuktani.db \
    BHUKTANI_HEALTHCHECK_URL=http://127.0.0.1:8000/healthz
USER bhuktani:bhuktani
WORKDIR /var/lib/bhuktani
EXPOSE 8000
# /healthz: 200 while the database answers. The slim image has no curl; Python has a
# client. Other commands of the image (worker, isp-sim) set their own check in compose.yaml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['BHUKTANI_HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["bhuktani"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
