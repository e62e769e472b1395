"""Fill docker/wheels/ with every wheel the images install, at the pinned versions, for the images'
Python (the Dockerfile's PYTHON_IMAGE) and this machine's architecture: `make wheelhouse`.

Builds with `--build-arg WHEELHOUSE_ONLY=1` then ask no package index. pip keeps what it downloaded
in its cache, so a second fill (or the host's own install) costs no download.
"""

import platform
import re
import subprocess
import sys
from pathlib import Path

from requirements import requirements

DOCKER = Path(__file__).resolve().parent
ROOT = DOCKER.parent
WHEELS = DOCKER / "wheels"
# The extras the images install: api (none), the CPU worker, and the JAX worker the compose test builds
# in place of the CUDA one. The `gpu` extra's CUDA wheels (3 GB) are left to builds on GPU hosts.
EXTRAS = ([], ["worker"], ["jax"])
# What `pip install --no-deps .` builds the project with (pyproject.toml's build-system).
BUILD_REQUIREMENTS = ["setuptools>=77"]
# The newest glibc the image's Debian has (trixie: 2.41). pip download takes the platform tags as
# given, so every older manylinux tag is named too (and the legacy names of 2.5, 2.12 and 2.17).
GLIBC_MINOR = 41
LEGACY_MANYLINUX = ("manylinux1", "manylinux2010", "manylinux2014")


def platform_tags(machine: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 4, -1)]
    return tags + [f"{legacy}_{machine}" for legacy in LEGACY_MANYLINUX]


def image_python() -> str:
    """'3.13' from `ARG PYTHON_IMAGE=python:3.13-slim-trixie`."""
    found = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\S*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    if not found:
        raise SystemExit("the Dockerfile's PYTHON_IMAGE is not python:<major.minor>...")
    return found.group(1)


def main() -> int:
    WHEELS.mkdir(exist_ok=True)
    download = [
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(WHEELS), "--only-binary=:all:",
        "--python-version", image_python(),
        *(arg for tag in platform_tags(platform.machine()) for arg in ("--platform", tag)),
        "--constraint", str(DOCKER / "constraints.txt"), *BUILD_REQUIREMENTS,
    ]  # fmt: skip
    # One resolution per image, as each image's pip resolves its own requirements.
    for extras in EXTRAS:
        subprocess.run([*download, *requirements(ROOT / "pyproject.toml", extras)], check=True)
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels in {WHEELS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
