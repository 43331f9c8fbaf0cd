"""SVG and PNG from DOT text, through the ``graphviz`` Python package and Graphviz's ``dot``.

The package only runs the ``dot`` program (graphviz.readthedocs.io, "Installation":
the Graphviz software itself is a separate install, e.g. Debian's ``graphviz``);
without it :class:`GraphvizMissing` says so, so the caller can name the fix.
"""

from __future__ import annotations

from typing import Literal

ImageFormat = Literal["svg", "png"]


class GraphvizMissing(RuntimeError):
    """Graphviz's ``dot`` program (or the ``graphviz`` package) is not installed."""


class GraphvizFailed(RuntimeError):
    """``dot`` ran and refused the source (a bug: the DOT is generated)."""


def render_image(dot_source: str, fmt: ImageFormat) -> bytes:
    """``dot_source`` laid out by ``dot`` and written as ``fmt``."""
    try:
        import graphviz
    except ImportError as err:  # a broken install: it is a dependency
        raise GraphvizMissing("the graphviz Python package is not installed "
                              "(pip install graphviz)") from err
    try:
        return graphviz.Source(dot_source, engine="dot").pipe(format=fmt)
    except graphviz.ExecutableNotFound as err:
        raise GraphvizMissing("Graphviz's `dot` program is not installed or not on PATH "
                              "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
                              "graphviz)") from err
    except graphviz.CalledProcessError as err:
        detail = (err.stderr or b"").decode(errors="replace").strip()
        raise GraphvizFailed(f"dot failed: {detail or err}") from err


def dot_available() -> bool:
    """Whether ``dot`` runs here (tests skip svg/png without it)."""
    try:
        import graphviz

        graphviz.version()
    except Exception:  # noqa: BLE001 - ImportError, ExecutableNotFound, CalledProcessError
        return False
    return True
