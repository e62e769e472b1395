"""Print the requirements of pyproject.toml, with those of the named extras, one per line.

The Dockerfile installs these before it copies the source, so a code change doesn't reinstall
TensorFlow: `python requirements.py pyproject.toml worker > requirements.txt`.
"""

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The project's dependencies followed by those of each extra."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"unknown extras {unknown}; pyproject.toml has {sorted(optional)}")
    return project["dependencies"] + [line for extra in extras for line in optional[extra]]


if __name__ == "__main__":
    print("\n".join(requirements(Path(sys.argv[1]), sys.argv[2:])))
