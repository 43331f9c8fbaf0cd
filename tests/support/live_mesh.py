"""What a healthy two-cluster mesh's API servers answer, as ``tests.support.kube_api`` tables.

Objects are shaped as the API server returns them (kind, apiVersion,
metadata, status; Secret data base64), holding what ``pulumi up`` of the
spec in :func:`istio_spec` / :func:`linkerd_spec` creates, plus what the
mesh itself makes (istiod's debug answers from tests/data/verify, Linkerd's
mirror and probe services, pods' trust-root hashes). Scenarios edit a copy.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from pki.ca import CA
from tests.conftest import base_spec

DATA = Path(__file__).resolve().parent.parent / "data" / "verify"
ADDRESS = {"east": "203.0.113.10", "west": "198.51.100.20"}
NETWORK = {"east": "net-a", "west": "net-b"}
LOCALITY = {"east": ("us-east1", "us-east1-b"), "west": ("us-west1", "us-west1-a")}
PEER = {"east": "west", "west": "east"}
PROXY = "/api/v1/namespaces/istio-system/services/istiod:15014/proxy/debug/"
ISTIOD_POD = "istiod-6b8f7c9d4-k2x7p"
# istiod's debug endpoints through a port-forward to its pod (the server's key shape)
FORWARD = f"/api/v1/namespaces/istio-system/pods/{ISTIOD_POD}/portforward:15014/debug/"


def data(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def linkerd_rotation_pki() -> tuple[CA, CA, dict[str, CA]]:
    """The current trust anchor, a new one (for a rotation), and issuers under the current."""
    old = CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256", validity_days=30)
    new = CA.create_root(profile="linkerd", key_algorithm="ecdsa-p256", validity_days=60)
    return old, new, {c: old.issue_intermediate(profile="linkerd", cluster=c,
                                                key_algorithm="ecdsa-p256", validity_days=10)
                      for c in PEER}


def istio_spec() -> dict[str, Any]:
    spec = base_spec()
    spec["pki"]["rootCa"] = {"certFile": "root.pem", "keyFile": "root-key.pem"}
    for c in spec["clusters"]:
        c["kubeconfig"] = f"kube-{c['name']}.yaml"
        c["context"] = c["name"]
        c["eastWestGateway"] = {"address": ADDRESS[c["name"]]}
    return spec


def linkerd_spec() -> dict[str, Any]:
    spec = istio_spec()
    spec["mesh"]["provider"] = "linkerd"
    return spec


def meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "uid": hashlib.md5(f"{namespace}/{name}".encode()).hexdigest(),
                         "resourceVersion": "48213", "creationTimestamp": "2026-11-30T09:12:44Z"}
    if namespace:
        m["namespace"] = namespace
    m.update(extra)
    return m


def node_list(cluster: str) -> dict[str, Any]:
    region, zone = LOCALITY[cluster]
    items = [{"kind": "Node", "apiVersion": "v1",
              "metadata": meta(f"{cluster}-node-{i}", labels={
                  "kubernetes.io/hostname": f"{cluster}-node-{i}",
                  "topology.kubernetes.io/region": region, "topology.kubernetes.io/zone": zone}),
              "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
             for i in (1, 2)]
    return {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "48300"},
            "items": items}


def deployment(name: str, namespace: str, ready: int = 1, replicas: int = 1) -> dict[str, Any]:
    return {"kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": meta(name, namespace, generation=3),
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": 3, "replicas": replicas, "updatedReplicas": replicas,
                       "readyReplicas": ready, "availableReplicas": ready,
                       "conditions": [{"type": "Available",
                                       "status": "True" if ready >= replicas else "False"}]}}


def istiod_pods(*names: str, ready: bool = True) -> dict[str, Any]:
    """istiod pods as listed (Running): the labels the istiod chart gives them."""
    items = [{"kind": "Pod", "apiVersion": "v1",
              "metadata": meta(n, "istio-system", labels={
                  "app": "istiod", "istio": "pilot", "istio.io/rev": "default",
                  "pod-template-hash": "6b8f7c9d4"}),
              "spec": {"containers": [{"name": "discovery", "ports": [
                  {"containerPort": 15014, "protocol": "TCP"}]}]},
              "status": {"phase": "Running", "conditions": [
                  {"type": "Ready", "status": "True" if ready else "False"}]}}
             for n in names]
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "48301"},
            "items": items}


def secret(name: str, namespace: str, data_: dict[str, str], type_: str = "Opaque",
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    m = meta(name, namespace)
    if labels:
        m["labels"] = labels
    return {"kind": "Secret", "apiVersion": "v1", "metadata": m, "type": type_,
            "data": {k: b64(v) for k, v in data_.items()}}


def config_map(name: str, namespace: str, data_: dict[str, str]) -> dict[str, Any]:
    return {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta(name, namespace),
            "data": data_}


def lb_service(name: str, namespace: str, address: str | None) -> dict[str, Any]:
    ingress = [{"ip": address, "ipMode": "VIP"}] if address else []
    return {"kind": "Service", "apiVersion": "v1", "metadata": meta(name, namespace),
            "spec": {"type": "LoadBalancer", "ports": [{"name": "tls", "port": 15443}]},
            "status": {"loadBalancer": {"ingress": ingress} if ingress else {}}}


def kubeconfig_for(cluster: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": cluster,
                       "clusters": [{"name": cluster, "cluster": {"server": f"https://{cluster}"}}],
                       "users": [{"name": "reader", "user": {"token": "t"}}],
                       "contexts": [{"name": cluster, "context": {"cluster": cluster,
                                                                  "user": "reader"}}]})


def istio_cluster(cluster: str, root: CA, inter: CA) -> dict[str, Any]:
    peer = PEER[cluster]
    ns = "/api/v1/namespaces/istio-system"
    return {
        "/api/v1/nodes": node_list(cluster),
        "/apis/apps/v1/namespaces/istio-system/deployments/istiod": deployment("istiod",
                                                                               "istio-system"),
        f"{ns}/secrets/cacerts": secret("cacerts", "istio-system", {
            "ca-cert.pem": inter.cert_pem, "ca-key.pem": "(not read)",
            "cert-chain.pem": inter.chain_pem, "root-cert.pem": root.cert_pem}),
        ns: {"kind": "Namespace", "apiVersion": "v1", "metadata": meta("istio-system", labels={
            "kubernetes.io/metadata.name": "istio-system",
            "topology.istio.io/network": NETWORK[cluster]})},
        f"{ns}/services/istio-eastwestgateway": lb_service("istio-eastwestgateway", "istio-system",
                                                           ADDRESS[cluster]),
        f"{ns}/secrets/istio-remote-secret-{peer}": secret(
            f"istio-remote-secret-{peer}", "istio-system", {peer: kubeconfig_for(peer)},
            labels={"istio/multiCluster": "true"}),
        f"{ns}/pods": istiod_pods(ISTIOD_POD),
        FORWARD + "clusterz": data(f"istio-clusterz-{cluster}.json"),
        FORWARD + "endpointShardz": data("istio-endpointshardz.json"),
        f"{ns}/configmaps/istio-ca-root-cert": config_map("istio-ca-root-cert", "istio-system",
                                                          {"root-cert.pem": root.cert_pem}),
    }


def linkerd_cluster(cluster: str, anchors_pem: str, issuer: CA) -> dict[str, Any]:
    peer = PEER[cluster]
    mc = "/api/v1/namespaces/linkerd-multicluster"
    digest = hashlib.sha256(anchors_pem.encode()).hexdigest()
    pods = [{"kind": "Pod", "apiVersion": "v1", "metadata": meta(
        name, ns, labels={"linkerd.io/control-plane-ns": "linkerd"},
        annotations={"linkerd.io/trust-root-sha256": digest, "linkerd.io/proxy-version": "edge-26.8.3"})}
        for name, ns in (("reviews-v1-7d9c6b8f5-x2kqp", "bookinfo"),
                         ("linkerd-destination-5b7f9c4d8-4hq2l", "linkerd"))]
    return {
        "/api/v1/nodes": node_list(cluster),
        **{f"/apis/apps/v1/namespaces/linkerd/deployments/{d}": deployment(d, "linkerd")
           for d in ("linkerd-destination", "linkerd-proxy-injector", "linkerd-identity")},
        "/api/v1/namespaces/linkerd/secrets/linkerd-identity-issuer": secret(
            "linkerd-identity-issuer", "linkerd",
            {"tls.crt": issuer.cert_pem, "tls.key": "(not read)", "ca.crt": anchors_pem},
            type_="kubernetes.io/tls"),
        "/api/v1/namespaces/linkerd/configmaps/linkerd-identity-trust-roots": config_map(
            "linkerd-identity-trust-roots", "linkerd", {"ca-bundle.crt": anchors_pem}),
        f"/apis/multicluster.linkerd.io/v1alpha3/namespaces/linkerd-multicluster/links/{peer}": {
            "apiVersion": "multicluster.linkerd.io/v1alpha3", "kind": "Link",
            "metadata": meta(peer, "linkerd-multicluster"),
            "spec": {"targetClusterName": peer, "gatewayAddress": ADDRESS[peer],
                     "gatewayPort": "4143", "clusterCredentialsSecret": f"cluster-credentials-{peer}",
                     "probeSpec": {"path": "/ready", "port": "4191", "period": "3s"}}},
        f"{mc}/secrets/cluster-credentials-{peer}": secret(
            f"cluster-credentials-{peer}", "linkerd-multicluster", {"kubeconfig": kubeconfig_for(peer)},
            type_="mirror.linkerd.io/remote-kubeconfig"),
        f"{mc}/services/linkerd-gateway": lb_service("linkerd-gateway", "linkerd-multicluster",
                                                     ADDRESS[cluster]),
        # The linkerd-multicluster chart's controllers name the probe Service probe-<link>
        # (templates/controller/probe-svc.yaml, edge-26.8.3).
        f"{mc}/endpoints/probe-{peer}": {
            "kind": "Endpoints", "apiVersion": "v1", "metadata": meta(f"probe-{peer}",
                                                                      "linkerd-multicluster"),
            "subsets": [{"addresses": [{"ip": "10.96.4.12"}],
                         "ports": [{"name": "mc-probe", "port": 4191}]}]},
        f"/api/v1/namespaces/bookinfo/services/reviews-{peer}": {
            "kind": "Service", "apiVersion": "v1", "metadata": meta(
                f"reviews-{peer}", "bookinfo", labels={"mirror.linkerd.io/mirrored-service": "true",
                                                      "mirror.linkerd.io/cluster-name": peer}),
            "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 9080}]}},
        "/api/v1/pods": {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods},
    }


def edited(table: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(table)
