"""``meshboot``: render, validate and check environments without a cluster.

Exit codes: 0 success, 2 bad input (spec, PKI store mismatch), 1 anything else.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from clusters.errors import SpecError
from clusters.loader import LoadedSpec, load_stack_file

EXIT_SPEC = 2


def _fail_spec(err: SpecError) -> None:
    n = len(err.problems)
    click.echo(f"error: invalid environment spec ({n} problem{'s' if n != 1 else ''}):", err=True)
    click.echo(err.text(), err=True)
    sys.exit(EXIT_SPEC)


def _load(config: Path) -> LoadedSpec:
    from stacks.build import with_plan_problems

    try:
        loaded = load_stack_file(config)
    except SpecError as err:
        _fail_spec(with_plan_problems(err))
        raise AssertionError("unreachable") from err
    for warning in loaded.warnings:
        click.echo(f"warning: {warning.render(loaded.source)}", err=True)
    return loaded


def default_pki_dir(loaded: LoadedSpec) -> Path:
    return loaded.base_dir / ".meshboot" / loaded.env / "pki"


def _passphrase() -> bytes | None:
    value = os.environ.get("MESHBOOT_PKI_PASSPHRASE")
    return value.encode() if value else None


def _load_pki(loaded: LoadedSpec, pki_dir: Path, shown_as: Path | None = None) -> Any:
    """The mesh PKI from the store (created or renewed as needed); exit 2 on mismatch.

    ``shown_as``: the store ``pki_dir`` is a scratch copy of; its warnings are
    about the copy, so they are not printed (preflight reports the real store's).
    """
    from pki.store import PkiStore, PkiStoreError
    from stacks.common import pki_params

    store = PkiStore(pki_dir, _passphrase())
    try:
        return store.load_or_build(pki_params(loaded.spec, loaded.base_dir))
    except PkiStoreError as err:
        message = str(err) if shown_as is None else str(err).replace(str(pki_dir), str(shown_as))
        click.echo(f"error: PKI store: {message}", err=True)
    except OSError as err:  # e.g. a path component that is a file
        click.echo(f"error: PKI store {shown_as or pki_dir}: cannot use it ({err.strerror})", err=True)
    except ValueError as err:  # e.g. an imported root that is not a usable CA
        click.echo(f"error: {loaded.source}: meshboot:pki.rootCa: {err}", err=True)
    finally:
        for warning in store.warnings if shown_as is None else []:
            click.echo(f"warning: {warning}", err=True)
    sys.exit(EXIT_SPEC)


def _os_reason(err: OSError | shutil.Error) -> str:
    if isinstance(err, shutil.Error):  # copytree: a list of (src, dst, reason)
        src, _, reason = err.args[0][0]
        return f"{src}: {reason}"
    return f"{err.filename}: {err.strerror}" if err.filename else str(err.strerror)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Bootstrap a multi-cluster Istio or Linkerd mesh from one environment spec."""


@cli.command()
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
def validate(config: Path) -> None:
    """Validate the spec and the plan built from it; write nothing."""
    from stacks.build import build_plan

    loaded = _load(config)
    try:
        plan = build_plan(loaded.spec, source=loaded.source)
    except SpecError as err:
        _fail_spec(err)
    objects = sum(len(s.objects) + (1 if s.release else 0) for c in plan.clusters for s in c.steps)
    click.echo(f"{loaded.source}: valid ({plan.provider}, {len(plan.clusters)} clusters, "
               f"{objects} planned objects)")


@cli.command()
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: out/<env>).")
@click.option("--pki-dir", "pki_dir", type=click.Path(path_type=Path), default=None,
              help="Local PKI store (default: .meshboot/<env>/pki next to the stack file). "
                   "Keys are encrypted when MESHBOOT_PKI_PASSPHRASE is set.")
def render(config: Path, out: Path | None, pki_dir: Path | None) -> None:
    """Write every Kubernetes object of every cluster as YAML, no cluster needed."""
    from stacks.build import build_plan
    from stacks.render import check_renderable, render_plan

    loaded = _load(config)
    try:
        plan = build_plan(loaded.spec, source=loaded.source)
        problems = check_renderable(plan)
        if problems:
            raise SpecError(loaded.source, problems)
    except SpecError as err:
        _fail_spec(err)
    out = out if out is not None else Path("out") / loaded.env
    pki_dir = pki_dir if pki_dir is not None else default_pki_dir(loaded)
    mesh_pki = _load_pki(loaded, pki_dir)
    summary = render_plan(plan, mesh_pki, out, loaded.source)
    click.echo(summary.text())
    click.echo(f"PKI store: {pki_dir} ({'encrypted keys' if _passphrase() else 'keys unencrypted'})")
    if mesh_pki.reissued:
        click.echo(f"issued intermediate CAs for: {', '.join(mesh_pki.reissued)}")


@cli.command()
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
@click.option("--pki-dir", "pki_dir", type=click.Path(path_type=Path), default=None,
              help="Local PKI store (default: .meshboot/<env>/pki next to the stack file).")
def preflight(config: Path, pki_dir: Path | None) -> None:
    """Run the mesh's own certificate checks on the PKI store, without touching it.

    Istio: the reasons istiod refuses a cacerts Secret. Linkerd: the
    linkerd-identity checks of `linkerd check`. Exit 1 if a check fails
    (warnings, like "valid for less than 60 days", do not fail).
    """
    import tempfile

    from pki.bundles import istio_cacerts
    from pki.checks import istio_cacerts_checks, linkerd_identity_checks
    from pki.store import PkiStore

    loaded = _load(config)
    pki_dir = pki_dir if pki_dir is not None else default_pki_dir(loaded)
    if not (pki_dir / "meta.json").is_file():
        click.echo(f"error: no PKI store at {pki_dir} (no meta.json); run `meshboot render` "
                   "first to create it, or point --pki-dir at it", err=True)
        sys.exit(EXIT_SPEC)
    for path, mode, wanted in PkiStore(pki_dir).mode_problems():
        click.echo(f"warning: PKI store {pki_dir}: {path.relative_to(pki_dir)} is accessible to "
                   f"group/others (mode {mode:04o}); `meshboot render` sets it to {wanted:04o}",
                   err=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Work on a copy: a check must never re-issue or rewrite the real store.
        copy = Path(tmp) / "pki"
        try:
            shutil.copytree(pki_dir, copy, ignore=shutil.ignore_patterns(".lock"))
        except (OSError, shutil.Error) as err:
            click.echo(f"error: PKI store {pki_dir}: cannot read it ({_os_reason(err)})", err=True)
            sys.exit(EXIT_SPEC)
        mesh_pki = _load_pki(loaded, copy, shown_as=pki_dir)
    failed = False
    for cluster in loaded.spec.cluster_names:
        if cluster in mesh_pki.reissued:
            click.echo(f"{cluster}: intermediate would be re-issued on the next run "
                       f"({mesh_pki.reasons.get(cluster, 'missing')})")
        ca = mesh_pki.intermediates[cluster]
        if loaded.spec.mesh.provider == "linkerd":
            checks = linkerd_identity_checks(mesh_pki.root.cert_pem, ca.cert_pem, ca.key_pem)
        else:
            checks = istio_cacerts_checks(istio_cacerts(ca))
        for check in checks:
            mark = "ok" if check.ok else ("warn" if check.warning else "FAIL")
            detail = f": {check.message}" if check.message and not check.ok else ""
            click.echo(f"{cluster}: [{mark}] {check.name}{detail}")
            failed = failed or check.failed
    sys.exit(1 if failed else 0)


from scripts.routes import routes  # noqa: E402, I001
cli.add_command(routes)


def main() -> None:
    cli(prog_name="meshboot")


if __name__ == "__main__":
    main()
