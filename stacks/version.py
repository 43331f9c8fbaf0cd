"""meshboot's version: the installed distribution's, else the source tree's."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

# Keep equal to ``version`` in pyproject.toml (used when meshboot runs uninstalled).
SOURCE_VERSION = "0.1.0"


def meshboot_version() -> str:
    try:
        return version("meshboot")
    except PackageNotFoundError:
        return SOURCE_VERSION


VERSION = meshboot_version()
