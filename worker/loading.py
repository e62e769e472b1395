"""Setting up the engine once per process: backend, precision, device, weights, networks (one per
model, loaded on first use and kept while memory allows); and sizing its batches."""

import functools
import gc
import hashlib
import logging
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import model_uploads, uploads
from shared.cost import filter_flops
from shared.layers import model_table
from shared.models import DEFAULT_MODEL
from shared.numerics import WeightsUnavailable, numerics_identity
from shared.settings import Settings
from shared.spec import JobSpec
from worker.device import gpu_compute_capability, gpu_free_memory_mb, has_gpu, limit_threads, runtime_versions
from worker.engine import AscentEngine, auto_batch_size
from worker.engine.precision import apply_precision, cpu_flags, resolve_precision
from worker.model import WeightsError, load_network

log = logging.getLogger(__name__)

CPU_BATCH_MEMORY_MB = 1024
# On a GPU the batch takes this share of the memory free when the worker starts (measured, not the
# card's total: other workers may share it); the rest holds cuDNN's or XLA's workspaces and the
# allocator's slack. A card that can't be measured gets the budget of an 8 GB one.
GPU_MEMORY_SHARE = 0.5
UNKNOWN_GPU_BATCH_MEMORY_MB = 4096


@dataclass(frozen=True)
class LoadedEngine:
    """An engine over a loaded network, which weights it carries, and the runtime it runs on."""

    engine: AscentEngine
    weights: str
    runtime: dict[str, Any]
    load_seconds: float


def load_engine(weights_source: str, settings: Settings, model: str = DEFAULT_MODEL) -> LoadedEngine:
    """Configure the device and precision and load `model` with the given weights (raises WeightsError)."""
    started = time.perf_counter()
    limit_threads(settings.tf_threads)
    precision = apply_precision(resolve_precision(settings.precision, gpu_compute_capability(), cpu_flags()))
    runtime = runtime_versions(precision)
    loaded = load_network(weights_source, settings.imagenet_weights, model)
    seconds = time.perf_counter() - started
    log.info(
        "%s ready on %s (%s, %s) with weights %s in %.1f s",
        model, runtime["device"], runtime["backend"], precision, loaded.weights, seconds,
    )  # fmt: skip
    # Jobs and cache entries are claimed with the precision too: bf16 pictures never mix with float32 ones.
    identity = numerics_identity(loaded.weights, precision)
    return LoadedEngine(AscentEngine(loaded.network, model), identity, runtime, seconds)


def model_megabytes(model: str) -> int:
    """The memory a loaded network's weights take (float32), from its parameter count."""
    table = model_table(model)
    if table is None:
        raise WeightsUnavailable(f"no model {model}: the bucket has no record of it")
    return -(-table.parameters * 4 // 2**20)


class UploadFiles:
    """Uploads (shared/uploads.py, shared/model_uploads.py) on this worker's disk: fetched from the bucket
    on first use, checked against their content address, and kept for the process's life."""

    def __init__(self, storage: Any, folder: Path | None = None) -> None:
        self._storage = storage
        self._folder = folder or Path(tempfile.gettempdir()) / "filterviz-uploads"

    def path(self, upload: str, *, whole_model: bool = False) -> Path:
        """The local file of upload `upload`: weights, or a whole model (raises WeightsUnavailable where
        the bucket lost it)."""
        sha256 = uploads.upload_sha256(upload)
        key = model_uploads.model_key(sha256) if whole_model else uploads.weights_key(sha256)
        path = self._folder / key.removeprefix(uploads.UPLOAD_PREFIX)
        if path.is_file():
            return path
        data = self._storage.get(key)
        if data is None or hashlib.sha256(data).hexdigest() != sha256:
            raise WeightsUnavailable(f"the upload {upload} is gone from the bucket")
        self._folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)  # whole or not at all
        return path


class Engines:
    """A worker's loaded networks, one per model and weights: VGG16 with the deployment's at start, any
    other on its first job, the least recently used dropped when the next would not fit
    FILTERVIZ_MODEL_MEMORY_MB. `weights` None means the deployment's (FILTERVIZ_WEIGHTS), else an
    upload's id."""

    def __init__(self, settings: Settings, upload_files: UploadFiles | None = None) -> None:
        self._settings = settings
        self._uploads = upload_files
        self._loaded: OrderedDict[tuple[str, str | None], LoadedEngine] = OrderedDict()
        self.get(DEFAULT_MODEL)

    @property
    def loaded(self) -> list[tuple[str, str | None]]:
        """The (model, weights) loaded now, the least recently used first."""
        return list(self._loaded)

    @property
    def default(self) -> LoadedEngine:
        """VGG16's engine with the deployment's weights: what the worker's heartbeat says it carries."""
        return self.get(DEFAULT_MODEL)

    def get(self, model: str, weights: str | None = None) -> LoadedEngine:
        """The engine of `model` with `weights`, loaded now where it is not (raises WeightsUnavailable,
        saying why)."""
        key = (model, weights)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        needed, budget = model_megabytes(model), self._settings.model_memory_mb
        if needed > budget:
            raise WeightsUnavailable(f"{model} needs {needed} MB of weights; this worker keeps {budget} MB "
                                     "(FILTERVIZ_MODEL_MEMORY_MB)")  # fmt: skip
        while self._loaded and sum(model_megabytes(loaded) for loaded, _ in self._loaded) + needed > budget:
            dropped, _ = self._loaded.popitem(last=False)
            log.info("dropped %s to make room for %s", dropped, model)
        gc.collect()  # the dropped network's memory, before the next one takes its own
        try:
            self._loaded[key] = load_engine(self._source(model, weights), self._settings, model)
        except WeightsError as error:
            raise WeightsUnavailable(str(error)) from None
        return self._loaded[key]

    def identity(self, spec: JobSpec) -> str:
        """The identity of the weights this worker renders `spec` with (loading them where they are not)."""
        return self.get(spec.model, spec.weights).weights

    def _source(self, model: str, weights: str | None) -> str:
        upload = uploads.upload_of(model, weights)
        if upload is None:
            return self._settings.weights
        if self._uploads is None:
            raise WeightsUnavailable(f"this process can't fetch uploads ({upload})")
        return str(self._uploads.path(upload, whole_model=weights is None))


def pick_batch_size(spec: JobSpec, filter_count: int, settings: Settings) -> int:
    """The configured batch size, or the largest that fits the memory budget for this spec."""
    if settings.batch_size:
        return settings.batch_size
    budget = settings.batch_memory_mb or default_batch_memory_mb()
    return auto_batch_size(spec.layer, spec.image_size, filter_count, budget, spec.model)


def slice_batch_size(spec: JobSpec, settings: Settings, measured_gflops: float | None = None) -> int:
    """The most filters a batch may hold and still end within FILTERVIZ_FAIR_SLICE_SECONDS: a chunk can
    yield to another client's work only between batches. At this process's measured speed where it
    has one (a CPU often beats FILTERVIZ_WORKER_GFLOPS, and smaller batches cost throughput), else
    at the worker class's."""
    if not settings.fair_slice_seconds:
        return 2**31
    gflops = max(measured_gflops or 0.0, settings.worker_gflops)
    seconds_a_filter = filter_flops(spec) / (gflops * 1e9)
    return max(1, int(settings.fair_slice_seconds / seconds_a_filter))


@functools.cache
def default_batch_memory_mb() -> int:
    """Activation memory a batch may take: 1 GiB on CPU, half the GPU's free memory on a GPU."""
    if not has_gpu():
        return CPU_BATCH_MEMORY_MB
    free = gpu_free_memory_mb()
    return int(free * GPU_MEMORY_SHARE) if free else UNKNOWN_GPU_BATCH_MEMORY_MB
