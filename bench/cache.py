"""Result-cache benchmark (issue 13), on a local stack started here with one worker process:

renders one whole layer at 64 px and 20 steps (the first, uncached run: its time and GFLOP/s), then
submits the identical request `--repeats` times and measures each from POST to seeing `succeeded`
(the API answers a fully cached job in the POST's own response). Printed: the layer's time, the
projected time of all 4,224 VGG16 filters at the same GFLOP/s (FLOPs from shared/cost.py; deeper
layers run at a higher rate on CPU, so this is an upper bound), and the repeat latency p50 and p99.

    python bench/cache.py [--layer block2_conv1] [--repeats 50]

Target: repeat p50 <= 100 ms.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import requests

from devstack.local import LocalStack, free_port
from shared.cost import filter_flops
from shared.layers import conv_layers
from shared.spec import parse_spec

WEIGHTS = "random:0"
ENDED = {"succeeded", "failed", "canceled"}


def run_job(api: str, job: dict) -> tuple[float, dict]:
    """Seconds from POST to seeing the job succeed, and its resource."""
    started = time.perf_counter()
    resource = requests.post(f"{api}/v1/jobs", json=job, timeout=30).json()
    while resource["status"] not in ENDED:
        time.sleep(0.02)
        resource = requests.get(f"{api}/v1/jobs/{resource['id']}", timeout=10).json()
    assert resource["status"] == "succeeded", resource
    return time.perf_counter() - started, resource


def atlas_flops(job: dict) -> float:
    """FLOPs of every filter of every conv layer with the job's other parameters."""
    return sum(filter_flops(parse_spec({**job, "layer": layer.name, "filters": [0]})) * layer.filters
               for layer in conv_layers())  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="block2_conv1")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    layer = next(layer for layer in conv_layers() if layer.name == args.layer)
    job = {"layer": layer.name, "filters": {"start": 0, "stop": layer.filters}, "image_size": 64, "steps": 20,
           "seed": 1}  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir), api_port=free_port(), s3_port=free_port(),
                           extra_env={"FILTERVIZ_WEIGHTS": WEIGHTS, "FILTERVIZ_JOB_BUDGET_TFLOP": "1000",
                                      "FILTERVIZ_SUBMIT_RATE_LIMIT": "off"})  # fmt: skip
        try:
            stack.start_service(["bench"])
            api = stack.api_url
            first, _ = run_job(api, job)
            layer_flops = filter_flops(parse_spec(job)) * layer.filters
            rate = layer_flops / first
            print(f"{layer.name}: {layer.filters} filters at 64 px, 20 steps, uncached: {first:.1f} s "
                  f"({rate / 1e9:.1f} GFLOP/s)")  # fmt: skip
            projected = atlas_flops(job) / rate
            print(f"all 4,224 filters at that rate: about {projected / 3600:.1f} h on this machine (one worker)")
            latencies = sorted(run_job(api, job)[0] * 1000 for _ in range(args.repeats))
            p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
            print(f"repeat, all {layer.filters} filters cached: p50 {statistics.median(latencies):.0f} ms, "
                  f"p99 {p99:.0f} ms over {args.repeats} (POST to succeeded)")  # fmt: skip
            small = {**job, "filters": {"start": 0, "stop": 16}}
            small_latencies = sorted(run_job(api, small)[0] * 1000 for _ in range(args.repeats))
            print(f"repeat, 16 cached filters: p50 {statistics.median(small_latencies):.0f} ms, "
                  f"p99 {small_latencies[round(0.99 * (len(small_latencies) - 1))]:.0f} ms")  # fmt: skip
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()
