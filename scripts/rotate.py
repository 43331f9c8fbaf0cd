"""``meshboot rotate root``: move an environment's root CA to a new one, phase by phase.

    meshboot rotate root --config F                  start: new root, phase trust-both
    meshboot rotate root --config F --status         phase, per cluster, what to apply
    meshboot rotate root --config F --advance [--cluster C ...]
    meshboot rotate root --config F --abort

The state lives in the stack file (``meshboot:pki.rotation``: ``phase``,
``newRoot`` with the key as a ``secure:`` value, clusters one phase ahead,
times), so ``render`` and ``pulumi up`` produce each phase and every phase can
be reviewed in Git and resumed from any machine. The phases and gates are
:mod:`pki.rotation`; this module reads the stack file and the last render's
marker, asks them, and rewrites only ``meshboot:pki``. A refused step changes
nothing (exit 2).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from clusters.loader import LoadedSpec
from pki.rotation import (
    WORKLOAD_CERT_LIFETIME,
    ClusterRender,
    Phase,
    Rotation,
    abort_problems,
    aborted,
    advance_problems,
    advanced,
    drop_old_allowed_at,
    expected_render,
    trusted_roots,
    with_followers,
)

EXIT_REFUSED = 2
MARKER = ".meshboot-render.json"
RECORD = "rotation-render.json"


def _now() -> dt.datetime:
    """The clock; a seam so tests can move it."""
    return dt.datetime.now(dt.UTC)


def _q(path: str | Path) -> str:
    """A path as one POSIX shell word, so a printed command can be pasted as it is."""
    return shlex.quote(str(path))


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fail(lines: list[str], tail: str = "nothing was changed") -> NoReturn:
    for line in lines:
        click.echo(f"error: {line}", err=True)
    click.echo(tail, err=True)
    sys.exit(EXIT_REFUSED)


@click.group()
def rotate() -> None:
    """Rotate the mesh's trust: the root CA, phase by phase, without downtime."""


@rotate.command("root")
@click.option("--config", "config", required=True, type=click.Path(path_type=Path),
              help="Pulumi stack file (Pulumi.<env>.yaml) whose root to rotate.")
@click.option("--status", "status", is_flag=True,
              help="Show the phase of every cluster and what to apply before advancing.")
@click.option("--advance", "advance", is_flag=True,
              help="Move to the next phase (every cluster, or those given with --cluster).")
@click.option("--abort", "abort", is_flag=True,
              help="Return to the old root (from trust-both or sign-with-new).")
@click.option("--cluster", "only", multiple=True, metavar="NAME",
              help="--advance: move only this cluster (repeatable); the others follow later.")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Where the environment was rendered: its marker says which phase was "
                   "rendered (default: where the last render of this rotation went, else "
                   "out/<env>).")
@click.option("--new-root-cert", "cert_file", type=click.Path(path_type=Path), default=None,
              help="Start with this (enterprise) root certificate instead of a generated one.")
@click.option("--new-root-key", "key_file", type=click.Path(path_type=Path), default=None,
              help="Its private key (PEM); stored in the stack file as a secure value.")
def root(config: Path, status: bool, advance: bool, abort: bool, only: tuple[str, ...],
         out: Path | None, cert_file: Path | None, key_file: Path | None) -> None:
    """Rotate the root CA: trust both -> sign with new -> drop old -> done.

    Without --status/--advance/--abort, starts a rotation: a new root (or
    --new-root-cert/--new-root-key) goes into meshboot:pki.rotation.newRoot and
    every cluster enters trust-both. After each step: render and apply (or
    `pulumi up`), check with `meshboot verify`, then --advance.
    """
    from scripts.cli import _load, _plan

    # One action at a time: with flag_value options the last flag would silently win, so
    # `--status --abort` (a look that turns into an abort) is refused instead.
    asked = [name for name, on in (("status", status), ("advance", advance), ("abort", abort))
             if on]
    if len(asked) > 1:
        _fail([f"--{' and --'.join(asked)}: give one of --status, --advance, --abort"])
    action = asked[0] if asked else None
    loaded = _load(config)
    _plan(loaded)  # the whole spec and plan must be valid (exit 2 otherwise)
    if action is None:
        if only:
            _fail(["--cluster applies to --advance only: a rotation starts in every cluster"])
        _start(loaded, config, cert_file, key_file)
        return
    if cert_file or key_file:
        _fail(["--new-root-cert/--new-root-key apply only when starting a rotation"])
    if only and action != "advance":
        _fail([f"--cluster applies to --advance only, not --{action}"])
    state = _state(loaded)
    if state is None:
        _fail([f"{loaded.source}: no root rotation in progress (meshboot:pki.rotation is not "
               f"set); start one with `meshboot rotate root --config {_q(loaded.source)}`"])
        return
    rot, old_fp, new_fp = state
    clusters = loaded.spec.cluster_names
    rendered, out_dir, rendered_at = rendered_state(loaded, out)
    if action == "status":
        click.echo("\n".join(status_lines(loaded, rot, old_fp, new_fp, rendered, out_dir,
                                          _now(), rendered_at)))
        return
    now = _now()
    if action == "advance":
        targets = list(only) if only else [c for c in clusters
                                           if rot.phase_of(c) == min(rot.phases(clusters).values())]
        targets, problems = with_followers(targets, _follows(loaded))
        problems += advance_problems(rot, clusters, targets, now, old_fp, new_fp, rendered,
                                     rendered_at)
        if problems:
            _fail(problems, "nothing was changed; see `meshboot rotate root --status`")
        _write(loaded, config, advanced(rot, clusters, targets, now), finish=True)
    else:
        problems = abort_problems(rot, clusters, now, old_fp, new_fp, rendered, rendered_at)
        if problems:
            _fail(problems)
        _write(loaded, config, aborted(rot, clusters, now), finish=False)


def _follows(loaded: LoadedSpec) -> dict[str, str]:
    """Istio remotes -> their primary (whose istiod signs their workloads)."""
    if loaded.spec.mesh.provider != "istio":
        return {}
    return {c.name: c.primary for c in loaded.spec.clusters if c.is_remote and c.primary}


def _state(loaded: LoadedSpec) -> tuple[Rotation, str, str] | None:
    from pki.ca import certs_from_pem, fingerprint
    from stacks.common import pki_params, rotation_state

    rot = rotation_state(loaded.spec)
    params = pki_params(loaded.spec, loaded.base_dir)
    if rot is None or params.rotation is None or params.imported_root is None:
        return None
    old_fp = fingerprint(certs_from_pem(params.imported_root[0])[0])
    new_fp = fingerprint(certs_from_pem(params.rotation.new_root[0])[0])
    return rot, old_fp, new_fp


def record_path(loaded: LoadedSpec) -> Path:
    """Where render notes what it rendered during a rotation: beside the default PKI
    store (``.meshboot/<env>/``, next to the stack file), whatever ``--out`` was."""
    return loaded.base_dir / ".meshboot" / loaded.env / RECORD


def record_render(loaded: LoadedSpec, out: Path, plan: Any, mesh_pki: Any) -> None:
    """After a successful render of a rotation phase: what each cluster got (as the
    marker's ``trust``), so ``rotate root`` finds it without ``--out``, and since when
    (``since``: kept while a cluster's entry is unchanged), which the drop-old and
    second-abort waits count from (:func:`pki.rotation.drop_old_allowed_at`)."""
    from stacks.render import trust_marker

    path = record_path(loaded)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    trust = trust_marker(plan, mesh_pki)
    try:
        before = json.loads(path.read_bytes())
        old_trust, old_since = dict(before["trust"]), dict(before.get("since", {}))
        if before.get("out") != str(out):
            old_trust = {}
    except (OSError, ValueError, KeyError, TypeError):
        old_trust, old_since = {}, {}
    now = _iso(_now())
    since = {c: (str(old_since[c]) if old_trust.get(c) == entry and c in old_since else now)
             for c, entry in trust.items()}
    doc = {"out": str(out), "trust": trust, "since": since}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def rendered_state(loaded: LoadedSpec, out: Path | None
                   ) -> tuple[dict[str, ClusterRender] | None, Path, dict[str, dt.datetime]]:
    """What was rendered, where, and since when: the marker in ``--out`` if given,
    else the last rotation render's record, else the marker in ``out/<env>``. The
    times come from the record, for the clusters whose entry is what was rendered."""
    try:
        doc = json.loads(record_path(loaded).read_bytes())
        where = Path(str(doc["out"]))
    except (OSError, ValueError, KeyError, TypeError):
        doc, where = None, None
    if out is not None:
        rendered, out_dir = read_rendered(out), out
    elif where is not None:
        rendered, out_dir = _trust_of(doc), where
    else:
        out_dir = Path("out") / loaded.env
        rendered = read_rendered(out_dir)
    return rendered, out_dir, _since_of(doc, out_dir, rendered)


def _since_of(doc: Any, out_dir: Path, rendered: dict[str, ClusterRender] | None
              ) -> dict[str, dt.datetime]:
    if not isinstance(doc, dict) or not rendered or not isinstance(doc.get("since"), dict):
        return {}
    try:
        if Path(str(doc["out"])).resolve() != out_dir.resolve():
            return {}
    except (KeyError, OSError):
        return {}
    recorded = _trust_of(doc) or {}
    out = {}
    for cluster, when in doc["since"].items():
        if recorded.get(cluster) is None or recorded.get(cluster) != rendered.get(cluster):
            continue
        try:
            t = dt.datetime.strptime(str(when), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        out[str(cluster)] = t
    return out


def read_rendered(out_dir: Path) -> dict[str, ClusterRender] | None:
    """What the render marker in ``out_dir`` says each cluster trusts and signs with."""
    try:
        marker = json.loads((out_dir / MARKER).read_bytes())
    except (OSError, ValueError):
        return None
    return _trust_of(marker)


def _trust_of(marker: Any) -> dict[str, ClusterRender] | None:
    trust = marker.get("trust") if isinstance(marker, dict) else None
    if not isinstance(trust, dict):
        return None
    out = {}
    for cluster, entry in trust.items():
        if isinstance(entry, dict) and isinstance(entry.get("roots"), list) \
                and isinstance(entry.get("signing_root"), str):
            out[str(cluster)] = ClusterRender(tuple(str(r) for r in entry["roots"]),
                                              entry["signing_root"])
    return out


def status_lines(loaded: LoadedSpec, rot: Rotation, old_fp: str, new_fp: str,
                 rendered: dict[str, ClusterRender] | None, out_dir: Path,
                 now: dt.datetime, rendered_at: dict[str, dt.datetime] | None = None
                 ) -> list[str]:
    """``--status``: the phase, each cluster, what to apply, and whether --advance would go."""
    clusters = loaded.spec.cluster_names
    provider = loaded.spec.mesh.provider
    names = {old_fp: "old", new_fp: "new"}
    lines = [f"{loaded.source}: root rotation, phase {rot.phase.label}"
             + (f" (since {_iso(rot.since)})" if rot.since else ""),
             f"  old root SHA-256 {old_fp}", f"  new root SHA-256 {new_fp}"]
    if rot.aborted_at is not None:
        lines.append(f"  ABORTED at {_iso(rot.aborted_at)}: every cluster signs with the old "
                     "root again; `--abort` once more drops the new root")
    for c in clusters:
        phase = rot.phase_of(c)
        want = expected_render(phase, old_fp, new_fp)
        got = (rendered or {}).get(c)
        state = "rendered" if got == want else (
            "NOT rendered (the render holds "
            + ("nothing" if got is None else
               f"trust {'+'.join(names.get(r, r[:12]) for r in got.trusted)}, signing "
               f"{names.get(got.signing, got.signing[:12])}") + ")")
        lines.append(f"  {c}: {phase.label}: trusts {' + '.join(trusted_roots(phase))}, "
                     f"signs with {'new' if want.signing == new_fp else 'old'}; {state}")
    apply_cmd = (f"meshboot render --config {_q(loaded.source)} --out {_q(out_dir)}, then apply it "
                 "(kubectl / Flux) or `pulumi up` (render also then: the render is what "
                 "records the phase here; meshboot cannot see Pulumi's state)")
    lines.append("before advancing:")
    lines.append(f"  1. {apply_cmd}")
    lines.append("  2. `meshboot verify` (every cluster holds this phase's bundle)")
    lines.extend(f"  3. {line}" for line in restart_advice(provider, rot))
    if rot.phase >= Phase.SIGN_WITH_NEW and not rot.ahead:
        allowed = drop_old_allowed_at(rot, rendered_at)
        if rot.phase is Phase.SIGN_WITH_NEW and allowed is not None:
            lines.append(f"drop-old is allowed from {_iso(allowed)} (workload certificates "
                         "under the old root expire by then)")
    min_phase = min(rot.phases(clusters).values())
    targets = [c for c in clusters if rot.phase_of(c) == min_phase]
    problems = advance_problems(rot, clusters, targets, now, old_fp, new_fp, rendered,
                                rendered_at)
    nxt = "finish (the new root becomes meshboot:pki.rootCa)" if min_phase is Phase.DROP_OLD \
        else Phase(min_phase + 1).label
    if problems:
        lines.append(f"--advance to {nxt}: refused now:")
        lines.extend(f"  - {p}" for p in problems)
    else:
        lines.append(f"--advance to {nxt}: allowed")
    if rot.aborted_at is not None:
        problems = abort_problems(rot, clusters, now, old_fp, new_fp, rendered, rendered_at)
        if problems:
            lines.append("--abort (drop the new root): refused now:")
            lines.extend(f"  - {p}" for p in problems)
        else:
            lines.append("--abort (drop the new root): allowed")
    return lines


def restart_advice(provider: str, rot: Rotation) -> list[str]:
    """What must restart (or be waited for) before advancing from ``rot``'s phase.

    Linkerd: a proxy's trust anchors are the ``LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS``
    the injector wrote into the pod (linkerd2 controller/proxy-injector/webhook.go reads
    ``linkerd-identity-trust-roots`` per injection; charts/partials/templates/_proxy.tpl),
    so every meshed pod, the linkerd-multicluster gateway included (it terminates the
    other clusters' mTLS), restarts after a bundle change; the control plane in
    ``linkerd`` restarts by itself, its pod template carrying
    ``linkerd.io/trust-root-sha256`` of identityTrustAnchorsPEM (_metadata.tpl), which
    also reloads linkerd-identity's trust anchors (read once at start,
    controller/cmd/identity/main.go). A new issuer is hot-reloaded (pkg/identity/
    service.go ``Run``: event IssuerUpdated, or IssuerUpdateSkipped when it does not
    verify against the anchors). Istio: a proxy without PROXY_CONFIG_XDS_AGENT takes a
    new bundle only with its next certificate (istiod answers a CSR with the whole
    root-cert.pem last, security/pkg/server/ca/server.go; the agent then pushes it to
    Envoy, security/pkg/nodeagent/cache/secretcache.go ``GenerateSecret``); a changed
    intermediate is hot-reloaded (pilot/pkg/bootstrap/istio_ca.go ``handleEvent``).
    """
    hours = f"{WORKLOAD_CERT_LIFETIME.total_seconds() / 3600:g} h"
    if provider == "linkerd":
        if rot.phase is Phase.SIGN_WITH_NEW:
            return ["no restart: linkerd-identity reloads the new issuer (`kubectl -n linkerd get "
                    "events --field-selector reason=IssuerUpdated`; IssuerUpdateSkipped means it "
                    "did not: `kubectl -n linkerd rollout restart deploy/linkerd-identity`); "
                    f"proxies renew their certificates under it within {hours}"]
        when = ("so that no proxy trusts the old anchor any more" if rot.phase is Phase.DROP_OLD
                else "before advancing: a proxy that still trusts the old anchor alone rejects "
                     "every certificate under the new one")
        return ["Linkerd proxies take the trust anchors when injected: in every cluster restart "
                "every meshed workload (`kubectl -n NS rollout restart deploy,sts,ds`), "
                "linkerd-multicluster's gateway and service mirrors included (`kubectl -n "
                "linkerd-multicluster rollout restart deploy`), and extensions' namespaces "
                f"(linkerd-viz, ...), {when}; the control plane in `linkerd` restarts by itself. "
                "`meshboot verify` (proxy-roots) names pods still on another bundle"]
    if rot.phase is Phase.TRUST_BOTH:
        return ["proxies injected before the rotation lack PROXY_CONFIG_XDS_AGENT (set at "
                "injection) and take the new bundle only with their next certificate (up to "
                f"{hours}): restart meshed workloads and gateways once (`kubectl rollout "
                "restart`) before advancing; later phases need no restart"]
    if rot.phase is Phase.SIGN_WITH_NEW:
        return ["no restart: istiod reloads cacerts (its log: \"Istiod has detected the newly "
                "added intermediate CA\"); workloads renew their certificates under it within "
                f"{hours}"]
    return []


def _rotation_value(rot: Rotation, new_root: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = {"phase": rot.phase.label}
    if rot.ahead:
        value["clusters"] = {c: Phase(rot.phase + 1).label for c in sorted(rot.ahead)}
    for key, t in (("since", rot.since), ("signingSince", rot.signing_since),
                   ("abortedAt", rot.aborted_at)):
        if t is not None:
            value[key] = _iso(t)
    value["newRoot"] = new_root
    return value


def _raw_doc(loaded: LoadedSpec, config: Path) -> tuple[str, dict[str, Any]]:
    from clusters.errors import SpecError
    from clusters.stack_yaml import decode, parse
    from scripts.cli import _fail_spec

    text, problems = decode(config.read_bytes())
    doc, more = parse(text or "")
    if text is None or problems or more or not isinstance(doc, dict):
        _fail_spec(SpecError(loaded.source, problems + more))
    assert text is not None and isinstance(doc, dict)
    return text, doc


def _replace(loaded: LoadedSpec, config: Path, text: str, doc: dict[str, Any],
             entries: dict[str, Any], salt_line: str | None = None) -> None:
    from clusters.stackfile import StackFileError, replace_file, with_pki_entries

    try:
        replace_file(config, with_pki_entries(text, doc, entries, salt_line))
    except StackFileError as err:
        _fail([f"{loaded.source}: {err}"])


def _write(loaded: LoadedSpec, config: Path, rot: Rotation | None, finish: bool) -> None:
    text, doc = _raw_doc(loaded, config)
    pki = doc["config"]["meshboot:pki"]
    raw_new = pki["rotation"]["newRoot"]
    source = loaded.source
    if rot is not None:
        _replace(loaded, config, text, doc, {"rotation": _rotation_value(rot, raw_new)})
        ahead = f" ({', '.join(sorted(rot.ahead))} at {Phase(rot.phase + 1).label})" \
            if rot.ahead else ""
        click.echo(f"{source}: meshboot:pki.rotation: phase {rot.phase.label}{ahead}")
        click.echo(f"next: render and apply it (or `pulumi up`), `meshboot verify`, then "
                   f"`meshboot rotate root --config {_q(source)} --status`")
        return
    if finish:
        _replace(loaded, config, text, doc, {"rootCa": {"certPem": raw_new["certPem"],
                                                        "keyPem": raw_new["keyPem"]},
                                             "rotation": None})
        extra = (": istiod's multi-root settings are removed again"
                 if loaded.spec.mesh.provider == "istio" else "")
        click.echo(f"{source}: rotation finished: meshboot:pki.rootCa is the new root; "
                   "meshboot:pki.rotation removed. Render and apply (or `pulumi up`) once more"
                   f"{extra}.")
    else:
        _replace(loaded, config, text, doc, {"rotation": None})
        click.echo(f"{source}: rotation aborted: meshboot:pki.rotation removed, the old root "
                   "stays. Render and apply (or `pulumi up`) to drop the new root from the "
                   "trust bundles, then restart meshed workloads: proxies that got the two-root "
                   "bundle (at injection, or over xDS) keep trusting the new root until they do.")


def _start(loaded: LoadedSpec, config: Path, cert_file: Path | None,
           key_file: Path | None) -> None:
    from clusters.stackfile import StackFileError, stack_crypter
    from pki.ca import CA, fingerprint
    from pki.hierarchy import resolve_root, rotation_root
    from stacks.common import pki_params

    source = loaded.source
    if loaded.spec.pki.rotation is not None:
        _fail([f"{source}: a root rotation is already in progress (phase "
               f"{loaded.spec.pki.rotation.phase}); see `meshboot rotate root --config {_q(source)} "
               "--status`, then --advance or --abort"])
    if loaded.spec.pki.root_ca is None:
        _fail([f"{source}: meshboot:pki.rootCa is not set: the stack file must hold the current "
               f"root before it can be rotated (`meshboot pki init --config {_q(source)}`)"])
    if (cert_file is None) != (key_file is None):
        _fail(["give both --new-root-cert and --new-root-key, or neither"])
    text, doc = _raw_doc(loaded, config)
    try:
        crypter, salt_line = stack_crypter(doc, dict(os.environ))
    except StackFileError as err:
        _fail([f"{source}: {err}"])
        return
    params = pki_params(loaded.spec, loaded.base_dir)
    try:
        current = resolve_root(params, None)
        if cert_file is not None and key_file is not None:
            new = CA.from_pem(cert_file.read_text(), key_file.read_text())
        else:
            new = CA.create_root(profile=params.profile, key_algorithm=params.key_algorithm,
                                 validity_days=params.root_validity_days,
                                 trust_domain=params.trust_domain)
        import dataclasses

        from pki.rotation import RootRotation

        rotation_root(dataclasses.replace(params, rotation=RootRotation(
            (new.cert_pem, new.key_pem), ())), current)
    except (ValueError, UnicodeDecodeError) as err:
        _fail([f"new root: {err}"])
        return
    now = _now()
    record_path(loaded).unlink(missing_ok=True)   # a previous rotation's renders
    rot = Rotation(Phase.TRUST_BOTH, since=now)
    value = _rotation_value(rot, {"certPem": new.cert_pem,
                                  "keyPem": {"secure": crypter.encrypt(new.key_pem)}})
    _replace(loaded, config, text, doc, {"rotation": value}, salt_line)
    if salt_line is not None:
        click.echo(f"{source}: added encryptionsalt (passphrase secrets provider, as "
                   "`pulumi stack init --secrets-provider passphrase` does)")
    click.echo(f"{source}: root rotation started: phase trust-both; new root SHA-256 "
               f"{fingerprint(new.cert)} (key stored as a secure value)")
    click.echo("every cluster now trusts the old and the new root and still signs with the "
               "old one. Next: render and apply it (or `pulumi up`), `meshboot verify`, then "
               f"`meshboot rotate root --config {_q(source)} --advance`")
