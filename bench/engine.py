"""Engine benchmark: the seed-style loop (one filter at a time) against the batched engine.

Both run on the same filters with the same compiled step, in one process on the same device.
Prints filters/s of each and their ratio, achieved GFLOP/s counted from the layer shapes
(forward + input gradient per image-step) as a fraction of a float32 matmul peak measured in
the same run, and peak resident memory; then the peak resident memory of a `filterviz render`
at SPEC defaults (one full batch of filters, so its memory is that of a 200-filter run).

    python bench/engine.py                     # defaults: block5_conv1, 128 px, 20 steps, 32 filters
    python bench/engine.py --filters 512 --weights imagenet   # e.g. all of block5_conv1 on a GPU
    python bench/engine.py --method fourier --steps 20 --skip-render   # another method's speed
    python bench/engine.py --precision bfloat16 --skip-render   # bf16 against float32 on the same filters
    python bench/engine.py --backend jax --precision bfloat16 --filters 512 --skip-seed-style   # a GPU

With a precision other than float32 the batched loop also runs in float32 on the same filters,
and the bench prints the speed ratio and the median relative difference of the final losses.
The backend is chosen before anything imports keras (worker/engine/backend.py).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _backend_from_argv() -> None:
    # Keras reads its backend on import, so --backend is applied before the imports below.
    if "--backend" in sys.argv[:-1]:
        os.environ["FILTERVIZ_BACKEND"] = sys.argv[sys.argv.index("--backend") + 1]


_backend_from_argv()

import numpy as np  # noqa: E402

from shared.cost import forward_flops  # noqa: E402
from shared.methods import METHODS  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.spec import parse_spec  # noqa: E402
from worker.device import has_gpu  # noqa: E402
from worker.engine import AscentEngine, FilterAscent  # noqa: E402
from worker.engine.backend import BACKENDS  # noqa: E402
from worker.engine.precision import FLOAT32, NATIVE_BF16_CPU_FLAGS, PRECISIONS, cpu_flags  # noqa: E402
from worker.loading import load_engine, pick_batch_size  # noqa: E402
from worker.render import ascend_spec  # noqa: E402

MATMUL_SIZES = (1024, 2048, 4096)
GPU_MATMUL_SIZES = (4096, 8192)  # a GPU reaches its peak only on large products
MATMUL_SECONDS = 0.2
MATMUL_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def matmul_peak_gflops(dtype: str) -> float:
    """Best matmul rate in `dtype` over a few square sizes, in GFLOP/s, on the backend's device."""
    from keras import ops  # here: worker.engine, imported above, chooses keras' backend first

    best = 0.0
    for n in GPU_MATMUL_SIZES if has_gpu() else MATMUL_SIZES:
        rng = np.random.default_rng(n)
        a = ops.convert_to_tensor(rng.random((n, n), np.float32).astype(np.float32), dtype=dtype)
        b = ops.convert_to_tensor(rng.random((n, n), np.float32).astype(np.float32), dtype=dtype)

        def timed(repeats: int, a=a, b=b) -> float:
            started = time.perf_counter()
            for _ in range(repeats):
                product = ops.matmul(a, b)
            ops.convert_to_numpy(product[:1, :1])  # waits for the device
            return time.perf_counter() - started

        timed(1)  # compiles everything the timed loop runs (on JAX the slice too), off the clock
        repeats = 1
        while (seconds := timed(repeats)) < MATMUL_SECONDS:  # dispatch and the copy back must not count
            repeats *= 2
        best = max(best, 2 * n**3 * repeats / seconds / 1e9)
    return best


def timed_ascent(engine: AscentEngine, spec, filters: list[int], batch_size: int) -> tuple[float, list[FilterAscent]]:
    started = time.perf_counter()
    results = ascend_spec(engine, spec, filters, batch_size=batch_size)
    return time.perf_counter() - started, results


def report(name: str, seconds: float, results: list[FilterAscent], flops_per_image_step: int, peak: float) -> float:
    rate = len(results) / seconds
    image_steps = sum(r.steps_run for r in results)
    gflops = image_steps * flops_per_image_step / seconds / 1e9
    print(
        f"{name:<22} {len(results):4d} filters in {seconds:8.1f} s  {rate:7.3f} filters/s  "
        f"{gflops:8.1f} GFLOP/s  ({gflops / peak:.0%} of matmul peak)"
    )
    return rate


def median_relative_difference(losses: list[float], reference: list[float]) -> float:
    """Median over filters of |loss - reference| / |reference| (final losses of the same filters)."""
    ours, theirs = np.array(losses), np.array(reference)
    return float(np.median(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-12)))


def batched_run(
    engine: AscentEngine, spec, batch_size: int, flops: int, peak: float, label: str = ""
) -> tuple[float, list[FilterAscent]]:
    """The batched engine over all the spec's filters, after a one-step run that compiles its shape."""
    timed_ascent(engine, spec.model_copy(update={"steps": 1}), spec.filters[:batch_size], batch_size)
    seconds, results = timed_ascent(engine, spec, spec.filters, batch_size)
    return report(f"{label}batched (batch {batch_size})", seconds, results, flops, peak), results


# Runs the CLI in a child and prints the child's own high-water RSS (VmHWM): getrusage of children
# would also count the parent's memory, which a forked child inherits until it execs.
_MEASURED_RENDER = """
import sys
from cli.main import main
code = main(sys.argv[1:])
print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM')))
sys.exit(code)
"""


def render_peak_rss_mb(filter_count: int, weights: str) -> float:
    """Peak RSS of `filterviz render` at SPEC defaults over `filter_count` filters, in MB."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, "-c", _MEASURED_RENDER, "render",
            "--filters", f"0-{filter_count - 1}", "--weights", weights, "--seed", "1", "--out", out,
        ]  # fmt: skip
        result = subprocess.run(command, check=True, capture_output=True, text=True)
    kilobytes = int(result.stdout.split("VmHWM:")[1].split()[0])
    return kilobytes / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", default="block5_conv1")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--method", default="seed", help="seed, multiscale, fourier or maco")
    parser.add_argument("--steps", type=int, help="default: the method's (20 for seed)")
    parser.add_argument("--filters", type=int, default=32, help="how many filters (0..N-1) both loops run")
    parser.add_argument("--batch-size", type=int, help="batched engine's batch (default: auto)")
    parser.add_argument("--weights", default="random:0", help="imagenet, random:<seed> or a file")
    parser.add_argument("--skip-render", action="store_true", help="don't measure the CLI's peak memory")
    parser.add_argument("--skip-seed-style", action="store_true", help="don't run the one-filter-at-a-time loop")
    parser.add_argument(
        "--backend", choices=BACKENDS, help="default: FILTERVIZ_BACKEND's (applied before keras is imported)"
    )
    parser.add_argument("--precision", default=FLOAT32, choices=PRECISIONS, help="what the network computes in")
    args = parser.parse_args()
    os.environ["FILTERVIZ_PRECISION"] = args.precision  # the render child's too

    flags = cpu_flags()
    print(f"CPU native bf16: {', '.join(sorted(flags & NATIVE_BF16_CPU_FLAGS)) or 'none'}")
    settings = Settings(precision=args.precision)
    request = {"method": args.method, "layer": args.layer, "image_size": args.size,
               "filters": list(range(args.filters)), "seed": 1}  # fmt: skip
    if args.steps is not None:
        request["steps"] = args.steps
    spec = parse_spec(request, settings.limits)
    loaded = load_engine(args.weights, settings)
    batch_size = args.batch_size or pick_batch_size(spec, len(spec.filters), settings)
    runtime = loaded.runtime
    print(
        f"device {runtime['device']}, {runtime['backend']} {runtime[runtime['backend']]}, "
        f"precision {runtime['precision']}, weights {loaded.weights}"
    )
    print(
        f"method {spec.method}, {spec.layer}, {spec.image_size} px, {spec.steps} steps, {len(spec.filters)} filters, "
        f"batch {batch_size}"
    )

    peak = matmul_peak_gflops(MATMUL_DTYPES[runtime["precision"]])
    # Forward + input gradient, about equal; a method may pad the image or look at several crops of it.
    flops = 2 * forward_flops(spec.layer, METHODS[spec.method].network_side(spec.method_params, spec.image_size))
    flops *= METHODS[spec.method].images_per_filter(spec.method_params)
    print(f"{runtime['precision']} matmul peak {peak:.1f} GFLOP/s; {flops / 1e9:.2f} GFLOP per image-step")

    engine = loaded.engine
    batched_rate, batched_results = batched_run(engine, spec, batch_size, flops, peak)
    if not args.skip_seed_style:
        timed_ascent(engine, spec.model_copy(update={"steps": 1}), spec.filters[:1], 1)  # warm the shape
        seed_style = report("seed-style (batch 1)", *timed_ascent(engine, spec, spec.filters, 1), flops, peak)
        print(f"batched / seed-style: {batched_rate / seed_style:.2f}x")
    if runtime["precision"] != FLOAT32:
        # The same filters in float32 (a network built under the float32 policy) for the two targets.
        reference = load_engine(args.weights, Settings(precision=FLOAT32))
        reference_peak = matmul_peak_gflops(FLOAT32)
        rate, results = batched_run(reference.engine, spec, batch_size, flops, reference_peak, "float32 ")
        difference = median_relative_difference([r.loss for r in batched_results], [r.loss for r in results])
        print(
            f"{runtime['precision']} / float32: {batched_rate / rate:.2f}x filters/s; median relative difference "
            f"of final losses {difference:.1%}"
        )
    print(f"peak RSS of this benchmark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    if not args.skip_render:
        defaults = parse_spec({}, settings.limits)
        render_batch = pick_batch_size(defaults, len(defaults.filters), settings)
        rss = render_peak_rss_mb(render_batch, args.weights)
        print(f"peak RSS of `filterviz render` at defaults ({render_batch} filters = one batch): {rss:.0f} MB")


if __name__ == "__main__":
    main()
