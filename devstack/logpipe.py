"""`python -m devstack.logpipe FILE -- COMMAND...`: run COMMAND with its output going to FILE,
rotated at a size, so the logs of a long-running `make up` stay bounded.

The pipe leads COMMAND's process group and hands the stop signals it gets to COMMAND alone, as a
container runtime does (a Celery worker's pool processes must not get SIGTERM themselves: their
parent stops them, and they give their chunks back). It keeps copying until COMMAND has written its
last line, then exits with COMMAND's status.
"""

import argparse
import logging
import signal
import subprocess
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

MAX_BYTES = 10 * 2**20
BACKUPS = 3


def copy_rotating(stream, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
    """Copy lines from a binary stream into `path`, keeping at most `backups` older files of `max_bytes`."""
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", errors="replace")
    handler.setFormatter(logging.Formatter("%(message)s"))
    writer = logging.Logger(f"logpipe:{path}")
    writer.addHandler(handler)
    try:
        for line in stream:
            writer.info(line.decode("utf-8", "replace").rstrip("\n"))
    finally:
        handler.close()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


def _handle_stop_signals(handler) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.logpipe", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    parser.add_argument("--backups", type=int, default=BACKUPS)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    _handle_stop_signals(signal.SIG_IGN)  # until there is a child to hand them to
    # The child gets the default handling back: ignored signals are inherited across exec.
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: _handle_stop_signals(signal.SIG_DFL),
    )  # fmt: skip
    _handle_stop_signals(lambda sig, _frame: child.send_signal(sig))
    copy_rotating(child.stdout, args.file, args.max_bytes, args.backups)
    status = child.wait()
    return 128 - status if status < 0 else status


if __name__ == "__main__":
    sys.exit(main())
