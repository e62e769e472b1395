"""`docker compose up` for real, as a new user runs it on a fresh clone: no .env, the images built
from the Dockerfile, every service in its container, a job through the published port.

Runs on podman's Docker API (tests/compose/engine.sh) with local stand-ins for the images the files
pull (tests/compose/images.py); the compose file and the Dockerfile are used as they are. Builds take
the wheelhouse and seeded random weights (TEST_BUILD_ARGS), the GPU image JAX's CPU wheels.
"""

import io
import re
import subprocess
from collections.abc import Iterator

import boto3
import pytest
import requests
from PIL import Image

from devstack.local import free_port
from shared.webhook_signing import owner_secret
from tests.compose.compose_project import ComposeProject, checkout_copy
from tests.compose.images import ENGINE, build_standins, engine_environment
from tests.compose_helpers import ROOT
from tests.service_helpers import SMALL_JOB, wait_for

# The first test's timeout covers the module's setup: on a fresh machine debootstrap, the stand-ins and
# every image build take about 15 minutes (later runs reuse the layers).
pytestmark = [pytest.mark.compose, pytest.mark.timeout(2700)]

PROJECT = "filterviz-compose-test"
SECRETS = ("REDIS_PASSWORD", "S3_SECRET_ACCESS_KEY", "S3_ROOT_SECRET_ACCESS_KEY", "FLOWER_PASSWORD",
           "FILTERVIZ_WEBHOOK_SECRET")  # fmt: skip
DOCUMENTED_DEFAULTS = ("filterviz-redis", "filterviz-secret", "filterviz-root-secret", "filterviz-flower")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[ComposeProject]:
    """A fresh clone's compose project, its images built, nothing of it running before or after."""
    subprocess.run(["make", "--no-print-directory", "wheelhouse"], cwd=ROOT, check=True)
    try:
        build_standins()
        ports = {"FILTERVIZ_API_PORT": str(free_port()), "FILTERVIZ_S3_PORT": str(free_port())}
        compose = ComposeProject(PROJECT, checkout_copy(tmp_path_factory.mktemp("clone")), ports)
        compose.down()  # what an interrupted run left
        # The three images: the other services run one of them (each build sends the whole context).
        compose.build("api", "worker")
        compose.build("worker-gpu", profiles=("gpu",), extra_args={"WORKER_EXTRA": "jax"})
        assert {spec["image"] for spec in compose.config(("gpu",))["services"].values() if "build" in spec} == {
            compose.config(("gpu",))["services"][name]["image"] for name in ("api", "worker", "worker-gpu")
        }
        yield compose
        compose.down()
        assert compose.containers() == [], "containers left after `docker compose down -v`"
        assert compose.volumes() == {}, "volumes left after `docker compose down -v`"
    finally:
        # Layers of earlier builds that nothing tags any more: bounded, the last day's kept as build cache.
        subprocess.run(["podman", "image", "prune", "--force", "--filter", "until=24h"], env=engine_environment(),
                       capture_output=True)  # fmt: skip
        # The engine's API service and healthcheck ticker would go on using CPU beside the other tests.
        subprocess.run([str(ENGINE), "down"], check=True)


@pytest.fixture(scope="module")
def stack(project) -> ComposeProject:
    """`docker compose up` with no .env: every healthcheck passes."""
    assert not (project.directory / ".env").exists()
    project.up()
    return project


def api(project: ComposeProject) -> str:
    return f"http://127.0.0.1:{project.variables['FILTERVIZ_API_PORT']}"


def render_job(project: ComposeProject) -> tuple[dict, dict]:
    """Submit a job through the published port (cache off: the running worker renders it), poll it to
    its end, fetch its grid; return the job and its manifest."""
    response = requests.post(f"{api(project)}/v1/jobs", json={**SMALL_JOB, "cache": False}, timeout=30)
    assert response.status_code == 202, response.text
    job = wait_for(api(project), response.json()["id"], {"succeeded", "failed"}, timeout=300)
    assert job["status"] == "succeeded", f"{job['error']}\n{project.logs()[-6000:]}"
    grid = requests.get(f"{api(project)}{job['links']['grid']}", timeout=30)
    assert grid.status_code == 200 and grid.headers["Content-Type"] == "image/png"
    picture = Image.open(io.BytesIO(grid.content))
    n, margin, size = SMALL_JOB["grid"]["n"], SMALL_JOB["grid"]["margin"], SMALL_JOB["image_size"]
    assert picture.size == (n * size + (n - 1) * margin,) * 2
    assert len(set(picture.getdata())) > 100, "the grid is not a rendered picture"
    manifest = requests.get(f"{api(project)}{job['links']['manifest']}", timeout=30).json()
    return job, manifest


def test_a_fresh_clone_serves_a_job_with_no_env_file(stack):
    job, manifest = render_job(stack)
    assert job["weights"] == manifest["weights"] == "random:1"  # the test build's, and said so
    assert manifest["runtime"]["backend"] == "tensorflow"
    page = requests.get(f"{api(stack)}/", timeout=10)
    assert page.status_code == 200 and "filterviz" in page.text


def secret_values(project: ComposeProject) -> dict[str, str]:
    """The secrets the `secrets` service made, read from their volumes on this machine."""
    volumes = project.volumes()
    found = {path.name: path.read_text() for volume in volumes if volume.startswith("secrets-")
             for path in volumes[volume].iterdir() if path.name in SECRETS}  # fmt: skip
    assert set(found) == set(SECRETS), found.keys()
    return found


def test_secrets_are_random_per_install_and_nowhere_but_their_files(stack):
    values = secret_values(stack)
    for name, value in values.items():
        assert len(value) >= 40 and value not in DOCUMENTED_DEFAULTS, name
    assert len(set(values.values())) == len(values)
    logs = stack.logs()
    for container in stack.containers():
        configured = [*container["Config"]["Env"], *(container["Config"].get("Cmd") or []), *container["Args"]]
        seen = "\n".join(configured)
        for name, value in values.items():
            assert value not in seen, f"{name} in the environment or arguments of {container['Name']}"
    running = [container["Id"] for container in stack.containers() if container["State"]["Running"]]
    for container in running:
        processes = subprocess.run(["podman", "top", container, "args"], env=engine_environment(),
                                   capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert not any(value in processes for value in values.values()), processes
    for name, value in values.items():
        assert value not in logs, f"{name} in the logs"
    # Webhooks are on, signed with the install's key: a receiver reads its owner's secret from the API.
    answer = requests.get(f"{api(stack)}/v1/webhook-secret", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["secret"] == owner_secret(values["FILTERVIZ_WEBHOOK_SECRET"], None)
    # Redis knows its password by its hash alone.
    acl = (stack.volumes()["secrets-app"] / "redis.acl").read_text()
    assert values["REDIS_PASSWORD"] not in acl and re.fullmatch(r"user default on #[0-9a-f]{64} ~\* &\* \+@all\n", acl)


def test_the_ports_are_published_on_loopback_only(stack):
    running = [container for container in stack.containers() if container["State"]["Running"]]
    ports = [bindings for container in running for bindings in (container["NetworkSettings"]["Ports"] or {}).values()]
    published = [binding for bindings in ports for binding in bindings or []]
    assert {binding["HostPort"] for binding in published} == {
        stack.variables["FILTERVIZ_API_PORT"],
        stack.variables["FILTERVIZ_S3_PORT"],
    }
    assert {binding["HostIp"] for binding in published} == {"127.0.0.1"}


def test_a_documented_default_is_refused_where_the_stack_would_be_exposed(stack):
    original = secret_values(stack)["REDIS_PASSWORD"]
    default = ("-e", "REDIS_PASSWORD=filterviz-redis")
    # (podman's `compose run` answers 0 whatever the container exits with: the log and the files tell.)
    exposed = stack.run("run", "--rm", "--no-deps", *default, "-e", "FILTERVIZ_BIND_ADDR=0.0.0.0", "secrets")
    said = exposed.stdout + exposed.stderr
    assert "refuses to start: REDIS_PASSWORD holds a documented default" in said, said
    assert "published on 0.0.0.0" in said
    assert secret_values(stack)["REDIS_PASSWORD"] == original  # refused: nothing written
    # On loopback the same value is allowed, and written (.env wins); then put back.
    stack.run("run", "--rm", "--no-deps", *default, "secrets")
    assert secret_values(stack)["REDIS_PASSWORD"] == "filterviz-redis"
    stack.run("run", "--rm", "--no-deps", "-e", f"REDIS_PASSWORD={original}", "secrets")
    assert secret_values(stack)["REDIS_PASSWORD"] == original


def s3_client(project: ComposeProject, key_id: str, secret: str, service: str = "s3"):
    """A client of the stack's published S3 port (S3, or its IAM API) with the given key."""
    endpoint = f"http://127.0.0.1:{project.variables['FILTERVIZ_S3_PORT']}"
    return boto3.client(service, endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                        region_name="us-east-1")  # fmt: skip


def test_the_bucket_init_made_a_bucket_only_user_for_the_app(stack):
    values, env = secret_values(stack), stack.config()["services"]["s3-init"]["environment"]
    bucket = env["S3_BUCKET"]
    root = s3_client(stack, env["S3_ROOT_ACCESS_KEY_ID"], values["S3_ROOT_SECRET_ACCESS_KEY"])
    app = s3_client(stack, env["S3_ACCESS_KEY_ID"], values["S3_SECRET_ACCESS_KEY"])
    (rule,) = root.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["Status"] == "Enabled" and rule["Filter"]["Prefix"] == "jobs/" and rule["Expiration"]["Days"] == 7
    # The app's user reads and writes its bucket, and nothing else: no other bucket, no new one, no IAM.
    app.put_object(Bucket=bucket, Key="jobs/probe/x.txt", Body=b"x")
    assert app.get_object(Bucket=bucket, Key="jobs/probe/x.txt")["Body"].read() == b"x"
    app.delete_object(Bucket=bucket, Key="jobs/probe/x.txt")
    root.create_bucket(Bucket="someone-elses")
    root.put_object(Bucket="someone-elses", Key="secret.txt", Body=b"s")
    for refused in (
        lambda: app.get_object(Bucket="someone-elses", Key="secret.txt"),
        lambda: app.create_bucket(Bucket="another"),
        lambda: s3_client(stack, env["S3_ACCESS_KEY_ID"], values["S3_SECRET_ACCESS_KEY"], "iam").create_user(
            UserName="intruder"
        ),
    ):
        with pytest.raises(Exception, match=r"AccessDenied|CreateUser"):
            refused()
    # The documented default root key is not the root's.
    with pytest.raises(Exception, match=r"InvalidAccessKeyId|AccessDenied|SignatureDoesNotMatch"):
        s3_client(stack, env["S3_ROOT_ACCESS_KEY_ID"], "filterviz-root-secret").list_buckets()


def test_the_retention_service_sweeps_with_the_apps_key(stack):
    log = stack.logs("retention")
    assert "older than 7 days" in log and "failed" not in log, log[-3000:]


def test_the_gpu_profile_runs_the_job_on_jax(stack):
    stack.up("--scale", "worker=0", profiles=("gpu",))
    running = {container["Config"]["Labels"]["com.docker.compose.service"] for container in stack.containers()
               if container["State"]["Running"]}  # fmt: skip
    assert "worker-gpu" in running and "worker" not in running
    _, manifest = render_job(stack)
    assert manifest["runtime"]["backend"] == "jax"
    assert manifest["runtime"]["device"] == "CPU"  # no GPU here: the GPU image's worker runs on the CPU
