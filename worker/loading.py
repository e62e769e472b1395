"""Setting up the engine once per process: device, weights, network; and sizing its batches."""

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from shared.settings import Settings
from shared.spec import JobSpec
from worker.device import gpu_memory_mb, has_gpu, limit_threads, runtime_versions
from worker.engine import AscentEngine, auto_batch_size
from worker.model import load_vgg16

log = logging.getLogger(__name__)

CPU_BATCH_MEMORY_MB = 1024
# On a GPU the batch takes this share of the card's memory; the rest holds the weights, cuDNN's
# workspaces and the allocator's slack. A card NVML can't measure gets the budget of an 8 GB one.
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
    """Configure the device and load VGG16 with the given weights (raises WeightsError)."""
    started = time.perf_counter()
    limit_threads(settings.tf_threads)
    runtime = runtime_versions()
    loaded = load_vgg16(weights_source, settings.imagenet_weights)
    seconds = time.perf_counter() - started
    log.info("VGG16 ready on %s with weights %s in %.1f s", runtime["device"], loaded.weights, seconds)
    return LoadedEngine(AscentEngine(loaded.network), loaded.weights, runtime, seconds)


def pick_batch_size(spec: JobSpec, filter_count: int, settings: Settings) -> int:
    """The configured batch size, or the largest that fits the memory budget for this spec."""
    if settings.batch_size:
        return settings.batch_size
    budget = settings.batch_memory_mb or default_batch_memory_mb()
    return auto_batch_size(spec.layer, spec.image_size, filter_count, budget)


@functools.cache
def default_batch_memory_mb() -> int:
    """Activation memory a batch may take: 1 GiB on CPU, half the card's memory on a GPU."""
    if not has_gpu():
        return CPU_BATCH_MEMORY_MB
    total = gpu_memory_mb()
    return int(total * GPU_MEMORY_SHARE) if total else UNKNOWN_GPU_BATCH_MEMORY_MB
