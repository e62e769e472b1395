# The images of filterviz, one target each:
#   api     Flask API under gunicorn; no TensorFlow (also runs the one-shots: secrets, bucket init)
#   worker  Celery worker with VGG16's ImageNet weights baked in; TensorFlow for the CPU, or
#           with --build-arg WORKER_EXTRA=gpu --build-arg WORKER_BACKEND=jax, JAX with CUDA 12
#           (an NVIDIA driver R525 or newer; see the README's GPU section)
# docker-compose.yml builds them; by hand: docker build --target api -t filterviz-api .
#
# Each image installs its dependencies before it copies the source, so editing the code
# rebuilds only the last layers. Builds need no BuildKit (no cache mounts, no syntax line): the
# compose test builds them with the classic builder.
#
# Build arguments for offline and test builds (tests/compose/README.md):
#   WHEELHOUSE_ONLY=1      install from docker/wheels/ alone, never the package index
#                          (`make wheelhouse` fills it for the pinned versions)
#   WORKER_WEIGHTS=random:<seed>  bake no ImageNet file; the worker runs on seeded random weights
#                          and says so in every job (release builds keep `imagenet`)
#   WORKER_EXTRA=jax       Keras on JAX with CPU wheels instead of the gpu extra's CUDA ones

# A minor-version tag gets Debian's security updates on every rebuild; docker/constraints.txt
# pins the Python packages, the same versions CI tests.
ARG PYTHON_IMAGE=python:3.13-slim-trixie

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
# Wheels found here are installed before the index is asked (docker/wheels/ is empty in git).
COPY docker/wheels/ /opt/build/wheels/
ENV PIP_FIND_LINKS=/opt/build/wheels

FROM base AS api-deps
ARG WHEELHOUSE_ONLY=""
RUN python /opt/build/requirements.py /opt/build/pyproject.toml > /opt/build/requirements.txt \
 && pip install ${WHEELHOUSE_ONLY:+--no-index} --requirement /opt/build/requirements.txt \
      --constraint /opt/build/constraints.txt

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
COPY provision provision
COPY api api
ARG WHEELHOUSE_ONLY=""
RUN pip install ${WHEELHOUSE_ONLY:+--no-index} --no-deps . && rm -rf build
USER filterviz
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"]

FROM base AS worker-deps
# worker: TensorFlow for the CPU (tensorflow-cpu on x86_64, tensorflow on arm64, which has no
# tensorflow-cpu wheel); gpu: Keras on JAX with CUDA and cuDNN as pip wheels, pinned in
# docker/constraints-gpu.txt; jax: the same with JAX's CPU wheels. WORKER_BACKEND names the
# backend the extra brings. Keras reads KERAS_BACKEND alone when it is imported (the weights
# stage imports it before any of our code runs), and defaults to TensorFlow: both are set here.
ARG WORKER_EXTRA=worker
ARG WORKER_BACKEND=tensorflow
ARG WHEELHOUSE_ONLY=""
ENV FILTERVIZ_BACKEND=${WORKER_BACKEND} \
    KERAS_BACKEND=${WORKER_BACKEND}
RUN python /opt/build/requirements.py /opt/build/pyproject.toml "${WORKER_EXTRA}" > /opt/build/requirements.txt \
 && pip install ${WHEELHOUSE_ONLY:+--no-index} --requirement /opt/build/requirements.txt \
      --constraint /opt/build/constraints.txt --constraint /opt/build/constraints-gpu.txt

FROM worker-deps AS weights
# imagenet: Keras downloads the no-top file and checks its hash; the worker image gets only the
# file. random:<seed>: nothing is baked, and the worker says `random:<seed>` in every job.
ARG WORKER_WEIGHTS=imagenet
ENV KERAS_HOME=/opt/keras
RUN mkdir -p /opt/filterviz/weights \
 && if [ "${WORKER_WEIGHTS}" = imagenet ]; then \
      python -c "import keras; keras.applications.VGG16(include_top=False, weights='imagenet')" \
      && mv /opt/keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 /opt/filterviz/weights/; \
    else \
      case "${WORKER_WEIGHTS}" in random:*) ;; *) echo "WORKER_WEIGHTS: imagenet or random:<seed>" >&2; exit 1;; esac; \
    fi

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
COPY --from=weights /opt/filterviz/weights/ /opt/filterviz/weights/
COPY pyproject.toml README.md LICENSE ./
COPY shared shared
COPY worker worker
# the `filterviz` command: render here, or submit to a service (client/, requests only)
COPY cli cli
COPY client client
ARG WHEELHOUSE_ONLY=""
RUN pip install ${WHEELHOUSE_ONLY:+--no-index} --no-deps . && rm -rf build
ARG WORKER_WEIGHTS=imagenet
ENV FILTERVIZ_WEIGHTS=${WORKER_WEIGHTS} \
    FILTERVIZ_IMAGENET_WEIGHTS=/opt/filterviz/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
    TF_CPP_MIN_LOG_LEVEL=2
USER filterviz
# One pool process per container: TensorFlow sizes its threads to the CPUs the container may use
# (its CPU quota included) or uses the GPU; scale with more containers.
CMD ["celery", "-A", "worker.tasks", "worker", "--queues", "filterviz.render", "--concurrency", "1", \
     "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
