"""`filterviz`: render filter pictures into a folder without any service (one job, or the whole atlas), submit
to a service, or list the conv layers."""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from shared.layers import conv_layers
from shared.methods import METHODS, SEED
from shared.settings import Settings
from shared.spec import JobSpec, describe_problems, parse_spec
from shared.version import package_version

USAGE_ERROR = 2


class UsageError(Exception):
    """A bad argument: reported as one line, exit status 2, nothing written."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def parse_filters(text: str) -> list[int]:
    """'0-199' (inclusive), '3,7,9' or a mix like '0-9,20' into filter indices."""
    filters: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            filters.extend(range(int(first), int(last) + 1) if dash else [int(first)])
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad filter list {text!r}: use e.g. 0-199 or 1,5,9") from None
    return filters


def parse_param(text: str) -> tuple[str, int | float | bool]:
    """'crops=4', 'pre_relu=false' or 'scale=0.05' into (name, value), checked later against the method."""
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"bad method parameter {text!r}: use NAME=VALUE, e.g. crops=4")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    try:
        return name, int(value)
    except ValueError:
        pass
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad method parameter {text!r}: the value must be a number, true or false"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line, with SPEC.md's defaults."""
    parser = _OneLineParser(prog="filterviz", description=__doc__)
    parser.add_argument("--version", action="version", version=f"filterviz {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    render = commands.add_parser("render", help="render a grid, per-filter pictures and a manifest into a folder")
    add_job_arguments(render)
    render.add_argument("--weights", help="imagenet, random:<seed> or a weights file (default: $FILTERVIZ_WEIGHTS)")
    render.add_argument("--batch-size", type=int, help="filters per batch (default: sized to memory)")
    render.add_argument("--out", type=Path, default=Path("out"), help="output folder (default %(default)s)")

    commands.add_parser("layers", help="list the conv layers and their filter counts")

    weights = commands.add_parser("weights", help="the ImageNet weights file")
    weights_actions = weights.add_subparsers(dest="weights_action", required=True, parser_class=_OneLineParser)
    weights_actions.add_parser("fetch", help="download Keras' ImageNet no-top file where it is missing, hash-checked")

    submit = commands.add_parser("submit", help="submit a job to a running service, wait for it, download its results")
    add_job_arguments(submit)
    submit.add_argument("--api", default="http://localhost:8000", help="the service's URL (default %(default)s)")
    submit.add_argument("--token", help="bearer token, where the service asks for one")
    submit.add_argument("--wait", action="store_true", help="wait until the job ends, with a progress bar")
    submit.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds (exit 4)")
    submit.add_argument("--retries", type=int, default=5, help="retries of 429, 503, refused connections (default 5)")
    submit.add_argument("--out", type=Path, help="with --wait: download grid, filters and manifest into this folder")

    atlas = commands.add_parser(
        "atlas", help="every filter of every conv layer under one method: rendered here, or on a service (--api)"
    )
    atlas.add_argument("--method", choices=list(METHODS), default=SEED, help="how pictures are made")
    atlas.add_argument("--param", type=parse_param, action="append", default=[], metavar="NAME=VALUE",
                       help="a parameter of the method (repeatable)")  # fmt: skip
    atlas.add_argument("--size", type=int, default=64, help="image side in px (default %(default)s)")
    atlas.add_argument("--steps", type=int, help="ascent steps (default: the method's)")
    atlas.add_argument("--step-size", type=float, help="step size or learning rate (default: the method's)")
    atlas.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default %(default)s)")
    atlas.add_argument("--layers", help="only these layers, e.g. block1_conv1,block1_conv2 (default: all 13)")
    atlas.add_argument("--filters-per-layer", type=int, help="only the first N filters of each layer")
    atlas.add_argument("--weights", help="here: imagenet, random:<seed> or a file (default: $FILTERVIZ_WEIGHTS)")
    atlas.add_argument("--out", type=Path, default=Path("atlas"), help="here: output folder (default %(default)s)")
    atlas.add_argument("--api", help="the service's URL: start or resume the atlas there and follow it")
    atlas.add_argument("--token", help="with --api: bearer token (an admin's, where the service asks for one)")
    return parser


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that describe a job, the same for `render` and `submit`."""
    defaults = JobSpec.model_fields
    parser.add_argument("--layer", default=defaults["layer"].default, help="conv layer (default %(default)s)")
    parser.add_argument("--filters", type=parse_filters, help="e.g. 0-199 or 1,5,9 (default: first 200)")
    parser.add_argument("--size", type=int, default=defaults["image_size"].default, help="image side in px")
    parser.add_argument(
        "--method", choices=list(METHODS), default=SEED, help="how pictures are made (default %(default)s)"
    )
    parser.add_argument(
        "--param", type=parse_param, action="append", default=[], metavar="NAME=VALUE",
        help="a parameter of the method, e.g. crops=4 (repeatable; GET /v1/models or README lists them)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, help="ascent steps (default: the method's)")
    parser.add_argument("--step-size", type=float, help="step size or learning rate (default: the method's)")
    parser.add_argument("--grid", type=int, default=8, help="grid is N x N filters (default %(default)s)")
    parser.add_argument("--margin", type=int, default=5, help="black pixels between cells (default %(default)s)")
    parser.add_argument("--seed", type=int, help="seed of the starting noise (default: random, recorded)")


def spec_from_args(args: argparse.Namespace, settings: Settings) -> JobSpec:
    """The validated job spec the arguments describe; UsageError names the first bad one."""
    try:
        return parse_spec(request_from_args(args), settings.limits)
    except ValidationError as error:
        problem = describe_problems(error)[0]
        raise UsageError(f"{problem['field']}: {problem['reason']}") from None


def request_from_args(args: argparse.Namespace) -> dict:
    """The job request (POST /v1/jobs body) the job arguments describe, not yet validated."""
    request = {
        "method": args.method,
        "method_params": dict(args.param),
        "layer": args.layer,
        "image_size": args.size,
        "grid": {"n": args.grid, "margin": args.margin},
    }
    if args.steps is not None:
        request["steps"] = args.steps
    if args.step_size is not None:
        request["step_size"] = args.step_size
    if args.filters is not None:
        request["filters"] = args.filters
    if args.seed is not None:
        request["seed"] = args.seed
    return request


def progress_reporter(total: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A progress bar on a terminal, plain lines otherwise; returns (advance, close)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, unit="filter", desc="rendering", dynamic_ncols=True)

        def advance_bar(count: int) -> None:
            bar.update(count)  # its answer (whether it redrew) is of no use here

        return advance_bar, bar.close
    started = time.perf_counter()
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        rate = done / max(time.perf_counter() - started, 1e-9)
        eta = (total - done) / rate if rate else 0.0
        print(f"rendered {done}/{total} filters, {rate:.2f} filters/s, ETA {eta:.0f}s", file=sys.stderr, flush=True)

    return advance, lambda: None


def run_render(args: argparse.Namespace, settings: Settings) -> int:
    """Validate everything, load the weights, then render and write the folder."""
    spec = spec_from_args(args, settings)
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"batch-size: must be at least 1, got {args.batch_size}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"out: {args.out} exists and is not a folder")

    if (args.weights or settings.weights) == "imagenet":
        fetch_imagenet_weights(settings)  # where it is missing; before TensorFlow, so offline fails fast
    # TensorFlow is imported only once the arguments are known to be good: errors come fast.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal
    from worker.loading import load_engine, pick_batch_size
    from worker.model import WeightsError
    from worker.render import render, write_folder

    try:
        loaded = load_engine(args.weights or settings.weights, settings)
    except WeightsError as error:
        raise UsageError(f"weights: {error}") from None
    batch_size = args.batch_size or pick_batch_size(spec, len(spec.filters), settings)
    advance, close = progress_reporter(len(spec.filters))
    try:
        rendering = render(loaded.engine, spec, loaded.weights, batch_size=batch_size, on_progress=advance)
    finally:
        close()
    manifest = write_folder(rendering, args.out, loaded.runtime)
    alive = sum(not entry["dead"] for entry in manifest["filters"])
    print(
        f"wrote {args.out}/grid.png ({len(rendering.order)} of {alive} live filters), "
        f"{len(spec.filters)} filter pictures and manifest.json; weights {loaded.weights}"
    )
    return 0


def run_atlas(args: argparse.Namespace) -> int:
    """The atlas on a service (--api) or here; a bad parameter is a usage error, nothing started."""
    from client.atlas_command import atlas_request, local_plan, run_atlas_here, run_atlas_on_service

    settings, request = Settings(), atlas_request(args)
    try:
        local_plan(request, settings)  # every parameter checked, as the service will
    except ValidationError as error:
        problem = describe_problems(error)[0]
        raise UsageError(f"{problem['field']}: {problem['reason']}") from None
    except ValueError as error:
        raise UsageError(str(error)) from None
    return run_atlas_on_service(args, request) if args.api else run_atlas_here(args, request, settings)


def fetch_imagenet_weights(settings: Settings) -> Path:
    """The ImageNet file, downloaded where it is missing (never another file instead); UsageError if that fails."""
    from worker.weights_fetch import WeightsFetchError, ensure_imagenet_weights

    try:
        return ensure_imagenet_weights(settings.imagenet_weights, settings.weights_url, settings.weights_hash)[0]
    except WeightsFetchError as error:
        raise UsageError(f"weights: {error}") from None


def list_layers() -> int:
    """Print each conv layer with its filter count."""
    for layer in conv_layers():
        print(f"{layer.name:<14} {layer.filters:>4} filters  (image_size >= {layer.min_image_size})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `filterviz` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "layers":
            return list_layers()
        if args.command == "weights":
            print(f"ImageNet weights at {fetch_imagenet_weights(Settings())}")
            return 0
        if args.command == "atlas":  # exit codes: client/atlas_command.py
            return run_atlas(args)
        if args.command == "submit":  # exit codes: client/submit_command.py
            from client.submit_command import run_submit

            return run_submit(args, request_from_args(args))
        return run_render(args, Settings())
    except UsageError as error:
        print(f"filterviz {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
