"""docker-compose.yml, the Dockerfile, .env.example, the README and the code agree.

There is no Docker engine here: the compose file is resolved by Debian's docker-compose
(`make test` installs it) and checked against what the code reads and serves.
"""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from api import gunicorn_conf
from api.app import create_app
from shared.celery_app import QUEUE
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("api", "worker", "worker-gpu")
# Variables that other libraries define; the code only passes them on.
THIRD_PARTY = {"KERAS_HOME", "PATH", "TF_CPP_MIN_LOG_LEVEL"}
_ENV_READ = re.compile(r"""environ\.get\(\s*["']([A-Z][A-Z0-9_]*)["']""")
_ASSIGNED = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def variables_read_by_code() -> set[str]:
    """Every environment variable the API, workers, CLI and local stack read."""
    settings = {field.validation_alias for field in Settings.model_fields.values()}
    sources = [path for part in ("api", "shared", "worker", "devstack") for path in (ROOT / part).rglob("*.py")]
    read = {name for path in sources for name in _ENV_READ.findall(path.read_text())}
    return (settings | read) - THIRD_PARTY


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> dict:
    """The compose services with every profile on, anchors merged and variables at their defaults."""
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose not found: `make test` installs it (Debian package docker-compose)"
    # Only the file's own defaults: nothing from this shell or a developer's .env.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    no_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    no_env_file.touch()
    resolved = subprocess.run(
        [compose, "--env-file", str(no_env_file), "--profile", "gpu", "--profile", "flower", "config"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return yaml.safe_load(resolved)["services"]


def _dockerfile_stage(target: str) -> str:
    text = (ROOT / "Dockerfile").read_text()
    start = re.search(rf"^FROM \S+ AS {target}$", text, re.MULTILINE)
    assert start, f"Dockerfile has no stage {target}"
    following = re.search(r"^FROM ", text[start.end() :], re.MULTILINE)
    return text[start.start() : start.end() + following.start()] if following else text[start.start() :]


def _published(service: dict, container_port: int) -> int:
    ports = {int(p["target"]): int(p["published"]) for p in service.get("ports", [])}
    assert container_port in ports, f"port {container_port} is not published"
    return ports[container_port]


def test_compose_sets_only_variables_the_code_reads(services):
    known = variables_read_by_code()
    for name in APP_SERVICES:
        unknown = set(services[name]["environment"]) - known
        assert not unknown, f"{name} sets variables no code reads: {sorted(unknown)}"


def test_env_example_and_readme_list_every_variable():
    example = set(_ASSIGNED.findall((ROOT / ".env.example").read_text()))
    missing = variables_read_by_code() - example
    assert not missing, f".env.example lacks {sorted(missing)}"
    compose_uses = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    assert compose_uses <= example, f".env.example lacks {sorted(compose_uses - example)}"
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") :]
    in_readme = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", table, re.MULTILINE))
    in_readme |= set(re.findall(r"^\| `[A-Z0-9_]+` / `([A-Z][A-Z0-9_]*)`", table, re.MULTILINE))
    assert in_readme == example, f"README vs .env.example: {sorted(in_readme ^ example)}"


def test_app_services_reach_redis_and_minio_by_their_compose_names(services):
    minio = services["minio"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert urlparse(env["REDIS_URL"]).hostname == "redis"
        s3 = urlparse(env["S3_ENDPOINT_URL"])
        assert (s3.hostname, s3.port) == ("minio", 9000)
        public = urlparse(env["S3_PUBLIC_ENDPOINT_URL"])
        assert (public.hostname, public.port) == ("localhost", _published(minio, 9000))
        credentials = (env["S3_ACCESS_KEY_ID"], env["S3_SECRET_ACCESS_KEY"])
        assert credentials == (minio["environment"]["MINIO_ROOT_USER"], minio["environment"]["MINIO_ROOT_PASSWORD"])
        assert env["S3_BUCKET"] == services["minio-init"]["environment"]["S3_BUCKET"]


def test_api_port_and_healthchecks_match_the_app(services):
    api = services["api"]
    port = int(gunicorn_conf.bind.rsplit(":", 1)[1])
    assert _published(api, port) == 8000
    routes = create_app(Settings()).url_map.bind("localhost")
    healthchecks = [" ".join(api["healthcheck"]["test"]), _dockerfile_stage("api")]
    for check in healthchecks:
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", check)
        assert url, f"no health URL in {check!r}"
        assert int(url.group(1)) == port
        assert routes.match(url.group(2), method="GET")[0] == "meta.healthz"
    assert f"EXPOSE {port}" in _dockerfile_stage("api")


def test_every_dependency_waits_until_healthy_or_done(services):
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] in {"service_healthy", "service_completed_successfully"}, (name, dependency)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    # `docker compose up --wait` counts a one-shot service that exited as a failure unless a
    # long-running service waits for it to complete.
    assert services["api"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"


def test_gpu_worker_asks_for_an_nvidia_gpu_behind_a_profile(services):
    gpu = services["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["profiles"], "a GPU reservation outside a profile breaks `docker compose up` on hosts without one"
    assert gpu["build"]["args"]["WORKER_EXTRA"] == "gpu"
    for name, service in services.items():
        if not service.get("profiles"):
            assert "devices" not in str(service.get("deploy", {})), f"{name} reserves devices without a profile"


def test_workers_scale_and_listen_on_the_render_queue(services):
    for name in ("worker", "worker-gpu"):
        assert "container_name" not in services[name] and "ports" not in services[name], f"{name} can't be scaled"
        assert services[name]["build"]["target"] == "worker"
    command = _dockerfile_stage("worker")
    assert f'"--queues", "{QUEUE}"' in command
    assert "FILTERVIZ_IMAGENET_WEIGHTS=/opt/filterviz/weights/" in command
    assert re.search(r"^USER (?!root)", command, re.MULTILINE), "the worker runs as root"
    assert re.search(r"^USER (?!root)", _dockerfile_stage("api"), re.MULTILINE), "the API runs as root"


def test_dockerfile_copies_only_what_exists_and_the_build_context_keeps():
    text = (ROOT / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE) for s in line.split()[:-1]]
    kept = {line.lstrip("!").rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
        assert source.rstrip("/") in kept, f".dockerignore leaves {source} out of the build context"
    # The API image installs the base dependencies only: TensorFlow must not be among them.
    installs = re.findall(r"pip install (.+)", _dockerfile_stage("api"))
    assert installs and all("[" not in line for line in installs), "the API image installs an extra"
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in base if d.lower().startswith(("tensorflow", "keras"))]
