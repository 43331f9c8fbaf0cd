"""Strict validation of rendered objects, as ``kubectl apply`` with strict field validation.

Core kinds go through ``kubernetes-validate`` (strict). Custom resources are
checked against the CRD ``openAPIV3Schema`` copies in ``tests/data/schemas``,
converted so that unknown fields are errors (see that directory's INDEX.tsv
for their origin; tests/data/refresh.py re-extracts them from upstream and
lists the kinds kept).

Validators are built once per (apiVersion, kind) and reused: building one means
parsing its schema (kubernetes-validate's core schemas are megabytes of JSON,
re-read on every ``kubernetes_validate.validate`` call) and resolving its
``$ref`` s, which cost far more than checking an object.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "data" / "schemas"
CHART_VALUES_DIR = Path(__file__).resolve().parent.parent / "data" / "chart-values"
K8S_VERSION = "1.33.0"
# libyaml when PyYAML has it: same safe schema, parsed in C (tests read thousands of documents).
SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Chart values that are free-form maps even where their default has entries.
FREE_FORM = {"labels", "annotations", "podAnnotations", "podLabels", "nodeSelector", "env",
             # linkerd-viz: the `global:` block of its prometheus.yml (toYaml'd whole).
             "globalConfig"}


# Key paths a chart reads although its default values leave them out. kiali-server's values
# are Kiali's whole config (kiali/helm-charts kiali-server/templates/configmap.yaml writes
# `omit .Values "kiali_route_url"` as config.yaml); the Prometheus URL is Kiali's
# `external_services.prometheus.url` (kiali/kiali config/config.go PrometheusConfig.URL).
CONFIG_PATHS = {"kiali-server": {"external_services.prometheus.url"}}


class ObjectInvalid(AssertionError):
    pass


_COMBINATORS = ("oneOf", "anyOf", "allOf", "not")


def _strict(schema: Any, in_branch: bool = False) -> Any:
    # Inside oneOf/anyOf/allOf/not a structural schema only validates values
    # (a branch's `properties` lists what it constrains, not all that is allowed),
    # so unknown-field strictness applies to the main schema only.
    if isinstance(schema, list):
        return [_strict(s, in_branch) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v, in_branch or k in _COMBINATORS) for k, v in schema.items()
           if k not in ("x-kubernetes-validations",)}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        t = out["type"]
        out["type"] = [t, "null"] if isinstance(t, str) else [*t, "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in list(out):
        if key.startswith("x-kubernetes-"):
            out.pop(key)
    if "properties" in out and not preserve and "additionalProperties" not in out and not in_branch:
        out["additionalProperties"] = False
    return out


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    group, _, version = api_version.rpartition("/")
    path = SCHEMA_DIR / group / f"{kind.lower()}_{version}.json"
    if not group or not path.exists():
        return None
    schema = _strict(json.loads(path.read_text()))
    # metadata is validated by the API server's ObjectMeta rules, not the CRD schema.
    props = schema.setdefault("properties", {})
    props["metadata"] = {"type": "object"}
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    return schema


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator | None:
    schema = crd_schema(api_version, kind)
    return None if schema is None else jsonschema.Draft7Validator(schema)


@cache
def _core_schema(filename: str) -> Any:
    return kv_utils.schema_contents(filename, K8S_VERSION)


@cache
def core_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """The validator ``kubernetes_validate.validate(obj, K8S_VERSION, strict=True)`` builds.

    Same schema files, registry and draft as kubernetes_validate/utils.py ``validate``;
    kept here so it is built once instead of on every object.
    """
    version = [v for v in kv_utils.all_versions()
               if kv_utils.major_minor(v) <= kv_utils.major_minor(K8S_VERSION)][-1]
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = _core_schema(f"{schema_dir}/{kind.lower()}-{group_version}.json")
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(
            version=kv_utils.major_minor(K8S_VERSION), kind=kind, api_version=api_version) from None
    definitions = _core_schema(f"{schema_dir}/_definitions.json")
    registry: Registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_object(obj: dict[str, Any]) -> None:
    """Raise ObjectInvalid unless ``obj`` is a valid object of its kind."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = f"{kind} {obj.get('metadata', {}).get('namespace', '')}/{obj.get('metadata', {}).get('name')}"
    group = api_version.rpartition("/")[0]
    validator = crd_validator(api_version, kind) if "." in group else None
    if "." in group and (validator is not None or not group.endswith(".k8s.io")):
        # Custom resources (Gateway API is a *.k8s.io group served by CRDs too).
        if validator is None:
            raise ObjectInvalid(f"{name}: no schema for {api_version} {kind}")
        errors = sorted(validator.iter_errors(obj), key=str)
        if errors:
            msgs = "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                             for e in errors[:5])
            raise ObjectInvalid(f"{name}: {msgs}")
        _check_metadata(obj, name)
        return
    try:
        core_validator(api_version, kind).validate(obj)
    except jsonschema.ValidationError as exc:
        raise ObjectInvalid(f"{name}: {exc.message} at {list(exc.path)}") from exc


def _check_metadata(obj: dict[str, Any], name: str) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise ObjectInvalid(f"{name}: metadata.name missing")
    allowed = {"name", "namespace", "labels", "annotations"}
    extra = set(meta) - allowed
    if extra:
        raise ObjectInvalid(f"{name}: unexpected metadata fields {sorted(extra)}")
    for key in ("labels", "annotations"):
        for k, v in (meta.get(key) or {}).items():
            if not isinstance(v, str):
                raise ObjectInvalid(f"{name}: metadata.{key}.{k} must be a string")


def yaml_docs(text: str) -> list[Any]:
    """``yaml.safe_load_all`` (libyaml when available), as a list."""
    return list(yaml.load_all(text, Loader=SafeLoader))


def yaml_doc(text: str) -> Any:
    """``yaml.safe_load`` (libyaml when available)."""
    return yaml.load(text, Loader=SafeLoader)


def load_tree(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """cluster -> every object rendered for it (recursively, all YAML files)."""
    result: dict[str, list[dict[str, Any]]] = {}
    for cluster_dir in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        objs: list[dict[str, Any]] = []
        for f in sorted(cluster_dir.rglob("*.yaml")):
            objs.extend(d for d in yaml.load_all(f.read_text(), Loader=SafeLoader) if d is not None)
        result[cluster_dir.name] = objs
    return result


def load_valid_tree(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """:func:`load_tree`, with every object validated strictly on the way."""
    tree = load_tree(out_dir)
    for objs in tree.values():
        for obj in objs:
            validate_object(obj)
    return tree


@cache
def chart_defaults(chart_file: str) -> dict[str, Any]:
    return yaml.load((CHART_VALUES_DIR / chart_file).read_text(), Loader=SafeLoader)


def unknown_value_paths(values: dict[str, Any], chart_file: str) -> list[str]:
    """Key paths set in ``values`` that the chart's default values do not define.

    Istio charts keep defaults under ``_internal_defaults_do_not_set``;
    ``profile`` and ``meshConfig`` (free-form) are accepted for Istio charts.
    A path stops being checked where the default is a free-form map (``{}``).
    """
    defaults = chart_defaults(chart_file)
    if "_internal_defaults_do_not_set" in defaults:
        defaults = {**defaults["_internal_defaults_do_not_set"],
                    **{k: v for k, v in defaults.items() if k != "_internal_defaults_do_not_set"}}
        special = {"profile", "meshConfig"}
    else:
        special = set()
    bad: list[str] = []

    def walk(val: Any, dflt: Any, path: str) -> None:
        if not isinstance(val, dict):
            return
        if not isinstance(dflt, dict):
            bad.append(path + " (not a map in the chart)")
            return
        if not dflt or path.rsplit(".", 1)[-1] in FREE_FORM:
            return  # free-form map
        for k, v in val.items():
            p = f"{path}.{k}" if path else k
            if not path and k in special:
                continue
            if k not in dflt:
                bad.append(p)
            else:
                walk(v, dflt[k], p)

    walk(values, defaults, "")
    known = next((paths for chart, paths in CONFIG_PATHS.items()
                  if Path(chart_file).name.startswith(chart + "-")), set())
    return [b for b in bad if b not in known]
