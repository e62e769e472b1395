"""Which precision the network computes in: float32, or mixed bfloat16 / float16 under a Keras dtype
policy, where the network computes in low precision while its weights, the image and the image's
update stay float32 (the engine casts at the network's entry and its losses back to float32).

`auto` picks bfloat16 where the hardware computes it natively (a CPU with AVX512-BF16 or AMX, a GPU
of compute capability 8.0 or more) and float32 elsewhere: without native support bf16 is slower.
"""

from pathlib import Path

import keras

FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
FLOAT16 = "float16"
AUTO = "auto"
PRECISIONS = (FLOAT32, BFLOAT16, FLOAT16, AUTO)
POLICIES = {FLOAT32: "float32", BFLOAT16: "mixed_bfloat16", FLOAT16: "mixed_float16"}
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
BF16_GPU_COMPUTE_CAPABILITY = (8, 0)  # Ampere and later
TF32_GPU_COMPUTE_CAPABILITY = (8, 0)
TENSORFLOAT32 = "tensorfloat32"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not there to read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16(gpu_compute_capability: tuple[int, int] | None, flags: frozenset[str]) -> bool:
    """Whether the device computes bf16 natively: the GPU when there is one, else the CPU."""
    if gpu_compute_capability is not None:
        return tuple(gpu_compute_capability) >= BF16_GPU_COMPUTE_CAPABILITY
    return bool(flags & NATIVE_BF16_CPU_FLAGS)


def resolve_precision(requested: str, gpu_compute_capability: tuple[int, int] | None, flags: frozenset[str]) -> str:
    """float32, bfloat16 or float16: `auto` decided for this device, the others as asked."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested != AUTO:
        return requested
    return BFLOAT16 if native_bf16(gpu_compute_capability, flags) else FLOAT32


def apply_precision(precision: str) -> str:
    """Set Keras' global dtype policy for `precision`; must run before the network is built."""
    keras.config.set_dtype_policy(POLICIES[precision])
    return precision


def convolution_arithmetic(precision: str, gpu_compute_capability: tuple[int, int] | None) -> str:
    """What the network's convolutions compute in. Under float32 both backends use TensorFloat-32 (a
    10-bit mantissa) on Ampere and later GPUs, as their defaults: measured on an H100, true float32
    made `seed` 3.9x slower and brought its final losses only from 0.26% to 0.22% of the CPU's."""
    gpu_has_tf32 = gpu_compute_capability is not None and tuple(gpu_compute_capability) >= TF32_GPU_COMPUTE_CAPABILITY
    return TENSORFLOAT32 if precision == FLOAT32 and gpu_has_tf32 else precision
