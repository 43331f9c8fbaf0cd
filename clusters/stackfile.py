"""Write the mesh's root CA into a Pulumi stack file, the way the Pulumi CLI would.

``meshboot pki init`` makes the stack file the mesh's whole identity: the root
certificate in clear and its private key as a ``secure:`` value, i.e. what
``pulumi config set --path meshboot:pki.rootCa.certPem`` and
``pulumi config set --path --secret meshboot:pki.rootCa.keyPem`` write:

.. code-block:: yaml

    encryptionsalt: v1:<base64 8-byte salt>:v1:<nonce>:<"pulumi" sealed>
    config:
      meshboot:pki:
        rootCa:
          certPem: |
            -----BEGIN CERTIFICATE-----
          keyPem:
            secure: v1:<base64 nonce>:<base64 AES-256-GCM ciphertext>

The passphrase provider's format is Pulumi's (``pkg/secrets/passphrase/manager.go``:
an 8-byte random salt, the verifier ``pulumi`` encrypted under the derived key;
``sdk/go/common/resource/config/crypt.go``: PBKDF2-SHA256, 1,000,000 rounds,
AES-256-GCM), implemented in :mod:`clusters.pulumi_secrets`.

Only the lines of ``meshboot:pki`` (and a new ``encryptionsalt`` line) change:
every other byte of the file, comments included, stays as it was. The result
is parsed again and compared with what was meant before it replaces the file
(atomically, keeping its mode).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clusters.pulumi_secrets import (
    PassphraseCrypter,
    SecretDecryptError,
    crypter_for_stack,
    new_encryption_salt,
    passphrase_from_env,
)
from clusters.stack_yaml import parse

PKI_KEY = "meshboot:pki"
SALT_BYTES = 8  # Pulumi: NewPassphraseSecretsManager, salt := make([]byte, 8)


class StackFileError(Exception):
    """The stack file cannot be edited as asked; it was left unchanged."""


@dataclass(frozen=True)
class RootCaEdit:
    text: str                 # the new stack file
    salt_created: bool        # an encryptionsalt was added (passphrase provider)


def existing_root_ca(doc: dict[str, Any]) -> Any:
    """``meshboot:pki.rootCa`` of a parsed stack file, or None."""
    config = doc.get("config")
    pki = config.get(PKI_KEY) if isinstance(config, dict) else None
    return pki.get("rootCa") if isinstance(pki, dict) else None


def stack_crypter(doc: dict[str, Any], env: dict[str, str]) -> tuple[PassphraseCrypter, str | None]:
    """The stack's passphrase crypter, and a new ``encryptionsalt`` line if it had none."""
    provider = doc.get("secretsprovider")
    if provider and not str(provider).startswith("passphrase"):
        raise StackFileError(
            f"the stack uses secrets provider {provider!r}; meshboot can only write "
            "passphrase-encrypted values. Set the key with that provider instead: "
            "`pulumi config set --path --secret meshboot:pki.rootCa.keyPem < root-key.pem`")
    if doc.get("encryptionsalt"):
        try:
            return crypter_for_stack(doc, env), None
        except SecretDecryptError as exc:
            raise StackFileError(str(exc)) from exc
    if _has_secure(doc.get("config")):
        raise StackFileError(
            "the stack file has secure values but no encryptionsalt: its secrets belong to "
            "another provider (Pulumi Cloud?). Set the key with it instead: "
            "`pulumi config set --path --secret meshboot:pki.rootCa.keyPem < root-key.pem`")
    passphrase = passphrase_from_env(env)
    if passphrase is None:
        raise StackFileError("PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) is not "
                             "set: it encrypts the root key in the stack file")
    salt = os.urandom(SALT_BYTES)
    crypter = PassphraseCrypter.from_passphrase(passphrase, salt)
    return crypter, new_encryption_salt(crypter, salt)


def _has_secure(value: Any) -> bool:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return True
        return any(_has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secure(v) for v in value)
    return False


def with_root_ca(text: str, doc: dict[str, Any], cert_pem: str, key_pem: str,
                 crypter: PassphraseCrypter, salt_line: str | None) -> RootCaEdit:
    """``text`` with ``meshboot:pki.rootCa`` set (replacing any rootCa there)."""
    if not text.endswith("\n"):
        text += "\n"
    secure = crypter.encrypt(key_pem)
    lines = text.splitlines(keepends=True)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        root = yaml.MappingNode("tag:yaml.org,2002:map", [])
    if not isinstance(root, yaml.MappingNode):
        raise StackFileError("the stack file is not a mapping")
    config_pair = _find(root, "config")
    if config_pair is None or _is_null(config_pair[1]):
        block = _root_ca_block(cert_pem, secure, indent=4)
        new = "  " + PKI_KEY + ":\n" + block
        if config_pair is None:
            lines.append("config:\n" + new)
        else:
            lines[config_pair[0].start_mark.line] = "config:\n" + new
    else:
        config = config_pair[1]
        if not isinstance(config, yaml.MappingNode) or config.flow_style:
            raise StackFileError("`config` must be a block mapping to be edited in place")
        lines = _set_in_config(lines, config, cert_pem, secure)
    if salt_line is not None:
        at = config_pair[0].start_mark.line if config_pair is not None else len(lines) - 1
        lines.insert(at, f"encryptionsalt: {salt_line}\n")
    new_text = "".join(lines)
    _verify(doc, new_text, cert_pem, key_pem, crypter, salt_line)
    return RootCaEdit(new_text, salt_line is not None)


def _set_in_config(lines: list[str], config: yaml.MappingNode, cert_pem: str,
                   secure: str) -> list[str]:
    key_indent = config.value[0][0].start_mark.column if config.value else 2
    pki = _find(config, PKI_KEY)
    if pki is None:
        at = _end_line(config.value[-1][1])
        block = " " * key_indent + PKI_KEY + ":\n" + _root_ca_block(cert_pem, secure,
                                                                     key_indent + 2)
        return lines[:at] + [block] + lines[at:]
    key_node, value = pki
    if _is_null(value):
        block = _root_ca_block(cert_pem, secure, key_indent + 2)
        line = key_node.start_mark.line
        return lines[:line + 1] + [block] + lines[line + 1:]
    if not isinstance(value, yaml.MappingNode):
        raise StackFileError(f"{PKI_KEY} must be a mapping")
    if value.flow_style or not value.value:
        # `meshboot:pki: {keyAlgorithm: ...}`: rewrite just this key, in block style.
        data = yaml.safe_load(yaml.serialize(value)) or {}
        data.pop("rootCa", None)
        start, end = key_node.start_mark.line, _end_line(value)
        body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False) if data else ""
        body = "".join(" " * (key_indent + 2) + ln for ln in body.splitlines(keepends=True))
        block = (" " * key_indent + PKI_KEY + ":\n" + body
                 + _root_ca_block(cert_pem, secure, key_indent + 2))
        return lines[:start] + [block] + lines[end:]
    inner_indent = value.value[0][0].start_mark.column
    pairs = list(value.value)
    drop = range(0)
    for i, (k, v) in enumerate(pairs):
        if k.value == "rootCa":
            stop = pairs[i + 1][0].start_mark.line if i + 1 < len(pairs) else _end_line(v)
            drop = range(k.start_mark.line, stop)
            del pairs[i]
            break
    at = _end_line(pairs[-1][1]) if pairs else key_node.start_mark.line + 1
    block = _root_ca_block(cert_pem, secure, inner_indent)
    out = []
    for i, line in enumerate(lines):
        if i == at:
            out.append(block)
        if i not in drop:
            out.append(line)
    if at >= len(lines):
        out.append(block)
    return out


def _root_ca_block(cert_pem: str, secure: str, indent: int) -> str:
    pad = " " * indent
    cert = "".join(f"{pad}    {ln}\n" for ln in cert_pem.strip().splitlines())
    return (f"{pad}rootCa:\n"
            f"{pad}  certPem: |\n{cert}"
            f"{pad}  keyPem:\n"
            f"{pad}    secure: {secure}\n")


def _find(mapping: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _end_line(node: yaml.Node) -> int:
    """Index of the first line after ``node``'s content.

    A block collection's end mark is where the *next* token starts (possibly
    the next key's line), so its end is its last child's end.
    """
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style \
            and node.value:
        last = node.value[-1]
        return _end_line(last[1] if isinstance(node, yaml.MappingNode) else last)
    end = node.end_mark
    return end.line if end.column == 0 else end.line + 1


def _verify(doc: dict[str, Any], new_text: str, cert_pem: str, key_pem: str,
            crypter: PassphraseCrypter, salt_line: str | None) -> None:
    """The edited file must mean exactly the old one plus the root, or nothing is written."""
    want = copy.deepcopy(doc) or {}
    config = want.setdefault("config", {}) or {}
    want["config"] = config
    pki = config.get(PKI_KEY)
    pki = dict(pki) if isinstance(pki, dict) else {}
    pki.pop("rootCa", None)
    config[PKI_KEY] = pki
    if salt_line is not None:
        want["encryptionsalt"] = salt_line
    got, problems = parse(new_text)
    try:
        if problems:
            raise TypeError("; ".join(p.message for p in problems))
        secure = got["config"][PKI_KEY]["rootCa"]["keyPem"]["secure"]
        got_cert = got["config"][PKI_KEY]["rootCa"]["certPem"]
        got["config"][PKI_KEY].pop("rootCa")
        ok = (got == want and crypter.decrypt(secure) == key_pem
              and got_cert.strip() == cert_pem.strip())
    except (yaml.YAMLError, KeyError, TypeError, SecretDecryptError):
        ok = False
    if not ok:
        raise StackFileError("could not edit the stack file in place without changing other "
                             "values (unusual layout?); set the root with "
                             "`pulumi config set --path` instead")


def replace_file(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``, keeping its permission bits."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def with_pki_entries(text: str, doc: dict[str, Any], entries: dict[str, Any],
                     salt_line: str | None = None) -> str:
    """``text`` with keys of ``meshboot:pki`` set to ``entries``' values (None: removed).

    For ``meshboot rotate root``, which rewrites ``rotation`` (and, when a rotation
    finishes, ``rootCa``) in an existing block mapping ``meshboot:pki``. Values are
    plain data as :func:`clusters.stack_yaml.parse` returns it (a secure value is
    ``{"secure": "v1:..."}``, written back verbatim). Every other line stays as it
    was; the result must parse to exactly ``doc`` with those keys changed (and
    ``encryptionsalt: salt_line`` added before ``config`` when given).
    """
    if not text.endswith("\n"):
        text += "\n"
    lines = text.splitlines(keepends=True)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    config = _find(root, "config") if isinstance(root, yaml.MappingNode) else None
    pki = _find(config[1], PKI_KEY) if config and isinstance(config[1], yaml.MappingNode) else None
    if config is None or pki is None or not isinstance(pki[1], yaml.MappingNode) \
            or pki[1].flow_style or not pki[1].value:
        raise StackFileError(f"{PKI_KEY} must be a block mapping to be edited in place")
    pairs = list(pki[1].value)
    indent = pairs[0][0].start_mark.column
    edits: list[tuple[int, int, str]] = []   # (first line, end line, replacement)
    for key, value in entries.items():
        block = "" if value is None else _yaml_block(key, value, indent)
        for i, (k, v) in enumerate(pairs):
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                stop = pairs[i + 1][0].start_mark.line if i + 1 < len(pairs) else _end_line(v)
                edits.append((k.start_mark.line, stop, block))
                break
        else:
            if value is not None:
                at = _end_line(pairs[-1][1])
                edits.append((at, at, block))
    for start, stop, block in sorted(edits, reverse=True):
        lines[start:stop] = [block] if block else []
    if salt_line is not None:
        lines.insert(config[0].start_mark.line, f"encryptionsalt: {salt_line}\n")
    new_text = "".join(lines)
    want = copy.deepcopy(doc)
    if salt_line is not None:
        want["encryptionsalt"] = salt_line
    want_pki = want["config"][PKI_KEY]
    for key, value in entries.items():
        if value is None:
            want_pki.pop(key, None)
        else:
            want_pki[key] = value
    got, problems = parse(new_text)
    if problems or got != want:
        raise StackFileError("could not edit the stack file in place without changing other "
                             "values (unusual layout?); edit meshboot:pki by hand")
    return new_text


def _yaml_block(key: str, value: Any, indent: int) -> str:
    """``key: value`` as block YAML at ``indent``: PEM as literal blocks, text quoted."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return f"{pad}{key}: {{}}\n"
        return f"{pad}{key}:\n" + "".join(_yaml_block(k, v, indent + 2) for k, v in value.items())
    if isinstance(value, str) and "\n" in value:
        body = "".join(f"{pad}  {ln}\n" for ln in value.rstrip("\n").splitlines())
        return f"{pad}{key}: |\n{body}"
    if isinstance(value, str):
        return f"{pad}{key}: {json.dumps(value)}\n"
    return f"{pad}{key}: {json.dumps(value)}\n"
