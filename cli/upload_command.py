"""`filterviz upload`: upload weights for an architecture to a running service, and print their id
(a job's `weights`; `filterviz submit --weights ID`). Exit codes as `filterviz submit`'s: 0 stored,
5 refused (it says why), 6 the service unavailable."""

import argparse
import sys

from cli.submit_command import REFUSED, SUCCEEDED, UNAVAILABLE


def run_upload(args: argparse.Namespace) -> int:
    """Upload the file; print the record's id and what it is."""
    from client.api import ApiError, Client

    with Client(args.api, token=args.token, retries=args.retries) as client:
        try:
            record = client.upload_weights(args.file, args.architecture, args.name)
        except ApiError as error:
            print(f"filterviz upload: {error}", file=sys.stderr)
            refused = error.status is not None and 400 <= error.status < 500 and error.status != 429
            return REFUSED if refused else UNAVAILABLE
    print(record["id"])
    print(f"{record['architecture']} weights, {record['parameters']:,} numbers: submit with --weights {record['id']}",
          file=sys.stderr)  # fmt: skip
    return SUCCEEDED
