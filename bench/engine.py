"""Engine benchmark: the seed-style loop (one filter at a time) against the batched engine.

Both run on the same filters with the same compiled step, in one process on the same device.
Prints filters/s of each and their ratio, achieved GFLOP/s counted from the layer shapes
(forward + input gradient per image-step) as a fraction of a float32 matmul peak measured in
the same run, and peak resident memory; then the peak resident memory of a `filterviz render`
at SPEC defaults (one full batch of filters, so its memory is that of a 200-filter run).

    python bench/engine.py                     # defaults: block5_conv1, 128 px, 20 steps, 32 filters
    python bench/engine.py --filters 512 --weights imagenet   # e.g. all of block5_conv1 on a GPU
    python bench/engine.py --method fourier --steps 20 --skip-render   # another method's speed
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from shared.layers import conv_layers
from shared.methods import METHODS
from shared.settings import Settings
from shared.spec import parse_spec
from worker.engine import AscentEngine, FilterAscent
from worker.loading import load_engine, pick_batch_size
from worker.render import ascend_spec

MATMUL_SIZES = (1024, 2048, 4096)


def forward_flops(layer_name: str, image_size: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of every 3x3 conv up to and including `layer_name`, for one image."""
    flops, channels_in = 0, 3
    for conv in conv_layers():
        side = image_size // conv.downsampling
        flops += 2 * side * side * 9 * channels_in * conv.filters
        channels_in = conv.filters
        if conv.name == layer_name:
            return flops
    raise ValueError(layer_name)


def matmul_peak_gflops(device: str) -> float:
    """Best float32 matmul rate over a few square sizes, in GFLOP/s, on `device`."""
    best = 0.0
    with tf.device(device):
        for n in MATMUL_SIZES:
            a, b = tf.random.uniform([n, n]), tf.random.uniform([n, n])
            tf.matmul(a, b).numpy()  # warm-up
            repeats = max(3, int(4e10 / (2 * n**3)))
            started = time.perf_counter()
            for _ in range(repeats):
                product = tf.matmul(a, b)
            product.numpy()
            best = max(best, 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9)
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


# Runs the CLI in a child and prints the child's own high-water RSS (VmHWM): getrusage of children
# would also count the parent's memory, which a forked child inherits until it execs.
_MEASURED_RENDER = """
import sys
from worker.cli import main
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
    args = parser.parse_args()

    settings = Settings()
    request = {"method": args.method, "layer": args.layer, "image_size": args.size,
               "filters": list(range(args.filters)), "seed": 1}  # fmt: skip
    if args.steps is not None:
        request["steps"] = args.steps
    spec = parse_spec(request, settings.limits)
    loaded = load_engine(args.weights, settings)
    batch_size = args.batch_size or pick_batch_size(spec, len(spec.filters), settings)
    device = "/GPU:0" if loaded.runtime["device"].startswith("GPU") else "/CPU:0"
    print(f"device {loaded.runtime['device']}, TensorFlow {tf.__version__}, weights {loaded.weights}")
    print(
        f"method {spec.method}, {spec.layer}, {spec.image_size} px, {spec.steps} steps, {len(spec.filters)} filters, "
        f"batch {batch_size}"
    )

    peak = matmul_peak_gflops(device)
    # Forward + input gradient, about equal; a method may pad the image or look at several crops of it.
    method = METHODS[spec.method]
    side = method.network_side(spec.method_params, spec.image_size)
    flops = 2 * forward_flops(spec.layer, side) * method.images_per_filter(spec.method_params)
    print(f"float32 matmul peak {peak:.1f} GFLOP/s; {flops / 1e9:.2f} GFLOP per image-step")

    engine = loaded.engine
    # Warm both shapes so neither loop pays for tracing.
    timed_ascent(engine, spec.model_copy(update={"steps": 1}), spec.filters[:1], 1)
    timed_ascent(engine, spec.model_copy(update={"steps": 1}), spec.filters[:batch_size], batch_size)

    seed_style = report("seed-style (batch 1)", *timed_ascent(engine, spec, spec.filters, 1), flops, peak)
    batched = report(
        f"batched (batch {batch_size})", *timed_ascent(engine, spec, spec.filters, batch_size), flops, peak
    )
    print(f"batched / seed-style: {batched / seed_style:.2f}x")
    print(f"peak RSS of this benchmark: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    if not args.skip_render:
        defaults = parse_spec({}, settings.limits)
        render_batch = pick_batch_size(defaults, len(defaults.filters), settings)
        rss = render_peak_rss_mb(render_batch, args.weights)
        print(f"peak RSS of `filterviz render` at defaults ({render_batch} filters = one batch): {rss:.0f} MB")


if __name__ == "__main__":
    main()
