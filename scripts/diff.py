"""``meshboot diff``: what changes between two renders, per cluster, safe to publish.

    meshboot diff OLD_DIR NEW_DIR [--old-secrets DIR] [--new-secrets DIR] [--markdown]
    meshboot diff --config Pulumi.<env>.yaml --against OLD_DIR [--pki-dir DIR] [--markdown]

Exit 0: no changes; 3: changes (so CI can branch on it); 2: bad input.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click

from stacks.diff_report import markdown_report, text_report
from stacks.render_diff import diff_trees
from stacks.render_tree import RenderTree, TreeError, read_tree

EXIT_CHANGES = 3
EXIT_BAD_INPUT = 2


def _bad(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@click.command("diff")
@click.argument("dirs", nargs=-1, type=click.Path(path_type=Path), metavar="[OLD_DIR NEW_DIR]")
@click.option("--config", "config", type=click.Path(path_type=Path), default=None,
              help="Render this stack file (into a temporary directory) as the new side.")
@click.option("--against", "against", type=click.Path(path_type=Path), default=None,
              help="With --config: the existing render to compare with (the old side).")
@click.option("--pki-dir", "pki_dir", type=click.Path(path_type=Path), default=None,
              help="With --config: the PKI store to render with (default: .meshboot/<env>/pki "
                   "next to the stack file). Read only: the render uses a copy.")
@click.option("--old-secrets", "old_secrets", type=click.Path(path_type=Path), default=None,
              help="The --secrets-out tree of the old render, when it has one.")
@click.option("--new-secrets", "new_secrets", type=click.Path(path_type=Path), default=None,
              help="The --secrets-out tree of the new render, when it has one.")
@click.option("--markdown", "markdown", is_flag=True, default=False,
              help="Markdown for a pull request comment instead of text.")
def diff(dirs: tuple[Path, ...], config: Path | None, against: Path | None,
         pki_dir: Path | None, old_secrets: Path | None, new_secrets: Path | None,
         markdown: bool) -> None:
    """Compare two renders: objects added, removed and changed per cluster, and CA events.

    Secrets are shown by name, type and a hash of their content, never their
    values. Exit 0 without changes, 3 with changes, 2 on bad input.
    """
    if config is not None or against is not None:
        if config is None or against is None:
            _bad("--config and --against go together (or give OLD_DIR NEW_DIR)")
        if dirs:
            _bad("give either OLD_DIR NEW_DIR or --config F --against DIR, not both")
        if new_secrets is not None:
            _bad("--new-secrets: with --config the new render holds its own Secrets")
    elif len(dirs) != 2:
        _bad(f"expected OLD_DIR NEW_DIR (got {len(dirs)} director{'y' if len(dirs) == 1 else 'ies'}),"
             " or --config F --against DIR")
    elif pki_dir is not None:
        _bad("--pki-dir is only used with --config")
    try:
        if config is not None and against is not None:
            old = read_tree(against, old_secrets)
            with tempfile.TemporaryDirectory(prefix="meshboot-diff-") as tmp:
                new = _render_config(config, pki_dir, Path(tmp))
                report = _report(old, new, markdown)
        else:
            old = read_tree(dirs[0], old_secrets)
            new = read_tree(dirs[1], new_secrets)
            report = _report(old, new, markdown)
    except TreeError as err:
        _bad(str(err))
    text, changed = report
    click.echo(text, nl=False)
    sys.exit(EXIT_CHANGES if changed else 0)


def _report(old: RenderTree, new: RenderTree, markdown: bool) -> tuple[str, bool]:
    for warning in old.warnings + new.warnings:
        click.echo(f"warning: {warning}", err=True)
    result = diff_trees(old, new)
    return (markdown_report(result) if markdown else text_report(result)), result.changed


def _render_config(config: Path, pki_dir: Path | None, tmp: Path) -> RenderTree:
    """Render ``config`` as `meshboot render` does, into ``tmp``, from a copy of the PKI store.

    Like `preflight`, the real store is never written: a re-issue or a new root
    that this render needs happens in the copy and shows up in the diff.
    """
    from clusters.errors import SpecError
    from scripts.cli import EXIT_SPEC, _fail_spec, _load, _load_pki, _plan, default_pki_dir
    from stacks.output import OutputError, OutputTree
    from stacks.render import render_outputs
    from stacks.version import VERSION

    loaded = _load(config)
    plan = _plan(loaded)
    store = pki_dir if pki_dir is not None else default_pki_dir(loaded)
    copy = tmp / "pki"
    if (store / "meta.json").is_file():
        try:
            shutil.copytree(store, copy, ignore=shutil.ignore_patterns(".lock"))
        except (OSError, shutil.Error) as err:
            _bad(f"PKI store {store}: cannot read it ({err})")
    else:
        click.echo(f"note: no PKI store at {store}: rendering with a temporary one (new "
                   "intermediates; a new root unless the stack file holds meshboot:pki.rootCa)",
                   err=True)
    out = tmp / "render" / loaded.env
    marker = {"generator": "meshboot", "version": VERSION, "source": Path(loaded.source).name,
              "environment": loaded.env}
    try:
        with OutputTree(out) as tree:
            render_outputs(plan, loaded.source, tree, None,
                           lambda: _load_pki(loaded, plan.pki, copy, shown_as=store), marker,
                           workers=1)
    except SpecError as err:
        _fail_spec(err)
    except OutputError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_SPEC)
    new = read_tree(out)
    new.label = f"{config} (rendered now)"
    return new
