"""`python -m devstack up|down`: the local stack behind `make up` and `make down`."""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from devstack.local import LocalStack

STATE = Path(".local")
PIDS = STATE / "pids.json"


def up() -> int:
    if PIDS.exists():
        print(f"already up (see {PIDS}); run `make down` first", file=sys.stderr)
        return 1
    STATE.mkdir(exist_ok=True)
    stack = LocalStack(
        STATE,
        api_port=int(os.environ.get("FILTERVIZ_API_PORT", "8000")),
        redis_port=int(os.environ.get("FILTERVIZ_LOCAL_REDIS_PORT", "6390")),
        s3_port=int(os.environ.get("FILTERVIZ_LOCAL_S3_PORT", "9000")),
    )
    try:
        print("starting redis, s3, worker, api (logs in .local/*.log) ...", flush=True)
        stack.start_redis()
        stack.start_s3()
        stack.start_worker("worker1")
        stack.start_api()
    except Exception as error:
        stack.stop_all()
        print(f"local stack failed to start: {error}", file=sys.stderr)
        return 1
    PIDS.write_text(json.dumps({name: process.pid for name, process in stack.processes.items()}))
    print(f"filterviz is up: {stack.api_url}  (S3 at {stack.env['S3_ENDPOINT_URL']}, `make down` stops it)")
    return 0


def stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM a process group, then SIGKILL what is left after `grace` seconds (weed can linger)."""
    try:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.killpg(pid, 0)  # raises once the whole group is gone
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def down() -> int:
    if not PIDS.exists():
        print("not running")
        return 0
    groups = json.loads(PIDS.read_text())
    for name, pid in reversed(groups.items()):
        stop_group(pid)
        print(f"stopped {name}")
    PIDS.unlink()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    return up() if parser.parse_args().action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
