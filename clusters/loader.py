"""Load and validate an environment spec from a Pulumi stack file or config.

Everything is checked before anything runs, and every problem is reported at
once with the file and key path. Sections and list items are parsed one by
one, so one broken cluster does not hide the problems of the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from clusters import stack_yaml
from clusters.delivery_spec import DeliverySpec, ObservabilitySpec
from clusters.errors import Problem, SpecError, echo, problem_order
from clusters.linkerd_spec import LinkerdSpec
from clusters.pulumi_secrets import PassphraseCrypter, SecretDecryptError, crypter_for_stack
from clusters.spec import (
    CONFIG_KEYS,
    ClusterSpec,
    MeshSpec,
    PkiSpec,
    SecuritySpec,
    ServiceSpec,
    Spec,
    TrafficSpec,
)
from clusters.validate import spec_warnings, validate_spec
from clusters.validate_delivery import validate_delivery
from clusters.validate_policy import validate_policy

_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "mesh": MeshSpec,
    "pki": PkiSpec,
    "security": SecuritySpec,
    "traffic": TrafficSpec,
    "linkerd": LinkerdSpec,
    "delivery": DeliverySpec,
    "observability": ObservabilitySpec,
}
# Sections that are off unless the stack file sets them (no default instance).
_OPTIONAL_SECTIONS = frozenset({"delivery", "observability"})
_LIST_MODELS: dict[str, type[BaseModel]] = {"clusters": ClusterSpec, "services": ServiceSpec}


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    source: str          # file name used in messages
    env: str             # stack name: Pulumi.<env>.yaml -> <env>
    base_dir: Path       # where relative file paths in the spec resolve
    # Not wrong, but likely to fail once deployed (e.g. a loopback apiServer).
    warnings: tuple[Problem, ...] = ()


def env_name(path: Path) -> str:
    name = path.name
    if name.startswith("Pulumi.") and name.endswith((".yaml", ".yml")):
        return name[len("Pulumi."):].rsplit(".", 1)[0]
    return path.stem


# The CA private keys, which only the PKI needs (render, pulumi up, rotate, pki init).
KEY_PATHS = ("meshboot:pki.rootCa.keyPem", "meshboot:pki.rotation.newRoot.keyPem")
KEY_NOT_READ = "(secure value, not read)"


def load_stack_file(path: str | Path, env: dict[str, str] | None = None, *,
                    read_keys: bool = True) -> LoadedSpec:
    """Read ``Pulumi.<env>.yaml``, decrypt ``secure:`` values, validate.

    ``read_keys=False``: the CA private keys (:data:`KEY_PATHS`) are left encrypted and
    stand as :data:`KEY_NOT_READ`, for commands that never touch the PKI (``graph``), so
    they run where the passphrase is not at hand (a pull request's CI job).
    """
    path = Path(path)
    source = path.name if path.parent == Path(".") else str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(source, [Problem("<file>", f"cannot read: {exc.strerror}")]) from exc
    text, problems = stack_yaml.decode(data)
    doc = None
    if text is not None:
        doc, problems = stack_yaml.parse(text)
    if problems:
        raise SpecError(source, problems)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SpecError(source, [Problem("<yaml>", "the stack file must be a mapping")])
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise SpecError(source, [Problem("config", "must be a mapping")])
    problems.extend(_plain_rotation_key(config))
    decrypted = _decrypt_secure(config, doc, env, problems,
                                skip=() if read_keys else KEY_PATHS)
    spec = spec_from_config(decrypted, source, base_dir=path.parent, extra_problems=problems)
    return LoadedSpec(spec=spec, source=source, env=env_name(path), base_dir=path.parent,
                      warnings=tuple(sorted(spec_warnings(spec), key=problem_order)))


UNDECRYPTABLE = "secure value cannot be decrypted"


def _without_followups(problems: list[Problem]) -> list[Problem]:
    """Drop what only follows from a ``secure:`` value that could not be decrypted (it
    is left out of the spec, so its key reads as missing): problems at its own path
    and those of an enclosing key that name it. The decryption problem says it all."""
    failed = [p.path for p in problems if p.message.startswith(UNDECRYPTABLE)]
    if not failed:
        return problems

    def followup(p: Problem) -> bool:
        if p.message.startswith(UNDECRYPTABLE):
            return False
        for path in failed:
            parent, _, leaf = path.rpartition(".")
            if p.path == path or (p.path == parent and leaf in p.message):
                return True
        return False

    return [p for p in problems if not followup(p)]


def spec_from_config(
    config: dict[str, Any],
    source: str,
    base_dir: Path | None = None,
    extra_problems: list[Problem] | None = None,
) -> Spec:
    """Build the spec from ``{"meshboot:<key>": value}``; raise SpecError on problems."""
    problems = list(extra_problems or [])
    sections: dict[str, Any] = {}
    for key, value in config.items():
        if not str(key).startswith("meshboot:"):
            continue  # other providers' config (e.g. kubernetes:*) is not ours
        field = CONFIG_KEYS.get(str(key))
        if field is None:
            known = ", ".join(CONFIG_KEYS)
            problems.append(Problem(str(key), f"unknown key (known: {known})"))
            continue
        sections[field] = value

    parsed: dict[str, Any] = {}
    for field, model in _SECTION_MODELS.items():
        value = sections.get(field)
        if value is None:
            continue
        obj = _parse(model, value, f"meshboot:{field}", problems)
        if obj is not None:
            parsed[field] = obj

    items: dict[str, dict[int, Any]] = {}
    for field, model in _LIST_MODELS.items():
        raw = sections.get(field)
        items[field] = {}
        if raw is None:
            if field == "clusters":
                problems.append(Problem("meshboot:clusters", "required: at least one cluster"))
            continue
        if not isinstance(raw, list):
            problems.append(Problem(f"meshboot:{field}", "must be a list"))
            continue
        if field == "clusters" and not raw:
            problems.append(Problem("meshboot:clusters", "required: at least one cluster"))
        for i, entry in enumerate(raw):
            obj = _parse(model, entry, f"meshboot:{field}[{i}]", problems)
            if obj is not None:
                items[field][i] = obj

    raw = sections.get("clusters")
    raw_clusters: list[Any] = raw if isinstance(raw, list) else []
    declared = {str(c["name"]) for c in raw_clusters if isinstance(c, dict) and "name" in c}
    problems.extend(validate_spec(parsed, items, base_dir=base_dir, declared_clusters=declared))
    spec = None
    if items["clusters"]:
        spec = Spec.model_construct(
            clusters=list(items["clusters"].values()),
            services=list(items["services"].values()),
            **{**_defaults(), **parsed},
        )
        raw_services = sections.get("services")
        if len(items["services"]) == (len(raw_services) if isinstance(raw_services, list) else 0):
            # Policy paths name services by index: only meaningful when none failed.
            problems.extend(validate_policy(spec))
            problems.extend(validate_delivery(spec))
    if problems or spec is None:
        raise SpecError(source, _without_followups(problems), partial=spec)
    # The sections and items are validated models already (pydantic accepts them as
    # they are); this runs the whole-spec validators.
    return Spec.model_validate({
        "clusters": list(items["clusters"].values()),
        "services": list(items["services"].values()),
        **{**_defaults(), **parsed},
    })


def _defaults() -> dict[str, Any]:
    return {f: m() for f, m in _SECTION_MODELS.items() if f not in _OPTIONAL_SECTIONS}


def _parse(model: type[BaseModel], value: Any, path: str, problems: list[Problem]) -> Any:
    if not isinstance(value, dict):
        problems.append(Problem(path, f"must be a mapping, got {type(value).__name__}"))
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(Problem(_join(path, err["loc"]), _message(err)))
        return None


def _join(base: str, loc: tuple[Any, ...]) -> str:
    out = base
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[")) or "[" in str(part):
            continue  # pydantic's internal union/validator labels
        else:
            out += f".{part}"
    return out


def _message(err: Any) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid"))
    msg = msg[0].lower() + msg[1:] if msg else msg
    if kind == "literal_error":
        return f"invalid value {echo(err.get('input'))}: {msg}"
    if kind.endswith("_type") or kind in _TYPE_ERRORS:
        value = err.get("input")
        return f"{msg}, got {_type_name(value)} {echo(value)}"
    return msg


# Strict-mode refusals worth showing the offending value for.
_TYPE_ERRORS = {"int_from_float", "finite_number", "int_parsing", "float_parsing"}


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
             dict: "mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _plain_rotation_key(config: dict[str, Any]) -> list[Problem]:
    """The rotation's new root key must be a ``secure:`` value, as ``rotate root`` writes it:
    a private key in clear in a committed stack file is a leaked root."""
    pki = config.get("meshboot:pki")
    rot = pki.get("rotation") if isinstance(pki, dict) else None
    new = rot.get("newRoot") if isinstance(rot, dict) else None
    key = new.get("keyPem") if isinstance(new, dict) else None
    if key is None or (isinstance(key, dict) and set(key) == {"secure"}):
        return []
    return [Problem("meshboot:pki.rotation.newRoot.keyPem",
                    "must be a secure value ({secure: v1:...}, as `meshboot rotate root` and "
                    "`pulumi config set --secret` write it), not the private key in clear")]


def _decrypt_secure(
    config: dict[str, Any],
    stack_doc: dict[str, Any],
    env: dict[str, str] | None,
    problems: list[Problem],
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``meshboot:*`` values with every ``{secure: ...}`` leaf replaced by its plaintext
    (those at a key path in ``skip`` by :data:`KEY_NOT_READ`, undecrypted).

    Other providers' keys (``aws:``, ``gcp:``, ...) are dropped unread: their
    secrets may need a KMS or Pulumi Cloud that render cannot reach, and
    nothing of ours depends on them.
    """
    state: dict[str, Any] = {}

    def crypter() -> PassphraseCrypter:
        if "crypter" not in state:
            try:
                state["crypter"] = crypter_for_stack(stack_doc, env if env is not None
                                                     else dict(os.environ))
            except SecretDecryptError as exc:
                state["crypter"] = exc
        found = state["crypter"]
        if isinstance(found, SecretDecryptError):
            raise found
        return found

    where: list[str] = []   # key path of the value being walked, joined only for a problem

    def walk(value: Any) -> Any:
        """``value`` with its secure leaves decrypted; the same object where none are."""
        kind = type(value)
        if kind is dict:
            if len(value) == 1 and "secure" in value and isinstance(value["secure"], str):
                if skip and "".join(where) in skip:
                    return KEY_NOT_READ
                try:
                    return crypter().decrypt(value["secure"])
                except SecretDecryptError as exc:
                    problems.append(Problem("".join(where),
                                            f"{UNDECRYPTABLE}: {exc}"))
                    return None
            out = None
            for k, v in value.items():
                if type(v) is dict or type(v) is list:
                    where.append(f".{k}")
                    new = walk(v)
                    where.pop()
                    if new is not v:
                        out = out if out is not None else dict(value)
                        out[k] = new
            return value if out is None else out
        if kind is list:
            items = None
            for i, v in enumerate(value):
                if type(v) is dict or type(v) is list:
                    where.append(f"[{i}]")
                    new = walk(v)
                    where.pop()
                    if new is not v:
                        items = items if items is not None else list(value)
                        items[i] = new
            return value if items is None else items
        return value

    out: dict[str, Any] = {}
    for k, v in config.items():
        if str(k).startswith("meshboot:"):
            where.append(str(k))
            out[k] = walk(v)
            where.pop()
    return out
