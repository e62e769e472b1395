"""`filterviz`: render filter pictures into a folder without any service (one job, or the whole atlas), submit
to a service, or list the conv layers. Each command is a module of this package; TensorFlow is imported only
by those that render here, once their arguments are known to be good."""

import sys

from cli.arguments import USAGE_ERROR, UsageError, build_parser, request_from_args
from cli.atlas_command import run_atlas
from cli.render_command import fetch_imagenet_weights, list_layers, run_render
from cli.submit_command import run_submit
from cli.upload_command import run_upload
from shared.settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `filterviz` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "layers":
            return list_layers(args.model)
        if args.command == "weights":
            print(f"ImageNet weights of {args.model} at {fetch_imagenet_weights(Settings(), args.model)}")
            return 0
        if args.command == "atlas":  # exit codes: cli/atlas_command.py
            return run_atlas(args)
        if args.command == "upload":  # exit codes: cli/upload_command.py
            return run_upload(args)
        if args.command == "submit":  # exit codes: cli/submit_command.py
            return run_submit(args, request_from_args(args))
        return run_render(args, Settings())
    except UsageError as error:
        print(f"filterviz {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
