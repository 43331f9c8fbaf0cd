"""Root rotation: the phases, what each phase trusts and signs with, and the gates.

A mesh's root cannot be swapped in one step: a workload trusts only the roots
its proxy was given, so a cluster that signs with a root another cluster does
not trust yet cuts the mesh in two. Upstream's procedures (Istio: "Plug in CA
certificates", https://istio.io/latest/docs/tasks/security/cert-management/plugin-ca-cert/,
and the multi-root support behind ``ISTIO_MULTIROOT_MESH``, istio/istio
``pilot/pkg/bootstrap/istio_ca.go`` ``handleEvent``: a changed ``root-cert.pem`` is
taken only when one bundle is a subset of the other; the issues behind it:
istio/istio#31111 "Support Multiple Trust Anchors in a TrustBundle", #30947
"Better root cert rotation support in Istio", #50420 and #55005 on rotating with
``ISTIO_MULTIROOT_MESH`` + ``PROXY_CONFIG_XDS_AGENT``; Linkerd: "Manually rotating
control plane TLS credentials", section "Rotating the trust anchor",
https://linkerd.io/2-edge/tasks/manually-rotating-control-plane-tls-credentials/:
bundle the new anchor with the old one, re-issue the issuer under the new
anchor, then remove the old anchor) come down to three phases per cluster:

1. ``trust-both``: trust {old, new}; intermediates / issuers still under the old root;
2. ``sign-with-new``: still trust {old, new}; intermediates / issuers re-issued
   under the new root;
3. ``drop-old``: trust {new} only, once no workload certificate issued under
   the old root can still be alive.

The bundle is the same in phases 1 and 2 (old root first), so moving from 1 to
2 changes only the intermediate, which istiod and linkerd-identity hot-reload;
every change of the bundle is a superset or a subset of the previous one.

Everything here is pure (no I/O, the clock passed in): the CLI reads the stack
file and the render marker, asks these functions, and writes the result. The
gates return their reasons as data, like :mod:`pki.hierarchy`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum

__all__ = [
    "PHASE_NAMES",
    "WORKLOAD_CERT_LIFETIME",
    "ClusterRender",
    "Phase",
    "Rotation",
    "RootRotation",
    "abort_problems",
    "aborted",
    "advance_problems",
    "advanced",
    "drop_old_allowed_at",
    "expected_render",
    "phase_from_name",
    "signs_with_new",
    "trusted_roots",
    "with_followers",
]


class Phase(IntEnum):
    """Where one cluster stands. ``NONE``: no rotation (or not yet started)."""

    NONE = 0
    TRUST_BOTH = 1
    SIGN_WITH_NEW = 2
    DROP_OLD = 3

    @property
    def label(self) -> str:
        return PHASE_NAMES[self]


PHASE_NAMES = {Phase.NONE: "none", Phase.TRUST_BOTH: "trust-both",
               Phase.SIGN_WITH_NEW: "sign-with-new", Phase.DROP_OLD: "drop-old"}
STACK_PHASES = ("trust-both", "sign-with-new", "drop-old")  # what the stack file may say


def phase_from_name(name: str) -> Phase:
    for phase, label in PHASE_NAMES.items():
        if label == name:
            return phase
    raise ValueError(f"unknown rotation phase {name!r} (one of: {', '.join(STACK_PHASES)})")


# The longest a workload certificate lives, i.e. how long after the last
# cluster started signing with the new root a certificate from the old one may
# still be in use. Istio: istiod's DEFAULT_WORKLOAD_CERT_TTL is 24h (istio/istio
# security/pkg/cmd/constants.go DefaultWorkloadCertTTL; the agent asks for
# SECRET_TTL, 24h by default, and meshboot sets neither). Linkerd:
# identity.issuer.issuanceLifetime "24h0m0s" in the linkerd-control-plane chart
# values (meshboot does not set it), plus clockSkewAllowance 20s by which
# certificates are backdated. One hour of margin covers both skews.
WORKLOAD_CERT_LIFETIME = dt.timedelta(hours=24)
LIFETIME_MARGIN = dt.timedelta(hours=1)


def trusted_roots(phase: Phase) -> tuple[str, ...]:
    """The roots a cluster in ``phase`` trusts, in bundle order ("old", "new")."""
    if phase is Phase.NONE:
        return ("old",)
    if phase is Phase.DROP_OLD:
        return ("new",)
    return ("old", "new")


def signs_with_new(phase: Phase) -> bool:
    """Whether the cluster's intermediate / issuer hangs from the new root."""
    return phase >= Phase.SIGN_WITH_NEW


@dataclass(frozen=True)
class RootRotation:
    """What the PKI needs of a rotation: the new root and each cluster's phase.

    Carried in :class:`pki.hierarchy.PkiParams` (the plan's PKI inputs), so the
    store, render and the Pulumi program build the same phase.
    """

    new_root: tuple[str, str]                      # (cert PEM, key PEM)
    phases: tuple[tuple[str, Phase], ...]          # cluster -> phase, every cluster

    def phase_of(self, cluster: str) -> Phase:
        return dict(self.phases).get(cluster, Phase.NONE)


@dataclass(frozen=True)
class Rotation:
    """The rotation state the stack file records (``meshboot:pki.rotation``).

    ``phase`` is the phase of every cluster not in ``ahead``; a cluster in
    ``ahead`` is one phase further (``--advance --cluster C`` moves clusters
    one at a time). ``since``: when the last phase change was made;
    ``signing_since``: when the last cluster began signing with the new root
    (drop-old waits a workload-certificate lifetime after it);
    ``aborted_at``: an abort from sign-with-new, waiting until certificates
    under the new root are gone before the new root may be dropped.
    """

    phase: Phase
    ahead: frozenset[str] = frozenset()
    since: dt.datetime | None = None
    signing_since: dt.datetime | None = None
    aborted_at: dt.datetime | None = None

    def phase_of(self, cluster: str) -> Phase:
        return Phase(self.phase + 1) if cluster in self.ahead else self.phase

    def phases(self, clusters: Iterable[str]) -> dict[str, Phase]:
        return {c: self.phase_of(c) for c in clusters}


@dataclass(frozen=True)
class ClusterRender:
    """What the last render (its marker) holds for one cluster."""

    trusted: tuple[str, ...]   # root fingerprints of the trust bundle, in order
    signing: str               # fingerprint of the root its intermediate hangs from


def expected_render(phase: Phase, old_fp: str, new_fp: str) -> ClusterRender:
    by_name = {"old": old_fp, "new": new_fp}
    return ClusterRender(tuple(by_name[r] for r in trusted_roots(phase)),
                         new_fp if signs_with_new(phase) else old_fp)


def _latest(start: dt.datetime, rendered_at: Mapping[str, dt.datetime] | None,
            clusters: Iterable[str]) -> dt.datetime:
    """``start``, or the latest render time of ``clusters`` if later.

    The stack file says when a phase was *asked for*; the clusters change only when
    the render is applied. A workload certificate under the previous signing root
    can be issued until then, so a wait counted from the stack-file change alone
    ends early when the render is applied later (istiod signs with whatever
    ``cacerts`` holds, istio/istio pilot/pkg/bootstrap/istio_ca.go ``handleEvent``;
    linkerd-identity with whatever ``linkerd-identity-issuer`` holds, linkerd2
    pkg/identity/service.go ``Run``). The render is the latest point meshboot sees.
    """
    times = [rendered_at[c] for c in clusters if rendered_at and c in rendered_at]
    return max([start, *times])


def drop_old_allowed_at(rot: Rotation, rendered_at: Mapping[str, dt.datetime] | None = None
                        ) -> dt.datetime | None:
    """When the old root may be dropped: a workload-certificate lifetime (plus margin)
    after the last cluster started signing with the new root; None before that started.

    ``rendered_at``: since when each cluster's current phase has been in the render
    (only clusters whose render holds their phase); a sign-with-new render made
    after ``signing_since`` moves the time on."""
    if rot.signing_since is None:
        return None
    signing = [c for c in (rendered_at or {}) if rot.phase_of(c) is Phase.SIGN_WITH_NEW]
    return _latest(rot.signing_since, rendered_at, signing) + WORKLOAD_CERT_LIFETIME \
        + LIFETIME_MARGIN


def _not_rendered(rot: Rotation, clusters: Sequence[str], old_fp: str, new_fp: str,
                  rendered: Mapping[str, ClusterRender] | None) -> list[str]:
    """Clusters whose current phase is not what the last render holds."""
    if rendered is None:
        return ["the current phase has not been rendered (no render marker found): run "
                "`meshboot render` (also when you deploy with `pulumi up`: the render is what "
                "records the phase), apply it (kubectl / Flux) or run `pulumi up`, and check "
                "it with `meshboot verify`"]
    out = []
    for c in clusters:
        want = expected_render(rot.phase_of(c), old_fp, new_fp)
        got = rendered.get(c)
        if got != want:
            out.append(f"{c}: the last render does not hold phase {rot.phase_of(c).label} "
                       "(render it, then apply it with kubectl / Flux or `pulumi up`)")
    return out


def advance_problems(rot: Rotation, clusters: Sequence[str], targets: Sequence[str],
                     now: dt.datetime, old_fp: str, new_fp: str,
                     rendered: Mapping[str, ClusterRender] | None,
                     rendered_at: Mapping[str, dt.datetime] | None = None) -> list[str]:
    """Why ``targets`` may not move one phase on now; empty when they may.

    The rules: no cluster signs with the new root before every cluster trusts it;
    no cluster drops the old root before every cluster signs with the new one
    and a workload-certificate lifetime has passed; clusters are never more than
    one phase apart; the current phase must have been rendered for every
    cluster. Finishing (every cluster at drop-old) needs drop-old rendered.
    ``rendered_at``: see :func:`drop_old_allowed_at`.
    """
    problems: list[str] = []
    unknown = sorted(set(targets) - set(clusters))
    if unknown:
        return [f"no such cluster: {', '.join(unknown)} (clusters: {', '.join(clusters)})"]
    phases = rot.phases(clusters)
    lowest = min(phases.values())
    for c in targets:
        if phases[c] > lowest:
            problems.append(f"{c} is already at {phases[c].label}, one phase ahead of "
                            f"{', '.join(x for x in clusters if phases[x] == lowest)}: clusters "
                            "are never more than one phase apart; advance those first")
    moving = [c for c in targets if phases[c] == lowest]
    after = {c: (Phase(p + 1) if c in moving and p < Phase.DROP_OLD else p)
             for c, p in phases.items()}
    finishing = lowest is Phase.DROP_OLD
    if not finishing:
        for c in moving:
            to = after[c]
            if to is Phase.SIGN_WITH_NEW:
                behind = [x for x, p in phases.items() if p < Phase.TRUST_BOTH]
                if behind:
                    problems.append(f"{c} may not sign with the new root before every cluster "
                                    f"trusts it ({', '.join(behind)} do not)")
            if to is Phase.DROP_OLD:
                behind = [x for x, p in after.items() if p < Phase.SIGN_WITH_NEW]
                if behind:
                    problems.append(f"{c} may not drop the old root before every cluster signs "
                                    f"with the new one ({', '.join(behind)} do not)")
                allowed = drop_old_allowed_at(rot, rendered_at)
                if allowed is None or now < allowed:
                    when = (f"{allowed.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
                            if allowed is not None else
                            "a workload-certificate lifetime after every cluster signs with "
                            "the new root")
                    problems.append(
                        f"{c} may not drop the old root before {when}: workload certificates "
                        f"issued under the old root live up to "
                        f"{WORKLOAD_CERT_LIFETIME.total_seconds() / 3600:g}h (+"
                        f"{LIFETIME_MARGIN.total_seconds() / 3600:g}h margin for clock skew)")
    elif set(targets) != set(clusters):
        problems.append("finishing the rotation applies to every cluster at once (no --cluster)")
    problems += _not_rendered(rot, clusters, old_fp, new_fp, rendered)
    return problems


def advanced(rot: Rotation, clusters: Sequence[str], targets: Sequence[str],
             now: dt.datetime) -> Rotation | None:
    """The state after ``targets`` move one phase on (check :func:`advance_problems`
    first); None when the rotation is finished (the new root becomes the root)."""
    if rot.phase is Phase.DROP_OLD:
        return None
    ahead = set(rot.ahead) | set(targets)
    phase: Phase = rot.phase
    signing_since = rot.signing_since
    if ahead >= set(clusters):
        phase, ahead = Phase(rot.phase + 1), set()
        if phase is Phase.SIGN_WITH_NEW:
            signing_since = now   # the last cluster starts signing with the new root now
    return replace(rot, phase=phase, ahead=frozenset(ahead), since=now,
                   signing_since=signing_since, aborted_at=None)


def with_followers(targets: Sequence[str], follows: Mapping[str, str]
                   ) -> tuple[list[str], list[str]]:
    """``targets`` plus the clusters that follow one of them, and why a target may not move.

    ``follows`` maps a cluster to the cluster whose CA signs its workloads (an
    Istio remote: its primary's istiod issues its workload certificates, so its
    phase is its primary's and it never moves on its own).
    """
    problems = [f"{t}'s workload certificates come from {follows[t]}'s istiod: advance "
                f"{follows[t]} (its remotes follow it)" for t in targets
                if t in follows and follows[t] not in targets]
    out = list(targets)
    out += [c for c, lead in follows.items() if lead in targets and c not in out]
    return out, problems


def abort_problems(rot: Rotation, clusters: Sequence[str], now: dt.datetime,
                   old_fp: str | None = None, new_fp: str = "",
                   rendered: Mapping[str, ClusterRender] | None = None,
                   rendered_at: Mapping[str, dt.datetime] | None = None) -> list[str]:
    """Why the rotation cannot be aborted now; empty when it can.

    Possible from trust-both and sign-with-new. A cluster that already dropped
    the old root cannot go back without a new rotation. After an abort from
    sign-with-new, the new root stays trusted until certificates issued under it
    have expired; the second ``--abort`` (which removes it) waits for that,
    counted from when the abort was rendered (``rendered_at``), and, with
    ``old_fp`` given, needs the abort rendered for every cluster: until it is
    applied, the clusters still sign with the new root.
    """
    phases = rot.phases(clusters)
    dropped = [c for c, p in phases.items() if p is Phase.DROP_OLD]
    if dropped:
        return [f"{', '.join(dropped)} already dropped the old root: the rotation can only be "
                "finished (`meshboot rotate root --advance`)"]
    if rot.aborted_at is not None:
        if old_fp is not None:
            unrendered = _not_rendered(rot, clusters, old_fp, new_fp, rendered)
            if unrendered:
                return [f"the abort must be applied before the new root is dropped: {p}"
                        for p in unrendered]
        allowed = _latest(rot.aborted_at, rendered_at, clusters) + WORKLOAD_CERT_LIFETIME \
            + LIFETIME_MARGIN
        if now < allowed:
            return [f"the new root may be dropped from the trust bundles only after "
                    f"{allowed.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}: workload certificates "
                    "issued under it before the abort are still valid until then"]
    return []


def aborted(rot: Rotation, clusters: Sequence[str], now: dt.datetime) -> Rotation | None:
    """The state after ``--abort`` (check :func:`abort_problems` first).

    From trust-both, nothing was signed with the new root: the rotation is
    removed (None: back to the old root alone). From sign-with-new (any cluster),
    every cluster goes back to trust-both signing with the old root, and the
    abort is recorded; a second ``--abort`` a certificate lifetime later removes it.
    """
    phases = rot.phases(clusters)
    if any(p >= Phase.SIGN_WITH_NEW for p in phases.values()):
        return Rotation(Phase.TRUST_BOTH, frozenset(), since=now, signing_since=None,
                        aborted_at=now)
    return None
