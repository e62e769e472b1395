"""The `filterviz` command line: its parser, and the job its arguments describe."""

import argparse
from pathlib import Path
from typing import Any, NoReturn, get_args

from pydantic import ValidationError

from shared import objectives
from shared.methods import METHODS, SEED
from shared.models import ARCHITECTURES, DEFAULT_MODEL, Preprocessing
from shared.settings import Settings
from shared.spec import JobSpec, describe_problems, parse_spec
from shared.uploads import UPLOAD_ID
from shared.version import package_version

USAGE_ERROR = 2
# An unknown layer's message sends the user here (the API's says GET /v1/models).
CLI_LAYERS = "`filterviz layers --model NAME` lists a model's layers"
MODEL_HELP = "the network (default %(default)s; `filterviz layers --model NAME` lists its layers)"
DESCRIPTION = """render filter pictures into a folder without any service (one job, or the whole atlas),
submit to a service, or list the conv layers"""


class UsageError(Exception):
    """A bad argument: reported as one line, exit status 2, nothing written."""

    @classmethod
    def of(cls, error: ValidationError) -> "UsageError":
        """The first problem pydantic found, as `field: reason`."""
        problem = describe_problems(error)[0]
        return cls(f"{problem['field']}: {problem['reason']}")


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def parse_model(text: str) -> str:
    """A built-in network, or a whole model uploaded to the service (its id)."""
    if text in ARCHITECTURES or UPLOAD_ID.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"one of {', '.join(ARCHITECTURES)}, or an uploaded model's id (upload:<sha256>)")


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


def parse_term(text: str) -> dict[str, Any]:
    """An objective term (shared/objectives.py parse_term), or the argument's error."""
    try:
        return objectives.parse_term(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"bad objective term {text[:60]!r}: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line, with the job spec's defaults (shared/spec.py)."""
    parser = _OneLineParser(prog="filterviz", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"filterviz {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    render = commands.add_parser("render", help="render a grid, per-filter pictures and a manifest into a folder")
    add_job_arguments(render)
    render.add_argument("--weights", help="imagenet, random:<seed> or a weights file (default: $FILTERVIZ_WEIGHTS)")
    render.add_argument("--batch-size", type=int, help="filters per batch (default: sized to memory)")
    render.add_argument("--out", type=Path, default=Path("out"), help="output folder (default %(default)s)")

    layers = commands.add_parser("layers", help="list a model's layers and their filter counts")
    layers.add_argument("--model", choices=list(ARCHITECTURES), default=DEFAULT_MODEL, help=MODEL_HELP)

    weights = commands.add_parser("weights", help="the ImageNet weights files")
    weights_actions = weights.add_subparsers(dest="weights_action", required=True, parser_class=_OneLineParser)
    fetch = weights_actions.add_parser(
        "fetch", help="download Keras' ImageNet no-top file where it is missing, hash-checked"
    )
    fetch.add_argument("--model", choices=list(ARCHITECTURES), default=DEFAULT_MODEL, help=MODEL_HELP)

    submit = commands.add_parser("submit", help="submit a job to a running service, wait for it, download its results")
    add_job_arguments(submit)
    submit.add_argument("--api", default="http://localhost:8000", help="the service's URL (default %(default)s)")
    submit.add_argument("--token", help="bearer token, where the service asks for one")
    submit.add_argument("--wait", action="store_true", help="wait until the job ends, with a progress bar")
    submit.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds (exit 4)")
    submit.add_argument("--retries", type=int, default=5, help="retries of 429, 503, refused connections (default 5)")
    submit.add_argument("--out", type=Path, help="with --wait: download grid, filters and manifest into this folder")
    submit.add_argument("--weights", help="weights uploaded for the model (`filterviz upload` prints their id)")

    upload = commands.add_parser(
        "upload", help="upload weights for an architecture, or a whole Keras model, to a service; prints the id"
    )
    upload.add_argument(
        "file", type=Path,
        help="Keras weights of the architecture without its top (.weights.h5), or a whole model (.keras)",
    )  # fmt: skip
    upload.add_argument("--architecture", choices=list(ARCHITECTURES), help="the network weights are for")
    upload.add_argument(
        "--preprocessing", choices=get_args(Preprocessing),
        help="how a whole model wants its RGB input (0..255): caffe, tf (-1..1), torch, or none (as is: the default)",
    )  # fmt: skip
    upload.add_argument("--name", help="a label for people")
    upload.add_argument("--api", default="http://localhost:8000", help="the service's URL (default %(default)s)")
    upload.add_argument("--token", help="bearer token, where the service asks for one")
    upload.add_argument("--retries", type=int, default=5, help="retries of 429, 503, refused connections (default 5)")

    atlas = commands.add_parser(
        "atlas", help="every filter of every conv layer under one method: rendered here, or on a service (--api)"
    )
    atlas.add_argument("--model", choices=list(ARCHITECTURES), default=DEFAULT_MODEL, help=MODEL_HELP)
    atlas.add_argument("--method", choices=list(METHODS), default=SEED, help="how pictures are made")
    atlas.add_argument("--param", type=parse_param, action="append", default=[], metavar="NAME=VALUE",
                       help="a parameter of the method (repeatable)")  # fmt: skip
    atlas.add_argument("--size", type=int, default=64, help="image side in px (default %(default)s)")
    atlas.add_argument("--steps", type=int, help="ascent steps (default: the method's)")
    atlas.add_argument("--step-size", type=float, help="step size or learning rate (default: the method's)")
    atlas.add_argument("--seed", type=int, default=0, help="seed of the starting noise (default %(default)s)")
    atlas.add_argument("--layers", help="only these layers, e.g. block1_conv1,block1_conv2 (default: all)")
    atlas.add_argument("--filters-per-layer", type=int, help="only the first N filters of each layer")
    atlas.add_argument("--weights", help="here: imagenet, random:<seed> or a file (default: $FILTERVIZ_WEIGHTS)")
    atlas.add_argument("--out", type=Path, default=Path("atlas"), help="here: output folder (default %(default)s)")
    atlas.add_argument("--api", help="the service's URL: start or resume the atlas there and follow it")
    atlas.add_argument("--token", help="with --api: bearer token (an admin's, where the service asks for one)")
    return parser


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that describe a job, the same for `render` and `submit`."""
    defaults = JobSpec.model_fields
    parser.add_argument(
        "--model", type=parse_model, default=DEFAULT_MODEL,
        help=f"{MODEL_HELP}: {', '.join(ARCHITECTURES)}, or with submit a whole model `filterviz upload` stored",
    )  # fmt: skip
    parser.add_argument(
        "--layer", help=f"layer (default: the model's first at 1/16; {defaults['layer'].default} for vgg16)"
    )
    parser.add_argument("--filters", type=parse_filters, help="e.g. 0-199 or 1,5,9 (default: first 200)")
    parser.add_argument("--size", type=int, default=defaults["image_size"].default, help="image side in px")
    parser.add_argument(
        "--method", choices=list(METHODS), default=SEED, help="how pictures are made (default %(default)s)"
    )
    parser.add_argument(
        "--param", type=parse_param, action="append", default=[], metavar="NAME=VALUE",
        help="a parameter of the method, e.g. crops=4 (repeatable; GET /v1/models or README lists them)",
    )  # fmt: skip
    parser.add_argument(
        "--objective", type=parse_term, action="append", metavar="KIND[:NAME=VALUE,...]",
        help="a term of what is maximised, e.g. neuron:x=0.25 or layer:weight=0.1, or a JSON term (repeatable: "
        "summed; default channel)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, help="ascent steps (default: the method's)")
    parser.add_argument("--step-size", type=float, help="step size or learning rate (default: the method's)")
    parser.add_argument("--grid", type=int, default=8, help="grid is N x N filters (default %(default)s)")
    parser.add_argument("--margin", type=int, default=5, help="black pixels between cells (default %(default)s)")
    parser.add_argument("--seed", type=int, help="seed of the starting noise (default: random, recorded)")


def spec_from_args(args: argparse.Namespace, settings: Settings) -> JobSpec:
    """The validated job spec the arguments describe; UsageError names the first bad one."""
    try:
        return parse_spec(request_from_args(args), settings.limits, CLI_LAYERS)
    except ValidationError as error:
        raise UsageError.of(error) from None


def request_from_args(args: argparse.Namespace) -> dict:
    """The job request (POST /v1/jobs body) the job arguments describe, not yet validated."""
    request = {
        "model": args.model,
        "method": args.method,
        "method_params": dict(args.param),
        "image_size": args.size,
        "grid": {"n": args.grid, "margin": args.margin},
    }
    if args.layer is not None:
        request["layer"] = args.layer
    if args.objective:
        request["objective"] = args.objective
    if args.steps is not None:
        request["steps"] = args.steps
    if args.step_size is not None:
        request["step_size"] = args.step_size
    if args.filters is not None:
        request["filters"] = args.filters
    if args.seed is not None:
        request["seed"] = args.seed
    return request
