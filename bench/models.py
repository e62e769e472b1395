"""Every network of shared/models.py on this machine: its layers, smallest input, weights size and the
speed of a job on its default layer, as a Markdown table (README, Models).

    python -m bench.models                          # seed, 128 px, 20 steps, 16 filters, random:0 weights
    python -m bench.models --method fourier --models resnet50,convnext_tiny

Each network is loaded and its step compiled by a first, untimed one-step run; the timed run is the
job's filters in one batch, as a worker runs a chunk.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.layers import conv_layers, default_layer
from shared.models import ARCHITECTURES
from shared.settings import Settings
from shared.spec import parse_spec
from worker.loading import load_engine, model_megabytes
from worker.render import ascend_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ARCHITECTURES), help="comma-separated (default: all)")
    parser.add_argument("--method", default="seed")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--weights", default="random:0")
    args = parser.parse_args()
    settings = Settings()
    print(f"{args.method}, {args.size} px, {args.steps} steps, {args.filters} filters of the default layer, "
          f"weights {args.weights}, {os.cpu_count()} CPUs")  # fmt: skip
    print("| model | layers shown | smallest input | weights (float32) | default layer | filters/s |")
    print("|---|---|---|---|---|---|")
    for model in args.models.split(","):
        layers = conv_layers(model)
        size = max(args.size, max(layer.min_image_size for layer in layers))
        spec = parse_spec({"model": model, "method": args.method, "filters": {"start": 0, "stop": args.filters},
                           "image_size": size, "steps": args.steps, "seed": 0})  # fmt: skip
        engine = load_engine(args.weights, settings, model).engine
        warm = spec.model_copy(update={"steps": 1})
        ascend_spec(engine, warm, spec.filters, batch_size=len(spec.filters))  # compiles the step for this batch
        started = time.perf_counter()
        ascend_spec(engine, spec, spec.filters, batch_size=len(spec.filters))
        speed = len(spec.filters) / (time.perf_counter() - started)
        print(f"| {model} | {len(layers)} | {ARCHITECTURES[model].min_input} px | {model_megabytes(model)} MB "
              f"| {default_layer(model)} | {speed:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
