"""Which device TensorFlow computes on, set up once per process."""

import contextlib

import tensorflow as tf

from shared.cpus import available_cpus
from shared.version import package_version


def limit_threads(threads: int) -> int:
    """Size TensorFlow's thread pools; must run before the first op. 0 means the CPUs this process
    may use: TensorFlow's own default counts the host's cores, ignoring a container's CPU quota, so
    four scaled workers on a 16-core host would run 64 threads each on their 4 CPUs."""
    threads = threads or available_cpus()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return threads


def configure_device() -> str:
    """Turn on memory growth for every GPU (so several processes can share one) and name the device used."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: already initialised in this process; growth was set then or can't change now.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU ({details.get('device_name', gpus[0].name)})"


def gpu_memory_mb() -> int | None:
    """Total memory of the first GPU in MiB, from NVML (nvidia-ml-py, in the gpu extra); None when
    there is no GPU or NVML can't tell."""
    if not has_gpu():
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).total // 2**20
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML library or no permission: the caller picks a safe default
        return None


def has_gpu() -> bool:
    """True when TensorFlow sees at least one GPU."""
    return bool(tf.config.list_physical_devices("GPU"))


def runtime_versions() -> dict[str, str]:
    """Library versions and the device, for manifests: pictures can differ across them."""
    import platform

    import keras
    import numpy as np

    return {
        "filterviz": package_version(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "device": configure_device(),
    }
