"""GPU check (issue 14): the engine on Keras' JAX backend, where the lent GPU machines have JAX with CUDA
but no TensorFlow. For each precision and method it prints filters/s, the fraction of the device's
dense matmul peak, the device's peak memory against what worker/loading.py's batch sizing budgets,
and, for a low precision, the speed ratio and the median relative difference of the final losses
against float32 on the same filters.

Each (precision, method) runs in its own process: Keras' dtype policy is process-wide, and the
device's peak memory is that run's alone.

    python -m bench.gpu                                  # 512 filters of block5_conv1, 128 px, 20 steps
    python -m bench.gpu --filters 8 --size 32 --steps 3 --layer block2_conv1   # a CPU smoke run
    python -m bench.gpu --backend tensorflow --methods seed --precisions float32 --save out/

--save DIR writes each run's pictures and losses (`<precision>-<method>.npz`) and `results.json`.

On the lent GPU machine (Python 3.12, JAX with CUDA, no TensorFlow, keras or pydantic, nothing to
download), carry the missing wheels. Here, in the repository's root:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 -d .whl \
        keras==3.15.1 namex optree pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings annotated-types \
        typing-inspection typing-extensions python-dotenv    # about 6 MB

(The engine's imports need neither Redis nor S3 clients.) Test that set here first, in a Python 3.12
virtual environment with only jax, numpy, h5py, ml-dtypes, absl-py, rich, packaging, pillow and requests.

and run there (carry .whl; one command, about 5 minutes with the machine's start; the README's GPU
section quotes what it printed on an H100):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site:. || exit; nvidia-smi; PYTHONUNBUFFERED=1 python3 -m bench.gpu --save $OUT/gpu \
      && python3 -m bench.engine --backend jax --precision bfloat16 --filters 512 --skip-seed-style --skip-render
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MEBI = 2**20
SAVED_PICTURES = 16


def child(args: argparse.Namespace, precision: str, method: str) -> dict:
    """One run in this process: load, size the batch as a worker would, warm, time, measure memory."""
    import numpy as np

    from bench.engine import matmul_peak_gflops
    from shared.cost import forward_flops
    from shared.layers import layer_named
    from shared.methods import METHODS
    from shared.settings import Settings
    from shared.spec import parse_spec
    from worker.engine import activation_bytes_per_image
    from worker.loading import default_batch_memory_mb, load_engine, pick_batch_size
    from worker.render import ascend_spec

    settings = Settings(precision=precision, batch_size=args.batch_size or 0)
    loaded = load_engine(args.weights, settings)
    request = {"method": method, "layer": args.layer, "image_size": args.size, "steps": args.steps,
               "filters": list(range(args.filters)), "seed": 1}  # fmt: skip
    spec = parse_spec(request, settings.limits)
    batch = pick_batch_size(spec, len(spec.filters), settings)
    budget_mb = default_batch_memory_mb()
    # A jitted step compiles once per shape: warm the full batch and the last, partial one.
    for count in {batch, len(spec.filters) % batch} - {0}:
        ascend_spec(loaded.engine, spec, spec.filters[:count], batch_size=batch)
    started = time.perf_counter()
    results = ascend_spec(loaded.engine, spec, spec.filters, batch_size=batch)
    seconds = time.perf_counter() - started

    info = METHODS[method]
    flops = 2 * forward_flops(spec.layer, info.network_side(spec.method_params, spec.image_size))
    flops *= info.images_per_filter(spec.method_params)
    achieved = sum(r.steps_run for r in results) * flops / seconds / 1e9
    peak = matmul_peak_gflops(loaded.runtime["precision"])
    # What the sizing assumes one step of the batch holds, against what the device held at its peak.
    network_images = batch * info.images_per_filter(spec.method_params)
    side = info.network_side(spec.method_params, spec.image_size)
    predicted = network_images * activation_bytes_per_image(layer_named(spec.layer), side) / MEBI
    record = {
        "versions": {k: v for k, v in loaded.runtime.items() if k not in ("backend", "device", "precision")},
        "backend": loaded.runtime["backend"],
        "device": loaded.runtime["device"],
        "precision": loaded.runtime["precision"],
        "method": method,
        "layer": spec.layer,
        "image_size": spec.image_size,
        "steps": spec.steps,
        "filters": len(results),
        "batch": batch,
        "batch_budget_mb": budget_mb,
        "predicted_batch_mb": round(predicted),
        "device_peak_mb": device_peak_mb(),
        "seconds": round(seconds, 3),
        "filters_per_s": round(len(results) / seconds, 3),
        "gflops": round(achieved, 1),
        "matmul_peak_gflops": round(peak, 1),
        "fraction_of_peak": round(achieved / peak, 3),
        "nonfinite_losses": int(np.sum(~np.isfinite([r.loss for r in results]))),
        "losses": [r.loss for r in results],
    }
    if args.save:
        # All the losses, and the first pictures (all 512 at 128 px would be 100 MB a run).
        images = np.stack([r.image for r in results[:SAVED_PICTURES]])
        np.savez(Path(args.save) / f"{precision}-{method}.npz", images=images, losses=np.array(record["losses"]))
    return record


def device_peak_mb() -> int | None:
    """The device's peak memory in use so far in this process, in MiB (JAX's allocator; on a CPU or on
    TensorFlow, the process' peak resident memory)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats()
        if stats and "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] // MEBI
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] // MEBI
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM"))


def run_child(args: argparse.Namespace, precision: str, method: str) -> dict:
    """Run `child` in a fresh interpreter and read back its record (the last line it prints)."""
    command = [sys.executable, "-m", "bench.gpu", *sys.argv[1:], "--child", precision, method]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr[-4000:])
        raise SystemExit(f"{precision} {method}: exit {completed.returncode}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="jax", choices=("jax", "tensorflow"))
    parser.add_argument("--methods", default="seed,fourier", help="comma-separated")
    parser.add_argument("--precisions", default="float32,bfloat16", help="comma-separated; float32 first")
    parser.add_argument("--layer", default="block5_conv1")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--filters", type=int, default=512)
    parser.add_argument("--batch-size", type=int, help="default: worker/loading.py's sizing")
    parser.add_argument("--weights", default="random:1", help="imagenet, random:<seed> or a file")
    parser.add_argument("--save", help="folder for pictures, losses and results.json")
    parser.add_argument("--timeout", type=int, default=600, help="seconds for each run")
    parser.add_argument(
        "--same-process", action="store_true", help="all runs in this process (quicker; peak memory is cumulative)"
    )
    parser.add_argument("--child", nargs=2, metavar=("PRECISION", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["FILTERVIZ_BACKEND"] = args.backend  # before anything imports keras
    if args.child:
        print(json.dumps(child(args, *args.child)))
        return

    from bench.engine import median_relative_difference  # imports keras: after the backend is set

    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    for method in args.methods.split(","):
        baseline = None
        for precision in args.precisions.split(","):
            record = child(args, precision, method) if args.same_process else run_child(args, precision, method)
            baseline = baseline or record
            line = {k: v for k, v in record.items() if k != "losses" and (k != "versions" or not records)}
            if record is not baseline:
                line["speed_vs_" + baseline["precision"]] = round(
                    record["filters_per_s"] / baseline["filters_per_s"], 2
                )
                line["median_loss_difference"] = round(
                    median_relative_difference(record["losses"], baseline["losses"]), 4
                )
            print(json.dumps(line), flush=True)
            records.append(record)
    if args.save:
        (Path(args.save) / "results.json").write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
