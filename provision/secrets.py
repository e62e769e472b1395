"""`python -m provision.secrets`: the stack's secrets, made once per install (compose's `secrets` service).

Each secret is a file that services read through a `NAME_FILE` variable (shared/settings.py), so no
secret sits in an image, a process' arguments, `docker inspect` or a log. For each one:
- a value set in .env (this service reads .env) is written as given: .env wins;
- else the file already there is kept, so an install keeps its secrets across restarts;
- else a random one is made.
The secrets are split into folders by who may read them, each folder a volume mounted read-only
into those services alone: `app` (Redis' password, the app's S3 key and the webhooks' master
signing key: every app service and Redis), `s3-root` (the storage root's key: the S3 server and the
bucket init) and `flower`.
Redis gets an ACL file holding the SHA-256 of its password, not the password.
A documented default is refused here where the stack is exposed (provision/default_secrets.py).
"""

import base64
import hashlib
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import Field, field_validator

from provision.default_secrets import DefaultSecretsError, refuse_default_secrets
from shared.environment import ConfigurationError
from shared.setting_groups import ExposureSettings
from shared.webhook_signing import SECRET_PREFIX

log = logging.getLogger("filterviz.secrets")

# Folder (a volume in compose) -> the secrets in it, by variable name.
FOLDERS = {
    "app": ("REDIS_PASSWORD", "S3_SECRET_ACCESS_KEY", "FILTERVIZ_WEBHOOK_SECRET"),
    "s3-root": ("S3_ROOT_SECRET_ACCESS_KEY",),
    "flower": ("FLOWER_PASSWORD",),
}
REDIS_ACL = ("app", "redis.acl")
# Letters, digits, - and _: safe in a URL's password and within SeaweedFS' 8-128 characters.
RANDOM_BYTES = 32
# Readable by the services that mount the folder (each image runs as its own user), writable by none.
MODE = 0o444


# Not in Settings: this one-shot writes the files the services' settings read; no service reads it.
class SecretsSettings(ExposureSettings):
    """Where the secrets service writes the secrets, a folder per volume; and whether the stack is exposed."""

    secrets_dir: Path = Field(Path("/run/secrets"), validation_alias="FILTERVIZ_SECRETS_DIR")

    @field_validator("secrets_dir")
    @classmethod
    def _absolute(cls, folder: Path) -> Path:
        # The volumes are mounted at absolute paths: a relative one would put the secrets beside them.
        if not folder.is_absolute():
            raise ValueError(f"{folder} is not an absolute path")
        return folder


def random_secret(name: str) -> str:
    """A new secret in the form its reader takes: Standard Webhooks' whsec_ and base64 for the webhooks' key."""
    if name == "FILTERVIZ_WEBHOOK_SECRET":
        return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(RANDOM_BYTES)).decode()
    return secrets.token_urlsafe(RANDOM_BYTES)


def redis_acl(password: str) -> str:
    """Valkey's ACL file: the default user, every command and key, the password by its hash."""
    return f"user default on #{hashlib.sha256(password.encode()).hexdigest()} ~* &* +@all\n"


def _write(path: Path, text: str) -> None:
    """Replace the file whole (a reader never sees half of it), then make it read-only."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.chmod(MODE)
    partial.replace(path)


def resolve(root: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Each secret's value: .env's, else the file's, else a new random one."""
    values = {}
    for folder, names in FOLDERS.items():
        for name in names:
            existing = root / folder / name
            values[name] = env.get(name) or (existing.read_text() if existing.is_file() else "") or random_secret(name)
    return values


def write(root: Path, values: Mapping[str, str]) -> None:
    for folder, names in FOLDERS.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = root / folder / name
            if not target.is_file() or target.read_text() != values[name]:
                _write(target, values[name])
    _write(root.joinpath(*REDIS_ACL), redis_acl(values["REDIS_PASSWORD"]))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = SecretsSettings.from_environment()
    except ConfigurationError as error:
        log.error("%s", error)
        return 2
    root = settings.secrets_dir
    values = resolve(root, os.environ)
    try:
        refuse_default_secrets("the stack", values, published=settings.bind_addr)
    except DefaultSecretsError as error:
        log.error("%s", error)
        return 2
    write(root, values)
    given = sorted(name for name in values if os.environ.get(name))
    log.info("secrets ready in %s (%s from .env, the others kept or made here)", root, ", ".join(given) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
