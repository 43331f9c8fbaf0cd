"""`pulumi up` of a root rotation phase, under Pulumi's mocks (the real ``__main__.py``,
the real dynamic providers minting certificates): each cluster signs with the root
and trusts the bundle of its phase, as render does."""

from __future__ import annotations

from typing import Any

import pytest

from pki.ca import CA, certs_from_pem, fingerprint
from tests.conftest import base_spec
from tests.support.pulumi_harness import (
    ProgramRun,
    run_program,
    unwrap_secrets,
    with_fake_kubeconfigs,
)


@pytest.fixture(scope="module")
def roots() -> tuple[CA, CA]:
    return tuple(CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256",  # type: ignore[return-value]
                                validity_days=3650) for _ in range(2))


def spec_with(provider: str, old: CA, new: CA) -> dict[str, Any]:
    spec = with_fake_kubeconfigs(base_spec())
    spec["mesh"]["provider"] = provider
    spec["pki"]["rootCa"] = {"certPem": old.cert_pem, "keyPem": old.key_pem}
    # east one phase ahead: it signs with the new root, west still with the old one
    spec["pki"]["rotation"] = {"phase": "trust-both", "clusters": {"east": "sign-with-new"},
                               "newRoot": {"certPem": new.cert_pem, "keyPem": new.key_pem}}
    return spec


def fps(pem: str) -> list[str]:
    return [fingerprint(c) for c in certs_from_pem(pem)]


@pytest.mark.parametrize("provider", ["istio", "linkerd"])
def test_each_cluster_gets_its_phase(provider: str, roots: tuple[CA, CA]) -> None:
    old, new = roots
    run: ProgramRun = run_program(spec_with(provider, old, new))
    both = [old.fingerprint, new.fingerprint]
    next_root = run.named("mesh1-pki-next-root")
    assert fps(next_root.outputs["cert_pem"]) == [new.fingerprint]
    root = run.named("mesh1-pki-root")
    assert fps(root.outputs["cert_pem"]) == [old.fingerprint]
    # state remembers the rotation's next root: what a finished rotation may import
    assert fps(unwrap_secrets(root.inputs["next_root_cert_pem"])) == [new.fingerprint]
    for cluster, signer in (("east", new), ("west", old)):
        ca = run.named(f"{cluster}-ca")
        assert fps(ca.outputs["chain_pem"])[-1] == signer.fingerprint
        if provider == "istio":
            data = unwrap_secrets(run.named(f"{cluster}-secret-istio-system-cacerts")
                                  .inputs["stringData"])
            assert fps(data["root-cert.pem"]) == both
            assert fps(data["cert-chain.pem"])[-1] == signer.fingerprint
            values = unwrap_secrets(run.named(f"{cluster}-istiod").inputs["values"])
            assert values["env"] == {"ISTIO_MULTIROOT_MESH": "true"}
        else:
            values = unwrap_secrets(run.named(f"{cluster}-linkerd-control-plane")
                                    .inputs["values"])
            assert fps(values["identityTrustAnchorsPEM"]) == both
    # private keys only as secret outputs
    assert "key_pem" in next_root.secret_outputs


def test_urn_function_names_the_rotation_resources(roots: tuple[CA, CA]) -> None:
    """`meshboot dr` computes the program's URNs: during a rotation, the next root too."""
    from clusters.loader import spec_from_config
    from stacks.build import build_plan
    from stacks.pulumi_urns import program_resources

    spec = spec_with("istio", *roots)
    run = run_program(spec, stack="dev")
    plan = build_plan(spec_from_config({f"meshboot:{k}": v for k, v in spec.items()}, "t"))
    computed = {r.urn for r in program_resources(plan, "dev", "meshboot") if r.kind != "object"}
    assert computed == {r.urn for r in run.resources}
    assert any(u.endswith("::mesh1-pki-next-root") for u in computed)
