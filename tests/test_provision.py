"""The secrets a stack makes for itself, the refusal of documented defaults where a stack is exposed,
and settings read from NAME_FILE (unit tests: no servers)."""

import hashlib
import signal
import stat
import subprocess

import pytest
import redis

from devstack.local import free_port, stop_process_group, valkey_server, wait_until
from provision.default_secrets import DefaultSecretsError, exposure, refuse_default_secrets, settings_secrets
from provision.secrets import FOLDERS, REDIS_ACL, resolve, write
from shared.settings import Settings
from shared.webhook_signing import secret_bytes

ALL_SECRETS = [name for names in FOLDERS.values() for name in names]


def files(root) -> dict[str, str]:
    return {name: (root / folder / name).read_text() for folder, names in FOLDERS.items() for name in names}


def test_a_first_start_makes_long_random_url_safe_secrets_readable_by_all_writable_by_none(tmp_path):
    write(tmp_path, resolve(tmp_path, {}))
    made = files(tmp_path)
    assert set(made) == set(ALL_SECRETS) and len(set(made.values())) == len(made)
    for name, value in made.items():
        if name == "FILTERVIZ_WEBHOOK_SECRET":  # Standard Webhooks' form, as the signing code reads it
            assert value.startswith("whsec_") and len(secret_bytes(value)) == 32
        else:  # within SeaweedFS' rules, and safe in a URL's password
            assert len(value) >= 40 and value.replace("-", "").replace("_", "").isalnum(), name
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
    # Another install gets other secrets.
    other = tmp_path / "other"
    write(other, resolve(other, {}))
    assert not set(files(other).values()) & set(made.values())


def test_a_restart_keeps_the_secrets_and_env_wins(tmp_path):
    write(tmp_path, resolve(tmp_path, {}))
    first = files(tmp_path)
    write(tmp_path, resolve(tmp_path, {}))
    assert files(tmp_path) == first
    write(tmp_path, resolve(tmp_path, {"REDIS_PASSWORD": "chosen-in-dotenv", "UNRELATED": "x"}))
    assert files(tmp_path) == {**first, "REDIS_PASSWORD": "chosen-in-dotenv"}
    # Taken out of .env again, the value stays what the running stack has.
    write(tmp_path, resolve(tmp_path, {}))
    assert files(tmp_path)["REDIS_PASSWORD"] == "chosen-in-dotenv"


def test_redis_gets_the_hash_of_its_password_not_the_password(tmp_path):
    write(tmp_path, resolve(tmp_path, {"REDIS_PASSWORD": "s3cret"}))
    acl = tmp_path.joinpath(*REDIS_ACL).read_text()
    assert "s3cret" not in acl
    assert acl == f"user default on #{hashlib.sha256(b's3cret').hexdigest()} ~* &* +@all\n"


@pytest.mark.stack  # starts its own servers
def test_the_acl_file_is_what_valkey_takes(tmp_path):
    """valkey-server started on the ACL file answers to the password alone."""
    write(tmp_path, resolve(tmp_path, {"REDIS_PASSWORD": "s3cret"}))
    port = free_port()
    server = subprocess.Popen(
        [str(valkey_server()), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path),
         "--aclfile", str(tmp_path.joinpath(*REDIS_ACL))],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: redis.Redis(port=port, password="s3cret").ping(), "valkey with the ACL file", 30, server)
        for wrong in (None, "wrong"):
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=port, password=wrong).ping()
    finally:
        stop_process_group(server, signal.SIGKILL)


@pytest.mark.parametrize(
    ("env", "published", "listening", "why"),
    [
        ({}, None, ["127.0.0.1:8000"], None),
        ({}, None, ["[::1]:8000", "localhost:8000"], None),
        ({}, None, ["0.0.0.0:8000"], "it listens on 0.0.0.0:8000"),
        ({}, None, ["unix:/run/api.sock"], None),
        # compose: 0.0.0.0 inside the container, published on loopback
        ({}, "127.0.0.1", ["0.0.0.0:8000"], None),
        ({}, "0.0.0.0", [], "its ports are published on 0.0.0.0 (FILTERVIZ_BIND_ADDR)"),
        ({}, "192.168.1.5", [], "its ports are published on 192.168.1.5 (FILTERVIZ_BIND_ADDR)"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "127.0.0.1", [], "it runs in Kubernetes"),
    ],
)
def test_a_stack_is_exposed_where_others_can_reach_it(env, published, listening, why):
    assert exposure(env, published, listening) == why


def test_a_default_is_refused_where_exposed_naming_it_and_why():
    defaults = {"S3_SECRET_ACCESS_KEY": "filterviz-secret", "REDIS_PASSWORD": "filterviz-redis"}
    refuse_default_secrets("the API", defaults, {}, ["127.0.0.1:8000"], published=None)  # loopback: allowed
    kubernetes = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    refuse_default_secrets("the API", {"S3_SECRET_ACCESS_KEY": "long-random"}, kubernetes, published=None)
    with pytest.raises(DefaultSecretsError) as refused:
        refuse_default_secrets("the API", defaults, kubernetes, published=None)
    message = str(refused.value)
    assert "S3_SECRET_ACCESS_KEY, REDIS_PASSWORD hold a documented default" in message
    assert "it runs in Kubernetes" in message and "S3_SECRET_ACCESS_KEY=<" in message
    # The example Secret of deploy/k8s is documented too.
    with pytest.raises(DefaultSecretsError, match="S3_SECRET_ACCESS_KEY holds"):
        refuse_default_secrets("s3-init", {"S3_SECRET_ACCESS_KEY": "change-me"}, kubernetes, published=None)
    with pytest.raises(DefaultSecretsError, match=r"published on 0\.0\.0\.0 \(FILTERVIZ_BIND_ADDR\)"):
        refuse_default_secrets("the stack", defaults, {}, published="0.0.0.0")


def test_settings_read_secrets_from_files_and_a_variable_wins(tmp_path, monkeypatch):
    secret = tmp_path / "S3_SECRET_ACCESS_KEY"
    secret.write_text("from-the-file\n")
    password = tmp_path / "REDIS_PASSWORD"
    password.write_text("p@ss/word")
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY_FILE", str(secret))
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(password))
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    settings = Settings()
    assert settings.s3_secret_access_key == "from-the-file"
    # The password goes into the URL, quoted; redis-py reads it back as it was.
    assert settings.redis_url == "redis://:p%40ss%2Fword@redis:6379/0"
    assert redis.Redis.from_url(settings.redis_url).connection_pool.connection_kwargs["password"] == "p@ss/word"
    assert settings_secrets(settings)["REDIS_PASSWORD"] == "p@ss/word"
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", "set-directly")
    assert Settings().s3_secret_access_key == "set-directly"
    # A URL that names its own password keeps it.
    monkeypatch.setenv("REDIS_URL", "redis://:own@redis:6379/0")
    assert Settings().redis_url == "redis://:own@redis:6379/0"


def test_a_secret_file_that_cant_be_read_stops_the_start_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"S3_SECRET_ACCESS_KEY_FILE=.*missing can't be read"):
        Settings()
