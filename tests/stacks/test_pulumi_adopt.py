"""What the program does about objects already in a cluster (pulumi-kubernetes >= 4.29).

Every provider sets ``upsertExistingObjects`` explicitly: off, so an ambient
``PULUMI_K8S_UPSERT_EXISTING_OBJECTS`` cannot change what meshboot does, and on
only for a run with ``MESHBOOT_ADOPT_EXISTING=1`` (re-adopting live objects
after Pulumi state was lost).
"""

from __future__ import annotations

import pytest

from tests.conftest import base_spec
from tests.support.pulumi_harness import PROVIDER, run_program, with_fake_kubeconfigs


@pytest.mark.parametrize(("env", "wanted"), [
    ({}, False),
    ({"PULUMI_K8S_UPSERT_EXISTING_OBJECTS": "true"}, False),
    ({"MESHBOOT_ADOPT_EXISTING": "1"}, True),
])
def test_providers_carry_upsert_existing_objects(monkeypatch: pytest.MonkeyPatch,
                                                 env: dict[str, str], wanted: bool) -> None:
    monkeypatch.delenv("PULUMI_K8S_UPSERT_EXISTING_OBJECTS", raising=False)
    monkeypatch.delenv("MESHBOOT_ADOPT_EXISTING", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    spec = base_spec()
    run = run_program(with_fake_kubeconfigs(spec))
    providers = run.of_type(PROVIDER)
    assert sorted(p.name for p in providers) == sorted(f"{c['name']}-k8s"
                                                       for c in spec["clusters"])
    for p in providers:
        # Provider config travels as strings; the provider's Configure compares with "true".
        assert p.inputs["upsertExistingObjects"] == ("true" if wanted else "false"), p.name


def test_providers_leave_delete_unreachable_to_the_refresh(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh configures each provider from its inputs in the state, and an input
    overrides PULUMI_K8S_DELETE_UNREACHABLE (pulumi-kubernetes provider.go Configure): an
    explicit deleteUnreachable would make `meshboot dr plan`'s refresh keep a lost
    cluster's objects. The key must be absent."""
    monkeypatch.delenv("PULUMI_K8S_DELETE_UNREACHABLE", raising=False)
    run = run_program(with_fake_kubeconfigs(base_spec()))
    providers = run.of_type(PROVIDER)
    assert providers and all("upsertExistingObjects" in p.inputs for p in providers)
    assert not any("deleteUnreachable" in p.inputs for p in providers)
