"""The whole `meshboot render` command against the floor of dumping its output with PyYAML.

    python benchmarks/render.py [--quick] [--cases istio:10x1000,linkerd:2x1000] [--pki]

For each case (provider, clusters x services, realistic policy on every
service; see ``benchmarks/environments.py``) it writes the stack file, renders
once to create the PKI store and the output, then measures a second
``meshboot render`` into the same directory as a separate process: CPU time
(user + system, the process and every worker it waited for) and wall time
from ``os.wait4`` (a ``resource.struct_rusage``), peak RSS of the largest process
(``ru_maxrss``) and the peak total PSS of the process tree (sampled from
``/proc/<pid>/smaps_rollup`` every 20 ms: with worker processes, the honest
figure; pages forked workers share count once).

The floor, in the same run: a separate process loads the rendered documents
(not timed), then PyYAML's C dumper writes the very same documents into the
same files (timed: CPU and wall). One process: the goal lets meshboot use
every core for wall time, the floor does not.

``--pki`` adds the PKI case of the goals: re-rendering an environment of 50
clusters with RSA-4096 keys from its existing store (whole command).

Goals (issue 10): CPU <= 1.2x the floor, wall <= 1.0x the floor, peak RSS
<= 2x the bytes written; re-render with a 50 x RSA-4096 store under 2 s of
PKI work. Figures, not assertions: nothing here fails a build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.environments import environment, write_stack_file  # noqa: E402

DEFAULT_CASES = ["istio:2x1000", "istio:10x1000", "istio:50x1000",
                 "linkerd:2x1000", "linkerd:10x1000", "linkerd:50x1000"]
QUICK_CASES = ["istio:2x200", "istio:10x200", "linkerd:2x200", "linkerd:10x200"]
GOALS = {"cpu": 1.2, "wall": 1.0, "rss": 2.0}


def meshboot_command() -> list[str]:
    exe = Path(sys.executable).parent / "meshboot"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "scripts.cli"]


def _tree_pss_kb(pid: int) -> int:
    """Total PSS of ``pid`` and its descendants (kB): pages shared by forked workers count once."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; CPU, wall, max process RSS and sampled tree RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    peak_tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, _tree_pss_kb(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out.decode()}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall,
            "rss_mb": usage.ru_maxrss / 1024, "tree_mb": peak_tree / 1024}


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def floor_main(src: Path, dst: Path) -> None:
    """Child process: load ``src``'s documents, then time dumping them into ``dst``."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    files = []
    for path in sorted(src.rglob("*.yaml")):
        text = path.read_text()
        header = text[:text.index("\n") + 1] if text.startswith("#") else ""
        files.append((path.relative_to(src), header, list(yaml.load_all(text, Loader=loader))))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for rel, header, docs in files:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = header + yaml.dump_all(docs, Dumper=dumper, sort_keys=False,
                                      default_flow_style=False, explicit_start=True,
                                      width=1_000_000)
        target.write_bytes(text.encode())
    print(json.dumps({"cpu": time.process_time() - cpu0, "wall": time.perf_counter() - wall0}))


def measure_floor(src: Path, work: Path) -> dict[str, float]:
    dst = work / "floor"
    shutil.rmtree(dst, ignore_errors=True)
    out = subprocess.run([sys.executable, __file__, "--floor", str(src), str(dst)],
                         check=True, capture_output=True, text=True).stdout
    shutil.rmtree(dst, ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


def run_case(case: str, work: Path, workers: int | None = None) -> dict[str, Any]:
    provider, size = case.split(":")
    n_clusters, n_services = (int(x) for x in size.split("x"))
    case_dir = work / case.replace(":", "-")
    case_dir.mkdir(parents=True)
    write_stack_file(case_dir / "Pulumi.bench.yaml", environment(provider, n_clusters, n_services))
    cmd = [*meshboot_command(), "render", "--config", "Pulumi.bench.yaml", "--out", "out"]
    env = {k: v for k, v in os.environ.items() if k != "MESHBOOT_WORKERS"}
    if workers is not None:
        env["MESHBOOT_WORKERS"] = str(workers)
    run_measured(cmd, case_dir, env)                   # creates the PKI store and the output
    render = run_measured(cmd, case_dir, env)          # the re-render users run
    floor = measure_floor(case_dir / "out", case_dir)
    written = tree_bytes(case_dir / "out")
    shutil.rmtree(case_dir, ignore_errors=True)
    return {"case": case, "mb": written / 1e6, **{f"r_{k}": v for k, v in render.items()},
            **{f"f_{k}": v for k, v in floor.items()}}


def pki_case(work: Path) -> dict[str, Any]:
    case_dir = work / "pki-rsa4096"
    case_dir.mkdir(parents=True)
    write_stack_file(case_dir / "Pulumi.bench.yaml",
                     environment("istio", 50, 0, key_algorithm="rsa-4096"))
    cmd = [*meshboot_command(), "render", "--config", "Pulumi.bench.yaml", "--out", "out"]
    first = run_measured(cmd, case_dir, dict(os.environ))
    again = run_measured(cmd, case_dir, dict(os.environ))
    # The PKI part alone, in this process: load the store the renders wrote.
    from clusters.loader import load_stack_file
    from pki.store import PkiStore
    from stacks.common import pki_params

    loaded = load_stack_file(case_dir / "Pulumi.bench.yaml")
    params = pki_params(loaded.spec, loaded.base_dir)
    store = PkiStore(case_dir / ".meshboot" / "bench" / "pki")
    t0 = time.perf_counter()
    mesh = store.load_or_build(params)
    pki_seconds = time.perf_counter() - t0
    shutil.rmtree(case_dir, ignore_errors=True)
    return {"first": first, "again": again, "pki": pki_seconds, "reissued": len(mesh.reissued)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases only (a smoke run)")
    parser.add_argument("--cases", default=None, help="comma-separated provider:NxM")
    parser.add_argument("--pki", action="store_true", help="also the 50 x RSA-4096 store case")
    parser.add_argument("--workers", type=int, default=None,
                        help="MESHBOOT_WORKERS for the renders (default: meshboot's own choice)")
    parser.add_argument("--floor", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor_main(*args.floor)
        return
    cases = args.cases.split(",") if args.cases else QUICK_CASES if args.quick else DEFAULT_CASES
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"# {cpus} cores, Python {sys.version.split()[0]}, "
          f"{os.uname().sysname} {os.uname().machine}")
    print(f"{'case':<16} {'MB out':>7} {'cpu s':>7} {'floor':>7} {'cpu x':>6} "
          f"{'wall s':>7} {'floor':>7} {'wall x':>6} {'RSS MB':>7} {'tree MB':>7} {'rss x':>6}")
    with tempfile.TemporaryDirectory(prefix="meshboot-bench-") as tmp:
        for case in cases:
            r = run_case(case, Path(tmp), args.workers)
            cpu_x = r["r_cpu"] / r["f_cpu"]
            wall_x = r["r_wall"] / r["f_wall"]
            rss_x = max(r["r_rss_mb"], r["r_tree_mb"]) / r["mb"]
            marks = "".join("" if ok else " !" + name for name, ok in (
                ("cpu", cpu_x <= GOALS["cpu"]), ("wall", wall_x <= GOALS["wall"]),
                ("rss", rss_x <= GOALS["rss"])))
            print(f"{case:<16} {r['mb']:>7.1f} {r['r_cpu']:>7.2f} {r['f_cpu']:>7.2f} {cpu_x:>6.2f} "
                  f"{r['r_wall']:>7.2f} {r['f_wall']:>7.2f} {wall_x:>6.2f} {r['r_rss_mb']:>7.0f} "
                  f"{r['r_tree_mb']:>7.0f} {rss_x:>6.2f}{marks}", flush=True)
        if args.pki:
            p = pki_case(Path(tmp))
            print(f"pki: 50 x RSA-4096, re-render (whole command) {p['again']['wall']:.2f} s wall "
                  f"(first render, keys generated: {p['first']['wall']:.1f} s); loading the store "
                  f"alone: {p['pki']:.2f} s, {p['reissued']} re-issued (goal: under 2 s)")
    print(f"goals: cpu x <= {GOALS['cpu']}, wall x <= {GOALS['wall']} (single-process floor), "
          f"rss x <= {GOALS['rss']} (larger of RSS and tree RSS / bytes written); ! = missed")


if __name__ == "__main__":
    main()
