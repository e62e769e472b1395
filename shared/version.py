"""The version of filterviz users see: pyproject.toml's, as installed."""

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed package's version, or "unknown" when run from a tree that was never installed."""
    try:
        return version("filterviz")
    except PackageNotFoundError:
        return "unknown"
