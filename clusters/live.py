"""``meshboot preflight --live``: do the clusters' nodes carry the locality the spec claims?

Why this matters (upstream is the truth):

* Istio takes a workload's locality from its **node's labels**, never from
  meshboot's spec. istio/istio ``pilot/pkg/serviceregistry/kube/controller/
  controller.go`` ``(*Controller).getPodLocality``: a pod label
  ``topology.istio.io/locality`` (or the older ``istio-locality``, dots read as
  slashes; ``pkg/model/proxy.go`` ``GetLocalityLabel`` / ``SanitizeLocalityLabel``)
  overrides everything; otherwise region = node label
  ``topology.kubernetes.io/region`` (fallback ``failure-domain.beta.kubernetes.io/region``),
  zone = ``topology.kubernetes.io/zone`` (fallback ``failure-domain.beta.kubernetes.io/zone``),
  subzone = ``topology.istio.io/subzone`` (``getLabelValue(node.ObjectMeta, GA, beta)``),
  joined as ``region/zone/subzone``; a node with none of them gives the empty
  locality. istio.io "Locality Load Balancing" says the same in prose.
* meshboot's ``region``/``zone`` are *routing inputs*: they name the regions in
  ``routing.locality.failover`` rules and the ``locality`` of ServiceEntry
  endpoints (``stacks.common.locality``). If the nodes say otherwise, failover
  rules name localities no proxy is in and silently never apply.
* Linkerd has no region notion; its topology-aware routing uses only the node's
  ``topology.kubernetes.io/zone`` (through EndpointSlice hints; linkerd.io
  "Enabling Topology Aware Routing"). The same zone rule applies.

Rules, per cluster ``meshboot:clusters[i]`` (a node counts as *control-plane
only* when it has a ``NoSchedule``/``NoExecute`` taint keyed
``node-role.kubernetes.io/control-plane`` or ``.../master``: workloads do not run
there, so missing labels on it are noted, not failed):

* spec ``region`` R set:
  - FAIL if a node that runs workloads has no region label (GA or beta): its
    workloads get no locality (*lack*);
  - FAIL if any node's region is not R (*contradict*: meshboot models a cluster
    as one region);
  - FAIL if no node is in R (e.g. a cluster without nodes).
* spec ``zone`` Z set (it needs R):
  - FAIL if a node in R that runs workloads has no zone label (*lack*);
  - FAIL if no node is in R/Z (*contradict*: the spec's zone must exist);
  - nodes of R in other zones are reported, not failed: a multi-zone cluster is
    normal, but their workloads are in R/<their zone>, not R/Z.
* spec ``zone`` unset, R set: the nodes' zones are listed (informational).
* spec ``region`` unset: informational only; if nodes carry labels, the line
  says which, since Istio uses them while meshboot's routing cannot name them.
* Values read only from the deprecated ``failure-domain.beta`` labels count
  (Istio falls back to them) and are noted.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from clusters.kubeconfig import ClientConfig, KubeconfigError, client_config, find_kubeconfig
from clusters.spec import ClusterSpec

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
BETA_REGION_LABEL = "failure-domain.beta.kubernetes.io/region"
BETA_ZONE_LABEL = "failure-domain.beta.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")

DEFAULT_TIMEOUT = 10.0
PAGE_SIZE = 500
MAX_PAGES = 1000  # 500k nodes: far past any real cluster; stops a server that pages forever
MAX_BODY = 64 * 1024 * 1024
SHOW = 5  # node names listed per finding

Status = Literal["ok", "info", "warn", "FAIL"]


@dataclass(frozen=True)
class LiveCheck:
    cluster: str
    name: str
    status: Status
    message: str = ""
    config_error: bool = False  # bad input (kubeconfig), not a cluster fault: exit 2

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        detail = f": {self.message}" if self.message else ""
        return f"{self.cluster}: [{self.status}] live: {self.name}{detail}"


# ----------------------------------------------------------------- the client
class ApiError(Exception):
    """The API server could not be asked, or said no. ``str()`` is the sentence to print."""


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPSConnection whose TLS server name may differ from the host (tls-server-name)."""

    def __init__(self, host: str, port: int | None, *, context: ssl.SSLContext,
                 timeout: float, server_name: str | None) -> None:
        super().__init__(host, port, context=context, timeout=timeout)
        self._ctx = context
        self._server_name = server_name

    def connect(self) -> None:
        if self._server_name is None:
            super().connect()
            return
        http.client.HTTPConnection.connect(self)
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self._server_name)


def _reason(err: ssl.SSLError) -> str:
    return str(err.reason or err.strerror or err.args[-1] if err.args else err)


def _ssl_context(cfg: ClientConfig) -> ssl.SSLContext:
    if cfg.insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            ctx = ssl.create_default_context(
                cadata=cfg.ca_pem.decode("ascii", "replace") if cfg.ca_pem else None)
        except ssl.SSLError as err:
            raise KubeconfigError(f"{cfg.source} (context {cfg.context!r}): the certificate "
                                  f"authority is not a usable PEM certificate ({_reason(err)})") from None
    if cfg.client_cert_pem and cfg.client_key_pem:
        # ssl loads key pairs from files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory(prefix="meshboot-live-") as tmp:
            cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            for path, data in ((cert, cfg.client_cert_pem), (key, cfg.client_key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            try:
                ctx.load_cert_chain(cert, key)
            except ssl.SSLError as err:
                raise KubeconfigError(
                    f"{cfg.source} (context {cfg.context!r}): user {cfg.user!r}: the client "
                    f"certificate and key are not a usable pair ({_reason(err)})") from None
    return ctx


def status_message(body: bytes | str) -> str:
    """The ``message`` of a Kubernetes ``Status`` answer, else the start of the body."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])
    except ValueError:
        pass
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text[:200].strip()


class KubeClient:
    """GET requests to one API server; every request times out after ``timeout`` seconds."""

    def __init__(self, cfg: ClientConfig, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.cfg = cfg
        self.timeout = timeout
        parts = urlsplit(cfg.server)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._ctx = _ssl_context(cfg) if self._https else None

    def get(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        target = self._base + path
        if query:
            target += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items() if v)
        conn: http.client.HTTPConnection
        if self._ctx is not None:
            conn = _HTTPSConnection(self._host, self._port, context=self._ctx, timeout=self.timeout,
                                    server_name=self.cfg.tls_server_name)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        headers = {"Accept": "application/json", "User-Agent": "meshboot-preflight"}
        if self.cfg.token:
            headers["Authorization"] = f"Bearer {self.cfg.token}"
        server = self.cfg.server
        try:
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            body = resp.read(MAX_BODY + 1)
        except ssl.SSLCertVerificationError as err:
            raise ApiError(f"{server}: the server's certificate is not trusted "
                           f"({err.verify_message}); check certificate-authority in "
                           f"{self.cfg.source}") from None
        except ssl.SSLError as err:
            raise ApiError(f"{server}: TLS handshake failed ({_reason(err)})") from None
        except TimeoutError:  # socket.timeout is an alias
            raise ApiError(f"{server}: no answer within {self.timeout:g} s") from None
        except (ConnectionError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            raise ApiError(f"{server}: unreachable ({reason})") from None
        finally:
            conn.close()
        if len(body) > MAX_BODY:
            raise ApiError(f"{server}: answer larger than {MAX_BODY // (1024 * 1024)} MiB")
        who = f"user {self.cfg.user!r} of context {self.cfg.context!r} ({self.cfg.auth})"
        if resp.status == 401:
            raise ApiError(f"{server}: authentication failed (401 Unauthorized): the API server "
                           f"does not accept {who} from {self.cfg.source}")
        if resp.status == 403:
            raise ApiError(f"{server}: {who} may not list nodes (403 Forbidden: "
                           f"{status_message(body)}); it needs `list` on `nodes` (cluster-wide)")
        if resp.status == 410:
            raise ApiError(f"{server}: the node list changed while paging (410 Gone); run again")
        if resp.status != 200:
            raise ApiError(f"{server}: GET {path} answered {resp.status} {resp.reason}: "
                           f"{status_message(body)}")
        try:
            doc = json.loads(body)
        except ValueError:
            raise ApiError(f"{server}: GET {path} did not answer JSON; is this a Kubernetes API "
                           "server?") from None
        if not isinstance(doc, dict):
            raise ApiError(f"{server}: GET {path} answered JSON that is not an object")
        return doc

    def list_nodes(self, page_size: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """Every Node, following ``metadata.continue`` (``limit``/``continue`` paging)."""
        nodes: list[dict[str, Any]] = []
        token = ""
        for _ in range(MAX_PAGES):
            page = self.get("/api/v1/nodes", {"limit": str(page_size), "continue": token})
            items = page.get("items") or []
            if not isinstance(items, list):
                raise ApiError(f"{self.cfg.server}: /api/v1/nodes: items is not a list")
            nodes += [i for i in items if isinstance(i, dict)]
            meta = page.get("metadata")
            token = str(meta.get("continue") or "") if isinstance(meta, dict) else ""
            if not token:
                return nodes
        raise ApiError(f"{self.cfg.server}: /api/v1/nodes still paging after {MAX_PAGES} pages")


# ------------------------------------------------------------ node localities
@dataclass(frozen=True)
class NodeLocality:
    name: str
    region: str
    zone: str
    subzone: str
    beta: tuple[str, ...] = ()   # labels read from the deprecated failure-domain.beta keys
    control_plane_only: bool = False

    @property
    def istio_locality(self) -> str:
        """As getPodLocality joins it, trailing empty parts dropped ("" without any label)."""
        if not (self.region or self.zone or self.subzone):
            return ""
        return f"{self.region}/{self.zone}/{self.subzone}".rstrip("/")


def node_locality(node: dict[str, Any]) -> NodeLocality:
    meta = node.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    labels = meta.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    beta: list[str] = []

    def value(ga: str, old: str | None) -> str:
        if labels.get(ga):
            return str(labels[ga])
        if old and labels.get(old):
            beta.append(old)
            return str(labels[old])
        return ""

    region = value(REGION_LABEL, BETA_REGION_LABEL)
    zone = value(ZONE_LABEL, BETA_ZONE_LABEL)
    subzone = value(SUBZONE_LABEL, None)
    spec = node.get("spec")
    taints = spec.get("taints") if isinstance(spec, dict) else None
    taints = taints if isinstance(taints, list) else []
    cp = any(isinstance(t, dict) and t.get("key") in CONTROL_PLANE_TAINTS
             and t.get("effect") in ("NoSchedule", "NoExecute") for t in taints)
    return NodeLocality(str(meta.get("name") or "?"), region, zone, subzone, tuple(beta), cp)


def _names(nodes: list[NodeLocality]) -> str:
    shown = ", ".join(n.name for n in nodes[:SHOW])
    return shown + (f" and {len(nodes) - SHOW} more" if len(nodes) > SHOW else "")


def _count(nodes: list[NodeLocality], what: str = "node") -> str:
    return f"{len(nodes)} {what}{'s' if len(nodes) != 1 else ''}"


def _spread(values: list[str]) -> str:
    return ", ".join(f"{v or '(none)'} ({n})" for v, n in sorted(Counter(values).items()))


def locality_checks(cluster: ClusterSpec, index: int, nodes: list[NodeLocality]) -> list[LiveCheck]:
    """The rules of this module's docstring, on one cluster's nodes."""
    key = f"meshboot:clusters[{index}]"
    out: list[LiveCheck] = []

    def add(name: str, status: Status, message: str) -> None:
        out.append(LiveCheck(cluster.name, name, status, message))

    workers = [n for n in nodes if not n.control_plane_only]
    cp_only = [n for n in nodes if n.control_plane_only]
    region, zone = cluster.region, cluster.zone

    if not region:
        labelled = [n for n in nodes if n.istio_locality]
        if labelled:
            add("locality", "info",
                f"{key} sets no region/zone, but Istio places workloads by the node labels: "
                f"{_spread([n.istio_locality for n in labelled])}; set region/zone to match to "
                "route by locality")
        else:
            add("locality", "ok", f"{key} sets no region/zone and no node carries "
                f"{REGION_LABEL}/{ZONE_LABEL}")
        return out

    # region
    missing = [n for n in workers if not n.region]
    wrong = [n for n in nodes if n.region and n.region != region]
    inside = [n for n in nodes if n.region == region]
    problems = []
    if missing:
        problems.append(f"{_count(missing)} without {REGION_LABEL} (their workloads get no "
                        f"locality): {_names(missing)}")
    if wrong:
        problems.append(f"{_count(wrong)} in another region than {key}.region {region!r}: "
                        + "; ".join(f"{n.name}={n.region}" for n in wrong[:SHOW])
                        + (f" and {len(wrong) - SHOW} more" if len(wrong) > SHOW else ""))
    if not inside:
        problems.append(f"no node is in {key}.region {region!r}"
                        + (" (the cluster has no nodes)" if not nodes else ""))
    if problems:
        add("region", "FAIL", "; ".join(problems))
    else:
        add("region", "ok", f"all {_count(nodes)} in {region}" if len(inside) == len(nodes)
            else f"{len(inside)} of {_count(nodes)} in {region}")

    # zone
    if zone:
        missing_z = [n for n in workers if n.region == region and not n.zone]
        in_zone = [n for n in inside if n.zone == zone]
        others = [n for n in inside if n.zone and n.zone != zone]
        problems = []
        if missing_z:
            problems.append(f"{_count(missing_z)} without {ZONE_LABEL}: {_names(missing_z)}")
        if not in_zone:
            found = _spread([n.zone for n in inside]) if inside else "none"
            problems.append(f"no node is in {key}.zone {zone!r} (zones of {region}: {found})")
        if problems:
            add("zone", "FAIL", "; ".join(problems))
        else:
            add("zone", "ok", f"{_count(in_zone)} in {region}/{zone}")
        if others and in_zone:
            add("zone", "info", f"also {_count(others)} in other zones "
                f"({_spread([n.zone for n in others])}): workloads there are in "
                f"{region}/<that zone>, not {region}/{zone}")
    else:
        zones = [n.zone for n in inside if n.zone]
        if zones:
            add("zone", "info", f"{key} sets no zone; nodes of {region} are in {_spread(zones)}")

    unlabelled_cp = [n for n in cp_only if not n.region or (zone and not n.zone)]
    if unlabelled_cp:
        add("control-plane nodes", "info",
            f"no locality labels on {_names(unlabelled_cp)}; not failed: workloads are not "
            "scheduled there (NoSchedule control-plane taint)")
    beta = [n for n in nodes if n.beta]
    if beta:
        add("deprecated labels", "warn",
            f"{_names(beta)} carry locality only in failure-domain.beta.kubernetes.io/* labels; "
            f"Istio still reads them, but set {REGION_LABEL}/{ZONE_LABEL}")
    return out


# ------------------------------------------------------------------ one cluster
def check_cluster(cluster: ClusterSpec, index: int, base_dir: Path,
                  env: dict[str, str] | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> list[LiveCheck]:
    """Connect with the cluster's kubeconfig, list its nodes, check their locality labels.

    Never raises for a cluster fault: every problem is a failed check.
    """
    name = cluster.name
    try:
        source = find_kubeconfig(cluster, base_dir, env, index)
        cfg = client_config(source, cluster.context, base_dir)
        client = KubeClient(cfg, timeout)
    except KubeconfigError as err:
        return [LiveCheck(name, "kubeconfig", "FAIL", str(err), config_error=True)]
    try:
        raw = client.list_nodes()
    except ApiError as err:
        return [LiveCheck(name, "API server", "FAIL", str(err))]
    nodes = [node_locality(n) for n in raw]
    head = LiveCheck(name, "API server", "ok",
                     f"{cfg.server} (context {cfg.context!r}): {_count(nodes)}")
    return [head, *locality_checks(cluster, index, nodes)]
