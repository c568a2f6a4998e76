# syntax=docker/dockerfile:1
# `artwork serve` in a container: the package installed from a wheel (not editable), CPU torch,
# a non-root user, the catalog and event log on a volume.
#
#   docker build -t artwork-engine .
#   # the catalog must exist before serving: upload into the volume first (tiny encoder shown; see
#   # the README's "CLIP weights" for the real one, whose cache goes in the volume too, $HF_HOME)
#   docker run --rm -v artwork-data:/data -v "$PWD/art:/art:ro" artwork-engine \
#       artwork upload t1 /art/t1 --model tiny
#   docker run -d -p 8000:8000 -v artwork-data:/data -e ARTWORK_API_KEY=... artwork-engine
#
# Settings: every serve option as $ARTWORK_SERVE_<OPTION> (-e ARTWORK_SERVE_POLICY=thompson), or a
# TOML file: -v "$PWD/serve.toml:/etc/artwork/serve.toml:ro" -e ARTWORK_SERVE_CONFIG=/etc/artwork/serve.toml
# (every key with its default: /etc/artwork/serve.example.toml in the image, docs/serve.example.toml
# here). Precedence: command line, environment, config file, default; the image sets only
# ARTWORK_SERVE_HOST=0.0.0.0 (a container must listen beyond its loopback), which a file's `host`
# does not override. Change the port with -e ARTWORK_SERVE_PORT=...: the health check reads it.

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY artwork ./artwork
COPY bandit ./bandit
# A wheel, not `pip install .` from the tree: what is installed is exactly what a release ships
# (package data included), and the build tools stay in this stage.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The pinned torch/torchvision from PyTorch's CPU index first: PyPI's default Linux wheels carry
# CUDA libraries (several GB) that a CPU container never loads. pip then keeps them for the
# project's torch==2.14.1 pin (2.14.1+cpu satisfies it).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1
COPY --from=wheel /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
COPY docs/serve.example.toml /etc/artwork/serve.example.toml

RUN useradd --system --uid 10001 --create-home --home-dir /home/artwork artwork \
    && mkdir /data && chown artwork:artwork /data
USER artwork
WORKDIR /data

# The store (SQLite catalog, STORE.events.db, STORE.snapshots/) lives on the volume, so it outlives
# the container; SQLite's WAL needs a local filesystem there, not NFS.
ENV ARTWORK_STORE=/data/artwork.db \
    ARTWORK_SERVE_HOST=0.0.0.0 \
    HF_HOME=/data/huggingface
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ARTWORK_SERVE_PORT', '8000'), timeout=4)"]

# Exec form: serve is PID 1 and gets SIGTERM from `docker stop`, so it writes its final snapshot.
CMD ["artwork", "serve"]
