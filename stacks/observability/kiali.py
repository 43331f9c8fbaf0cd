"""Kiali for ``meshboot:observability`` (Istio): its values and multi-cluster Secrets."""

from __future__ import annotations

from typing import Any

from clusters.spec import Spec
from stacks.plan import KubeconfigRef

ISTIO_NS = "istio-system"


def kiali_values(prometheus_url: str | None, auth_strategy: str | None = None) -> dict[str, Any]:
    """kiali-server chart values (kiali/helm-charts v2.29.0 kiali-server/values.yaml).

    Multi-cluster: Kiali reads the clusters it may access from remote-cluster
    Secrets labelled ``kiali.io/multiCluster=true`` in its namespace
    (``clustering.autodetect_secrets``; kiali.io docs/configuration/multi-cluster),
    which :func:`kiali_remote_secret` makes. It
    needs one Prometheus holding every cluster's metrics: the federating one
    (``meshboot:observability.kiali.prometheus``, written to
    ``external_services.prometheus.url``, a Kiali CR key the chart passes into
    Kiali's config), else the cluster's own.
    """
    values: dict[str, Any] = {
        **SKIP_ACCOUNT,
        "clustering": {"autodetect_secrets": {"enabled": True,
                                              "label": "kiali.io/multiCluster=true"}}}
    if auth_strategy is not None:
        values["auth"] = {"strategy": auth_strategy}
    if prometheus_url is not None:
        values["external_services"] = {"prometheus": {"enabled": True, "url": prometheus_url}}
    return values


KIALI_SA = "kiali"   # kiali-server's ServiceAccount (fullname: deployment.instance_name "kiali")
# The chart finds the remote-cluster Secrets with Helm's `lookup` when it is installed
# (kiali/helm-charts kiali-server/templates/_helpers.tpl "kiali-server.remote-cluster-
# secrets" -> deployment.yaml volumes) and Kiali reads them once at start (kiali/kiali
# kubernetes/client_factory.go GetRemoteClusterInfos): they must exist before the
# release. They need the other clusters' tokens of this account, so meshboot creates
# the account ahead of the release (:func:`kiali_service_account`) and the chart skips it.
SKIP_ACCOUNT: dict[str, Any] = {"skipResources": ["sa"]}


def kiali_service_account() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": KIALI_SA, "namespace": ISTIO_NS}}


def kiali_remote_values() -> dict[str, Any]:
    """kiali-server in a cluster without its own Kiali (an Istio remote): only the
    ServiceAccount and roles other clusters' Kialis use (``deployment.
    remote_cluster_resources_only``, which skips the Deployment, Service, ...)."""
    return {**SKIP_ACCOUNT, "deployment": {"remote_cluster_resources_only": True}}


def kiali_token_secret_name(spec: Spec) -> str:
    return f"kiali-token-{spec.mesh.token_generation}"


def kiali_remote_secret(spec: Spec, target: str, api_server: str) -> dict[str, Any]:
    """The remote-cluster Secret a primary's Kiali reads to reach ``target``, in the
    format of kiali/kiali hack/istio/multicluster/kiali-prepare-remote-cluster.sh:
    label ``kiali.io/multiCluster: "true"``, annotation ``kiali.io/cluster``, one key
    named after the cluster holding a token kubeconfig (Pulumi builds it)."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": f"kiali-remote-cluster-secret-{target}", "namespace": ISTIO_NS,
                     "labels": {"kiali.io/multiCluster": "true"},
                     "annotations": {"kiali.io/cluster": target}},
        "stringData": {target: KubeconfigRef(
            target=target, api_server=api_server,
            token_secret=(ISTIO_NS, kiali_token_secret_name(spec)), user=KIALI_SA)},
    }
