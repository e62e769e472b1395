"""Which device the Keras backend computes on (TensorFlow or JAX), set up once per process.

Nothing here imports keras, TensorFlow or JAX at module level: `worker.engine` chooses the backend
first (worker/engine/backend.py), and this module asks it which one it runs on.
"""

import contextlib

from shared.cpus import available_cpus
from shared.version import package_version


def backend_name() -> str:
    """The Keras backend this process runs on ('tensorflow' or 'jax')."""
    import keras

    return keras.backend.backend()


def limit_threads(threads: int) -> int:
    """Size TensorFlow's thread pools; must run before the first op. 0 means the CPUs this process
    may use: TensorFlow's own default counts the host's cores, ignoring a container's CPU quota, so
    four scaled workers on a 16-core host would run 64 threads each on their 4 CPUs. On JAX, XLA's
    CPU pool is sized when JAX starts and this only reports the number."""
    threads = threads or available_cpus()
    if backend_name() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already ran in this process (the CLI called twice): its pools stay
            return tf.config.threading.get_intra_op_parallelism_threads() or threads
    return threads


def configure_device() -> str:
    """Let several processes share one GPU and name the device used: TensorFlow grows its memory
    as needed; JAX is told not to preallocate (worker/engine/backend.py sets that before it starts)."""
    if backend_name() == "jax":
        import jax

        device = jax.devices()[0]
        return "CPU" if device.platform == "cpu" else f"GPU ({device.device_kind})"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: already initialised in this process; growth was set then or can't change now.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU ({details.get('device_name', gpus[0].name)})"


def has_gpu() -> bool:
    """True when the backend sees at least one GPU."""
    if backend_name() == "jax":
        import jax

        return jax.devices()[0].platform == "gpu"
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def gpu_compute_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability, e.g. (9, 0) for an H100; None without a GPU."""
    if not has_gpu():
        return None
    if backend_name() == "jax":
        import jax

        major, _, minor = str(jax.devices()[0].compute_capability).partition(".")
        return int(major), int(minor or 0)
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return tuple(details["compute_capability"])


def gpu_free_memory_mb() -> int | None:
    """Free memory of the first GPU in MiB, measured now: NVML's (nvidia-ml-py) where it answers, else
    JAX's allocator's limit less what it holds; None without a GPU or when neither can tell."""
    if not has_gpu():
        return None
    with contextlib.suppress(Exception):  # no NVML library or no permission: try the backend
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).free // 2**20
        finally:
            pynvml.nvmlShutdown()
    if backend_name() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return (stats["bytes_limit"] - stats.get("bytes_in_use", 0)) // 2**20
    return None


def runtime_versions(precision: str) -> dict[str, str]:
    """Library versions, the backend, the precision and the device, for manifests: pictures can differ
    across them."""
    import platform

    import keras
    import numpy as np

    from worker.engine.precision import convolution_arithmetic

    backend = backend_name()
    if backend == "jax":
        import jax

        backend_version = jax.__version__
    else:
        import tensorflow as tf

        backend_version = tf.__version__
    return {
        "filterviz": package_version(),
        "python": platform.python_version(),
        "backend": backend,
        backend: backend_version,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "precision": precision,
        "convolutions": convolution_arithmetic(precision, gpu_compute_capability()),
        "device": configure_device(),
    }
