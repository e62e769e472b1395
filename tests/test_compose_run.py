"""Each service of docker-compose.yml, started here the way compose starts it in its container.

There is no Docker engine on this machine, so this is the closest check of `docker compose up`:
- the command is the service's own (`entrypoint` + `command`), or its image's CMD from the Dockerfile;
- the environment is exactly what `docker compose config` (Compose v2) renders, over the image's ENV;
- the services' host names (`redis`, `s3`) point at servers on this machine, and paths inside an
  image or a volume point at temporary files: the weights baked into the worker image become a
  weights file of seeded random VGG16 in the same legacy HDF5 format, the s3 volume a folder;
- each service counts as up when its own healthcheck command passes, as Docker decides.
The S3 server is the compose file's own `s3` service (SeaweedFS from pip, same release as the
image), so its flags and credentials are checked too. A job then runs through this stack.
"""

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from devstack.local import LocalStack, free_port, stop_process_group, wait_until
from shared.settings import Settings
from tests.compose_helpers import (
    ROOT,
    TEST_SECRETS,
    image_command,
    image_environment,
    render_compose,
    render_with_dotenv,
)
from tests.service_helpers import SMALL_JOB, wait_for

BIN = Path(sys.executable).parent
# Binaries at their image paths, and where they are here.
IMAGE_BINARIES = {"/usr/bin/weed": str(BIN / "weed")}
# Ports the s3 service's SeaweedFS listens on inside its container (and gRPC on each + 10000).
S3_PORTS = (8333, 9333, 8080, 8888)


def unescape(value: str) -> str:
    """What the container gets: `docker compose config` keeps `$$` escaped, Docker receives `$`."""
    return value.replace("$$", "$")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """The services with every secret set in .env, as the README asks (the defaults are refused)."""
    return render_with_dotenv(tmp_path_factory.mktemp("rendered"), TEST_SECRETS)["services"]


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory) -> Iterator[int]:
    """A Redis that, like compose's, takes only REDIS_PASSWORD."""
    import redis

    stack = LocalStack(tmp_path_factory.mktemp("redis"))
    stack.start_redis()
    redis.Redis(port=stack.redis_port).config_set("requirepass", TEST_SECRETS["REDIS_PASSWORD"])
    yield stack.redis_port
    stack.stop_all()


class Host:
    """Runs compose services as processes on this machine, with their host names mapped here."""

    def __init__(self, rendered: dict, ports: dict[tuple[str, int], int], workdir: Path) -> None:
        self.rendered, self.ports, self.workdir = rendered, ports, workdir
        self.processes: list[subprocess.Popen] = []
        self.last_check = "none run"

    def _map_hosts(self, value: str) -> str:
        """service:port in URLs -> 127.0.0.1:<its port here>; credentials (redis://:pw@redis:6379) kept."""

        def local(match: re.Match) -> str:
            credentials, host, port = match.group(1) or "", match.group(2), int(match.group(3))
            here = self.ports.get((host, port))
            return f"//{credentials}127.0.0.1:{here}" if here else match.group(0)

        return re.sub(r"//([^@/\s]*@)?([a-z0-9-]+):(\d+)", local, value)

    def environment(self, name: str, image_paths: dict[str, str] | None = None) -> dict[str, str]:
        """The rendered environment over the image's ENV, host names and image paths mapped here."""
        service = self.rendered[name]
        build = service.get("build", {})
        image_env = image_environment(build["target"], build.get("args")) if "target" in build else {}
        env = {**image_env, **service.get("environment", {})}
        env = {key: self._map_hosts(unescape(value)) for key, value in env.items()}
        for key, value in env.items():
            env[key] = (image_paths or {}).get(value, value)
        # The image's Python and tools are this virtual environment's.
        return {**env, "PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(self.workdir)}

    def command(self, name: str, volumes: dict[str, str] | None = None) -> list[str]:
        """entrypoint + command, or the image's CMD; volume paths mapped to folders here."""
        service = self.rendered[name]
        command = (service.get("entrypoint") or []) + (service.get("command") or [])
        if not command:
            command = image_command(service["build"]["target"])
        command = [IMAGE_BINARIES.get(part, part) for part in map(unescape, command)]
        for inside, here in (volumes or {}).items():
            command = [part.replace(f"={inside}", f"={here}") for part in command]
        return command

    def start(self, name: str, env: dict[str, str], command: list[str]) -> subprocess.Popen:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def healthy(self, name: str, env: dict[str, str]) -> bool:
        """Run the service's healthcheck command once, as Docker does; True when it exits 0."""
        kind, *test = [unescape(part) for part in self.rendered[name]["healthcheck"]["test"]]
        command = ["sh", "-c", test[0]] if kind == "CMD-SHELL" else test
        check = subprocess.run(command, env=env, cwd=self.workdir, capture_output=True, text=True, timeout=60)
        self.last_check = f"{command} exited {check.returncode}: {check.stdout[-500:]} {check.stderr[-1500:]}"
        return check.returncode == 0

    def wait_healthy(self, name: str, env: dict[str, str], process: subprocess.Popen, timeout: float) -> None:
        log = self.workdir / f"{name}.log"
        try:
            wait_until(lambda: self.healthy(name, env), f"{name} healthy", timeout, process)
        except (RuntimeError, TimeoutError) as error:
            output = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{error}\nlast check: {self.last_check}\n--- {name} log ---\n{output}") from None

    @staticmethod
    def stop(process: subprocess.Popen) -> None:
        stop_process_group(process, grace=30)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            self.stop(process)


@contextmanager
def compose_host(rendered: dict, redis_port: int, workdir: Path) -> Iterator[Host]:
    host = Host(rendered, {("redis", 6379): redis_port, ("s3", 8333): 8333}, workdir)
    try:
        yield host
    finally:
        host.stop_all()


@pytest.fixture(scope="module")
def stack(rendered, redis_port, tmp_path_factory) -> Iterator[Host]:
    """The s3 service, the bucket init and the API, up as compose brings them up."""
    busy = [port for base in S3_PORTS for port in (base, base + 10000) if not _free(port)] + [
        port for port in (8000,) if not _free(port)
    ]
    assert not busy, f"ports the compose services use inside their containers are taken here: {busy}"
    workdir = tmp_path_factory.mktemp("compose")
    with compose_host(rendered, redis_port, workdir) as host:
        s3_env = host.environment("s3")
        s3 = host.start("s3", s3_env, host.command("s3", volumes={"/data": str(workdir / "s3-data")}))
        (workdir / "s3-data").mkdir()
        host.wait_healthy("s3", s3_env, s3, 90)

        init = host.start("s3-init", host.environment("s3-init"), host.command("s3-init"))
        assert init.wait(timeout=150) == 0, (workdir / "s3-init.log").read_text()

        api_env = host.environment("api")
        host.wait_healthy("api", api_env, host.start("api", api_env, host.command("api")), 60)
        yield host


def _s3(env: dict[str, str], key_id: str, secret: str, service: str = "s3"):
    """A client of the compose stack's S3 port (S3, or its IAM API) with the given key."""
    import boto3

    return boto3.client(
        service, endpoint_url=env["S3_ENDPOINT_URL"], aws_access_key_id=key_id, aws_secret_access_key=secret,
        region_name="us-east-1",
    )  # fmt: skip


def test_the_bucket_init_makes_a_bucket_only_user_for_the_app(rendered, stack):
    init, api = stack.environment("s3-init"), stack.environment("api")
    bucket = api["S3_BUCKET"]
    root = _s3(init, init["S3_ROOT_ACCESS_KEY_ID"], init["S3_ROOT_SECRET_ACCESS_KEY"])
    app = _s3(api, api["S3_ACCESS_KEY_ID"], api["S3_SECRET_ACCESS_KEY"])
    assert bucket in [found["Name"] for found in root.list_buckets()["Buckets"]]
    # The app's user reads and writes its bucket ...
    app.put_object(Bucket=bucket, Key="jobs/probe/x.txt", Body=b"x")
    assert app.get_object(Bucket=bucket, Key="jobs/probe/x.txt")["Body"].read() == b"x"
    app.delete_object(Bucket=bucket, Key="jobs/probe/x.txt")
    # ... and nothing else: no other bucket, no new bucket, no lifecycle change.
    root.create_bucket(Bucket="someone-elses")
    root.put_object(Bucket="someone-elses", Key="secret.txt", Body=b"s")
    for refused in (
        lambda: app.get_object(Bucket="someone-elses", Key="secret.txt"),
        lambda: app.put_object(Bucket="someone-elses", Key="planted.txt", Body=b"p"),
        lambda: app.create_bucket(Bucket="another"),
    ):
        with pytest.raises(Exception, match="AccessDenied"):
            refused()
    # Nor does it manage users (the IAM API on the same port takes the root only).
    with pytest.raises(Exception, match="CreateUser"):  # a 403 in S3's error format, which boto calls Unknown
        _s3(api, api["S3_ACCESS_KEY_ID"], api["S3_SECRET_ACCESS_KEY"], "iam").create_user(UserName="intruder")
    root_iam = _s3(init, init["S3_ROOT_ACCESS_KEY_ID"], init["S3_ROOT_SECRET_ACCESS_KEY"], "iam")
    assert "intruder" not in [user["UserName"] for user in root_iam.list_users()["Users"]]
    # The s3 service takes exactly the credentials it was given, not any.
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|AccessDenied|SignatureDoesNotMatch"):
        _s3(api, "someone", "something-else").list_objects_v2(Bucket=bucket)


def test_the_bucket_init_sets_the_retention_rule(rendered, stack):
    init = stack.environment("s3-init")
    root = _s3(init, init["S3_ROOT_ACCESS_KEY_ID"], init["S3_ROOT_SECRET_ACCESS_KEY"])
    (rule,) = root.get_bucket_lifecycle_configuration(Bucket=init["S3_BUCKET"])["Rules"]
    assert rule["Status"] == "Enabled" and rule["Filter"]["Prefix"] == "jobs/"
    assert rule["Expiration"]["Days"] == Settings().job_record_days  # FILTERVIZ_JOB_RECORD_DAYS, as in Redis


def test_the_bucket_init_runs_again_and_the_app_key_still_works(rendered, stack):
    init = stack.start("s3-init-again", stack.environment("s3-init"), stack.command("s3-init"))
    assert init.wait(timeout=150) == 0, (stack.workdir / "s3-init-again.log").read_text()
    assert requests.get("http://127.0.0.1:8000/readyz", timeout=10).status_code == 200


@pytest.mark.parametrize("name", ["s3-init", "api"])
def test_the_default_secrets_are_refused_without_the_dev_setting(stack, name, tmp_path):
    defaults = Host(render_compose()["services"], stack.ports, tmp_path)
    # Beside the stack's own API on 8000.
    env = {**defaults.environment(name), "FILTERVIZ_API_BIND": f"127.0.0.1:{free_port()}"}
    started = defaults.start(name, env, defaults.command(name))
    try:
        assert started.wait(timeout=60) != 0
    finally:
        defaults.stop_all()
    log = (tmp_path / f"{name}.log").read_text()
    assert "refuses to start" in log and "REDIS_PASSWORD=<" in log and "S3_SECRET_ACCESS_KEY=<" in log, log[-3000:]
    assert ".env" in log


def test_the_api_is_ready_on_its_published_port(rendered, stack):
    published = {int(p["target"]): p for p in rendered["api"]["ports"]}
    assert 8000 in published and published[8000]["host_ip"] == "127.0.0.1"
    ready = requests.get("http://127.0.0.1:8000/readyz", timeout=10)
    assert ready.status_code == 200, ready.text


@pytest.fixture(scope="module")
def baked_weights(tmp_path_factory) -> Path:
    """Seeded random VGG16 weights in the legacy no-top HDF5 format of Keras' ImageNet file."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from tests.conftest import TEST_WEIGHTS
    from worker.model import load_vgg16

    path = tmp_path_factory.mktemp("weights") / "vgg16_notop.h5"
    with h5py.File(path, "w") as stream:
        legacy_h5_format.save_weights_to_hdf5_group(stream, load_vgg16(TEST_WEIGHTS).network)
    return path


@pytest.mark.parametrize("name", ["worker", "worker-gpu"])
def test_a_worker_becomes_healthy_and_renders_a_job(rendered, stack, baked_weights, name):
    image_weights = image_environment("worker")["FILTERVIZ_IMAGENET_WEIGHTS"]
    env = stack.environment(name, image_paths={image_weights: str(baked_weights)})
    assert env["FILTERVIZ_WEIGHTS"] == "imagenet"
    worker = stack.start(name, env, stack.command(name))
    try:
        stack.wait_healthy(name, env, worker, 180)
        # cache: false, so this worker renders it (the same job an earlier worker rendered would be a cache hit).
        response = requests.post("http://127.0.0.1:8000/v1/jobs", json={**SMALL_JOB, "cache": False}, timeout=10)
        assert response.status_code == 202, response.text
        job = wait_for("http://127.0.0.1:8000", response.json()["id"], {"succeeded", "failed"}, timeout=180)
        assert job["status"] == "succeeded", job["error"]
        assert job["weights"].startswith("imagenet:")
        # Without a GPU here, the GPU image's worker runs on the CPU rather than failing.
        manifest = requests.get(f"http://127.0.0.1:8000/v1/jobs/{job['id']}/manifest.json", timeout=10).json()
        assert manifest["runtime"]["device"] == "CPU"
        assert manifest["runtime"]["backend"] == {"worker": "tensorflow", "worker-gpu": "jax"}[name]
    finally:
        stack.stop(worker)
    assert worker.returncode == 0, f"{name} did not stop cleanly on SIGTERM"


def test_the_retention_service_sweeps_with_the_apps_key(rendered, stack):
    env = stack.environment("retention")
    assert env["S3_ROOT_SECRET_ACCESS_KEY"] != TEST_SECRETS["S3_ROOT_SECRET_ACCESS_KEY"]
    sweeper = stack.start("retention", env, stack.command("retention"))
    log = stack.workdir / "retention.log"
    try:
        wait_until(lambda: "older than 7 days" in log.read_text(), "a retention sweep", 60, sweeper)
    finally:
        stack.stop(sweeper)
    assert "failed" not in log.read_text()


def test_the_compose_file_sets_no_empty_variable(rendered):
    # An empty value is a set variable: gunicorn crash-looped on WEB_CONCURRENCY="".
    for name, service in rendered.items():
        empty = [key for key, value in service.get("environment", {}).items() if value == ""]
        assert not empty, f"{name} sets empty variables: {empty}"


def test_env_file_settings_reach_the_app_containers(tmp_path):
    (tmp_path / "docker-compose.yml").write_text((ROOT / "docker-compose.yml").read_text())
    (tmp_path / ".env").write_text("FILTERVIZ_MAX_STEPS=50\nREDIS_URL=redis://elsewhere:6379/0\n")
    services = render_compose(directory=tmp_path)["services"]
    for name in ("api", "worker", "worker-gpu", "s3-init"):
        env = services[name]["environment"]
        assert env["FILTERVIZ_MAX_STEPS"] == "50", name
        # What compose must set itself (where Redis and S3 are) wins over .env.
        assert urlparse(env["REDIS_URL"]).hostname == "redis", name
