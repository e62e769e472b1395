"""`filterviz atlas`: every filter of every conv layer under one method (shared/atlas.py).

With --api, the atlas is started on (or resumed by) a running service, and followed until it ends;
exit 0 when it succeeded, 1 when a job of it failed or was canceled (asking again resumes it), 5
when the API refused the request, 6 when it could not be reached. Without, it is rendered here
into one folder per job (<out>/<layer>, or <layer>.<part> where a layer is split), each a render's
grid, filter pictures and manifest; a folder that already has its manifest is skipped, so running
the command again resumes it.
"""

import argparse
import json
import os
import sys
import time
from typing import Any

from pydantic import ValidationError

from cli.arguments import CLI_LAYERS, UsageError
from cli.render_command import fetch_imagenet_weights, progress_reporter
from shared.atlas import AtlasRequest, plan
from shared.cost import Budget
from shared.manifest import MANIFEST_FILE
from shared.settings import Settings
from shared.spec import JobSpec

POLL_SECONDS = 2
REFUSED, UNAVAILABLE = 5, 6


def atlas_request(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /v1/atlas body the arguments describe."""
    request: dict[str, Any] = {"model": args.model, "method": args.method, "method_params": dict(args.param),
                               "image_size": args.size, "seed": args.seed}  # fmt: skip
    for name in ("steps", "step_size", "filters_per_layer"):
        if getattr(args, name) is not None:
            request[name] = getattr(args, name)
    if args.layers:
        request["layers"] = args.layers.split(",")
    return request


def run_atlas_on_service(args: argparse.Namespace, request: dict[str, Any]) -> int:
    """Start or resume the atlas on the service and print its progress until it ends."""
    from client.api import ApiError, Client

    with Client(args.api, token=args.token) as client:
        try:
            atlas = client.start_atlas(request)
            print(f"atlas {atlas['id']} ({client.base_url}/atlas/{atlas['params']['model']})", flush=True)
            shown = None
            while atlas["status"] in ("queued", "running"):
                progress = (atlas["progress"]["done"], atlas["progress"]["total"])
                if progress != shown:
                    print(f"{atlas['status']}: {progress[0]}/{progress[1]} filters", flush=True)
                    shown = progress
                time.sleep(POLL_SECONDS)
                atlas = client.get_atlas(atlas["id"])
        except ApiError as error:
            print(f"filterviz atlas: {error}", file=sys.stderr)
            return UNAVAILABLE if error.status is None or error.status >= 500 or error.status == 429 else REFUSED
    print(f"{atlas['status']}: {atlas['progress']['done']}/{atlas['progress']['total']} filters")
    return 0 if atlas["status"] == "succeeded" else 1


def local_plan(request: dict[str, Any], settings: Settings) -> list[tuple[str, JobSpec]]:
    """Each folder name and its spec: a layer per folder, split only where the filter limit says so."""
    unbounded = Budget(1e30, 1e30, 2**62)  # no budget here: only the filter limit splits a layer
    folders = []
    for layer, specs in plan(AtlasRequest.model_validate(request), settings.limits, unbounded, CLI_LAYERS):
        folders += [(layer if len(specs) == 1 else f"{layer}.{i}", spec) for i, spec in enumerate(specs)]
    return folders


def run_atlas_here(args: argparse.Namespace, request: dict[str, Any], settings: Settings) -> int:
    """Render each folder of the atlas not yet rendered (resumable), loading the weights once."""
    folders = local_plan(request, settings)
    todo = [(name, spec) for name, spec in folders if not (args.out / name / MANIFEST_FILE).exists()]
    print(f"{len(folders) - len(todo)} of {len(folders)} layers already in {args.out}", flush=True)
    if not todo:
        return 0
    if (args.weights or settings.weights) == "imagenet":
        fetch_imagenet_weights(settings, args.model)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal
    from worker.loading import load_engine, pick_batch_size
    from worker.render import render, write_folder

    loaded = load_engine(args.weights or settings.weights, settings, args.model)
    for name, spec in todo:
        advance, close = progress_reporter(len(spec.filters))
        try:
            rendering = render(loaded.engine, spec, loaded.weights, batch_size=pick_batch_size(spec, len(spec.filters),
                               settings), on_progress=advance)  # fmt: skip
        finally:
            close()
        write_folder(rendering, args.out / name, loaded.runtime)
        print(f"wrote {args.out / name} ({len(spec.filters)} filters)", flush=True)
    (args.out / "atlas.json").write_text(json.dumps({"request": request, "weights": loaded.weights}, indent=2) + "\n")
    return 0


def run_atlas(args: argparse.Namespace) -> int:
    """The atlas on a service (--api) or here; a bad parameter is a usage error, nothing started."""
    settings, request = Settings(), atlas_request(args)
    try:
        local_plan(request, settings)  # every parameter checked, as the service will
    except ValidationError as error:
        raise UsageError.of(error) from None
    except ValueError as error:
        raise UsageError(str(error)) from None
    return run_atlas_on_service(args, request) if args.api else run_atlas_here(args, request, settings)
