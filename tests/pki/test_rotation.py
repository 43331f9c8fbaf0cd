"""Root rotation's pure gates, and how the store and the Pulumi root resource accept
a rotation's phases and its end while still refusing any other root change."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import pki.provider as provider_mod
from pki.ca import CA, fingerprint
from pki.provider import RootCAProvider
from pki.rotation import (
    Phase,
    RootRotation,
    Rotation,
    abort_problems,
    aborted,
    advance_problems,
    advanced,
    expected_render,
)
from pki.store import PkiStore, PkiStoreError

from .conftest import make_params

T0 = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)
CLUSTERS = ("east", "west", "central")


def rendered(rot: Rotation) -> dict[str, object]:
    return {c: expected_render(rot.phase_of(c), "old", "new") for c in CLUSTERS}


def problems(rot: Rotation, targets: tuple[str, ...] = CLUSTERS, now: dt.datetime = T0,
             marker: object = "auto") -> list[str]:
    shown = rendered(rot) if marker == "auto" else marker
    return advance_problems(rot, CLUSTERS, targets, now, "old", "new", shown)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ gates
def test_trust_both_to_sign_with_new_needs_the_phase_rendered() -> None:
    rot = Rotation(Phase.TRUST_BOTH, since=T0)
    assert problems(rot) == []
    assert any("no render marker" in p for p in problems(rot, marker=None))
    stale = {c: expected_render(Phase.NONE, "old", "new") for c in CLUSTERS}
    found = problems(rot, marker=stale)
    assert len(found) == 3 and all("does not hold phase trust-both" in p for p in found)


def test_clusters_never_more_than_one_phase_apart() -> None:
    rot = advanced(Rotation(Phase.TRUST_BOTH, since=T0), CLUSTERS, ["east"], T0)
    assert rot is not None and rot.phase_of("east") is Phase.SIGN_WITH_NEW
    assert rot.phase is Phase.TRUST_BOTH and rot.signing_since is None
    found = problems(rot, ("east",))
    assert found and "already at sign-with-new" in found[0]
    # the others may follow one by one; the last one sets when signing-with-new began
    rot = advanced(rot, CLUSTERS, ["west"], T0 + dt.timedelta(hours=1))
    assert rot is not None and rot.phase is Phase.TRUST_BOTH
    later = T0 + dt.timedelta(hours=3)
    rot = advanced(rot, CLUSTERS, ["central"], later)
    assert rot is not None and rot.phase is Phase.SIGN_WITH_NEW and not rot.ahead
    assert rot.signing_since == later


def test_no_cluster_signs_with_new_before_every_cluster_trusts_it() -> None:
    """A state a hand edit could produce: the gate itself still refuses."""
    rot = Rotation(Phase.NONE, ahead=frozenset({"east"}))
    found = advance_problems(rot, CLUSTERS, ("east",), T0, "old", "new", rendered(rot))
    assert any("already at trust-both" in p for p in found)
    found = advance_problems(Rotation(Phase.NONE), CLUSTERS, CLUSTERS, T0, "old", "new",
                             rendered(Rotation(Phase.NONE)))
    assert found == []  # NONE -> TRUST_BOTH needs nothing but a render


def test_drop_old_waits_a_workload_certificate_lifetime_and_shows_when() -> None:
    rot = Rotation(Phase.SIGN_WITH_NEW, since=T0, signing_since=T0)
    found = problems(rot, now=T0 + dt.timedelta(hours=24, minutes=59))
    assert len(found) == 3 and all("before 2026-12-04T09:00:00Z" in p for p in found)
    assert problems(rot, now=T0 + dt.timedelta(hours=25)) == []
    # a cluster ahead at drop-old does not let the others skip the wait either
    ahead = advanced(rot, CLUSTERS, ["east"], T0 + dt.timedelta(hours=25))
    assert ahead is not None and ahead.signing_since == T0
    assert problems(ahead, ("west", "central"), now=T0 + dt.timedelta(hours=25)) == []


def test_drop_old_wait_counts_from_the_sign_with_new_render_when_later() -> None:
    """Asked for at T0, rendered (so applied at the earliest) 30 h later: until then the
    clusters kept signing with the old root, so the wait runs from the render."""
    rot = Rotation(Phase.SIGN_WITH_NEW, since=T0, signing_since=T0)
    late = T0 + dt.timedelta(hours=30)
    at = {"east": T0 + dt.timedelta(hours=1), "west": late, "central": T0}

    def found(now: dt.datetime) -> list[str]:
        return advance_problems(rot, CLUSTERS, CLUSTERS, now, "old", "new", rendered(rot), at)

    refused = found(T0 + dt.timedelta(hours=26))
    assert len(refused) == 3 and all("before 2026-12-05T15:00:00Z" in p for p in refused)
    assert found(late + dt.timedelta(hours=25)) == []
    # render times before signing_since change nothing
    early = {c: T0 - dt.timedelta(days=2) for c in CLUSTERS}
    assert advance_problems(rot, CLUSTERS, CLUSTERS, T0 + dt.timedelta(hours=25), "old",
                            "new", rendered(rot), early) == []
    # a cluster already at drop-old (its later render) does not hold the others back
    ahead = Rotation(Phase.SIGN_WITH_NEW, ahead=frozenset({"east"}), since=T0,
                     signing_since=T0)
    assert advance_problems(ahead, CLUSTERS, ("west", "central"), T0 + dt.timedelta(hours=25),
                            "old", "new", rendered(ahead),
                            {"east": T0 + dt.timedelta(hours=25)}) == []


def test_no_cluster_drops_old_before_every_cluster_signs_with_new() -> None:
    rot = Rotation(Phase.TRUST_BOTH, ahead=frozenset({"east"}), signing_since=None)
    found = advance_problems(rot, CLUSTERS, ("west",), T0 + dt.timedelta(days=3), "old", "new",
                             rendered(rot))
    assert found == []   # west may join east at sign-with-new
    # east cannot go on to drop-old while west and central still sign with the old root
    assert any("already at sign-with-new" in p for p in problems(rot, ("east",)))


def test_finishing_is_for_every_cluster_and_needs_drop_old_rendered() -> None:
    rot = Rotation(Phase.DROP_OLD, since=T0, signing_since=T0)
    assert problems(rot) == []
    assert any("every cluster at once" in p for p in problems(rot, ("east",)))
    assert advanced(rot, CLUSTERS, CLUSTERS, T0) is None
    assert problems(rot, marker={}) != []


def test_unknown_cluster() -> None:
    assert "no such cluster" in problems(Rotation(Phase.TRUST_BOTH), ("mars",))[0]


def test_abort() -> None:
    trust = Rotation(Phase.TRUST_BOTH, since=T0)
    assert abort_problems(trust, CLUSTERS, T0) == []
    assert aborted(trust, CLUSTERS, T0) is None   # nothing was signed with the new root
    signing = Rotation(Phase.TRUST_BOTH, ahead=frozenset({"east"}))
    back = aborted(signing, CLUSTERS, T0)
    assert back is not None and back.phase is Phase.TRUST_BOTH and not back.ahead
    assert back.aborted_at == T0
    found = abort_problems(back, CLUSTERS, T0 + dt.timedelta(hours=1))
    assert found and "2026-12-04T09:00:00Z" in found[0]
    assert abort_problems(back, CLUSTERS, T0 + dt.timedelta(hours=25)) == []
    assert aborted(back, CLUSTERS, T0 + dt.timedelta(hours=25)) is None
    dropped = Rotation(Phase.SIGN_WITH_NEW, ahead=frozenset({"west"}))
    assert "already dropped the old root" in abort_problems(dropped, CLUSTERS, T0)[0]
    # the second abort needs the first one applied (rendered), and waits from that render
    later = T0 + dt.timedelta(hours=40)
    stale = {c: expected_render(Phase.SIGN_WITH_NEW, "old", "new") for c in CLUSTERS}
    found = abort_problems(back, CLUSTERS, later, "old", "new", stale, {})
    assert len(found) == 3 and all("must be applied" in p for p in found)
    found = abort_problems(back, CLUSTERS, later, "old", "new", rendered(back),
                           {c: T0 + dt.timedelta(hours=20) for c in CLUSTERS})
    assert found and "2026-12-05T05:00:00Z" in found[0]
    assert abort_problems(back, CLUSTERS, T0 + dt.timedelta(hours=45), "old", "new",
                          rendered(back), {c: T0 + dt.timedelta(hours=20) for c in CLUSTERS}) == []
    # advancing again after an abort resumes the rotation
    resumed = advanced(back, CLUSTERS, CLUSTERS, T0)
    assert resumed is not None and resumed.aborted_at is None


# -------------------------------------------------------------------- the store
@pytest.fixture(scope="module")
def two_roots() -> tuple[CA, CA]:
    return (CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650),
            CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650))


def _rotating(old: CA, new: CA, east: Phase, west: Phase) -> object:
    return make_params(imported_root=(old.cert_pem, old.key_pem),
                       rotation=RootRotation((new.cert_pem, new.key_pem),
                                             (("east", east), ("west", west))))


def test_store_follows_the_phases_and_accepts_the_finished_rotation(
        tmp_path: Path, two_roots: tuple[CA, CA]) -> None:
    old, new = two_roots
    store = tmp_path / "pki"
    start = PkiStore(store).load_or_build(make_params(imported_root=(old.cert_pem, old.key_pem)))
    phase1 = PkiStore(store).load_or_build(_rotating(old, new, Phase.TRUST_BOTH,  # type: ignore[arg-type]
                                                     Phase.TRUST_BOTH))
    assert phase1.reissued == () and phase1.intermediates["east"].cert == \
        start.intermediates["east"].cert
    assert json.loads((store / "meta.json").read_text())["next_root_fingerprint"] == \
        fingerprint(new.cert)
    phase2 = PkiStore(store).load_or_build(_rotating(old, new, Phase.SIGN_WITH_NEW,  # type: ignore[arg-type]
                                                     Phase.TRUST_BOTH))
    assert phase2.reissued == ("east",)
    assert phase2.intermediates["east"].root_cert == new.cert
    again = PkiStore(store).load_or_build(_rotating(old, new, Phase.SIGN_WITH_NEW,  # type: ignore[arg-type]
                                                    Phase.TRUST_BOTH))
    assert again.reissued == ()   # the new root's intermediate is kept, not churned
    PkiStore(store).load_or_build(_rotating(old, new, Phase.DROP_OLD, Phase.DROP_OLD))  # type: ignore[arg-type]
    done = PkiStore(store).load_or_build(make_params(imported_root=(new.cert_pem, new.key_pem)))
    assert done.root.cert == new.cert and done.reissued == ()
    meta = json.loads((store / "meta.json").read_text())
    assert meta["root_fingerprint"] == fingerprint(new.cert) and "next_root_fingerprint" not in meta
    # and the store keeps holding it: the old root back is a refused root change
    with pytest.raises(PkiStoreError, match="imports root"):
        PkiStore(store).load_or_build(make_params(imported_root=(old.cert_pem, old.key_pem)))


def test_store_refuses_a_root_change_outside_a_rotation(tmp_path: Path,
                                                        two_roots: tuple[CA, CA]) -> None:
    old, new = two_roots
    store = tmp_path / "pki"
    PkiStore(store).load_or_build(make_params(imported_root=(old.cert_pem, old.key_pem)))
    with pytest.raises(PkiStoreError, match="imports root"):
        PkiStore(store).load_or_build(make_params(imported_root=(new.cert_pem, new.key_pem)))


# --------------------------------------------------------- the Pulumi root resource
ROOT_INPUTS = {"profile": "istio", "mesh_id": "mesh1", "trust_domain": "cluster.local",
               "key_algorithm": "ecdsa-p256", "validity_days": 3650}


def test_root_resource_accepts_the_next_root_it_was_told_about(two_roots: tuple[CA, CA]) -> None:
    old, new = two_roots
    p = RootCAProvider()
    current = {**ROOT_INPUTS, "imported_cert_pem": old.cert_pem, "imported_key_pem": old.key_pem}
    outs = p.create(current).outs
    assert outs is not None
    # during the rotation: the next root is recorded in state (a change, same root)
    rotating = {**current, "next_root_cert_pem": new.cert_pem}
    assert p.diff("id", outs, rotating).changes
    outs = p.update("id", outs, rotating).outs
    assert outs is not None and outs["fingerprint"] == fingerprint(old.cert)
    assert outs["next_root_cert_pem"] == new.cert_pem
    # finished: the stack file imports the new root; accepted without MESHBOOT_NEW_ROOT
    finished = {**ROOT_INPUTS, "imported_cert_pem": new.cert_pem, "imported_key_pem": new.key_pem}
    assert p.diff("id", outs, finished).changes
    done = p.update("id", outs, finished).outs
    assert done is not None and done["fingerprint"] == fingerprint(new.cert)
    # any other root is still refused
    other = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)
    with pytest.raises(provider_mod.RootReplacementRefused):
        p.diff("id", outs, {**ROOT_INPUTS, "imported_cert_pem": other.cert_pem,
                            "imported_key_pem": other.key_pem})


def test_istio_remotes_follow_their_primary() -> None:
    from pki.rotation import with_followers

    follows = {"central": "east"}
    assert with_followers(["east"], follows) == (["east", "central"], [])
    targets, found = with_followers(["central"], follows)
    assert found and "advance east" in found[0]
    assert with_followers(["east", "west", "central"], follows)[1] == []


def test_rotation_bundles_match_the_built_hierarchy(two_roots: tuple[CA, CA]) -> None:
    from pki.hierarchy import build, rotation_bundles

    old, new = two_roots
    params = _rotating(old, new, Phase.SIGN_WITH_NEW, Phase.TRUST_BOTH)
    built = build(params, None, {})  # type: ignore[arg-type]
    assert rotation_bundles(params) == built.bundle_pems()  # type: ignore[arg-type]
    assert rotation_bundles(make_params()) == {}
