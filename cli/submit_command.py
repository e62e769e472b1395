"""`filterviz submit`: send a job to a running service, optionally wait for it and download its results.
(Its options are defined with the other commands' in cli/arguments.py.)

One exit code per outcome, so scripts can tell them apart:
  0  submitted (without --wait), or succeeded (and downloaded with --out)
  1  the job failed (its error code and message are printed)
  2  bad arguments (argparse, as for every filterviz command)
  3  the job was canceled
  4  --timeout passed before the job ended (it goes on running; its id is printed)
  5  the API refused the request (4xx: invalid values, over budget, unknown job...)
  6  the service is unavailable (no connection, or 429/503 still after the retries, or a 5xx)
"""

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.api import Job

SUCCEEDED, FAILED, USAGE, CANCELED, TIMED_OUT, REFUSED, UNAVAILABLE = 0, 1, 2, 3, 4, 5, 6
EXIT_BY_STATUS = {"succeeded": SUCCEEDED, "failed": FAILED, "canceled": CANCELED}


def run_submit(args: argparse.Namespace, request: dict[str, Any]) -> int:
    """Submit `request`, then wait and download as asked; returns the exit code of the outcome."""
    from client.api import ApiError, Client, WaitTimeout

    if not args.wait and (args.out is not None or args.timeout is not None):
        print("filterviz submit: error: --out and --timeout need --wait", file=sys.stderr)
        return USAGE
    if args.weights is not None:  # the service's: an upload's id (render's --weights are this machine's)
        request = {**request, "weights": args.weights}
    with Client(args.api, token=args.token, retries=args.retries) as client:
        try:
            job = client.submit(request)
            print(f"submitted job {job.id} ({client.base_url}/v1/jobs/{job.id})", flush=True)
            if not args.wait:
                return SUCCEEDED
            advance, close = _progress_bar()
            try:
                job = client.wait(job.id, timeout=args.timeout, on_progress=advance)
            finally:
                close()
            if job.status == "succeeded" and args.out is not None:
                client.download(job.id, args.out)
                print(f"wrote {args.out}/grid.png, {args.out}/filters/ and {args.out}/manifest.json")
        except WaitTimeout as timeout:
            print(
                f"filterviz submit: {timeout}; `curl {args.api}/v1/jobs/{timeout.job.id}` follows it", file=sys.stderr
            )
            return TIMED_OUT
        except ApiError as error:
            print(f"filterviz submit: {error}", file=sys.stderr)
            refused = error.status is not None and 400 <= error.status < 500 and error.status != 429
            return REFUSED if refused else UNAVAILABLE
    if job.error:
        print(f"job {job.id} {job.status}: {job.error.get('code')}: {job.error.get('message')}", file=sys.stderr)
    else:
        print(f"job {job.id} {job.status} (weights {job.weights})")
    return EXIT_BY_STATUS[job.status]


def _progress_bar() -> tuple[Callable[["Job"], None], Callable[[], None]]:
    """A tqdm bar of filters done (tqdm writes plain updates where stderr is no terminal); (advance, close)."""
    from tqdm import tqdm

    bar = tqdm(unit="filter", desc="queued", dynamic_ncols=True, mininterval=0.5)

    def advance(job: "Job") -> None:
        bar.total = job.total
        bar.set_description(job.status)
        bar.update(job.done - bar.n)

    return advance, bar.close
