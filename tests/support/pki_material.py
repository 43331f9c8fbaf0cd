"""PKI material for tests: the plan's Secret payloads for one CA, and a CA the product never makes.

:func:`istio_cacerts` and :func:`linkerd_issuer_secret_data` are not a second
definition of the payloads: they build a one-cluster plan and resolve *its*
PKI Secret (the one ``meshboot preflight`` checks, :func:`stacks.preflight.pki_secret`)
with the product's mapping (:func:`stacks.plan.pki_pem`), for a given CA.
"""

from __future__ import annotations

import datetime as dt
import functools

from cryptography import x509
from cryptography.x509.oid import NameOID

from clusters.loader import spec_from_config
from pki.ca import CA, _aware, _base_builder, _ca_key_usage, _sign, _ski, certs_to_pem
from pki.keys import KeyAlgorithm, generate_key
from stacks.build import build_plan
from stacks.plan import MeshPlan, pki_pem, resolve
from stacks.preflight import pki_secret
from tests.conftest import base_spec

CLUSTER = "east"


@functools.cache
def _plan(provider: str) -> MeshPlan:
    spec = base_spec()
    spec["mesh"]["provider"] = provider
    spec["clusters"] = spec["clusters"][:1]
    spec["services"][0]["clusters"] = [CLUSTER]
    return build_plan(spec_from_config({f"meshboot:{k}": v for k, v in spec.items()}, "t"))


def _payload(provider: str, ca: CA) -> dict[str, str]:
    if not ca.chain:
        raise ValueError("the PKI Secrets need an intermediate / issuer, not the root itself")
    secret = pki_secret(_plan(provider), CLUSTER)
    assert secret is not None
    root_pem = certs_to_pem([ca.root_cert])
    data: dict[str, str] = resolve(secret["stringData"],
                                   lambda ref: pki_pem(ref, root_pem, {CLUSTER: ca}))
    return data


def istio_cacerts(intermediate: CA) -> dict[str, str]:
    """Data of the plan's ``cacerts`` Secret for ``intermediate``."""
    return _payload("istio", intermediate)


def linkerd_issuer_secret_data(issuer: CA) -> dict[str, str]:
    """Data of the plan's ``linkerd-identity-issuer`` Secret for ``issuer``."""
    return _payload("linkerd", issuer)


def issue_ca_unsafe(parent: CA, *, common_name: str = "Sub CA",
                    key_algorithm: KeyAlgorithm | str = KeyAlgorithm.ECDSA_P256,
                    validity_days: int = 30, now: dt.datetime | None = None) -> CA:
    """A CA below ``parent`` *ignoring* its pathlen constraint.

    So tests can prove that verifiers reject such a grandchild CA under a
    pathlen:0 intermediate; the product never issues one.
    """
    alg = KeyAlgorithm(key_algorithm)
    key = generate_key(alg)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _base_builder(subject, parent.cert.subject, key.public_key(), _aware(now),
                      validity_days, parent.cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(alg, "linkerd"), critical=True)
        .add_extension(_ski(key), critical=False)
        .add_extension(parent._aki(), critical=False)
    )
    return CA(cert=_sign(builder, parent.key), key=key, chain=(parent.cert, *parent.chain))


__all__ = ["istio_cacerts", "issue_ca_unsafe", "linkerd_issuer_secret_data"]
