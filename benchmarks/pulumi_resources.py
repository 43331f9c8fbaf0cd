"""Pulumi resources per cluster as environments grow (a mock run of the Pulumi program).

    python benchmarks/pulumi_resources.py [--quick]

For 2 and 10 clusters x 10, 100 and 1000 services (realistic policy on every
service, both providers; ``benchmarks/environments.py``) it runs the program
under Pulumi's mocks and prints the number of resources it registers. Goal:
resources per cluster independent of the number of services (a step's objects
are one ``ConfigGroup``), so `pulumi up` does not slow down with the service
count. Render speed and memory: ``benchmarks/render.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.environments import environment  # noqa: E402


def main() -> None:
    from tests.support.pulumi_harness import run_program, with_fake_kubeconfigs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 100 services only")
    args = parser.parse_args()
    print(f"{'provider':<8} {'clusters':>8} {'services':>8} {'resources':>9} {'per cluster':>11} "
          f"{'mock run s':>10}")
    for provider in ("istio", "linkerd"):
        for n_clusters in (2, 10):
            per_cluster = set()
            for n_services in (10, 100) if args.quick else (10, 100, 1000):
                spec = environment(provider, n_clusters, n_services)
                t0 = time.perf_counter()
                run = run_program(with_fake_kubeconfigs(spec))
                secs = time.perf_counter() - t0
                count = len([r for r in run.resources if not r.read])
                per_cluster.add(round(count / n_clusters, 2))
                print(f"{provider:<8} {n_clusters:>8} {n_services:>8} {count:>9} "
                      f"{count / n_clusters:>11.2f} {secs:>10.2f}", flush=True)
            verdict = "independent of" if len(per_cluster) == 1 else "DEPENDS ON"
            print(f"  -> resources per cluster {verdict} the service count: {sorted(per_cluster)}")


if __name__ == "__main__":
    main()
