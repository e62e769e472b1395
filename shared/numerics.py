"""Which workers' pictures are interchangeable: the identity a worker claims jobs and cache entries
under. Kept apart from the cache and the job store so that the engine can be loaded without Redis or S3
(bench/gpu.py on a machine with neither)."""


def numerics_identity(weights: str, precision: str) -> str:
    """The identity a worker claims for jobs and cache entries: its weights, and its precision when
    not float32. Pictures computed in bfloat16 or float16 differ by more than rounding, so they never
    share a job or a cache entry with float32 ones. float32 on TensorFlow and on JAX agree to rounding
    (tests/test_backends.py) and share; so does a GPU's float32, whose pictures differ from the CPU's
    by about 2 levels of 255 (median; README's GPUs): equal in kind, a few steps of ascent apart."""
    return weights if precision == "float32" else f"{weights}@{precision}"


class WeightsUnavailable(Exception):
    """A worker can't render a model: its weights are missing or don't load, or it doesn't fit the
    worker's memory. The message says which, and what to do."""
