"""Root rotation proven with real mutual-TLS handshakes, no cluster needed.

For every phase the plan's PKI is built (``pki.hierarchy.build`` from a spec
with ``meshboot:pki.rotation``, each phase from the previous one's
intermediates, as the store does), each cluster's workloads get leaves under
that phase's chain, and each side trusts exactly the bundle the plan renders
for its cluster (Istio ``cacerts`` ``root-cert.pem``, Linkerd
``identityTrustAnchorsPEM``, resolved with the plan's own ``pki_pem``).

A cluster's *live* workloads hold the leaves of its current phase and of the
phases before it (certificates are rotated, not revoked), except that once any
cluster drops the old root, leaves under the old root are gone: that is what
the drop-old wait guarantees. Clusters in the same or adjacent phases (a phase
being applied to one cluster before another) always handshake; two phases
apart they do not, which is why the gates exist.
"""

from __future__ import annotations

import datetime as dt
import itertools
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusters.loader import spec_from_config
from pki.ca import CA, Leaf, certs_from_pem, fingerprint
from pki.hierarchy import MeshPKI, build, intermediate_inputs
from pki.rotation import (
    Phase,
    Rotation,
    advance_problems,
    advanced,
    expected_render,
    signs_with_new,
)
from stacks.build import build_plan
from stacks.plan import MeshPlan, PkiRef, pki_pem
from stacks.preflight import LINKERD_CONTROL_PLANE, pki_secret
from tests.conftest import base_spec

CLUSTERS = ("east", "west")
PHASES = (Phase.NONE, Phase.TRUST_BOTH, Phase.SIGN_WITH_NEW, Phase.DROP_OLD)
# TLS checks validity against the real clock, so certificates are issued "now".
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def spiffe(cluster: str, phase: int) -> str:
    return f"spiffe://cluster.local/ns/{cluster}/sa/workload-{phase}"


def rotation_spec(provider: str, old: CA, new: CA, phase: Phase,
                  ahead: dict[str, str] | None = None) -> dict[str, Any]:
    spec = base_spec()
    spec["mesh"]["provider"] = provider
    spec["pki"]["rootCa"] = {"certPem": old.cert_pem, "keyPem": old.key_pem}
    if phase is not Phase.NONE:
        rot: dict[str, Any] = {"phase": phase.label,
                               "newRoot": {"certPem": new.cert_pem, "keyPem": new.key_pem}}
        if ahead:
            rot["clusters"] = ahead
        spec["pki"]["rotation"] = rot
    return {f"meshboot:{k}": v for k, v in spec.items()}


def plan_of(config: dict[str, Any]) -> MeshPlan:
    return build_plan(spec_from_config(config, "Pulumi.t.yaml"), "Pulumi.t.yaml")


def next_pki(plan: MeshPlan, previous: MeshPKI | None, now: dt.datetime = NOW) -> MeshPKI:
    """The hierarchy for ``plan``, reusing ``previous``'s intermediates as the store would."""
    params = plan.pki
    existing = {} if previous is None else {
        c: (ca, intermediate_inputs(params, c, fingerprint(ca.root_cert)))
        for c, ca in previous.intermediates.items()}
    return build(params, None, existing, now)


def rendered_bundle(plan: MeshPlan, pki: MeshPKI, cluster: str) -> str:
    """The trust bundle the plan renders for ``cluster`` (resolved as render does)."""
    bundles = pki.bundle_pems()
    if plan.provider == "istio":
        secret = pki_secret(plan, cluster)
        assert secret is not None
        ref = secret["stringData"]["root-cert.pem"]
    else:
        release = plan.cluster(cluster).step(LINKERD_CONTROL_PLANE).release
        assert release is not None
        ref = release.values["identityTrustAnchorsPEM"]
    assert isinstance(ref, PkiRef)
    pem: str = pki_pem(ref, pki.root.cert_pem, pki.intermediates, bundles)
    return pem


@dataclass(frozen=True)
class Workload:
    cluster: str
    phase: int             # the phase whose chain issued it
    leaf: Leaf
    new_root: bool         # issued under the new root
    files: tuple[Path, Path]


@dataclass
class Mesh:
    """Per provider: each phase's plan bundles and each (phase, cluster)'s workload."""

    provider: str
    old: CA
    new: CA
    bundles: dict[tuple[int, str], str]
    workloads: dict[tuple[int, str], Workload]
    pkis: dict[int, MeshPKI]
    tmp: Path

    def workload(self, pki: MeshPKI, cluster: str, phase: int, tag: str) -> Workload:
        ca = pki.intermediates[cluster]
        leaf = ca.issue_leaf(spiffe_ids=[spiffe(cluster, phase)], now=NOW)
        chain, key = self.tmp / f"{tag}-chain.pem", self.tmp / f"{tag}-key.pem"
        chain.write_text(leaf.chain_pem)
        key.write_text(leaf.key_pem)
        return Workload(cluster, phase, leaf, ca.root_cert == self.new.cert, (chain, key))

    def live(self, cluster: str, phase: int, old_gone: bool) -> list[Workload]:
        """Workloads of ``cluster`` at ``phase``: leaves of this phase and the earlier ones,
        without those under the old root once they have expired (``old_gone``)."""
        out = []
        for p in range(phase + 1):
            w = self.workloads[(p, cluster)]
            if p < phase and old_gone and not w.new_root:
                continue
            out.append(w)
        return out


@pytest.fixture(scope="module", params=["istio", "linkerd"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    provider = request.param
    old = CA.create_root(profile=provider, key_algorithm="ecdsa-p256", validity_days=3650)
    new = CA.create_root(profile=provider, key_algorithm="ecdsa-p256", validity_days=3650)
    m = Mesh(provider, old, new, {}, {}, {}, tmp_path_factory.mktemp(f"rot-{provider}"))
    previous = None
    for phase in PHASES:
        plan = plan_of(rotation_spec(provider, old, new, phase))
        pki = next_pki(plan, previous)
        m.pkis[phase] = pki
        for c in CLUSTERS:
            m.bundles[(phase, c)] = rendered_bundle(plan, pki, c)
            m.workloads[(phase, c)] = m.workload(pki, c, phase, f"{phase}-{c}")
        previous = pki
    return m


_CONTEXTS: dict[tuple[Path, str, bool], ssl.SSLContext] = {}


def context(w: Workload, bundle: str, server: bool) -> ssl.SSLContext:
    key = (w.files[0], bundle, server)
    if key not in _CONTEXTS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if not server:
            ctx.check_hostname = False   # identity is the SPIFFE URI SAN, checked below
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(*w.files)
        ctx.load_verify_locations(cadata=bundle)
        _CONTEXTS[key] = ctx
    return _CONTEXTS[key]


def handshake(server: Workload, server_trusts: str, client: Workload,
              client_trusts: str) -> str | None:
    """A real TLS 1.3 mutual-auth handshake over memory BIOs; None, or why it failed."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    srv = context(server, server_trusts, True).wrap_bio(s_in, s_out, server_side=True)
    cli = context(client, client_trusts, False).wrap_bio(c_in, c_out)
    done = {"client": False, "server": False}
    for _ in range(6):
        for name, end in (("client", cli), ("server", srv)):
            if done[name]:
                continue
            try:
                end.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                return f"{name} rejected its peer: {exc.reason or exc}"
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    try:  # data both ways: a TLS 1.3 server's verdict on the client certificate
        cli.write(b"ping")
        s_in.write(c_out.read())
        assert srv.read(4) == b"ping"
        srv.write(b"pong")
        c_in.write(s_out.read())
        assert cli.read(4) == b"pong"
    except ssl.SSLError as exc:
        return f"rejected after the handshake: {exc.reason or exc}"
    peer = cli.getpeercert() or {}
    assert ("URI", spiffe(server.cluster, server.phase)) in peer.get("subjectAltName", ())
    return None


def failures(m: Mesh, pa: int, pb: int, old_gone: bool,
             a: str = "east", b: str = "west") -> list[str]:
    """Every handshake, both directions, between the live workloads of ``a`` at ``pa``
    and ``b`` at ``pb``; the failing ones described."""
    out = []
    for wa, wb in itertools.product(m.live(a, pa, old_gone), m.live(b, pb, old_gone)):
        for (srv, sp), (cli, cp) in (((wa, pa), (wb, pb)), ((wb, pb), (wa, pa))):
            why = handshake(srv, m.bundles[(sp, srv.cluster)], cli, m.bundles[(cp, cli.cluster)])
            if why:
                out.append(f"{cli.cluster}@{Phase(cp).label} (leaf of {Phase(cli.phase).label}) "
                           f"-> {srv.cluster}@{Phase(sp).label} (leaf of "
                           f"{Phase(srv.phase).label}): {why}")
    return out


def test_each_phase_renders_the_bundle_and_signing_root_of_the_phase(mesh: Mesh) -> None:
    old_fp, new_fp = fingerprint(mesh.old.cert), fingerprint(mesh.new.cert)
    for phase in PHASES:
        want = expected_render(Phase(phase), old_fp, new_fp)
        for c in CLUSTERS:
            assert [fingerprint(x) for x in certs_from_pem(mesh.bundles[(phase, c)])] \
                == list(want.trusted), (phase, c)
            assert fingerprint(mesh.pkis[phase].intermediates[c].root_cert) == want.signing
    # trust-both and sign-with-new render byte-identical bundles (only the intermediate
    # changes, which istiod / linkerd-identity hot-reload); every bundle change is a
    # superset or subset of the previous one (istiod's ISTIO_MULTIROOT_MESH rule)
    assert mesh.bundles[(1, "east")] == mesh.bundles[(2, "east")]
    sets = [set(certs_from_pem(mesh.bundles[(p, "east")])) for p in PHASES]
    for before, after in itertools.pairwise(sets):
        assert before <= after or after <= before
    # the intermediate is re-issued exactly when the cluster starts signing with the new root
    assert mesh.pkis[1].intermediates["east"].cert == mesh.pkis[0].intermediates["east"].cert
    assert mesh.pkis[2].intermediates["east"].cert != mesh.pkis[1].intermediates["east"].cert
    assert mesh.pkis[3].intermediates["east"].cert == mesh.pkis[2].intermediates["east"].cert


def test_handshakes_succeed_within_one_phase_and_fail_two_apart(mesh: Mesh) -> None:
    """The full matrix: every pair of phases, every live workload pair, both directions,
    plus each cluster with itself."""
    table: dict[tuple[int, int], list[str]] = {}
    for pa, pb in itertools.product(PHASES, PHASES):
        old_gone = Phase.DROP_OLD in (pa, pb)   # the drop-old gate waited for it
        table[(pa, pb)] = failures(mesh, pa, pb, old_gone)
    for (pa, pb), failed in table.items():
        if abs(pa - pb) <= 1:
            assert not failed, (pa, pb, failed)
        else:
            assert failed, f"{pa} and {pb} are two phases apart, yet every handshake worked"
    for phase in PHASES:
        assert not failures(mesh, phase, phase, phase is Phase.DROP_OLD, "east", "east")
    # the skips the gates refuse, named:
    # signing with the new root while a cluster trusts only the old one
    assert any("east@sign-with-new" in f and "west@none" in f for f in table[(2, 0)])
    # dropping the old root while a cluster still signs with it
    assert any("west@trust-both" in f for f in table[(3, 1)])


def test_dropping_the_old_root_before_the_wait_breaks_old_leaves(mesh: Mesh) -> None:
    """east drops the old root while west, just switched to the new root, still has
    workloads with leaves of trust-both: the workload-certificate lifetime wait."""
    failed = failures(mesh, Phase.DROP_OLD, Phase.SIGN_WITH_NEW, old_gone=False)
    assert failed and all("(leaf of trust-both)" in f or "(leaf of none)" in f for f in failed)
    assert not failures(mesh, Phase.DROP_OLD, Phase.SIGN_WITH_NEW, old_gone=True)


def test_abort_from_sign_with_new_keeps_trust_until_new_leaves_expire(mesh: Mesh) -> None:
    """--abort from sign-with-new: back to trust-both signing with the old root (the
    hierarchy re-issues the intermediates under it); only after the new root's leaves
    have expired may the new root leave the bundles (the second --abort)."""
    plan = plan_of(rotation_spec(mesh.provider, mesh.old, mesh.new, Phase.TRUST_BOTH))
    pki = next_pki(plan, mesh.pkis[Phase.SIGN_WITH_NEW])
    assert all(pki.intermediates[c].root_cert == mesh.old.cert for c in CLUSTERS)
    bundle = {c: rendered_bundle(plan, pki, c) for c in CLUSTERS}
    aborted = {c: mesh.workload(pki, c, Phase.TRUST_BOTH, f"abort-{c}") for c in CLUSTERS}
    left_over = {c: mesh.workloads[(Phase.SIGN_WITH_NEW, c)] for c in CLUSTERS}
    for a, b in (("east", "west"), ("west", "east")):
        for wa, wb in itertools.product((aborted[a], left_over[a]), (aborted[b], left_over[b])):
            assert handshake(wa, bundle[a], wb, bundle[b]) is None
    # dropping the new root at once (no rotation) while its leaves live: refused by the gate
    plain = plan_of(rotation_spec(mesh.provider, mesh.old, mesh.new, Phase.NONE))
    old_only = rendered_bundle(plain, next_pki(plain, pki), "west")
    assert handshake(left_over["east"], bundle["east"], aborted["west"], old_only) is not None
    assert handshake(aborted["east"], bundle["east"], aborted["west"], old_only) is None


def test_intermediate_renewal_keeps_every_handshake(mesh: Mesh) -> None:
    """An intermediate / issuer re-issued inside its renewal window (same root): leaves of
    the old and the new intermediate talk to each other across clusters."""
    plan = plan_of(rotation_spec(mesh.provider, mesh.old, mesh.new, Phase.NONE))
    # issued 340 days ago: inside the 30/60-day renewal window of a 365-day CA now
    before = next_pki(plan, None, now=NOW - dt.timedelta(days=340))
    renewed = next_pki(plan, before)
    assert set(renewed.reissued) == set(CLUSTERS)
    assert renewed.bundle_pems() == {} and renewed.root.cert == mesh.old.cert
    bundle = rendered_bundle(plan, renewed, "east")
    fresh = {c: mesh.workload(renewed, c, 0, f"renewed-{c}") for c in CLUSTERS}
    old = {c: mesh.workload(before, c, 0, f"expiring-{c}") for c in CLUSTERS}
    for wa, wb in itertools.product((fresh["east"], old["east"]), (fresh["west"], old["west"])):
        assert handshake(wa, bundle, wb, bundle) is None
        assert handshake(wb, bundle, wa, bundle) is None


def _reachable(clusters: tuple[str, ...]) -> Iterator[tuple[Rotation, dt.datetime]]:
    """Every state the gates let a rotation reach (single clusters or all at once, the
    clock moved on by a day between steps or not), with the time it is reached."""
    start = (Rotation(Phase.TRUST_BOTH, since=NOW), NOW)
    seen, queue = set(), [start]
    rendered_ok = {c: None for c in clusters}
    while queue:
        rot, now = queue.pop()
        key = (rot.phase, rot.ahead, rot.signing_since, now)
        if key in seen:
            continue
        seen.add(key)
        yield rot, now
        if rot.phase is Phase.DROP_OLD and not rot.ahead:
            continue
        groups = [list(clusters)] + [[c] for c in clusters]
        for targets, later in itertools.product(groups, (now, now + dt.timedelta(hours=26))):
            rendered = {c: expected_render(rot.phase_of(c), "old", "new") for c in rendered_ok}
            if not advance_problems(rot, clusters, targets, later, "old", "new", rendered):
                nxt = advanced(rot, clusters, targets, later)
                if nxt is not None:
                    queue.append((nxt, later))


def test_every_state_the_gates_allow_handshakes(mesh: Mesh) -> None:
    """Walk every state the gates allow (3 steps per cluster, one cluster at a time or
    all together, with and without time passing): the two clusters are never more than
    one phase apart, a cluster drops the old root only once the old leaves expired,
    and every handshake between their live workloads succeeds."""
    states = list(_reachable(CLUSTERS))
    pairs = {(rot.phase_of("east"), rot.phase_of("west")) for rot, _ in states}
    assert pairs == {(p, q) for p in PHASES[1:] for q in PHASES[1:] if abs(p - q) <= 1}
    checked = set()
    for rot, now in states:
        pa, pb = rot.phase_of("east"), rot.phase_of("west")
        old_gone = Phase.DROP_OLD in (pa, pb)
        if old_gone:
            assert rot.signing_since is not None and now - rot.signing_since >= dt.timedelta(hours=24)
            assert all(signs_with_new(p) for p in (pa, pb))
        checked.add((pa, pb, old_gone))
    for pa, pb, old_gone in checked:
        assert not failures(mesh, pa, pb, old_gone), (pa, pb)
