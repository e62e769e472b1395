"""Which device TensorFlow computes on, set up once per process."""

import contextlib

import tensorflow as tf


def limit_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools (0 leaves TensorFlow's default); must run before the first op."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


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


def has_gpu() -> bool:
    """True when TensorFlow sees at least one GPU."""
    return bool(tf.config.list_physical_devices("GPU"))


def runtime_versions() -> dict[str, str]:
    """Library versions and the device, for manifests: pictures can differ across them."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import keras
    import numpy as np

    try:
        filterviz_version = version("filterviz")
    except PackageNotFoundError:
        filterviz_version = "unknown"
    return {
        "filterviz": filterviz_version,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "device": configure_device(),
    }
