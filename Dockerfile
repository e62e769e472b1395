# syntax=docker/dockerfile:1
# The images of filterviz, one target each:
#   api     Flask API under gunicorn; no TensorFlow
#   worker  Celery worker with VGG16's ImageNet weights baked in; TensorFlow for the CPU, or
#           with --build-arg WORKER_EXTRA=gpu TensorFlow with CUDA
# docker-compose.yml builds them; by hand: docker build --target api -t filterviz-api .

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 filterviz \
 && useradd --system --uid 10001 --gid filterviz --create-home --home-dir /home/filterviz filterviz
WORKDIR /app
COPY docker/constraints.txt /tmp/constraints.txt

FROM base AS api
COPY pyproject.toml README.md ./
COPY shared shared
COPY api api
RUN pip install --constraint /tmp/constraints.txt . && rm -rf build
USER filterviz
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"]

FROM base AS worker-deps
# worker: TensorFlow for the CPU; gpu: TensorFlow with CUDA and cuDNN as pip wheels (needs only
# the host's NVIDIA driver). docker-compose.yml builds both from this stage.
ARG WORKER_EXTRA=worker
COPY pyproject.toml README.md ./
COPY shared shared
COPY worker worker
RUN pip install --constraint /tmp/constraints.txt ".[${WORKER_EXTRA}]" && rm -rf build

FROM worker-deps AS weights
# Keras checks the file's hash as it downloads it; the worker image gets only the file.
ENV KERAS_HOME=/opt/keras
RUN python -c "import keras; keras.applications.VGG16(include_top=False, weights='imagenet')" \
 && ls -l /opt/keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5

FROM worker-deps AS worker
COPY --from=weights /opt/keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 /opt/filterviz/weights/
ENV FILTERVIZ_WEIGHTS=imagenet \
    FILTERVIZ_IMAGENET_WEIGHTS=/opt/filterviz/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
    TF_CPP_MIN_LOG_LEVEL=2
USER filterviz
# One pool process per container: TensorFlow uses every core (or the GPU) it is given; scale
# with more containers.
CMD ["celery", "-A", "worker.tasks", "worker", "--queues", "filterviz.render", "--concurrency", "1", \
     "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
