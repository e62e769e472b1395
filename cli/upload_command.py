"""`filterviz upload`: upload weights for an architecture, or a whole Keras model, to a running service,
and print the id (a job's `weights`: `filterviz submit --weights ID`; or its `model`: `--model ID`).
Exit codes as `filterviz submit`'s: 0 stored, 5 refused (it says why), 6 the service unavailable."""

import argparse
import sys

from cli.submit_command import REFUSED, SUCCEEDED, UNAVAILABLE


def run_upload(args: argparse.Namespace) -> int:
    """Upload the file; print the record's id and what it is."""
    from client.api import ApiError, Client

    with Client(args.api, token=args.token, retries=args.retries) as client:
        try:
            record = client.upload(args.file, args.architecture, args.name, args.preprocessing)
        except ApiError as error:
            print(f"filterviz upload: {error}", file=sys.stderr)
            refused = error.status is not None and 400 <= error.status < 500 and error.status != 429
            return REFUSED if refused else UNAVAILABLE
    print(record["id"])
    if record["kind"] == "model":
        layers = ", ".join(layer["name"] for layer in record["layers"])
        print(f"a model with {len(record['layers'])} layers ({layers}): submit with --model {record['id']}",
              file=sys.stderr)  # fmt: skip
    else:
        print(f"{record['architecture']} weights, {record['parameters']:,} numbers: submit with --weights "
              f"{record['id']}", file=sys.stderr)  # fmt: skip
    return SUCCEEDED
