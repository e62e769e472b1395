"""A compose project run as a user runs it: a clean copy of the checkout (no .env), Docker Compose v2
against the podman engine (tests/compose/engine.sh), and the images built from the real Dockerfile."""

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.compose.images import BIN, WHEELHOUSE, engine_environment, qualified
from tests.compose_helpers import ROOT

COMPOSE = BIN / "docker-compose"
# What a test build passes instead of reaching the internet: the wheelhouse alone, seeded random
# weights instead of the ImageNet download (release builds keep both defaults).
TEST_BUILD_ARGS = {"WHEELHOUSE_ONLY": "1", "WORKER_WEIGHTS": "random:1"}


def checkout_copy(destination: Path) -> Path:
    """The files git tracks, and those it doesn't ignore, copied as a fresh clone has them (no .env);
    the wheelhouse hard-linked in (it is ignored, and large)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    for wheel in WHEELHOUSE.glob("*.whl"):
        (destination / "docker" / "wheels" / wheel.name).hardlink_to(wheel)
    return destination


@dataclass
class ComposeProject:
    """`docker compose -p <name>` in `directory`, with only the engine's variables and `variables`
    (the shell's, for interpolation: no .env) in its environment."""

    name: str
    directory: Path
    variables: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        engine = engine_environment()
        kept = ("PATH", "HOME", "DOCKER_HOST", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "DOCKER_BUILDKIT",
                "COMPOSE_BAKE")  # fmt: skip
        return {**{key: engine[key] for key in kept if key in engine}, **self.variables}

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        command = [str(COMPOSE), "--project-name", self.name, *args]
        done = subprocess.run(command, cwd=self.directory, env=self.environment(), capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        if check and done.returncode != 0:
            output = f"{done.stdout[-3000:]}{done.stderr[-5000:]}"
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{output}")
        return done

    def build(self, *services: str, profiles: tuple[str, ...] = (), extra_args: dict[str, str] | None = None) -> None:
        """Build the services' images with the test build arguments; fail unless each image exists
        after (the classic builder through compose can exit 0 on a failed step)."""
        build_args = {**TEST_BUILD_ARGS, **(extra_args or {})}
        flags = [arg for name, value in build_args.items() for arg in ("--build-arg", f"{name}={value}")]
        done = self.run(*self.profile_flags(profiles), "build", *flags, *services, timeout=1800)
        config = self.config(profiles)
        for service in services or [name for name, spec in config["services"].items() if "build" in spec]:
            image = config["services"][service]["image"]
            exists = subprocess.run(["podman", "image", "exists", qualified(image)], env=engine_environment())
            assert exists.returncode == 0, f"{service}: no image {image} after the build:\n{done.stdout[-5000:]}"

    @staticmethod
    def profile_flags(profiles: tuple[str, ...]) -> list[str]:
        return [arg for profile in profiles for arg in ("--profile", profile)]

    def config(self, profiles: tuple[str, ...] = ()) -> dict:
        return json.loads(self.run(*self.profile_flags(profiles), "config", "--format", "json").stdout)

    def up(self, *args: str, profiles: tuple[str, ...] = ()) -> None:
        """`up --detach --wait`: returns once every service is healthy (or its one shot is done)."""
        try:
            self.run(*self.profile_flags(profiles), "up", "--detach", "--wait", "--wait-timeout", "600", *args)
        except AssertionError as error:
            raise AssertionError(f"{error}\n--- logs ---\n{self.logs()[-8000:]}") from None

    def logs(self, *services: str) -> str:
        return self.run("logs", "--no-color", *services, check=False).stdout

    def containers(self) -> list[dict]:
        """Every container of the project (running or not), as `podman inspect` describes it."""
        listed = subprocess.run(
            ["podman", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={self.name}"],
            env=engine_environment(), capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        if not listed:
            return []
        return json.loads(subprocess.run(["podman", "inspect", *listed], env=engine_environment(),
                                         capture_output=True, text=True, check=True).stdout)  # fmt: skip

    def volumes(self) -> dict[str, Path]:
        """The project's named volumes -> their folders on this machine."""
        listed = subprocess.run(
            ["podman", "volume", "ls", "--format", "json", "--filter", f"label=com.docker.compose.project={self.name}"],
            env=engine_environment(), capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        volumes = json.loads(listed)
        return {volume["Labels"]["com.docker.compose.volume"]: Path(volume["Mountpoint"]) for volume in volumes}

    def down(self) -> None:
        self.run("--profile", "gpu", "--profile", "flower", "--profile", "monitoring", "down", "--volumes",
                 "--remove-orphans", "--timeout", "10", check=False)  # fmt: skip
