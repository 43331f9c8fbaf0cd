"""``meshboot graph``: the mesh topology as a picture (svg, png) or as text (dot, mermaid).

    meshboot graph --config Pulumi.dev.yaml [--format svg|png|dot|mermaid] [--out FILE]

Built from the plan (``stacks.graph.model``): clusters grouped by network and
region, primaries and their remotes, east-west / multicluster gateways with
their addresses, remote-secret and Link edges, the services each cluster
runs. Text goes to stdout without ``--out``; png only to a file or a pipe.
Exit 2 on bad input (spec, --out), 1 if Graphviz's ``dot`` is missing for
svg/png or fails. Nothing is written unless everything succeeded.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

FORMATS = ("svg", "png", "dot", "mermaid")
SUFFIX_FORMATS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot",
                  ".mmd": "mermaid", ".mermaid": "mermaid"}
EXIT_SPEC = 2
EXIT_TOOL = 1


def _stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def out_problems(out: str | None, fmt: str, config: Path) -> list[str]:
    """Why ``--out`` (or stdout) cannot take the picture; empty if it can."""
    if out is None:
        if fmt == "png" and _stdout_is_tty():
            return ["--format png writes binary data: give --out FILE (or redirect stdout)"]
        return []
    if not out.strip():
        return ["--out is empty"]
    path = Path(out)
    parent = path.parent
    if path.is_dir():
        return [f"--out {out}: is a directory (give a file name)"]
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        return [f"--out {out}: {parent} {what}"]
    try:
        if path.exists() and path.resolve() == config.resolve():
            return [f"--out {out}: is the stack file"]
    except OSError as err:
        return [f"--out {out}: {err.strerror or err}"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"--out {out}: directory {parent} is not writable"]
    if path.exists() and not os.access(path, os.W_OK):
        return [f"--out {out}: file is not writable"]
    return []


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` in one rename (mode 0644), so it is never half written."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command()
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Output format. Default: from --out's suffix (.svg .png .dot/.gv "
                   ".mmd/.mermaid), else svg. svg and png need Graphviz's `dot`.")
@click.option("--out", "out", type=str, default=None,
              help="File to write (replaced). Default: stdout (png only if stdout is not a "
                   "terminal).")
def graph(config: Path, fmt: str | None, out: str | None) -> None:
    """Draw the mesh topology: networks, regions, clusters, gateways, remote secrets, Links."""
    from scripts.cli import _load, _plan
    from stacks.graph.dot import to_dot
    from stacks.graph.image import GraphvizFailed, GraphvizMissing, render_image
    from stacks.graph.mermaid import to_mermaid
    from stacks.graph.model import topology_graph

    if fmt is None:
        fmt = SUFFIX_FORMATS.get(Path(out).suffix.lower(), "svg") if out else "svg"
    refusals = out_problems(out, fmt, config)
    for line in refusals:  # reported with the spec's problems, if any
        click.echo(f"error: {line}", err=True)
    loaded = _load(config, read_keys=False)   # no CA key is drawn: no passphrase needed
    plan = _plan(loaded)
    if refusals:
        sys.exit(EXIT_SPEC)
    topology = topology_graph(loaded.spec, plan)
    data: bytes
    if fmt == "mermaid":
        data = to_mermaid(topology).encode()
    elif fmt == "dot":
        data = to_dot(topology).encode()
    else:
        try:
            data = render_image(to_dot(topology), "png" if fmt == "png" else "svg")
        except (GraphvizMissing, GraphvizFailed) as err:
            click.echo(f"error: --format {fmt}: {err}; --format dot or mermaid need no "
                       "Graphviz. Nothing was written.", err=True)
            sys.exit(EXIT_TOOL)
    if out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        _write(Path(out), data)
    except OSError as err:
        click.echo(f"error: --out {out}: cannot write: {err.strerror or err}", err=True)
        sys.exit(EXIT_SPEC)
    click.echo(f"{loaded.source}: {fmt} topology of {len(plan.clusters)} clusters written to {out}",
               err=True)
