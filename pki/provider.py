"""Pulumi dynamic providers for the mesh root and the per-cluster intermediates.

Why dynamic providers rather than ``pulumi_tls``: the stability rules of
:mod:`pki.hierarchy` (re-issue only inside the renewal window, when subject inputs
change, or when the root changed) have to hold in ``pulumi up`` too, and the renewal
window depends on the *current time* — something no static resource diff can see.

Pitfalls this module is written around (see mesh-facts "Pulumi testing pitfalls"):

* the default dynamic ``update`` returns no outputs, silently dropping the certificate
  and key from state; our ``update`` always returns the complete output set;
* the module is pickled *by reference* with the provider, so it must stay free of
  import-time side effects (no resources, no config reads, no I/O here);
* private keys are marked ``additional_secret_outputs`` so they are encrypted in state.

``diff`` never asks for a *replace*: re-issuing happens in ``update`` so the resource
keeps its id and dependants see an ordinary output change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

import pulumi
import pulumi.dynamic as dyn
from pulumi.runtime import rpc

from .ca import CA, certs_from_pem, fingerprint, utcnow
from .hierarchy import PkiParams, intermediate_inputs, needs_reissue, resolve_root
from .keys import KeyAlgorithm

__all__ = ["IntermediateCA", "IntermediateCAProvider", "RootCA", "RootCAProvider",
           "RootReplacementRefused"]

_CERT_OUTPUTS = ("cert_pem", "key_pem", "chain_pem", "not_after", "fingerprint")


def _now() -> dt.datetime:
    """Current time; a seam so tests can move the clock."""
    return utcnow()


def _inputs_fingerprint(subject_inputs: dict[str, Any]) -> str:
    canonical = json.dumps(subject_inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _is_unknown(value: Any) -> bool:
    # During preview, inputs computed from other resources arrive as this sentinel.
    return isinstance(value, str) and value == "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _plain(props: dict[str, Any]) -> dict[str, Any]:
    """Unwrap secret-wrapped values (the engine may pass secrets in wrapped form)."""
    return {k: rpc.unwrap_rpc_secret(v) for k, v in props.items()}


def _ca_outputs(ca: CA) -> dict[str, Any]:
    return {
        "cert_pem": ca.cert_pem,
        "key_pem": ca.key_pem,
        "chain_pem": ca.chain_pem,
        "not_after": ca.not_after.isoformat(),
        "fingerprint": ca.fingerprint,
    }


def _check_common(news: dict[str, Any], failures: list[dyn.CheckFailure]) -> None:
    profile = news.get("profile")
    if profile not in ("istio", "linkerd"):
        failures.append(dyn.CheckFailure("profile", f"must be istio or linkerd, got {profile!r}"))
    raw_alg = news.get("key_algorithm")
    try:
        alg = KeyAlgorithm(str(raw_alg))
    except ValueError:
        failures.append(dyn.CheckFailure(
            "key_algorithm", f"must be one of {[a.value for a in KeyAlgorithm]}, got {raw_alg!r}"))
        return
    if profile == "linkerd" and alg is not KeyAlgorithm.ECDSA_P256:
        failures.append(dyn.CheckFailure("key_algorithm", "linkerd needs ecdsa-p256"))
    if not news.get("trust_domain"):
        failures.append(dyn.CheckFailure("trust_domain", "must not be empty"))


# ------------------------------------------------------------------------ root
def _root_params(props: dict[str, Any]) -> PkiParams:
    imported = None
    if props.get("imported_cert_pem"):
        imported = (props["imported_cert_pem"], props.get("imported_key_pem") or "")
    days = int(props.get("validity_days") or 3650)
    return PkiParams(
        profile=props["profile"],
        mesh_id=props.get("mesh_id", ""),
        trust_domain=props["trust_domain"],
        key_algorithm=KeyAlgorithm(props["key_algorithm"]),
        root_validity_days=days,
        intermediate_validity_days=days,
        renew_before_days=0,
        clusters=(),
        imported_root=imported,
    )


def _root_subject_inputs(props: dict[str, Any]) -> dict[str, Any]:
    imported_fp = ""
    if props.get("imported_cert_pem") and not _is_unknown(props["imported_cert_pem"]):
        imported_fp = fingerprint(certs_from_pem(props["imported_cert_pem"])[0])
    return {
        "profile": props.get("profile"),
        "key_algorithm": props.get("key_algorithm"),
        "trust_domain": props.get("trust_domain"),
        "imported_fingerprint": imported_fp,
    }


def _next_root_fingerprint(props: dict[str, Any]) -> str | None:
    """The fingerprint of the root a rotation in progress moves to (``next_root_cert_pem``)."""
    pem = props.get("next_root_cert_pem")
    if not pem or _is_unknown(pem):
        return None
    try:
        return fingerprint(certs_from_pem(pem)[0])
    except (ValueError, IndexError):
        return None


class RootReplacementRefused(Exception):
    """An update would give the mesh another root and ``allow_new_root`` was not set."""


def _refuse_silent_root_change(olds: dict[str, Any], news: dict[str, Any]) -> None:
    """Raise if ``news`` would replace the root held in state and nobody asked for it.

    A new root breaks trust with every workload certificate issued under the
    old one, so (like ``meshboot render --new-root``) it needs
    ``MESHBOOT_NEW_ROOT=1``. Importing the very root state holds (``meshboot pki
    init --from-state``) is not a replacement.
    """
    old_fp = olds.get("fingerprint")
    if not old_fp or news.get("allow_new_root"):
        return
    wanted = _root_subject_inputs(news)
    if olds.get("subject_inputs") == wanted:
        return
    imported = wanted.get("imported_fingerprint") or None
    if imported == old_fp:
        return
    if imported is not None and imported == _next_root_fingerprint(olds):
        return  # a finished root rotation: the root state was told about (pki.rotation)
    became = f"root {imported}" if imported else "a newly generated root"
    raise RootReplacementRefused(
        f"this update would replace the mesh's root CA {old_fp} with {became} (subject "
        f"inputs {olds.get('subject_inputs')} -> {wanted}); clusters would stop trusting "
        "each other's workloads. Revert the change, take the deployed root into the stack "
        "file (`pulumi stack export | meshboot pki init --from-state - --config ...`), or set "
        "MESHBOOT_NEW_ROOT=1 to replace it deliberately.")


class RootCAProvider(dyn.ResourceProvider):
    """The mesh root / trust anchor. Generated once; replaced only when asked to."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        news = _plain(news)
        failures: list[dyn.CheckFailure] = []
        _check_common(news, failures)
        return dyn.CheckResult(news, failures)

    def _outs(self, props: dict[str, Any], root: CA) -> dict[str, Any]:
        subject_inputs = _root_subject_inputs(props)
        outs = {k: v for k, v in props.items() if not k.startswith("__")}
        outs.update(_ca_outputs(root))
        outs["subject_inputs"] = subject_inputs
        outs["inputs_fingerprint"] = _inputs_fingerprint(subject_inputs)
        return outs

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        props = _plain(props)
        root = resolve_root(_root_params(props), None, _now())
        return dyn.CreateResult(id_=uuid.uuid4().hex, outs=self._outs(props, root))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        olds, news = _plain(olds), _plain(news)
        if any(_is_unknown(v) for k, v in news.items() if not k.startswith("__")):
            return dyn.DiffResult(changes=True, replaces=[])
        _refuse_silent_root_change(olds, news)
        changed = olds.get("subject_inputs") != _root_subject_inputs(news)
        missing = any(not olds.get(k) for k in _CERT_OUTPUTS)
        # Record a rotation's next root in state even when the root itself stays.
        next_root = olds.get("next_root_cert_pem") != news.get("next_root_cert_pem")
        return dyn.DiffResult(changes=changed or missing or next_root, replaces=[], stables=[])

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        olds, news = _plain(olds), _plain(news)
        _refuse_silent_root_change(olds, news)
        changed = olds.get("subject_inputs") != _root_subject_inputs(news)
        if changed or any(not olds.get(k) for k in _CERT_OUTPUTS):
            root = resolve_root(_root_params(news), None, _now())
        else:
            # Keep the existing root byte for byte; only echo the new inputs.
            root = CA.from_pem(olds["cert_pem"], olds["key_pem"])
            outs = self._outs(news, root)
            outs.update({k: olds[k] for k in _CERT_OUTPUTS})
            return dyn.UpdateResult(outs=outs)
        return dyn.UpdateResult(outs=self._outs(news, root))


# ---------------------------------------------------------------- intermediate
_SECRET_INPUTS = ("root_key_pem",)  # never echoed into outputs


def _intermediate_params(props: dict[str, Any]) -> PkiParams:
    validity = int(props.get("validity_days") or 365)
    return PkiParams(
        profile=props["profile"],
        mesh_id=props.get("mesh_id", ""),
        trust_domain=props["trust_domain"],
        key_algorithm=KeyAlgorithm(props["key_algorithm"]),
        root_validity_days=validity,
        intermediate_validity_days=validity,
        renew_before_days=int(props.get("renew_before_days") or 0),
        clusters=(props["cluster"],),
    )


def _wanted_inputs(props: dict[str, Any]) -> dict[str, Any]:
    root_cert = certs_from_pem(props["root_cert_pem"])[0]
    return intermediate_inputs(_intermediate_params(props), props["cluster"],
                               fingerprint(root_cert))


class IntermediateCAProvider(dyn.ResourceProvider):
    """One cluster's intermediate (istio) or identity issuer (linkerd)."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        news = _plain(news)
        failures: list[dyn.CheckFailure] = []
        _check_common(news, failures)
        for name in ("cluster", "root_cert_pem", "root_key_pem"):
            if not news.get(name):
                failures.append(dyn.CheckFailure(name, "is required"))
        try:
            validity = int(news.get("validity_days") or 0)
            renew = int(news.get("renew_before_days") or 0)
            if validity <= 0:
                failures.append(dyn.CheckFailure("validity_days", "must be positive"))
            elif renew >= validity:
                failures.append(dyn.CheckFailure(
                    "renew_before_days", "must be smaller than validity_days"))
        except (TypeError, ValueError):
            failures.append(dyn.CheckFailure("validity_days", "must be integers"))
        return dyn.CheckResult(news, failures)

    def _reason(self, olds: dict[str, Any], news: dict[str, Any]) -> str | None:
        if any(not olds.get(k) for k in _CERT_OUTPUTS):
            return "state has no certificate"
        cert = certs_from_pem(olds["cert_pem"])[0]
        root = certs_from_pem(news["root_cert_pem"])[0]
        return needs_reissue(
            cert,
            olds.get("subject_inputs") or {},
            _wanted_inputs(news),
            int(news.get("renew_before_days") or 0),
            _now(),
            root=root,
        )

    def _outs(self, props: dict[str, Any], ca: CA, reason: str) -> dict[str, Any]:
        subject_inputs = _wanted_inputs(props)
        outs = {
            k: v for k, v in props.items() if not k.startswith("__") and k not in _SECRET_INPUTS
        }
        outs.update(_ca_outputs(ca))
        outs["subject_inputs"] = subject_inputs
        outs["inputs_fingerprint"] = _inputs_fingerprint(subject_inputs)
        outs["issue_reason"] = reason
        return outs

    def _issue(self, props: dict[str, Any], reason: str) -> dict[str, Any]:
        root = CA.from_pem(props["root_cert_pem"], props["root_key_pem"])
        params = _intermediate_params(props)
        ca = root.issue_intermediate(
            profile=params.profile,
            cluster=props["cluster"],
            key_algorithm=params.key_algorithm,
            validity_days=params.intermediate_validity_days,
            trust_domain=params.trust_domain,
            now=_now(),
        )
        return self._outs(props, ca, reason)

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        props = _plain(props)
        return dyn.CreateResult(id_=uuid.uuid4().hex, outs=self._issue(props, "created"))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        olds, news = _plain(olds), _plain(news)
        if any(_is_unknown(news.get(k)) for k in ("root_cert_pem", "cluster", "trust_domain",
                                                   "profile", "key_algorithm")):
            return dyn.DiffResult(changes=True, replaces=[])
        reason = self._reason(olds, news)
        if reason is not None:
            pulumi.log.info(f"intermediate for {news.get('cluster')}: re-issue: {reason}")
        return dyn.DiffResult(changes=reason is not None, replaces=[], stables=[])

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        olds, news = _plain(olds), _plain(news)
        reason = self._reason(olds, news)
        if reason is not None:
            return dyn.UpdateResult(outs=self._issue(news, reason))
        # Unchanged certificate: return it byte for byte, with the new input values
        # (e.g. a new renew_before_days) so the next diff compares against them.
        outs = {
            k: v for k, v in news.items() if not k.startswith("__") and k not in _SECRET_INPUTS
        }
        for k in (*_CERT_OUTPUTS, "subject_inputs", "inputs_fingerprint", "issue_reason"):
            if k in olds:
                outs[k] = olds[k]
        return dyn.UpdateResult(outs=outs)


# ------------------------------------------------------------------- resources
def _merge_opts(opts: pulumi.ResourceOptions | None, secrets: list[str]) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(
        pulumi.ResourceOptions(additional_secret_outputs=secrets), opts
    )


class RootCA(dyn.Resource, module="meshboot", name="RootCA"):
    """The mesh root (istio) / trust anchor (linkerd)."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    chain_pem: pulumi.Output[str]
    not_after: pulumi.Output[str]
    fingerprint: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        profile: pulumi.Input[str],
        mesh_id: pulumi.Input[str],
        trust_domain: pulumi.Input[str],
        key_algorithm: pulumi.Input[str],
        validity_days: pulumi.Input[int],
        imported_cert_pem: pulumi.Input[str] | None = None,
        imported_key_pem: pulumi.Input[str] | None = None,
        allow_new_root: bool = False,
        next_root_cert_pem: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "allow_new_root": allow_new_root,
            # During a root rotation, the root it moves to: once the rotation is
            # finished, the stack file imports it and this resource accepts it.
            "next_root_cert_pem": next_root_cert_pem,
            "profile": profile,
            "mesh_id": mesh_id,
            "trust_domain": trust_domain,
            "key_algorithm": key_algorithm,
            "validity_days": validity_days,
            "imported_cert_pem": imported_cert_pem,
            "imported_key_pem": (
                pulumi.Output.secret(imported_key_pem) if imported_key_pem is not None else None
            ),
            "subject_inputs": None,
            "inputs_fingerprint": None,
            **{k: None for k in _CERT_OUTPUTS},
        }
        super().__init__(
            RootCAProvider(), name, props, _merge_opts(opts, ["key_pem", "imported_key_pem"])
        )


class IntermediateCA(dyn.Resource, module="meshboot", name="IntermediateCA"):
    """A cluster's intermediate CA (istio) / identity issuer (linkerd)."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]
    chain_pem: pulumi.Output[str]
    not_after: pulumi.Output[str]
    fingerprint: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        profile: pulumi.Input[str],
        mesh_id: pulumi.Input[str],
        trust_domain: pulumi.Input[str],
        key_algorithm: pulumi.Input[str],
        cluster: pulumi.Input[str],
        validity_days: pulumi.Input[int],
        renew_before_days: pulumi.Input[int],
        root_cert_pem: pulumi.Input[str],
        root_key_pem: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "profile": profile,
            "mesh_id": mesh_id,
            "trust_domain": trust_domain,
            "key_algorithm": key_algorithm,
            "cluster": cluster,
            "validity_days": validity_days,
            "renew_before_days": renew_before_days,
            "root_cert_pem": root_cert_pem,
            "root_key_pem": pulumi.Output.secret(root_key_pem),
            "subject_inputs": None,
            "inputs_fingerprint": None,
            "issue_reason": None,
            **{k: None for k in _CERT_OUTPUTS},
        }
        super().__init__(
            IntermediateCAProvider(), name, props, _merge_opts(opts, ["key_pem", "root_key_pem"])
        )
