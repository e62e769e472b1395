# syntax=docker/dockerfile:1
# The images of filterviz, one target each:
#   api     Flask API under gunicorn; no TensorFlow (also runs the one-shot bucket init)
#   worker  Celery worker with VGG16's ImageNet weights baked in; TensorFlow for the CPU, or
#           with --build-arg WORKER_EXTRA=gpu --build-arg WORKER_BACKEND=jax, JAX with CUDA 12
#           (an NVIDIA driver R525 or newer; see the README's GPU section)
# docker-compose.yml builds them; by hand: docker build --target api -t filterviz-api .
#
# Each image installs its dependencies before it copies the source, so editing the code
# rebuilds only the last layers; BuildKit's cache mount keeps downloaded wheels between builds.

# A minor-version tag gets Debian's security updates on every rebuild; docker/constraints.txt
# pins the Python packages.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN groupadd --system --gid 10001 filterviz \
 && useradd --system --uid 10001 --gid filterviz --create-home --home-dir /home/filterviz filterviz
WORKDIR /app
COPY docker/requirements.py docker/constraints.txt docker/constraints-gpu.txt /opt/build/
COPY pyproject.toml /opt/build/

FROM base AS api-deps
RUN --mount=type=cache,target=/root/.cache/pip \
    python /opt/build/requirements.py /opt/build/pyproject.toml > /opt/build/requirements.txt \
 && pip install --requirement /opt/build/requirements.txt --constraint /opt/build/constraints.txt

FROM api-deps AS api
# The package version (compose passes it) and, optionally, the repository's URL.
ARG FILTERVIZ_VERSION=local
ARG FILTERVIZ_SOURCE=""
LABEL org.opencontainers.image.title="filterviz-api" \
      org.opencontainers.image.description="filterviz API: jobs that show what VGG16's filters learned" \
      org.opencontainers.image.source="${FILTERVIZ_SOURCE}" \
      org.opencontainers.image.version="${FILTERVIZ_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY pyproject.toml README.md LICENSE ./
COPY shared shared
COPY api api
RUN pip install --no-deps . && rm -rf build
USER filterviz
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"]

FROM base AS worker-deps
# worker: TensorFlow for the CPU (tensorflow-cpu on x86_64, tensorflow on arm64, which has no
# tensorflow-cpu wheel); gpu: Keras on JAX with CUDA and cuDNN as pip wheels, pinned in
# docker/constraints-gpu.txt. WORKER_BACKEND names the backend the extra brings (the weights
# stage imports keras too, so it is set here).
ARG WORKER_EXTRA=worker
ARG WORKER_BACKEND=tensorflow
ENV FILTERVIZ_BACKEND=${WORKER_BACKEND}
RUN --mount=type=cache,target=/root/.cache/pip \
    python /opt/build/requirements.py /opt/build/pyproject.toml "${WORKER_EXTRA}" > /opt/build/requirements.txt \
 && pip install --requirement /opt/build/requirements.txt \
      --constraint /opt/build/constraints.txt --constraint /opt/build/constraints-gpu.txt

FROM worker-deps AS weights
# Keras checks the file's hash as it downloads it; the worker image gets only the file.
ENV KERAS_HOME=/opt/keras
RUN python -c "import keras; keras.applications.VGG16(include_top=False, weights='imagenet')" \
 && ls -l /opt/keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5

FROM worker-deps AS worker
# The package version (compose passes it) and, optionally, the repository's URL.
ARG FILTERVIZ_VERSION=local
ARG FILTERVIZ_SOURCE=""
# The code is Apache-2.0; the ImageNet VGG16 weights baked in are Keras' port of the weights the
# Visual Geometry Group (Oxford) released under the Creative Commons Attribution 4.0 licence.
LABEL org.opencontainers.image.title="filterviz-worker" \
      org.opencontainers.image.description="filterviz worker: VGG16 feature visualisation by gradient ascent" \
      org.opencontainers.image.source="${FILTERVIZ_SOURCE}" \
      org.opencontainers.image.version="${FILTERVIZ_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0 AND CC-BY-4.0"
COPY --from=weights /opt/keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 /opt/filterviz/weights/
COPY pyproject.toml README.md LICENSE ./
COPY shared shared
COPY worker worker
RUN pip install --no-deps . && rm -rf build
ENV FILTERVIZ_WEIGHTS=imagenet \
    FILTERVIZ_IMAGENET_WEIGHTS=/opt/filterviz/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
    TF_CPP_MIN_LOG_LEVEL=2
USER filterviz
# One pool process per container: TensorFlow sizes its threads to the CPUs the container may use
# (its CPU quota included) or uses the GPU; scale with more containers.
CMD ["celery", "-A", "worker.tasks", "worker", "--queues", "filterviz.render", "--concurrency", "1", \
     "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
