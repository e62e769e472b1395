"""Setting up the engine once per process: backend, precision, device, weights, network; and sizing its batches."""

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from shared.cost import filter_flops
from shared.numerics import numerics_identity
from shared.settings import Settings
from shared.spec import JobSpec
from worker.device import gpu_compute_capability, gpu_free_memory_mb, has_gpu, limit_threads, runtime_versions
from worker.engine import AscentEngine, auto_batch_size
from worker.engine.precision import apply_precision, cpu_flags, resolve_precision
from worker.model import load_vgg16

log = logging.getLogger(__name__)

CPU_BATCH_MEMORY_MB = 1024
# On a GPU the batch takes this share of the memory free when the worker starts (measured, not the
# card's total: other workers may share it); the rest holds cuDNN's or XLA's workspaces and the
# allocator's slack. A card that can't be measured gets the budget of an 8 GB one.
GPU_MEMORY_SHARE = 0.5
UNKNOWN_GPU_BATCH_MEMORY_MB = 4096


@dataclass(frozen=True)
class LoadedEngine:
    """An engine over a loaded VGG16, which weights it carries, and the runtime it runs on."""

    engine: AscentEngine
    weights: str
    runtime: dict[str, Any]
    load_seconds: float


def load_engine(weights_source: str, settings: Settings) -> LoadedEngine:
    """Configure the device and precision and load VGG16 with the given weights (raises WeightsError)."""
    started = time.perf_counter()
    limit_threads(settings.tf_threads)
    precision = apply_precision(resolve_precision(settings.precision, gpu_compute_capability(), cpu_flags()))
    runtime = runtime_versions(precision)
    loaded = load_vgg16(weights_source, settings.imagenet_weights)
    seconds = time.perf_counter() - started
    log.info(
        "VGG16 ready on %s (%s, %s) with weights %s in %.1f s",
        runtime["device"], runtime["backend"], precision, loaded.weights, seconds,
    )  # fmt: skip
    # Jobs and cache entries are claimed with the precision too: bf16 pictures never mix with float32 ones.
    identity = numerics_identity(loaded.weights, precision)
    return LoadedEngine(AscentEngine(loaded.network), identity, runtime, seconds)


def pick_batch_size(spec: JobSpec, filter_count: int, settings: Settings) -> int:
    """The configured batch size, or the largest that fits the memory budget for this spec."""
    if settings.batch_size:
        return settings.batch_size
    budget = settings.batch_memory_mb or default_batch_memory_mb()
    return auto_batch_size(spec.layer, spec.image_size, filter_count, budget)


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
