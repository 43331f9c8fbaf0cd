"""Where does a request go? An interpreter of *rendered* Istio objects.

Reads one cluster's rendered YAML (``meshboot render`` output) and answers,
for a service and a request (method, path, headers, caller labels): which
VirtualService http route matches (first match wins), each destination with
its share, the route's timeout / retries / fault, and the DestinationRule's
locality load-balancing (failover order). It interprets the objects, never
the spec, so it shows what a change really does before ``pulumi up``.

A remote cluster's Istio config lives in its primary (istiod serves it from
there); given a remote's directory, the primary's sibling directory is read
and the caller is the remote (``topology.istio.io/cluster: <remote>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CLUSTER_LABEL = "topology.istio.io/cluster"
CONTROL_PLANE_ANNOTATION = "topology.istio.io/controlPlaneClusters"
NET = "networking.istio.io"
# The safe loader, parsing in C (libyaml) when PyYAML has it: same documents, far faster.
_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RoutesError(Exception):
    """Bad input: unknown directory or service, ambiguous name."""


@dataclass
class Request:
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = field(default_factory=dict)
    source_labels: dict[str, str] = field(default_factory=dict)
    source_namespace: str | None = None
    port: int | None = None


def load_objects(directory: Path) -> list[dict[str, Any]]:
    """Every object in a rendered cluster directory (secrets are not read)."""
    if not directory.is_dir():
        raise RoutesError(f"{directory}: not a directory (expected out/<env>/<cluster>)")
    objs: list[dict[str, Any]] = []
    for f in sorted(directory.glob("*.yaml")):
        objs.extend(d for d in yaml.load_all(f.read_text(), Loader=_SafeLoader) if isinstance(d, dict))
    return objs


def primary_of(objs: list[dict[str, Any]]) -> str | None:
    """The control-plane cluster named on a remote's istio-system Namespace."""
    for o in objs:
        meta = o.get("metadata", {})
        if o.get("kind") == "Namespace" and meta.get("name") == "istio-system":
            value = (meta.get("annotations") or {}).get(CONTROL_PLANE_ANNOTATION)
            if value:
                return str(value).split(",")[0].strip()
    return None


def _group(obj: dict[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


def _of(objs: list[dict[str, Any]], group: str, kind: str) -> list[dict[str, Any]]:
    found = [o for o in objs if _group(o) == group and o.get("kind") == kind]
    return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))


def _fqdn(host: str, namespace: str) -> str:
    if "." not in host and host != "*":
        return f"{host}.{namespace}.svc.cluster.local"
    return host


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def resolve_service(name: str, objs: list[dict[str, Any]]) -> str:
    """``name``, ``name.namespace`` or the FQDN -> FQDN; the namespace is looked up if missing."""
    parts = name.split(".")
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc"):
        return f"{parts[0]}.{parts[1]}.svc.cluster.local"
    if len(parts) > 2:
        return name
    namespaces = set()
    for o in objs:
        meta = o.get("metadata", {})
        ns = meta.get("namespace", "default")
        spec = o.get("spec") or {}
        hosts: list[str] = []
        if o.get("kind") in ("VirtualService", "ServiceEntry") and _group(o) == NET:
            hosts = [_fqdn(h, ns) for h in spec.get("hosts", [])]
        elif o.get("kind") == "DestinationRule" and _group(o) == NET:
            hosts = [_fqdn(spec.get("host", ""), ns)]
        elif o.get("kind") == "Service" and o.get("apiVersion") == "v1" and meta.get("name") == name:
            namespaces.add(ns)
        for h in hosts:
            hp = h.split(".")
            if len(hp) >= 2 and hp[0] == name and h.endswith(".svc.cluster.local"):
                namespaces.add(hp[1])
    if not namespaces:
        raise RoutesError(f"service {name!r} is not in the rendered objects (name it as "
                          "<name>.<namespace> if only the application defines it)")
    if len(namespaces) > 1:
        raise RoutesError(f"service {name!r} is ambiguous: namespaces {', '.join(sorted(namespaces))}; "
                          "use <name>.<namespace>")
    return f"{name}.{namespaces.pop()}.svc.cluster.local"


def _string_match(cond: dict[str, Any], value: str | None, ignore_case: bool = False) -> bool:
    if value is None:
        return False
    if not cond:
        return True  # {}: present
    if ignore_case:
        value = value.lower()
        cond = {k: (v.lower() if isinstance(v, str) else v) for k, v in cond.items()}
    if "exact" in cond:
        return value == cond["exact"]
    if "prefix" in cond:
        return value.startswith(cond["prefix"])
    if "regex" in cond:
        return re.fullmatch(cond["regex"], value) is not None
    return False


_KNOWN_MATCH = {"name", "uri", "method", "headers", "withoutHeaders", "sourceLabels", "sourceNamespace",
                "port", "gateways", "ignoreUriCase"}


def match_condition(cond: dict[str, Any], req: Request, notes: list[str]) -> bool:
    """One HTTPMatchRequest: every field set must hold."""
    unknown = sorted(set(cond) - _KNOWN_MATCH)
    if unknown:
        notes.append(f"match on {', '.join(unknown)} is not evaluated: treated as not matching")
        return False
    gateways = cond.get("gateways")
    if gateways and "mesh" not in gateways:
        return False
    headers = {k.lower(): v for k, v in req.headers.items()}
    if "uri" in cond and not _string_match(cond["uri"], req.path, bool(cond.get("ignoreUriCase"))):
        return False
    if "method" in cond and not _string_match(cond["method"], req.method):
        return False
    for name, hc in (cond.get("headers") or {}).items():
        if not _string_match(hc or {}, headers.get(name.lower())):
            return False
    for name, hc in (cond.get("withoutHeaders") or {}).items():
        if _string_match(hc or {}, headers.get(name.lower())):
            return False
    for k, v in (cond.get("sourceLabels") or {}).items():
        if req.source_labels.get(k) != v:
            return False
    if "sourceNamespace" in cond and cond["sourceNamespace"] != req.source_namespace:
        return False
    return not ("port" in cond and cond["port"] != req.port)


def mesh_virtual_services(objs: list[dict[str, Any]], host: str) -> list[dict[str, Any]]:
    """VirtualServices that apply to sidecars (gateways empty or 'mesh') for ``host``."""
    out = []
    for vs in _of(objs, NET, "VirtualService"):
        spec = vs.get("spec") or {}
        gateways = spec.get("gateways") or ["mesh"]
        if "mesh" not in gateways:
            continue
        ns = vs["metadata"].get("namespace", "default")
        if any(_host_matches(_fqdn(h, ns), host) for h in spec.get("hosts", [])):
            out.append(vs)
    return out


def destination_rule(objs: list[dict[str, Any]], host: str) -> dict[str, Any] | None:
    for dr in _of(objs, NET, "DestinationRule"):
        ns = dr["metadata"].get("namespace", "default")
        if _fqdn((dr.get("spec") or {}).get("host", ""), ns) == host:
            return dr
    return None


def _describe_locality(tp: dict[str, Any], source_region: str | None) -> dict[str, Any] | None:
    setting = (tp.get("loadBalancer") or {}).get("localityLbSetting")
    if not setting:
        return None
    modes = [m for m in ("distribute", "failover", "failoverPriority") if m in setting]
    out: dict[str, Any] = {"modes": modes, "outlierDetection": "outlierDetection" in tp}
    if "failover" in setting:
        rules = [{"from": r.get("from"), "to": r.get("to"),
                  "order": [r.get("from"), r.get("to"), "*"]} for r in setting["failover"]]
        out["failover"] = rules
        if source_region is not None:
            target = next((r["to"] for r in rules if r["from"] == source_region), None)
            out["order"] = [source_region] + ([target] if target else []) + ["*"]
    if "failoverPriority" in setting:
        out["failoverPriority"] = list(setting["failoverPriority"])
    if "distribute" in setting:
        out["distribute"] = [{"from": r.get("from"), "to": dict(r.get("to") or {})}
                             for r in setting["distribute"]]
    if ("failover" in setting or "failoverPriority" in setting) and "outlierDetection" not in tp:
        out["warning"] = "failover is inert: the DestinationRule has no outlierDetection"
    return out


def explain(objs: list[dict[str, Any]], host: str, req: Request,
            source_region: str | None = None, plain: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The routing decision for ``req`` to ``host`` (a JSON-ready dict)."""
    notes: list[str] = []
    result: dict[str, Any] = {"service": host, "virtualService": None, "route": None,
                              "destinations": [], "timeout": None, "retries": None, "fault": None,
                              "locality": None, "notes": notes}
    vss = mesh_virtual_services(objs, host)
    dr = destination_rule(objs, host)
    if len(vss) > 1:
        names = ", ".join(f"{v['metadata'].get('namespace')}/{v['metadata']['name']}" for v in vss)
        notes.append(f"several VirtualServices for the host ({names}): Istio merges them in an "
                     "undefined order; showing the first")
    route: dict[str, Any] | None = None
    if vss:
        vs = vss[0]
        result["virtualService"] = f"{vs['metadata'].get('namespace', 'default')}/{vs['metadata']['name']}"
        http = (vs.get("spec") or {}).get("http") or []
        if not http:
            notes.append("the VirtualService has no http routes")
        for index, r in enumerate(http):
            conds = r.get("match")
            if not conds or any(match_condition(c, req, notes) for c in conds):
                route = r
                result["route"] = {"index": index, "name": r.get("name")}
                break
        if route is None and http:
            notes.append("no route matches: the call fails with 404 (NR)")
    if route is not None:
        dests = route.get("route") or []
        total = sum(int(d.get("weight", 0)) for d in dests) if len(dests) > 1 else 100
        for d in dests:
            weight = int(d.get("weight", 0)) if len(dests) > 1 else 100
            dest = d.get("destination") or {}
            result["destinations"].append(_destination(objs, dest, weight, total, host))
        result["timeout"] = route.get("timeout")
        result["retries"] = route.get("retries")
        result["fault"] = route.get("fault")
    elif not vss:
        notes.append("no VirtualService: default routing over all endpoints")
        result["destinations"].append(_destination(objs, {"host": host}, 100, 100, host))
    if dr is not None:
        tp = (dr.get("spec") or {}).get("trafficPolicy") or {}
        result["destinationRule"] = f"{dr['metadata'].get('namespace', 'default')}/{dr['metadata']['name']}"
        result["locality"] = _describe_locality(tp, source_region)
        result["outlierDetection"] = tp.get("outlierDetection")
        result["loadBalancer"] = {k: v for k, v in (tp.get("loadBalancer") or {}).items()
                                  if k != "localityLbSetting"} or None
        result["connectionPool"] = tp.get("connectionPool")
    result["reachability"] = _reachability(objs, plain if plain is not None else objs, host)
    if result["reachability"]["resolves"] is None:
        notes.append("no rendered Service or DNS-proxied ServiceEntry makes the name resolve in "
                     "this cluster: it resolves only where the application's own Service exists")
    return result


def _destination(objs: list[dict[str, Any]], dest: dict[str, Any], weight: int, total: int,
                 service_host: str) -> dict[str, Any]:
    host = str(dest.get("host", service_host))
    if "." not in host:
        host = _fqdn(host, service_host.split(".")[1])
    subset = dest.get("subset")
    labels: dict[str, str] | None = None
    if subset is not None:
        dr = destination_rule(objs, host)
        for s in ((dr or {}).get("spec") or {}).get("subsets") or []:
            if s.get("name") == subset:
                labels = dict(s.get("labels") or {})
        if labels is None:
            labels = {}
    return {
        "host": host,
        "subset": subset,
        "labels": labels,
        "cluster": (labels or {}).get(CLUSTER_LABEL),
        "weight": weight,
        "share": round(100.0 * weight / total, 2) if total else 0.0,
        "undefinedSubset": subset is not None and labels == {},
    }


DNS_CAPTURE = "ISTIO_META_DNS_CAPTURE"


def dns_capture(config: list[dict[str, Any]]) -> bool:
    """Whether the config cluster's istiod turns on the sidecars' DNS proxy
    (``meshConfig.defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE``)."""
    for o in config:
        spec = o.get("spec") or {}
        if o.get("kind") != "HelmRelease" or \
                ((spec.get("chart") or {}).get("spec") or {}).get("chart") != "istiod":
            continue
        mesh = (spec.get("values") or {}).get("meshConfig") or {}
        meta = (mesh.get("defaultConfig") or {}).get("proxyMetadata") or {}
        if str(meta.get(DNS_CAPTURE, "")).lower() == "true":
            return True
    return False


def _reachability(config: list[dict[str, Any]], plain: list[dict[str, Any]], host: str) -> dict[str, Any]:
    """How the caller reaches ``host``: what makes the name resolve, and via what.

    A Service in the caller's cluster resolves through kube-dns. A ServiceEntry host
    resolves only through the sidecar's DNS proxy (istio.io ops/configuration/
    traffic-management/dns-proxy: "any custom ServiceEntrys will not be recognized"
    by Kubernetes DNS).
    """
    name, ns = host.split(".")[0], host.split(".")[1]
    via: list[str] = []
    resolves: str | None = None
    for o in plain:
        meta = o.get("metadata", {})
        if o.get("kind") == "Service" and o.get("apiVersion") == "v1" and meta.get("name") == name \
                and meta.get("namespace", "default") == ns:
            via.append(f"Service {ns}/{name} (endpoints discovered in the clusters that run it)")
            resolves = f"kube-dns (Service {ns}/{name})"
    endpoints = []
    for se in _of(config, NET, "ServiceEntry"):
        sns = se["metadata"].get("namespace", "default")
        spec = se.get("spec") or {}
        if host in [_fqdn(h, sns) for h in spec.get("hosts", [])]:
            via.append(f"ServiceEntry {sns}/{se['metadata']['name']}")
            endpoints += [{k: e.get(k) for k in ("address", "network", "locality", "ports")}
                          for e in spec.get("endpoints") or []]
            if resolves is None and dns_capture(config):
                resolves = f"istio DNS proxy ({DNS_CAPTURE})"
    return {"via": via, "endpoints": endpoints, "resolves": resolves}


def format_text(result: dict[str, Any], caller: str, config_cluster: str) -> str:
    """The human-readable report."""
    lines = [f"{result['service']} called from cluster {caller}"
             + (f" (Istio config from {config_cluster})" if config_cluster != caller else "")]
    if result["virtualService"]:
        r = result["route"]
        where = f"route #{r['index']} {r['name']!r}" if r else "no matching route"
        lines.append(f"  VirtualService {result['virtualService']}: {where}")
    for d in result["destinations"]:
        target = d["host"] + (f" subset {d['subset']}" if d["subset"] else " (all endpoints)")
        labels = ", ".join(f"{k}={v}" for k, v in (d["labels"] or {}).items())
        lines.append(f"  {d['share']:6.2f}%  {target}" + (f" [{labels}]" if labels else "")
                     + ("  UNDEFINED SUBSET" if d["undefinedSubset"] else ""))
    if result["timeout"]:
        lines.append(f"  timeout: {result['timeout']}")
    rt = result["retries"]
    if rt:
        lines.append(f"  retries: {rt.get('attempts')} attempts"
                     + (f", {rt['perTryTimeout']} per try" if rt.get("perTryTimeout") else "")
                     + (f", on {rt['retryOn']}" if rt.get("retryOn") else ""))
    elif result["route"] is not None:
        lines.append("  retries: mesh default")
    f = result["fault"]
    if f:
        parts = []
        if "delay" in f:
            parts.append(f"delay {f['delay'].get('fixedDelay')} for "
                         f"{(f['delay'].get('percentage') or {}).get('value', 100)}%")
        if "abort" in f:
            parts.append(f"abort {f['abort'].get('httpStatus')} for "
                         f"{(f['abort'].get('percentage') or {}).get('value', 100)}%")
        lines.append(f"  fault: {'; '.join(parts)}")
    loc = result.get("locality")
    if loc:
        for rule in loc.get("failover", []):
            lines.append(f"  failover: {' -> '.join(rule['order'])}")
        if "order" in loc:
            lines.append(f"  failover order from {loc['order'][0]}: {' -> '.join(loc['order'])}")
        if "failoverPriority" in loc:
            lines.append(f"  failover priority: {', '.join(loc['failoverPriority'])}")
        for rule in loc.get("distribute", []):
            to = ", ".join(f"{k} {v}%" for k, v in rule["to"].items())
            lines.append(f"  distribute from {rule['from']}: {to}")
        if "warning" in loc:
            lines.append(f"  WARNING: {loc['warning']}")
    if result.get("outlierDetection"):
        od = ", ".join(f"{k}={v}" for k, v in result["outlierDetection"].items())
        lines.append(f"  outlier detection: {od}")
    for via in result["reachability"]["via"]:
        lines.append(f"  resolves via {via}")
    if result["reachability"].get("resolves"):
        lines.append(f"  name resolution: {result['reachability']['resolves']}")
    for e in result["reachability"]["endpoints"]:
        lines.append(f"    endpoint {e['address']} network={e.get('network')} locality={e.get('locality')}")
    lines.extend(f"  note: {n}" for n in dict.fromkeys(result["notes"]))
    return "\n".join(lines)
