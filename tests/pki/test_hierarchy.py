"""Stability: CA material must not churn between runs."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from pki.ca import CA, fingerprint
from pki.hierarchy import MeshPKI, build, intermediate_inputs, needs_reissue
from pki.keys import KeyAlgorithm, key_algorithm_of

from .conftest import make_params


def as_existing(pki: MeshPKI, params) -> dict[str, tuple[CA, dict]]:  # type: ignore[no-untyped-def, type-arg]
    fp = fingerprint(pki.root.cert)
    return {
        c: (ca, intermediate_inputs(params, c, fp)) for c, ca in pki.intermediates.items()
    }


def test_first_build_issues_everything() -> None:
    params = make_params()
    pki = build(params, None, {})
    assert list(pki.intermediates) == ["east", "west"]
    assert pki.reissued == ("east", "west")
    for ca in pki.intermediates.values():
        ca.cert.verify_directly_issued_by(pki.root.cert)
        assert ca.chain == (pki.root.cert,)


def test_second_build_is_identical() -> None:
    params = make_params()
    first = build(params, None, {})
    second = build(params, first.root, as_existing(first, params))
    assert second.reissued == ()
    assert second.root.cert == first.root.cert
    for c in ("east", "west"):
        assert second.intermediates[c].cert == first.intermediates[c].cert
        assert second.intermediates[c].key_pem == first.intermediates[c].key_pem


def test_cluster_order_and_new_cluster_leave_existing_alone() -> None:
    params = make_params()
    first = build(params, None, {})
    reordered = dataclasses.replace(params, clusters=("north", "west", "east"))
    second = build(reordered, first.root, as_existing(first, params))
    assert second.reissued == ("north",)
    assert list(second.intermediates) == ["north", "west", "east"]
    assert second.intermediates["east"].cert == first.intermediates["east"].cert
    assert second.intermediates["west"].cert == first.intermediates["west"].cert


def test_removed_cluster_is_not_returned() -> None:
    params = make_params()
    first = build(params, None, {})
    second = build(
        dataclasses.replace(params, clusters=("east",)), first.root, as_existing(first, params)
    )
    assert list(second.intermediates) == ["east"] and second.reissued == ()


def test_validity_and_renew_window_changes_do_not_reissue() -> None:
    params = make_params()
    first = build(params, None, {})
    changed = dataclasses.replace(
        params, intermediate_validity_days=90, renew_before_days=10, root_validity_days=100
    )
    assert build(changed, first.root, as_existing(first, params)).reissued == ()


def test_near_expiry_is_reissued_under_same_root() -> None:
    params = make_params(intermediate_validity_days=365, renew_before_days=30)
    now = dt.datetime.now(dt.UTC)
    first = build(params, None, {}, now=now - dt.timedelta(days=340))  # 25 days left
    second = build(params, first.root, as_existing(first, params), now=now)
    assert set(second.reissued) == {"east", "west"}
    assert "renewal window" in second.reasons["east"]
    assert second.root.cert == first.root.cert
    for c in ("east", "west"):
        new = second.intermediates[c]
        assert new.cert != first.intermediates[c].cert
        new.cert.verify_directly_issued_by(first.root.cert)
        assert new.cert.not_valid_after_utc > now + dt.timedelta(days=300)


def test_outside_window_not_reissued() -> None:
    params = make_params(intermediate_validity_days=365, renew_before_days=30)
    now = dt.datetime.now(dt.UTC)
    first = build(params, None, {}, now=now - dt.timedelta(days=300))  # 65 days left
    assert build(params, first.root, as_existing(first, params), now=now).reissued == ()


def test_key_algorithm_change_reissues_istio_intermediates() -> None:
    params = make_params()
    first = build(params, None, {})
    rsa = dataclasses.replace(params, key_algorithm=KeyAlgorithm.RSA_2048)
    second = build(rsa, first.root, as_existing(first, params))
    assert set(second.reissued) == {"east", "west"}
    assert "key_algorithm" in second.reasons["east"]
    assert key_algorithm_of(second.intermediates["east"].cert) is KeyAlgorithm.RSA_2048
    assert second.root.cert == first.root.cert  # the root is forever


def test_trust_domain_change_reissues() -> None:
    params = make_params(profile="linkerd")
    first = build(params, None, {})
    second = build(
        dataclasses.replace(params, trust_domain="prod.example"),
        first.root,
        as_existing(first, params),
    )
    assert set(second.reissued) == {"east", "west"}
    assert "trust_domain" in second.reasons["west"]


def test_intermediate_not_signed_by_root_is_reissued(foreign_root: CA) -> None:
    params = make_params()
    first = build(params, None, {})
    stray = foreign_root.issue_intermediate(
        profile="istio", cluster="east", key_algorithm="ecdsa-p256", validity_days=365
    )
    existing = as_existing(first, params)
    existing["east"] = (stray, existing["east"][1])  # inputs claim the right root
    second = build(params, first.root, existing)
    assert second.reissued == ("east",)
    assert "no longer signed" in second.reasons["east"]
    second.intermediates["east"].cert.verify_directly_issued_by(first.root.cert)


def test_needs_reissue_reasons(istio_root: CA) -> None:
    now = dt.datetime.now(dt.UTC)
    inter = istio_root.issue_intermediate(
        profile="istio", cluster="a", key_algorithm="ecdsa-p256", validity_days=100, now=now
    )
    inputs = {"cluster": "a", "key_algorithm": "ecdsa-p256"}
    assert needs_reissue(inter.cert, inputs, inputs, 30, now) is None
    assert needs_reissue(inter.cert, inputs, {**inputs, "cluster": "b"}, 30, now)
    assert "window" in (needs_reissue(inter.cert, inputs, inputs, 30, now + dt.timedelta(days=75))
                        or "")
    assert "expired" in (needs_reissue(inter.cert, inputs, inputs, 30, now + dt.timedelta(days=101))
                         or "")


def test_imported_root_is_used() -> None:
    enterprise = CA.create_root(profile="istio", key_algorithm="rsa-2048", validity_days=3650)
    params = make_params(imported_root=(enterprise.cert_pem, enterprise.key_pem))
    pki = build(params, None, {})
    assert pki.root.cert == enterprise.cert
    pki.intermediates["east"].cert.verify_directly_issued_by(enterprise.cert)


def test_imported_rsa_root_rejected_for_linkerd() -> None:
    enterprise = CA.create_root(profile="istio", key_algorithm="rsa-2048", validity_days=3650)
    params = make_params(profile="linkerd", imported_root=(enterprise.cert_pem, enterprise.key_pem))
    with pytest.raises(ValueError, match="ECDSA P-256"):
        build(params, None, {})


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"profile": "linkerd", "key_algorithm": KeyAlgorithm.RSA_2048}, "ecdsa-p256"),
        ({"renew_before_days": 400}, "renew_before_days"),
        ({"clusters": ("a", "a")}, "duplicate"),
        ({"profile": "kuma"}, "unknown PKI profile"),
    ],
)
def test_invalid_params(overrides: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        build(make_params(**overrides), None, {})


def test_zone_like_inputs_are_not_subject_inputs() -> None:
    keys = set(intermediate_inputs(make_params(), "east", "ff"))
    assert keys == {"profile", "cluster", "key_algorithm", "trust_domain", "root_fingerprint"}
