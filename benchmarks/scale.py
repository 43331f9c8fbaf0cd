"""Render and Pulumi-program cost as environments grow.

For environments of 2, 10 and 50 clusters x 10, 100 and 1000 services, prints:
objects rendered, render seconds (plan + resolve + YAML, in memory), the floor
(dumping the very same objects with PyYAML's C dumper) and the ratio; then the
number of Pulumi resources and the time of a mock run of ``__main__.py``.

Goals: render within 1.5x of the floor; Pulumi resources per cluster
independent of the number of services.

    python benchmarks/scale.py [--policy] [--quick] [--no-pulumi]

``--policy`` puts full traffic/security policy on every service.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clusters.loader import spec_from_config  # noqa: E402
from pki.hierarchy import build as build_pki  # noqa: E402
from stacks.build import build_plan  # noqa: E402
from stacks.plan import is_deferred, resolve  # noqa: E402
from stacks.render import PkiResolver, RenderSummary, render_files  # noqa: E402

REGIONS = ["us-east1", "us-west1", "europe-west1", "asia-east1"]


def environment(n_clusters: int, n_services: int, policy: bool) -> dict[str, Any]:
    clusters = []
    for i in range(n_clusters):
        region = REGIONS[i % len(REGIONS)]
        clusters.append({
            "name": f"c{i}", "apiServer": f"https://10.{i // 250}.{i % 250}.1:6443",
            "network": f"net{i % 2}", "region": region, "zone": f"{region}-{'abc'[i % 3]}",
            "eastWestGateway": {"address": f"192.0.{i // 250}.{i % 250 + 1}"},
        })
    names = [c["name"] for c in clusters]
    services = []
    for j in range(n_services):
        placed = [names[(j + k) % n_clusters] for k in range(min(3, n_clusters))]
        svc: dict[str, Any] = {"name": f"svc{j}", "namespace": f"team{j % 20}",
                               "ports": [{"name": "http", "port": 8080}], "clusters": placed}
        if policy:
            from tests.support.policy_examples import full_policy_service

            svc = full_policy_service(svc["name"], svc["namespace"], placed)
        services.append(svc)
    spec: dict[str, Any] = {
        "mesh": {"provider": "istio", "id": "mesh1"},
        "pki": {"keyAlgorithm": "ecdsa-p256"},
        "clusters": clusters,
        "services": services,
    }
    if policy:
        from tests.support.policy_examples import full_policy_mesh

        spec.update(full_policy_mesh(sorted({s["namespace"] for s in services})))
    return spec


def measure(spec_dict: dict[str, Any], repeat: int) -> dict[str, float]:
    config = {f"meshboot:{k}": v for k, v in spec_dict.items()}
    spec = spec_from_config(config, "bench")
    mesh_pki = build_pki(build_plan(spec, "bench").pki, None, {})
    resolver = PkiResolver(mesh_pki)
    render_times, floor_times = [], []
    objects = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        plan = build_plan(spec, "bench")
        files = render_files(plan, resolver, RenderSummary(out_dir=Path("bench")), "bench")
        render_times.append(time.perf_counter() - t0)
        objects = sum(text.count("\n---") + text.startswith("---") for text, _ in files.values())
        # The floor: the same objects, already built, dumped with the C dumper.
        docs = []
        for cp in plan.clusters:
            for step in cp.steps:
                docs.extend(resolve(o, lambda r: resolver(r) if hasattr(r, "item") else r.fixed)
                            for o in step.objects if not is_deferred(o))
                if step.release is not None:
                    docs.append(resolve(step.release.values, lambda r: resolver(r)
                                        if hasattr(r, "item") else r.fixed))
        t0 = time.perf_counter()
        yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False)
        floor_times.append(time.perf_counter() - t0)
    return {"objects": objects, "render": statistics.median(render_times),
            "floor": statistics.median(floor_times)}


def pulumi_run(spec_dict: dict[str, Any]) -> tuple[int, float]:
    from tests.support.pulumi_harness import run_program, with_fake_kubeconfigs

    t0 = time.perf_counter()
    run = run_program(with_fake_kubeconfigs(spec_dict))
    return len([r for r in run.resources if not r.read]), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", action="store_true", help="full policy on every service")
    parser.add_argument("--quick", action="store_true", help="skip the 50-cluster row")
    parser.add_argument("--no-pulumi", action="store_true", help="skip the mock Pulumi runs")
    parser.add_argument("--mock-limit", type=int, default=20000,
                        help="skip mock Pulumi runs above this many rendered objects (slow)")
    args = parser.parse_args()
    sizes = [2, 10] if args.quick else [2, 10, 50]
    print(f"{'clusters':>8} {'services':>8} {'objects':>8} {'render s':>9} {'floor s':>8} "
          f"{'ratio':>6} {'pulumi res':>10} {'res/cluster':>11} {'mock run s':>10}")
    for n_clusters in sizes:
        per_cluster = set()
        for n_services in (10, 100, 1000):
            spec = environment(n_clusters, n_services, args.policy)
            m = measure(spec, repeat=3 if n_clusters * n_services <= 5000 else 1)
            line = (f"{n_clusters:>8} {n_services:>8} {m['objects']:>8} {m['render']:>9.3f} "
                    f"{m['floor']:>8.3f} {m['render'] / m['floor']:>6.2f}")
            if args.no_pulumi or m["objects"] > args.mock_limit:
                print(f"{line} {'(skipped)':>10}")
                continue
            res, secs = pulumi_run(spec)
            per_cluster.add(round(res / n_clusters, 2))
            print(f"{line} {res:>10} {res / n_clusters:>11.2f} {secs:>10.2f}")
        if per_cluster:
            verdict = "independent of" if len(per_cluster) == 1 else "DEPENDS ON"
            print(f"  -> Pulumi resources per cluster {verdict} the service count: "
                  f"{sorted(per_cluster)}")
    print("goal: ratio <= 1.50 (render vs. C-dumper floor); resources/cluster constant")


if __name__ == "__main__":
    main()
