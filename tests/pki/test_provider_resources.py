"""The thin Resource classes, under Pulumi mocks whose "engine" runs our real providers."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from pki.ca import CA
from pki.provider import IntermediateCA, IntermediateCAProvider, RootCA, RootCAProvider


class ProviderBackedMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.registered.append(args)
        inputs = dict(args.inputs)
        provider = RootCAProvider() if args.typ.endswith(":RootCA") else IntermediateCAProvider()
        result = provider.create(inputs)
        return result.id, result.outs or {}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], Any]:
        return {}, None


@pytest.fixture
def mocks() -> ProviderBackedMocks:
    m = ProviderBackedMocks()
    pulumi.runtime.set_mocks(m, preview=False)
    return m


@pulumi.runtime.test
def test_root_and_intermediate_resources(mocks: ProviderBackedMocks) -> Any:
    root = RootCA(
        "root", profile="istio", mesh_id="m", trust_domain="cluster.local",
        key_algorithm="ecdsa-p256", validity_days=3650,
        opts=pulumi.ResourceOptions(protect=True),
    )
    inter = IntermediateCA(
        "east", profile="istio", mesh_id="m", trust_domain="cluster.local",
        key_algorithm="ecdsa-p256", cluster="east", validity_days=365, renew_before_days=30,
        root_cert_pem=root.cert_pem, root_key_pem=root.key_pem,
    )

    def check(values: list[Any]) -> None:
        root_cert, root_key, chain, not_after = values
        r = CA.from_pem(root_cert, root_key)
        assert chain.endswith(r.cert_pem)
        assert not_after
        types = [a.typ for a in mocks.registered]
        assert types == ["pulumi-python:dynamic/meshboot:RootCA",
                         "pulumi-python:dynamic/meshboot:IntermediateCA"]

    return pulumi.Output.all(root.cert_pem, root.key_pem, inter.chain_pem,
                             inter.not_after).apply(check)


def test_secret_outputs_are_merged_with_user_opts() -> None:
    from pki.provider import _merge_opts

    merged = _merge_opts(pulumi.ResourceOptions(protect=True,
                                                additional_secret_outputs=["x"]), ["key_pem"])
    assert merged.protect is True
    assert set(merged.additional_secret_outputs or []) == {"x", "key_pem"}
