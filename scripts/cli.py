"""``meshboot``: render, validate and check environments without a cluster.

Exit codes: 0 success, 2 bad input (spec, PKI store mismatch), 1 anything else.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from clusters.errors import SpecError
from clusters.loader import LoadedSpec, load_stack_file
from stacks.version import VERSION

if TYPE_CHECKING:
    from stacks.plan import MeshPlan

EXIT_SPEC = 2


def _fail_spec(err: SpecError) -> None:
    n = len(err.problems)
    click.echo(f"error: invalid environment spec ({n} problem{'s' if n != 1 else ''}):", err=True)
    click.echo(err.text(), err=True)
    sys.exit(EXIT_SPEC)


def _load(config: Path, read_keys: bool = True) -> LoadedSpec:
    from stacks.build import with_plan_problems

    try:
        loaded = load_stack_file(config, read_keys=read_keys)
    except SpecError as err:
        _fail_spec(with_plan_problems(err))
        raise AssertionError("unreachable") from err
    for warning in loaded.warnings:
        click.echo(f"warning: {warning.render(loaded.source)}", err=True)
    return loaded


def check_cluster_names(loaded: LoadedSpec, names: tuple[str, ...] | list[str]) -> None:
    """Exit 2 if a ``--cluster`` value names no cluster of the spec."""
    unknown = [c for c in names if c not in loaded.spec.cluster_names]
    if unknown:
        click.echo(f"error: --cluster {', '.join(unknown)}: no such cluster in {loaded.source} "
                   f"(clusters: {', '.join(loaded.spec.cluster_names)})", err=True)
        sys.exit(EXIT_SPEC)


def default_pki_dir(loaded: LoadedSpec) -> Path:
    return loaded.base_dir / ".meshboot" / loaded.env / "pki"


def _passphrase() -> bytes | None:
    value = os.environ.get("MESHBOOT_PKI_PASSPHRASE")
    return value.encode() if value else None


class _RootRefused(Exception):
    """Raised inside the PKI store's ``before_write``: the render would replace the root."""


def _plan(loaded: LoadedSpec) -> MeshPlan:
    """The plan of the environment (what the adapters and the PKI checks take); exit 2 if invalid."""
    from stacks.build import build_plan

    try:
        return build_plan(loaded.spec, source=loaded.source, base_dir=loaded.base_dir)
    except SpecError as err:
        _fail_spec(err)
        raise AssertionError("unreachable") from err


def _load_pki(loaded: LoadedSpec, params: Any, pki_dir: Path, shown_as: Path | None = None,
              before_write: Any = None) -> Any:
    """The mesh PKI for ``params`` (the plan's) from the store (created or renewed as
    needed); exit 2 on mismatch.

    ``shown_as``: the store ``pki_dir`` is a scratch copy of; its warnings are
    about the copy, so they are not printed (preflight reports the real store's).
    """
    from pki.store import PkiStore, PkiStoreError

    store = PkiStore(pki_dir, _passphrase())
    try:
        return store.load_or_build(params, before_write=before_write)
    except PkiStoreError as err:
        message = str(err) if shown_as is None else str(err).replace(str(pki_dir), str(shown_as))
        click.echo(f"error: PKI store: {message}", err=True)
    except _RootRefused as err:
        click.echo(f"error: {err}", err=True)
    except ValueError as err:  # e.g. an imported root that is not a usable CA
        click.echo(f"error: {loaded.source}: meshboot:pki.rootCa: {err}", err=True)
    except OSError as err:  # e.g. a path component that is a file
        click.echo(f"error: PKI store {shown_as or pki_dir}: cannot use it ({err.strerror})", err=True)
    finally:
        for warning in store.warnings if shown_as is None else []:
            click.echo(f"warning: {warning}", err=True)
    sys.exit(EXIT_SPEC)


def _root_source(loaded: LoadedSpec, pki_dir: Path) -> str:
    """Where this run's root comes from: imported, store or new."""
    if loaded.spec.pki.root_ca is not None:
        return "imported"
    if (pki_dir / "meta.json").exists():
        return "store"
    return "new"


def _describe_root(source: str, pki_dir: Path, loaded: LoadedSpec) -> str:
    if source == "imported":
        return f"imported: from {loaded.source} (meshboot:pki.rootCa)"
    if source == "store":
        return f"from the store: the PKI store {pki_dir}"
    return (f"new: generated now into the PKI store {pki_dir}; keep it in the stack file "
            f"with `meshboot pki init --config {loaded.source}`")


def _os_reason(err: OSError | shutil.Error) -> str:
    if isinstance(err, shutil.Error):  # copytree: a list of (src, dst, reason)
        src, _, reason = err.args[0][0]
        return f"{src}: {reason}"
    reason = err.strerror or str(err)
    return f"{err.filename}: {reason}" if err.filename else reason


class _Group(click.Group):
    """Environment faults (an unreadable file, a path the OS refuses) are exit 2, not tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as err:
            if err.errno == errno.EPIPE:
                raise  # the reader went away (`meshboot dr plan | head`): click exits quietly
            click.echo(f"error: {_os_reason(err)}", err=True)
            sys.exit(EXIT_SPEC)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, "--version", prog_name="meshboot", message="%(prog)s %(version)s")
def cli() -> None:
    """Bootstrap a multi-cluster Istio or Linkerd mesh from one environment spec."""


@cli.command()
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
def validate(config: Path) -> None:
    """Validate the spec and the plan built from it; write nothing."""
    from stacks.object_count import count_objects, total

    loaded = _load(config)
    plan = _plan(loaded)
    count = total(count_objects(plan))
    click.echo(f"{loaded.source}: valid ({plan.provider}, {len(plan.clusters)} clusters): "
               f"{count.text()}")


@cli.command()
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
@click.option("--out", "out", type=str, default=None,
              help="Output directory (default: out/<env>). Replaced only if it holds a "
                   "previous meshboot render.")
@click.option("--secrets-out", "secrets_out", type=str, default=None,
              help="Write Secrets to DIR/<cluster>/<namespace>.<name>.yaml instead of "
                   "<out>/<cluster>/secrets/, so the output tree can be committed.")
@click.option("--pki-dir", "pki_dir", type=click.Path(path_type=Path), default=None,
              help="Local PKI store (default: .meshboot/<env>/pki next to the stack file). "
                   "Keys are encrypted when MESHBOOT_PKI_PASSPHRASE is set.")
@click.option("--new-root", "new_root", is_flag=True, default=False,
              help="Accept a root CA different from the one of the render in --out "
                   "(deliberate root replacement).")
@click.option("--jobs", "jobs", type=click.IntRange(min=1, max=256), default=None,
              envvar="MESHBOOT_WORKERS", show_envvar=True,
              help="Render clusters in this many processes (Linux; default 1: less memory, "
                   "and one process already renders faster than dumping the YAML).")
def render(config: Path, out: str | None, secrets_out: str | None, pki_dir: Path | None,
           new_root: bool, jobs: int | None) -> None:
    """Write every Kubernetes object of every cluster as YAML, no cluster needed."""
    from stacks.build import build_plan
    from stacks.output import OutputError, check_pair, check_target

    loaded = _load(config)
    try:
        plan = build_plan(loaded.spec, source=loaded.source, base_dir=loaded.base_dir)
    except SpecError as err:
        _fail_spec(err)
    out_raw = out if out is not None else str(Path("out") / loaded.env)
    pki_dir = pki_dir if pki_dir is not None else default_pki_dir(loaded)
    refusals = check_target(out_raw, option="--out", stack_file=config, pki_dir=pki_dir)
    if secrets_out is not None:
        refusals += check_target(secrets_out, option="--secrets-out", stack_file=config,
                                 pki_dir=pki_dir)
        if not refusals:
            refusals += check_pair(Path(out_raw), Path(secrets_out))
    if refusals:
        for line in refusals:
            click.echo(f"error: {line}", err=True)
        click.echo("nothing was written", err=True)
        sys.exit(EXIT_SPEC)
    try:
        _render(loaded, plan, Path(out_raw), Path(secrets_out) if secrets_out else None,
                pki_dir, new_root, jobs)
    except OutputError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_SPEC)


def _render(loaded: LoadedSpec, plan: Any, out: Path, secrets_out: Path | None,
            pki_dir: Path, new_root: bool, jobs: int | None = None) -> None:
    """Lock and check the outputs, then touch the PKI store, then write and swap."""
    import contextlib

    from pki.ca import fingerprint
    from stacks.output import OutputTree
    from stacks.render import render_outputs

    with contextlib.ExitStack() as stack:
        tree = stack.enter_context(OutputTree(out))
        secrets_tree = (stack.enter_context(OutputTree(secrets_out, private=True))
                        if secrets_out else None)
        previous = set(tree.previous.roots)
        if secrets_tree is not None:
            previous |= secrets_tree.previous.roots
        source = _root_source(loaded, pki_dir)

        def guard(mesh_pki: Any) -> None:
            fp = fingerprint(mesh_pki.root.cert)
            if mesh_pki.new_root is not None:
                # A root rotation is an asked-for change: each phase is accepted as long
                # as it still trusts a root the previous render trusted (pki.rotation).
                trusted = {fingerprint(c) for cl in plan.pki.clusters
                           for c in mesh_pki.trusted(cl)}
                if previous and previous.isdisjoint(trusted) and not new_root:
                    raise _RootRefused(
                        f"{out} holds a render whose root CA is SHA-256 "
                        f"{', '.join(sorted(previous))}, but this rotation phase trusts only "
                        f"{', '.join(sorted(trusted))}: a phase was skipped (see `meshboot "
                        "rotate root --status`). Nothing was written.")
                return
            if previous and fp not in previous and not new_root:
                where = ", ".join(sorted(previous))
                raise _RootRefused(
                    f"{out} holds a render whose root CA is SHA-256 {where}, but this render "
                    f"would use root SHA-256 {fp} ({_describe_root(source, pki_dir, loaded)}). "
                    "Clusters deployed from the old render would stop trusting the new one. "
                    "Restore the old root (its PKI store via --pki-dir, or "
                    "`meshboot pki init --from-store DIR`), or pass --new-root to replace it "
                    "deliberately. Nothing was written.")

        try:
            summary, mesh_pki = render_outputs(
                plan, loaded.source, tree, secrets_tree,
                lambda: _load_pki(loaded, plan.pki, pki_dir, before_write=guard), {
                    "generator": "meshboot",
                    "version": VERSION,
                    "source": Path(loaded.source).name,  # as in the file headers: path-independent
                    "environment": loaded.env,
                }, workers=jobs if jobs is not None and sys.platform.startswith("linux") else 1)
        except SpecError as err:
            _fail_spec(err)
        root_fp = fingerprint(mesh_pki.root.cert)
        warnings = tree.warnings + (secrets_tree.warnings if secrets_tree else [])
    click.echo(summary.text())
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"root CA: SHA-256 {root_fp} ({_describe_root(source, pki_dir, loaded)})")
    if mesh_pki.new_root is not None and loaded.spec.pki.rotation is not None:
        from scripts.rotate import record_render

        record_render(loaded, out, plan, mesh_pki)
        click.echo(f"root rotation: phase {loaded.spec.pki.rotation.phase}, new root SHA-256 "
                   f"{fingerprint(mesh_pki.new_root.cert)} (`meshboot rotate root --status`)")
    if previous and root_fp not in previous:
        click.echo(f"root CA REPLACED (--new-root): the previous render used {', '.join(sorted(previous))}")
    click.echo(f"PKI store: {pki_dir} ({'encrypted keys' if _passphrase() else 'keys unencrypted'})")
    if mesh_pki.reissued:
        reasons = {mesh_pki.reasons.get(c, "") for c in mesh_pki.reissued}
        fresh = (source == "imported" and reasons == {"no intermediate yet"}
                 and set(mesh_pki.reissued) == set(loaded.spec.cluster_names))
        if fresh:
            why = " (new PKI store on this machine; the root is unchanged)"
        elif len(reasons) == 1 and "" not in reasons:
            why = f" ({reasons.pop()})"
        else:
            why = "".join(f"\n  {c}: {mesh_pki.reasons[c]}" for c in mesh_pki.reissued
                          if mesh_pki.reasons.get(c))
        click.echo(f"issued intermediate CAs for: {', '.join(mesh_pki.reissued)}{why}")


def _root_from_state(path: Path, loaded: LoadedSpec, params: Any) -> Any:
    """The deployed root from `pulumi stack export` output; exit 2 if unusable."""
    import dataclasses
    import json

    from clusters.pulumi_state import StateError, root_from_export
    from pki.hierarchy import resolve_root

    try:
        raw = sys.stdin.read() if str(path) == "-" else path.read_text()
        cert_pem, key_pem = root_from_export(json.loads(raw), loaded.spec.mesh.id,
                                             dict(os.environ))
        return resolve_root(dataclasses.replace(params, imported_root=(cert_pem, key_pem)), None)
    except OSError as err:
        click.echo(f"error: --from-state {path}: {err.strerror or err}", err=True)
    except json.JSONDecodeError as err:
        click.echo(f"error: --from-state {path}: not JSON ({err})", err=True)
    except (StateError, ValueError) as err:
        click.echo(f"error: --from-state {path}: {err}", err=True)
    sys.exit(EXIT_SPEC)


@cli.command()
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) holding the meshboot: config.")
@click.option("--pki-dir", "pki_dir", type=click.Path(path_type=Path), default=None,
              help="Local PKI store (default: .meshboot/<env>/pki next to the stack file).")
@click.option("--live", is_flag=True, default=False,
              help="Also connect to each cluster (its kubeconfig/context) and check that its "
                   "nodes' topology.kubernetes.io/region and zone labels match the spec's "
                   "region/zone: Istio takes locality from the nodes, not from the spec.")
@click.option("--cluster", "only", multiple=True, metavar="NAME",
              help="Check only this cluster (repeatable). Default: every cluster.")
@click.option("--timeout", "timeout", type=click.FloatRange(min=0.1, max=300), default=10.0,
              show_default=True, help="--live: seconds before a request to an API server gives up.")
def preflight(config: Path, pki_dir: Path | None, live: bool, only: tuple[str, ...],
              timeout: float) -> None:
    """Run the mesh's own certificate checks on the PKI store, without touching it.

    Istio: the reasons istiod refuses a cacerts Secret. Linkerd: the
    linkerd-identity checks of `linkerd check`. With --live, also read every
    cluster's nodes and check their locality labels against the spec
    (read-only: one paged GET /api/v1/nodes per cluster). Exit 1 if a check
    fails (warnings, like "valid for less than 60 days", do not fail), 2 if a
    kubeconfig is missing or unusable.
    """
    loaded = _load(config)
    check_cluster_names(loaded, only)
    clusters = [c for c in loaded.spec.cluster_names if not only or c in only]
    explicit_store = pki_dir is not None
    pki_dir = pki_dir if pki_dir is not None else default_pki_dir(loaded)
    if live and not explicit_store and not (pki_dir / "meta.json").is_file():
        # E.g. a mesh deployed with `pulumi up`, whose PKI lives in Pulumi state.
        click.echo(f"warning: no PKI store at {pki_dir}: certificate checks skipped "
                   "(`meshboot render` creates it, or point --pki-dir at it)", err=True)
        failed = False
    else:
        failed = _preflight_pki(loaded, pki_dir, clusters)
    bad_input = False
    if live:
        from clusters.live import check_cluster

        for i, cspec in enumerate(loaded.spec.clusters):
            if cspec.name not in clusters:
                continue
            for check in check_cluster(cspec, i, loaded.base_dir, timeout=timeout):
                click.echo(check.line())
                failed = failed or check.failed
                bad_input = bad_input or check.config_error
    sys.exit(EXIT_SPEC if bad_input else 1 if failed else 0)


def _preflight_pki(loaded: LoadedSpec, pki_dir: Path, clusters: list[str]) -> bool:
    """The offline certificate checks on the plan's PKI Secrets; True if one failed.

    Exit 2 without a usable store or a valid plan.
    """
    import tempfile

    from pki.store import PkiStore
    from stacks.plan import pki_pem
    from stacks.preflight import checked_secret, pki_checks

    if not (pki_dir / "meta.json").is_file():
        click.echo(f"error: no PKI store at {pki_dir} (no meta.json); run `meshboot render` "
                   "first to create it, or point --pki-dir at it", err=True)
        sys.exit(EXIT_SPEC)
    plan = _plan(loaded)
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
        mesh_pki = _load_pki(loaded, plan.pki, copy, shown_as=pki_dir)
    failed = False
    bundles = mesh_pki.bundle_pems()
    for cluster in clusters:
        if cluster in mesh_pki.reissued:
            click.echo(f"{cluster}: intermediate would be re-issued on the next run "
                       f"({mesh_pki.reasons.get(cluster, 'missing')})")
        checks = pki_checks(plan, cluster, lambda ref: pki_pem(ref, mesh_pki.root.cert_pem,
                                                               mesh_pki.intermediates, bundles))
        if checks is None:
            click.echo(f"{cluster}: no {checked_secret(plan.provider)} Secret in the plan "
                       "(a remote runs no istiod): nothing to check")
            continue
        for check in checks:
            mark = "ok" if check.ok else ("warn" if check.warning else "FAIL")
            detail = f": {check.message}" if check.message and not check.ok else ""
            click.echo(f"{cluster}: [{mark}] {check.name}{detail}")
            failed = failed or check.failed
    return failed


@cli.group()
def pki() -> None:
    """The mesh's root CA: keep it in the stack file so any machine renders the same mesh."""


@pki.command("init")
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) to hold the root CA.")
@click.option("--from-store", "from_store", type=click.Path(path_type=Path), default=None,
              help="Take the root from this PKI store (e.g. .meshboot/<env>/pki), so a "
                   "running mesh keeps its identity. Default: the environment's store if it "
                   "has a root, else a new root.")
@click.option("--from-state", "from_state", type=click.Path(path_type=Path), default=None,
              help="Take the root from `pulumi stack export` output (a file, or - for stdin): "
                   "for a mesh deployed with `pulumi up`, whose root lives in Pulumi state.")
@click.option("--force", is_flag=True, default=False,
              help="Replace a root the stack file already has.")
def pki_init(config: Path, from_store: Path | None, from_state: Path | None,
             force: bool) -> None:
    """Put the root CA into the stack file as meshboot:pki.rootCa.

    The certificate is written in clear, the private key as a Pulumi `secure:`
    value encrypted with the stack's passphrase (PULUMI_CONFIG_PASSPHRASE), as
    `pulumi config set --path --secret` writes it. Afterwards the stack file
    plus its passphrase is the mesh's whole identity: `render` and `pulumi up`
    on any machine use this root.
    """
    import dataclasses

    from clusters.stack_yaml import decode, parse
    from clusters.stackfile import (
        StackFileError,
        existing_root_ca,
        replace_file,
        stack_crypter,
        with_root_ca,
    )
    from pki.ca import CA, fingerprint
    from pki.store import PkiStore, PkiStoreError

    loaded = _load(config)
    if from_store is not None and from_state is not None:
        click.echo("error: give --from-store or --from-state, not both", err=True)
        sys.exit(EXIT_SPEC)
    # The strict parser `_load` used: dates stay text, nothing it accepted can crash here.
    text, problems = decode(config.read_bytes())
    doc, more = parse(text or "")
    if text is None or problems or more:
        _fail_spec(SpecError(loaded.source, problems + more))
    doc = doc or {}
    if existing_root_ca(doc) is not None and not force:
        click.echo(f"error: {loaded.source}: meshboot:pki.rootCa is already set; the stack file "
                   "already holds the mesh's root. Use --force to replace it (this replaces "
                   "the mesh's identity).", err=True)
        sys.exit(EXIT_SPEC)
    try:
        crypter, salt_line = stack_crypter(doc, dict(os.environ))
    except StackFileError as err:
        click.echo(f"error: {loaded.source}: {err}", err=True)
        sys.exit(EXIT_SPEC)
    params = dataclasses.replace(_plan(loaded).pki, imported_root=None)
    store_dir = from_store
    if store_dir is None and from_state is None and (default_pki_dir(loaded) / "meta.json").exists():
        store_dir = default_pki_dir(loaded)
    if from_state is not None:
        root = _root_from_state(from_state, loaded, params)
        origin = f"taken from the Pulumi state export {from_state}"
    elif store_dir is not None:
        store = PkiStore(store_dir, _passphrase())
        if not (store_dir / "meta.json").exists():
            click.echo(f"error: --from-store {store_dir}: no PKI store there (no meta.json)",
                       err=True)
            sys.exit(EXIT_SPEC)
        try:
            differences = store.check(params)
            if differences:
                raise PkiStoreError("; ".join(differences))
            root = store.read_root()
        except PkiStoreError as err:
            click.echo(f"error: PKI store {store_dir}: {err}", err=True)
            sys.exit(EXIT_SPEC)
        assert root is not None
        origin = f"taken from the PKI store {store_dir}"
    else:
        root = CA.create_root(profile=params.profile, key_algorithm=params.key_algorithm,
                              validity_days=params.root_validity_days,
                              trust_domain=params.trust_domain)
        origin = "generated now (new mesh identity)"
    try:
        edit = with_root_ca(text or "", doc, root.cert_pem, root.key_pem, crypter, salt_line)
        replace_file(config, edit.text)
    except StackFileError as err:
        click.echo(f"error: {loaded.source}: {err}", err=True)
        sys.exit(EXIT_SPEC)
    except OSError as err:
        click.echo(f"error: {loaded.source}: cannot write: {err.strerror or err}", err=True)
        sys.exit(EXIT_SPEC)
    click.echo(f"{loaded.source}: meshboot:pki.rootCa set: root CA SHA-256 {fingerprint(root.cert)}, "
               f"{origin}; private key stored as a secure value")
    if edit.salt_created:
        click.echo(f"{loaded.source}: added encryptionsalt (passphrase secrets provider, as "
                   "`pulumi stack init --secrets-provider passphrase` does)")
    click.echo("Back up the stack file and PULUMI_CONFIG_PASSPHRASE: together they are the "
               "mesh's identity. Any machine with both renders and deploys the same root.")


from scripts.routes import routes  # noqa: E402, I001
cli.add_command(routes)
from scripts.rotate import rotate  # noqa: E402, I001
cli.add_command(rotate)
from scripts.graph import graph  # noqa: E402, I001
cli.add_command(graph)

from scripts.verify import verify  # noqa: E402, I001
cli.add_command(verify)
from scripts.dr import dr  # noqa: E402, I001
cli.add_command(dr)
from scripts.diff import diff  # noqa: E402, I001
cli.add_command(diff)


def main() -> None:
    cli(prog_name="meshboot")


if __name__ == "__main__":
    main()
