"""`python -m devstack up|down|clean-data`: the local stack behind `make up`, `make down` and
`make clean-data`. Its state lives in .local/ (FILTERVIZ_LOCAL_DIR): Redis' append-only file,
SeaweedFS' data and the logs, kept across `make down` / `make up`."""

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from pydantic import Field, field_validator

from devstack.local import LocalStack
from shared.environment import ConfigurationError, EnvironmentSettings

DATA = ("redis", "s3")
# A worker gives its running chunk back on SIGTERM (within FILTERVIZ_STOP_GRACE_SECONDS).
STOP_GRACE = {"worker1": 45.0}


# Not in Settings: these place the local stack around the service; no service reads them.
class LocalStackSettings(EnvironmentSettings):
    """Where `make up` keeps its state, and the ports it gives the API, Redis and S3 on localhost."""

    local_dir: Path = Field(Path(".local"), validation_alias="FILTERVIZ_LOCAL_DIR")
    api_port: int = Field(8000, ge=1, le=65535, validation_alias="FILTERVIZ_API_PORT")
    redis_port: int = Field(6390, ge=1, le=65535, validation_alias="FILTERVIZ_LOCAL_REDIS_PORT")
    s3_port: int = Field(9000, ge=1, le=65535, validation_alias="FILTERVIZ_LOCAL_S3_PORT")

    @field_validator("local_dir")
    @classmethod
    def _not_a_file(cls, folder: Path) -> Path:
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} is a file, not a folder")
        return folder

    @property
    def pids(self) -> Path:
        """The process group of each service `make up` started (there while the stack is up)."""
        return self.local_dir / "pids.json"

    @property
    def s3_ports(self) -> Path:
        """SeaweedFS' side ports, reused by the next `make up`: its filer remembers its peers by address."""
        return self.local_dir / "s3-ports.json"


def _saved_s3_ports(local: LocalStackSettings) -> list[int]:
    """The side ports of the last run when all are still free, else none (fresh ones are picked)."""
    if not local.s3_ports.exists():
        return []
    ports = json.loads(local.s3_ports.read_text())
    still_free = all(_is_free(port) for port in ports)
    return ports if still_free else []


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _imagenet_weights_ready() -> bool:
    """Where the worker will ask for ImageNet weights, download them first if missing (checked, once)."""
    from shared.settings import Settings
    from worker.weights_fetch import WeightsFetchError, ensure_imagenet_weights

    settings = Settings()
    if settings.weights != "imagenet":
        return True
    try:
        ensure_imagenet_weights(settings.imagenet_weights, settings.weights_url, settings.weights_hash)
    except WeightsFetchError as error:
        print(f"make up: {error}", file=sys.stderr)
        return False
    return True


def up(local: LocalStackSettings) -> int:
    state = local.local_dir
    if local.pids.exists():
        print(f"already up (see {local.pids}); run `make down` first", file=sys.stderr)
        return 1
    if not _imagenet_weights_ready():
        return 1
    state.mkdir(exist_ok=True)
    stack = LocalStack(
        state,
        api_port=local.api_port,
        redis_port=local.redis_port,
        s3_port=local.s3_port,
        s3_side_ports=_saved_s3_ports(local),
        rotate_logs=True,
    )
    try:
        print(f"starting redis, s3, worker, webhooks, retention, api (logs in {state}/*.log) ...", flush=True)
        stack.start_redis()
        stack.start_s3()
        local.s3_ports.write_text(json.dumps(stack.s3_side_ports))
        stack.start_worker("worker1")
        stack.start_webhook_worker()
        stack.start_retention()
        stack.start_api()
    except Exception as error:
        stack.stop_all()
        print(f"local stack failed to start: {error}", file=sys.stderr)
        return 1
    local.pids.write_text(json.dumps({name: process.pid for name, process in stack.processes.items()}))
    print(f"filterviz is up: {stack.api_url}  (S3 at {stack.env['S3_ENDPOINT_URL']}, `make down` stops it)")
    print(
        f"data: {(state / 'redis').resolve()} (Redis, append-only) and {(state / 's3').resolve()} (SeaweedFS); "
        "`make down` keeps it, `make clean-data` removes it"
    )
    return 0


def stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the group's leader alone (its log pipe hands it to the service, as a container runtime
    would), wait for the whole group to be gone, and SIGKILL what is left after `grace` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.killpg(pid, 0)  # raises once the whole group is gone
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def down(local: LocalStackSettings) -> int:
    if not local.pids.exists():
        print("not running")
        return 0
    groups = json.loads(local.pids.read_text())
    for name, pid in reversed(groups.items()):
        stop_group(pid, STOP_GRACE.get(name, 10.0))
        print(f"stopped {name}")
    local.pids.unlink()
    return 0


def clean_data(local: LocalStackSettings, force: bool) -> int:
    """Delete the stack's Redis and S3 data, after asking unless `force`."""
    if local.pids.exists():
        print("the local stack is up: run `make down` first", file=sys.stderr)
        return 1
    state = local.local_dir
    present = [state / name for name in DATA if (state / name).exists()]
    if not present:
        print(f"no data in {state}")
        return 0
    size = sum(path.stat().st_size for folder in present for path in folder.rglob("*") if path.is_file())
    listed = ", ".join(str(folder.resolve()) for folder in present)
    if not force:
        try:
            answer = input(f"delete {listed} ({size / 2**20:.1f} MB): every job and picture of `make up`? [y/N] ")
        except EOFError:  # no terminal to ask (CI, a pipe): keep the data
            answer = ""
        if answer.strip().lower() not in {"y", "yes"}:
            print("kept; `make clean-data FORCE=1` deletes without asking")
            return 1
    for folder in present:
        shutil.rmtree(folder)
    local.s3_ports.unlink(missing_ok=True)
    print(f"deleted {listed}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "clean-data"])
    parser.add_argument("--force", action="store_true", help="clean-data: don't ask")
    args = parser.parse_args()
    try:
        local = LocalStackSettings.from_environment()
    except ConfigurationError as error:
        print(f"python -m devstack: {error}", file=sys.stderr)
        return 2
    if args.action == "clean-data":
        return clean_data(local, args.force)
    return up(local) if args.action == "up" else down(local)


if __name__ == "__main__":
    sys.exit(main())
