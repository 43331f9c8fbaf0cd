"""Shared fixtures: CA hierarchies are built once per session because key generation
(RSA especially) dominates the test run time."""

from __future__ import annotations

import datetime as dt

import pytest

from pki.ca import CA
from pki.hierarchy import PkiParams
from pki.keys import KeyAlgorithm

TRUST_DOMAIN = "cluster.local"


def make_params(**overrides: object) -> PkiParams:
    base: dict[str, object] = dict(
        profile="istio",
        mesh_id="mesh1",
        trust_domain=TRUST_DOMAIN,
        key_algorithm=KeyAlgorithm.ECDSA_P256,
        root_validity_days=3650,
        intermediate_validity_days=365,
        renew_before_days=30,
        clusters=("east", "west"),
    )
    base.update(overrides)
    return PkiParams(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def istio_root() -> CA:
    return CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)


@pytest.fixture(scope="session")
def linkerd_anchor() -> CA:
    return CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256", validity_days=3650)


@pytest.fixture(scope="session")
def foreign_root() -> CA:
    return CA.create_root(profile="istio", key_algorithm="ecdsa-p256", validity_days=3650)


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
