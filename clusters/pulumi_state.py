"""Read a mesh's root CA out of ``pulumi stack export`` (for ``meshboot pki init --from-state``).

A mesh first deployed with ``pulumi up`` holds its root only in Pulumi state (the
``<mesh id>-pki-root`` dynamic resource). Moving that root into the stack file
keeps the deployed mesh's identity; any other root would be a silent root
replacement on the next ``pulumi up``.

Secret outputs in a deployment are ``{"4dabf18193072939515e22adb298388d":
"1b47061264138c4ac30d75fd1eb44270", "ciphertext": "v1:..."}`` (``plaintext``
with ``--show-secrets``), holding the JSON encoding of the value, encrypted by
the stack's secrets provider (pulumi/pulumi ``developer-docs/architecture/
deployment-schema.md``; ``pkg/resource/stack/deployment.go``). For the
passphrase provider the salt is in ``deployment.secrets_providers.state.salt``.
"""

from __future__ import annotations

import json
from typing import Any

from clusters.pulumi_secrets import SecretDecryptError, crypter_for_stack

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
ROOT_SUFFIX = "-pki-root"   # stacks.pulumi_program.MeshPki names the root "<mesh id>-pki-root"


class StateError(Exception):
    """The export holds no usable root; the message says why."""


def root_from_export(export: Any, mesh_id: str, env: dict[str, str]) -> tuple[str, str]:
    """(certificate PEM, private key PEM) of the mesh's root in a stack export."""
    deployment = export.get("deployment") if isinstance(export, dict) else None
    if not isinstance(deployment, dict):
        raise StateError("not a `pulumi stack export` document (no deployment)")
    name = f"::{mesh_id}{ROOT_SUFFIX}"
    roots = [r for r in deployment.get("resources") or []
             if isinstance(r, dict) and str(r.get("urn", "")).endswith(name)
             and str(r.get("type", "")).startswith("pulumi-python:dynamic")]
    if not roots:
        raise StateError(f"no root CA of mesh {mesh_id!r} in this export "
                         f"(resource {mesh_id}{ROOT_SUFFIX})")
    if len(roots) > 1:
        raise StateError(f"{len(roots)} resources named {mesh_id}{ROOT_SUFFIX} in this export")
    outputs = roots[0].get("outputs") or {}
    provider = deployment.get("secrets_providers") or {}
    crypter: dict[str, Any] = {}

    def decrypt(ciphertext: str) -> str:
        if "c" not in crypter:
            if provider.get("type") not in (None, "passphrase"):
                raise StateError(f"the export's secrets are encrypted by {provider.get('type')!r}; "
                                 "export with `pulumi stack export --show-secrets` instead")
            salt = (provider.get("state") or {}).get("salt")
            try:
                crypter["c"] = crypter_for_stack({"encryptionsalt": salt}, env)
            except SecretDecryptError as exc:
                raise StateError(f"cannot decrypt the export's secrets: {exc}") from exc
        try:
            return str(crypter["c"].decrypt(ciphertext))
        except SecretDecryptError as exc:
            raise StateError(f"cannot decrypt the export's secrets: {exc}") from exc

    def value(key: str) -> str:
        raw = outputs.get(key)
        if isinstance(raw, dict) and raw.get(SIG_KEY) == SECRET_SIG:
            if "plaintext" in raw:
                raw = json.loads(raw["plaintext"])
            elif "ciphertext" in raw:
                raw = json.loads(decrypt(raw["ciphertext"]))
        if not isinstance(raw, str) or "-----BEGIN" not in raw:
            raise StateError(f"the root resource has no usable {key} output")
        return raw

    return value("cert_pem"), value("key_pem")
