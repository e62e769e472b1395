"""Live painting (issue 29), on a local stack started here with one worker process: a job at the
defaults (block5_conv1, 128 px, 20 steps, method seed) but 16 filters (one chunk), followed through
its event stream.

1. time to first picture: seconds from submit to the first frame, and from the chunk's start (its
   `running` event) to that frame, and from submit to the first stored filter; for the worker's
   first job (cold: its step is compiled then) and for a later one (warm);
2. what frames cost: the job's render time (submit to succeeded) with frames at the default rate
   and with FILTERVIZ_FRAMES_PER_SECOND=0, medians of `--rounds`.

    python -m bench.live [--rounds 3]

Targets: the first frame within 2 s of the chunk starting; frames cost at most 5% of the render time.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from client.api import Client
from devstack.local import LocalStack, free_port

WEIGHTS = "random:0"
JOB = {"filters": {"start": 0, "stop": 16}, "cache": False}


def first_pictures(client: Client, seed: int) -> dict[str, float]:
    """Seconds from submit to the chunk's start, its first frame and its first stored filter."""
    submitted = time.perf_counter()
    job = client.submit({**JOB, "seed": seed})
    seen: dict[str, float] = {}
    for event in client.follow(job.id):
        at = time.perf_counter() - submitted
        if event.kind == "status" and event.data["status"] == "running":
            seen.setdefault("start", at)
        elif event.kind in ("frame", "filters"):
            seen.setdefault(event.kind, at)
    assert {"frame", "filters"} <= set(seen), f"job {job.id} showed {sorted(seen)}"
    seen.setdefault("start", 0.0)  # running before the stream opened: count from the submit
    return seen


def render_seconds(client: Client, seed: int) -> float:
    """Seconds from submit to succeeded, following the stream."""
    started = time.perf_counter()
    job = client.wait(client.submit({**JOB, "seed": seed}).id)
    assert job.status == "succeeded", job.error
    return time.perf_counter() - started


def with_stack(frames_per_second: str, work):
    """Run `work(client)` on a fresh one-worker stack with frames at that rate."""
    with tempfile.TemporaryDirectory() as workdir:
        stack = LocalStack(Path(workdir), api_port=free_port(), s3_port=free_port(),
                           extra_env={"FILTERVIZ_WEIGHTS": WEIGHTS, "FILTERVIZ_FRAMES_PER_SECOND": frames_per_second,
                                      "FILTERVIZ_SUBMIT_RATE_LIMIT": "off"})  # fmt: skip
        try:
            stack.start_service(["bench"])
            with Client(stack.api_url) as client:
                return work(client)
        finally:
            stack.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    def time_to_first(client: Client) -> list[dict[str, float]]:
        return [first_pictures(client, seed) for seed in range(2)]

    print("1. a job at the defaults on one worker: seconds after submit (chunk start, first frame, first stored)")
    for label, seen in zip(("cold", "warm"), with_stack("2", time_to_first), strict=True):
        after_start = seen["frame"] - seen["start"]
        print(f"  {label}: start {seen['start']:.2f}, first frame {seen['frame']:.2f} ({after_start:.2f} after the "
              f"start), first stored filter {seen['filters']:.2f}")  # fmt: skip

    def rounds(client: Client) -> float:
        render_seconds(client, 100)  # warm the compiled step
        return statistics.median(render_seconds(client, 101 + i) for i in range(args.rounds))

    on, off = with_stack("2", rounds), with_stack("0", rounds)
    print(f"2. render time, medians of {args.rounds}: frames on (2/s) {on:.2f} s, off {off:.2f} s: "
          f"frames cost {(on - off) / off:+.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
