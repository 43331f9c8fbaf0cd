"""Reading a cluster through the official ``kubernetes`` client (``meshboot verify``).

``meshboot preflight --live`` has its own small HTTPS client (``clusters.live``);
``verify`` reads many kinds of objects, custom resources and istiod's debug
endpoints (through a port-forward to the istiod pod, as ``istioctl`` does),
so it uses the official client, configured from the same kubeconfig ``pulumi up`` uses for the
cluster (``stacks.plan.ClusterConnection``: the spec's file or inline
kubeconfig, else ``$KUBECONFIG`` / ``~/.kube/config``; the spec's context).
Unlike the preflight client it runs ``exec`` credential plugins, as
``kubectl`` and the Pulumi provider do.

Every answer is read as raw JSON (``_preload_content=False``): the checks
work on the documents the API server sends, and the tests serve recorded
documents. Failures become :class:`KubeError` with a sentence, a fix and
whether waiting could help (``pending``): a 5xx from the service proxy
(istiod not serving yet) is pending; 401/403, a missing context or an
unreachable server are not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clusters.kubeconfig import KubeconfigError, KubeconfigLocation
from clusters.live import status_message

DEFAULT_TIMEOUT = 10.0
PAGE_SIZE = 500
MAX_PAGES = 1000


class KubeError(Exception):
    """A request that did not give an answer the checks can use."""

    def __init__(self, reason: str, fix: str = "", pending: bool = False,
                 config: bool = False, unreachable: bool = False, refused: bool = False,
                 no_forward: bool = False, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix
        self.pending = pending          # waiting may help (retried until --wait)
        self.config = config            # the kubeconfig itself is unusable: bad input
        self.unreachable = unreachable  # no request to this API server can succeed
        self.refused = refused          # the proxied service refused the API server's request
        self.no_forward = no_forward    # the API server would not open a port-forward (403, ...)
        self.detail = detail or reason  # the answer alone, without the server and request


@dataclass(frozen=True)
class Target:
    """One cluster as the client reaches it, for messages."""

    cluster: str
    server: str
    context: str
    source: str


class Kube:
    """GETs to one cluster's API server through the official client.

    ``get`` returns None for 404 (absence is a finding, not an error).
    """

    def __init__(self, api_client: Any, target: Target, timeout: float = DEFAULT_TIMEOUT) -> None:
        from kubernetes import client

        self.target = target
        self.timeout = timeout
        self._api = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    # ------------------------------------------------------------ requests
    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        server = self.target.server
        try:
            resp = method(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            body = resp.data
        except ApiException as err:
            self._status(what, err.status or 0, err.body or "")
            return None
        except urllib3.exceptions.MaxRetryError as err:
            if isinstance(err.reason, urllib3.exceptions.SSLError):
                raise KubeError(f"{server}: TLS handshake failed ({_cause(err.reason)})",
                                "check certificate-authority[-data] of the kubeconfig context "
                                f"{self.target.context!r} ({self.target.source})",
                                unreachable=True) from None
            raise KubeError(f"{server}: unreachable ({_cause(err.reason)})",
                            "check the server address of the kubeconfig context "
                            f"{self.target.context!r} ({self.target.source}) and the network "
                            "path to it", unreachable=True) from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise KubeError(f"{server}: {what}: {_cause(err)}",
                            "check the API server is reachable", unreachable=True) from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise KubeError(f"{server}: {what}: the answer is not JSON",
                            "is this a Kubernetes API server?") from None
        return doc if isinstance(doc, dict | list) else {"value": doc}  # type: ignore[return-value]

    def _status(self, what: str, status: int, body: str) -> None:
        """Raise the KubeError for an error answer; return for a 404 (absent)."""
        server = self.target.server
        who = f"the user of context {self.target.context!r} ({self.target.source})"
        message = _message(body)
        if status == 404 and "/proxy/" not in what:
            return
        if status == 401 and "/proxy/" in what and not _is_status(body):
            # The backend's own 401, passed through: the API server had accepted the user
            # (it answers a rejected one with a Status) and forwards no credentials.
            raise KubeError(f"{server}: {what}: the service refused the request "
                            "(401 Unauthorized)", refused=True)
        if status == 401:
            raise KubeError(f"{server}: authentication failed (401 Unauthorized) for {who}",
                            "renew the credentials in the kubeconfig", unreachable=True)
        if status == 403:
            raise KubeError(f"{server}: {what}: 403 Forbidden ({message})",
                            f"grant {who} `get`/`list` on what verify reads (see README)")
        if status in (429, 500, 502, 503, 504):
            raise KubeError(f"{server}: {what}: {status} ({message})",
                            "wait for it to come up (--wait)", pending=True)
        raise KubeError(f"{server}: {what}: answered {status} ({message})")

    def get(self, what: str, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        doc = self._call(what, method, *args, **kwargs)
        if doc is not None and not isinstance(doc, dict):
            raise KubeError(f"{self.target.server}: {what}: the answer is not a JSON object")
        return doc

    # ------------------------------------------------------------ objects
    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"GET secret {namespace}/{name}", self.core.read_namespaced_secret,
                        name, namespace)

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"GET configmap {namespace}/{name}", self.core.read_namespaced_config_map,
                        name, namespace)

    def namespace(self, name: str) -> dict[str, Any] | None:
        return self.get(f"GET namespace {name}", self.core.read_namespace, name)

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"GET service {namespace}/{name}", self.core.read_namespaced_service,
                        name, namespace)

    def endpoints(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"GET endpoints {namespace}/{name}", self.core.read_namespaced_endpoints,
                        name, namespace)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(f"GET deployment {namespace}/{name}",
                        self.apps.read_namespaced_deployment, name, namespace)

    def custom_object(self, group: str, version: str, namespace: str, plural: str,
                      name: str) -> dict[str, Any] | None:
        return self.get(f"GET {plural}.{group} {namespace}/{name}",
                        self.custom.get_namespaced_custom_object,
                        group, version, namespace, plural, name)

    def pods(self, label_selector: str) -> list[dict[str, Any]]:
        return self._list(f"LIST pods -l {label_selector}",
                          self.core.list_pod_for_all_namespaces, label_selector=label_selector)

    def namespaced_pods(self, namespace: str, label_selector: str,
                        field_selector: str = "") -> list[dict[str, Any]]:
        what = f"LIST pods -n {namespace} -l {label_selector}"
        extra = {"field_selector": field_selector} if field_selector else {}
        return self._list(what, self.core.list_namespaced_pod, namespace=namespace,
                          label_selector=label_selector, **extra)

    def nodes(self) -> list[dict[str, Any]]:
        return self._list("LIST nodes", self.core.list_node)

    def _list(self, what: str, method: Any, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        for _ in range(MAX_PAGES):
            extra: dict[str, str] = {"_continue": token} if token else {}
            page = self.get(what, method, limit=PAGE_SIZE, **kwargs, **extra)
            if page is None:
                raise KubeError(f"{self.target.server}: {what}: 404")
            found = page.get("items") or []
            items += [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []
            meta = page.get("metadata")
            token = str(meta.get("continue") or "") if isinstance(meta, dict) else ""
            if not token:
                return items
        raise KubeError(f"{self.target.server}: {what}: still paging after {MAX_PAGES} pages")

    def service_proxy(self, namespace: str, service: str, port: int, path: str) -> Any:
        """GET ``path`` of ``service:port`` through the API server's service proxy.

        Any HTTP error here means istiod is not serving (yet): pending.
        """
        what = f"GET /api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path}"
        try:
            return self._call(what, self.core.connect_get_namespaced_service_proxy_with_path,
                              f"{service}:{port}", namespace, path)
        except KubeError as err:
            if "answered 404" in err.reason:
                raise KubeError(err.reason, f"is {service} running in {namespace}? (--wait)",
                                pending=True) from None
            raise


    def pod_get(self, namespace: str, pod: str, port: int, path: str) -> Any:
        """GET ``/path`` of ``pod:port`` through a port-forward; the answer's JSON.

        This is how ``istioctl`` reads istiod's debug endpoints (istio/istio
        ``pkg/kube/client.go`` ``portForwardRequest``): the kubelet connects to the
        port inside the pod's network namespace, so istiod sees a localhost caller
        and serves ``/debug/*`` (``pilot/pkg/xds/debug.go``
        ``allowAuthenticatedOrLocalhost``), which it refuses through the service
        proxy. The official client speaks the ``v4.channel.k8s.io`` websocket
        protocol (kubernetes ``pkg/kubelet/cri/streaming/portforward/websocket.go``:
        per port a data and an error channel, each opened by a frame holding the
        port). Raises KubeError: ``no_forward`` when the API server will not open
        the port-forward (the caller may use the service proxy), ``pending`` when
        the pod's port did not answer (istiod starting).
        """
        import http.client

        import websocket
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import portforward

        _quiet_forward_threads()
        what = f"port-forward {namespace}/{pod}:{port}, GET /{path}"
        previous = websocket.getdefaulttimeout()
        websocket.setdefaulttimeout(self.timeout)  # the client passes no timeout to connect
        try:
            forward = portforward(self.core.connect_get_namespaced_pod_portforward, pod,
                                  namespace, ports=str(port), _request_timeout=self.timeout)
        except ApiException as err:
            raise self._forward_error(what, err) from None
        finally:
            websocket.setdefaulttimeout(previous)
        try:
            sock = forward.socket(port)
            sock.settimeout(self.timeout)
            conn = http.client.HTTPConnection("localhost", port, timeout=self.timeout)
            conn.sock = sock
            conn.request("GET", "/" + path, headers={"Connection": "close"})
            resp = conn.getresponse()
            status, body = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as err:
            error = forward.error(port)
            reason = error.strip() if error else f"no HTTP answer ({_cause(err) or 'closed'})"
            raise KubeError(f"{self.target.server}: {what}: {reason}",
                            f"is {pod} serving port {port}? (--wait)", pending=True) from None
        finally:
            forward.close()
        if status != 200:
            raise KubeError(f"{self.target.server}: {what}: the pod answered {status}",
                            f"kubectl -n {namespace} logs {pod}", pending=status >= 500)
        try:
            return json.loads(body)
        except ValueError:
            raise KubeError(f"{self.target.server}: {what}: the answer is not JSON",
                            f"is port {port} of {pod} istiod's monitoring port?") from None

    def _forward_error(self, what: str, err: Any) -> KubeError:
        """The KubeError for a port-forward the API server did not open.

        The client wraps every failure in ``ApiException(status=0)``; the websocket
        library's own exception (its ``__context__``) says what happened.
        """
        import ssl

        import websocket

        cause = err.__context__
        server = self.target.server
        if isinstance(cause, websocket.WebSocketBadStatusException):
            status = int(cause.status_code)
            body = (cause.resp_body or b"").decode("utf-8", "replace")
            if status == 401:
                try:
                    self._status(what, 401, body)
                except KubeError as failed:
                    return failed
            if status == 404:
                return KubeError(f"{server}: {what}: the pod is gone ({_message(body)})",
                                 "wait for the new pod (--wait)", pending=True)
            if status in (429, 500, 502, 503, 504):
                return KubeError(f"{server}: {what}: {status} ({_message(body)})",
                                 "wait for it to come up (--wait)", pending=True)
            answer = f"{status} ({_message(body)})"
            return KubeError(f"{server}: {what}: {answer}",
                             f"grant the user of context {self.target.context!r} `create` on "
                             "pods/portforward in the namespace", no_forward=True, detail=answer)
        if isinstance(cause, ssl.SSLError):
            return KubeError(f"{server}: {what}: TLS handshake failed ({_cause(cause)})",
                             "check certificate-authority[-data] of the kubeconfig context "
                             f"{self.target.context!r} ({self.target.source})", unreachable=True)
        if isinstance(cause, OSError | websocket.WebSocketTimeoutException
                      | websocket.WebSocketConnectionClosedException):
            return KubeError(f"{server}: {what}: {_cause(cause) or type(cause).__name__}",
                             "check the API server is reachable", unreachable=True)
        answer = str(err.reason or err)[:200]
        return KubeError(f"{server}: {what}: {answer}",
                         "check the API server supports websocket port-forward", no_forward=True,
                         detail=answer)


_FORWARD_THREAD = "Kubernetes port forward proxy"


def _quiet_forward_threads() -> None:
    """The client's port-forward relay thread raises on a malformed stream; its
    traceback would reach the user's terminal. The request that used it fails with
    a sentence instead, so such a thread ends quietly; other threads are untouched."""
    import threading

    hook = threading.excepthook
    if getattr(hook, "meshboot", False):
        return

    def quiet(args: Any) -> None:
        if args.thread is not None and args.thread.name.startswith(_FORWARD_THREAD):
            return
        hook(args)

    quiet.meshboot = True  # type: ignore[attr-defined]
    threading.excepthook = quiet


def _is_status(body: str) -> bool:
    """Whether ``body`` is a Kubernetes ``Status`` (an answer of the API server itself)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("kind") == "Status"


def _message(body: str) -> str:
    return status_message(body) or "no message"


def _cause(err: Any) -> str:
    text = str(err)
    # urllib3 wraps the socket error: keep its last, most specific part.
    for marker in ("Errno", "timed out", "CERTIFICATE_VERIFY_FAILED", "refused"):
        if marker in text:
            start = text.rfind("[", 0, text.find(marker) + 1)
            return text[start if start >= 0 else 0:].strip(" ')\"")[:200]
    return text[:200] or type(err).__name__


def connect(location: KubeconfigLocation, context: str | None, base_dir: Path,
            env: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Kube:
    """A client for the cluster at ``location`` (the plan's), as ``pulumi up`` reaches it.

    Relative file paths in the kubeconfig resolve against its directory (the
    stack file's for an inline one), as kubectl does. Raises KubeError(config=True).
    """
    from kubernetes import client
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigLoader

    try:
        source = location.read(env)
        doc = yaml.safe_load(source.text)
    except KubeconfigError as err:
        raise KubeError(str(err), "set meshboot:clusters[].kubeconfig", config=True) from None
    except yaml.YAMLError as err:
        # source.where: the file found (the spec's, or from $KUBECONFIG), or "the inline kubeconfig"
        raise KubeError(f"{source.where}: not YAML ({str(err).splitlines()[0]})",
                        "fix the kubeconfig or meshboot:clusters[].kubeconfig",
                        config=True) from None
    where = source.where
    if not isinstance(doc, dict):
        raise KubeError(f"{where}: not a kubeconfig (expected a mapping)", config=True)
    base = source.path.parent if source.path is not None else base_dir
    cfg = client.Configuration()
    try:
        loader = KubeConfigLoader(config_dict=doc, active_context=context,
                                  config_base_path=str(base))
        loader.load_and_set(cfg)
        name = str(loader.current_context.get("name") if loader.current_context else context)
    except (ConfigException, KeyError, TypeError, ValueError, OSError) as err:
        text = str(err).strip("'\"") or type(err).__name__
        raise KubeError(f"{where}: {text}",
                        "fix the kubeconfig or meshboot:clusters[].context", config=True) from None
    cfg.retries = 0  # one attempt per request: waiting is verify's business, bounded by --wait
    target = Target(location.cluster, str(cfg.host), name, where)
    return Kube(client.ApiClient(cfg), target, timeout)
