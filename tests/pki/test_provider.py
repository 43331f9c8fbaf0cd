"""Dynamic providers called directly (no engine): create / diff / update semantics."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pulumi.dynamic as dyn
import pytest

import pki.provider as provider_mod
from pki.ca import CA, certs_from_pem
from pki.provider import IntermediateCAProvider, RootCAProvider

ROOT_INPUTS = {
    "profile": "istio",
    "mesh_id": "mesh1",
    "trust_domain": "cluster.local",
    "key_algorithm": "ecdsa-p256",
    "validity_days": 3650,
}


def state_after_engine(outs: dict[str, Any]) -> dict[str, Any]:
    """What the engine hands back as `olds`: the outputs (plus the provider blob)."""
    return {**outs, "__provider": "serialized"}


@pytest.fixture(scope="module")
def root_outs() -> dict[str, Any]:
    return RootCAProvider().create(dict(ROOT_INPUTS)).outs  # type: ignore[return-value]


def inter_inputs(root_outs: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    inputs = {
        "profile": "istio",
        "mesh_id": "mesh1",
        "trust_domain": "cluster.local",
        "key_algorithm": "ecdsa-p256",
        "cluster": "east",
        "validity_days": 365,
        "renew_before_days": 30,
        "root_cert_pem": root_outs["cert_pem"],
        "root_key_pem": root_outs["key_pem"],
        "__provider": "serialized",
    }
    inputs.update(overrides)
    return inputs


def test_root_create_outputs(root_outs: dict[str, Any]) -> None:
    root = CA.from_pem(root_outs["cert_pem"], root_outs["key_pem"])
    assert root_outs["chain_pem"] == root_outs["cert_pem"]
    assert dt.datetime.fromisoformat(root_outs["not_after"]) == root.not_after
    assert root_outs["inputs_fingerprint"]
    assert root_outs["mesh_id"] == "mesh1"  # inputs echoed for the next diff


def test_root_diff_and_update_keep_root(root_outs: dict[str, Any]) -> None:
    p = RootCAProvider()
    olds = state_after_engine(root_outs)
    assert not p.diff("id", olds, dict(ROOT_INPUTS)).changes
    longer = {**ROOT_INPUTS, "validity_days": 7300, "mesh_id": "renamed"}
    assert not p.diff("id", olds, longer).changes
    outs = p.update("id", olds, longer).outs
    assert outs is not None
    assert outs["cert_pem"] == root_outs["cert_pem"] and outs["key_pem"] == root_outs["key_pem"]
    assert outs["validity_days"] == 7300
    rsa = {**ROOT_INPUTS, "key_algorithm": "rsa-2048", "allow_new_root": True}
    d = p.diff("id", olds, rsa)
    assert d.changes and not d.replaces
    new = p.update("id", olds, rsa).outs
    assert new is not None and new["cert_pem"] != root_outs["cert_pem"]


@pytest.mark.parametrize("change", ["key algorithm", "another imported root"])
def test_root_is_never_replaced_unless_asked(root_outs: dict[str, Any], change: str) -> None:
    p = RootCAProvider()
    olds = state_after_engine(root_outs)
    other = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)
    news = ({**ROOT_INPUTS, "key_algorithm": "rsa-2048"} if change == "key algorithm" else
            {**ROOT_INPUTS, "imported_cert_pem": other.cert_pem,
             "imported_key_pem": other.key_pem})
    with pytest.raises(provider_mod.RootReplacementRefused, match="MESHBOOT_NEW_ROOT=1") as info:
        p.diff("id", olds, news)  # preview already fails
    assert root_outs["fingerprint"] in str(info.value)
    with pytest.raises(provider_mod.RootReplacementRefused):
        p.update("id", olds, news)
    asked = p.update("id", olds, {**news, "allow_new_root": True}).outs
    assert asked is not None and asked["fingerprint"] != root_outs["fingerprint"]


def test_importing_the_deployed_root_is_not_a_replacement(root_outs: dict[str, Any]) -> None:
    """`pki init --from-state` puts state's own root into the stack file: no refusal."""
    p = RootCAProvider()
    olds = state_after_engine(root_outs)
    news = {**ROOT_INPUTS, "imported_cert_pem": root_outs["cert_pem"],
            "imported_key_pem": root_outs["key_pem"]}
    assert p.diff("id", olds, news).changes  # the inputs changed...
    outs = p.update("id", olds, news).outs
    assert outs is not None and outs["cert_pem"] == root_outs["cert_pem"]  # ...the root did not


def test_root_import() -> None:
    enterprise = CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)
    outs = RootCAProvider().create(
        {**ROOT_INPUTS, "imported_cert_pem": enterprise.cert_pem,
         "imported_key_pem": enterprise.key_pem}
    ).outs
    assert outs is not None and outs["cert_pem"] == enterprise.cert_pem


def test_intermediate_create(root_outs: dict[str, Any]) -> None:
    outs = IntermediateCAProvider().create(inter_inputs(root_outs)).outs
    assert outs is not None
    ca = CA.from_pem(outs["cert_pem"], outs["key_pem"], outs["chain_pem"])
    assert ca.root_cert == certs_from_pem(root_outs["cert_pem"])[0]
    assert "root_key_pem" not in outs  # the root key is not copied into every child's state
    assert outs["subject_inputs"]["cluster"] == "east"


def test_intermediate_diff_identical_and_validity_only(root_outs: dict[str, Any]) -> None:
    p = IntermediateCAProvider()
    outs = p.create(inter_inputs(root_outs)).outs
    assert outs is not None
    olds = state_after_engine(outs)
    assert p.diff("id", olds, inter_inputs(root_outs)).changes is False

    tweaked = inter_inputs(root_outs, renew_before_days=10, validity_days=90)
    d = p.diff("id", olds, tweaked)
    assert d.changes is False and not d.replaces
    # Even if the engine calls update (e.g. because another input changed), the
    # certificate must survive byte for byte. The default update returns no outs.
    assert dyn.ResourceProvider().update("id", olds, tweaked).outs is None
    new = p.update("id", olds, tweaked).outs
    assert new is not None
    for k in ("cert_pem", "key_pem", "chain_pem", "not_after", "fingerprint"):
        assert new[k] == outs[k], k
    assert new["renew_before_days"] == 10  # new inputs recorded


def test_intermediate_subject_change_reissues(root_outs: dict[str, Any]) -> None:
    p = IntermediateCAProvider()
    outs = p.create(inter_inputs(root_outs)).outs
    assert outs is not None
    changed = inter_inputs(root_outs, key_algorithm="rsa-2048")
    d = p.diff("id", state_after_engine(outs), changed)
    assert d.changes and d.replaces == []
    new = p.update("id", state_after_engine(outs), changed).outs
    assert new is not None and new["cert_pem"] != outs["cert_pem"]
    assert "key_algorithm" in new["issue_reason"]


def test_intermediate_inside_renew_window(
    root_outs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = IntermediateCAProvider()
    real_now = dt.datetime.now(dt.UTC)
    monkeypatch.setattr(provider_mod, "_now", lambda: real_now - dt.timedelta(days=340))
    outs = p.create(inter_inputs(root_outs)).outs  # 25 days left "today"
    assert outs is not None
    monkeypatch.setattr(provider_mod, "_now", lambda: real_now)

    olds = state_after_engine(outs)
    d = p.diff("id", olds, inter_inputs(root_outs))
    assert d.changes is True and not d.replaces
    new = p.update("id", olds, inter_inputs(root_outs)).outs
    assert new is not None
    assert new["cert_pem"] != outs["cert_pem"] and new["key_pem"] != outs["key_pem"]
    new_ca = CA.from_pem(new["cert_pem"], new["key_pem"], new["chain_pem"])
    new_ca.cert.verify_directly_issued_by(certs_from_pem(root_outs["cert_pem"])[0])
    assert new_ca.not_after > real_now + dt.timedelta(days=300)
    assert "renewal window" in new["issue_reason"]


def test_intermediate_new_root_reissues(root_outs: dict[str, Any]) -> None:
    p = IntermediateCAProvider()
    outs = p.create(inter_inputs(root_outs)).outs
    assert outs is not None
    other_root = RootCAProvider().create(dict(ROOT_INPUTS)).outs
    assert other_root is not None
    news = inter_inputs(other_root)
    assert p.diff("id", state_after_engine(outs), news).changes
    new = p.update("id", state_after_engine(outs), news).outs
    assert new is not None
    certs_from_pem(new["cert_pem"])[0].verify_directly_issued_by(
        certs_from_pem(other_root["cert_pem"])[0]
    )


def test_unknown_root_during_preview_reports_change(root_outs: dict[str, Any]) -> None:
    p = IntermediateCAProvider()
    outs = p.create(inter_inputs(root_outs)).outs
    assert outs is not None
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    assert p.diff("id", state_after_engine(outs),
                  inter_inputs(root_outs, root_cert_pem=unknown)).changes


def test_check_rejects_bad_inputs(root_outs: dict[str, Any]) -> None:
    res = IntermediateCAProvider().check(
        {}, inter_inputs(root_outs, profile="linkerd", key_algorithm="rsa-2048",
                         renew_before_days=400)
    )
    assert {f.property for f in res.failures} == {"key_algorithm", "renew_before_days"}
    assert RootCAProvider().check({}, dict(ROOT_INPUTS)).failures == []


def test_module_imports_without_engine() -> None:
    # The provider module is pickled by reference and imported by the dynamic
    # provider host: importing it must not need a running Pulumi program.
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", "import pki.provider as p; print(len(p.__all__))"],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "5"
