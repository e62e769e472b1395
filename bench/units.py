"""Units on demand (issue 31), on a local stack started here with one worker process and nothing else
queued: for never-seen VGG16 units at the atlas defaults (64 px, method seed), the seconds from the
first GET /v1/units/... to the first 200, asked again as often as `--poll` (the page asks again after
Retry-After: add up to that much); then the same units again, served from the cache.

    python -m bench.units [--poll 0.1]

Target (issue 31): a never-seen unit is a 200 within 30 s of the first request.
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

WEIGHTS = "random:0"
# One unit of each block, its last layer: the deepest (and slowest) a block offers.
UNITS = ["block1_conv2/5", "block2_conv2/9", "block3_conv3/17", "block4_conv3/33", "block5_conv3/65"]
WARM_UP = "block1_conv1/0"  # the worker's first job pays for what every later one shares


def seconds_to_picture(api: str, unit: str, poll: float) -> tuple[float, int]:
    """Seconds from the first request for the unit's picture to a 200; and the first answer's status."""
    url = f"{api}/v1/units/vgg16/{unit}.png"
    started = time.perf_counter()
    first = answer = requests.get(url, timeout=30)
    while answer.status_code == 202:
        time.sleep(poll)
        answer = requests.get(url, timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png", answer.text
    return time.perf_counter() - started, first.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between requests while it renders")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir), api_port=free_port(), s3_port=free_port(),
                           extra_env={"FILTERVIZ_WEIGHTS": WEIGHTS, "FILTERVIZ_UNIT_RATE_LIMIT": "off"})  # fmt: skip
        try:
            stack.start_service(["bench"])
            seconds_to_picture(stack.api_url, WARM_UP, args.poll)
            print(f"never-seen units at the atlas defaults (64 px, seed), one idle worker, asked every {args.poll} s:")
            first = []
            for unit in UNITS:
                seconds, status = seconds_to_picture(stack.api_url, unit, args.poll)
                first.append(seconds)
                print(f"  {unit:<16} first answer {status}, a 200 after {seconds:.2f} s")
            print(f"  worst {max(first):.2f} s, median {statistics.median(first):.2f} s (target: 30 s)")
            again = [seconds_to_picture(stack.api_url, unit, args.poll)[0] * 1000 for unit in UNITS]
            print(f"the same units again, from the cache: median {statistics.median(again):.0f} ms, "
                  f"worst {max(again):.0f} ms")  # fmt: skip
        finally:
            stack.stop_all()


if __name__ == "__main__":
    main()
