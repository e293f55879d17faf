"""Mutation testing of the core with cosmic-ray: how many injected bugs does the suite catch?

    python benchmarks/mutation.py                       # every core module (hours on 2 cores)
    python benchmarks/mutation.py --modules src/dforce/diffusion/weighting.py --jobs 2

Each core module is mutated by cosmic-ray (operators: arithmetic, comparison, boolean, number,
unary, ... replacements) inside a throwaway ``git worktree`` of HEAD, so the checkout you work in is
never touched; every mutant runs the test files that cover that module (``TESTS``), stopping at
the first failure. A mutant is *killed* when a test fails or times out, *survived* otherwise.
Writes ``benchmarks/results/mutation.{json,md}`` after every finished module (a stopped run keeps them): ``killed``, ``survived``, ``total``, ``score``,
``modules``, the survivors (module, line, operator, function) and ``git_sha`` / ``command``.
Survivors that are equivalent mutants (no input distinguishes them) are listed in
``EQUIVALENT`` with the reason, and reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORE = "src/dforce"
TESTS = {
    "diffusion/schedules.py": ["test_schedules.py", "test_parametrization.py", "test_weighting.py", "test_sampler.py"],
    "diffusion/parametrization.py": ["test_parametrization.py", "test_weighting.py", "test_model.py"],
    "diffusion/weighting.py": ["test_weighting.py", "test_model.py"],
    "diffusion/noise_levels.py": ["test_noise_levels.py", "test_model.py"],
    "sampling/scheduling.py": ["test_scheduling.py", "test_rollout.py"],
    "sampling/sampler.py": ["test_sampler.py", "test_rollout.py", "test_cached.py"],
    "sampling/rollout.py": ["test_rollout.py", "test_cached.py", "test_model.py"],
    "sampling/cached.py": ["test_cached.py", "test_rnn.py"],
    "guidance/cfg.py": ["test_model.py", "test_history.py", "test_cached.py"],
    "guidance/history.py": ["test_history.py", "test_cached.py"],
    "guidance/reward.py": ["test_reward.py"],
    "guidance/reconstruction.py": ["test_video_backbone_sampling.py"],
    "model.py": ["test_model.py", "test_rollout.py", "test_cached.py"],
}
# (module, line, operator) -> why no input can tell the mutant from the original
EQUIVALENT: dict[tuple[str, int, str], str] = {}


def run_module(module: str, python: str, timeout: float, work: Path) -> list[dict]:
    """Mutate one module in its own worktree; returns one record per mutant."""
    tree = work / module.replace("/", "_").removesuffix(".py")
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), "HEAD"], cwd=ROOT, check=True)
    try:
        tests = " ".join(f"tests/{t}" for t in TESTS[module])
        cfg, session = tree / "cosmic-ray.toml", tree / "session.sqlite"
        cfg.write_text(
            "[cosmic-ray]\n"
            f'module-path = "{CORE}/{module}"\n'
            f"timeout = {timeout}\n"
            "excluded-modules = []\n"
            f'test-command = "env PYTHONPATH=src OMP_NUM_THREADS=1 {python} -m pytest -x -q -p no:cacheprovider {tests}"\n'
            "[cosmic-ray.distributor]\n"
            'name = "local"\n'
        )
        cr = [python, "-m", "cosmic_ray.cli"]
        subprocess.run([*cr, "init", str(cfg), str(session)], cwd=tree, check=True, capture_output=True)
        subprocess.run([*cr, "exec", str(cfg), str(session)], cwd=tree, check=True, capture_output=True)
        dump = subprocess.run([*cr, "dump", str(session)], cwd=tree, check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    out = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        m = item["mutations"][0]
        outcome = (result or {}).get("test_outcome")
        out.append({"module": module, "line": m["start_pos"][0], "operator": m["operator_name"],
                    "function": m.get("definition_name"), "outcome": outcome})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", nargs="*", default=sorted(TESTS), help="core modules relative to src/dforce (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="modules mutated in parallel (one core each)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run before it counts as killed")
    args = ap.parse_args()
    modules = [m.removeprefix(f"{CORE}/") for m in args.modules]
    unknown = [m for m in modules if m not in TESTS]
    if unknown:
        sys.exit(f"error: no test map for {unknown}; known modules: {sorted(TESTS)}")
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src", "tests"], cwd=ROOT,
                      capture_output=True, text=True).stdout.strip():
        sys.exit("error: src/ or tests/ has uncommitted changes; commit them first (mutants run on HEAD)")
    start = time.time()
    work = Path(tempfile.mkdtemp(prefix="dforce-mutation-"))
    records: list[dict] = []
    done: list[str] = []
    try:
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_module, m, sys.executable, args.timeout, work): m for m in modules}
            for future in as_completed(futures):  # results are written after every module: a stopped run keeps them
                records += future.result()
                done.append(futures[future])
                write(records, [m for m in modules if m in done], len(modules), start)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write(records: list[dict], modules: list[str], asked: int, start: float) -> None:
    """``results/mutation.{json,md}`` for the modules finished so far."""
    survivors = [r for r in records if r["outcome"] == "survived"]
    equivalent = [r for r in survivors if (r["module"], r["line"], r["operator"]) in EQUIVALENT]
    killed = sum(r["outcome"] in ("killed", "incompetent") for r in records)
    total = len(records)
    data = {
        "killed": killed, "survived": len(survivors), "total": total, "score": killed / max(total, 1),
        "score_without_equivalent": killed / max(total - len(equivalent), 1),
        "modules": [f"{CORE}/{m}" for m in modules], "modules_asked": asked,
        "survivors": [{**r, "equivalent": EQUIVALENT.get((r["module"], r["line"], r["operator"]))} for r in survivors],
        "seconds": time.time() - start, "machine": machine(),
    }
    partial = "" if len(modules) == len(TESTS) else f" ({len(modules)} of the core's {len(TESTS)} modules: a partial run)"
    running = "" if len(modules) == asked else f" {asked - len(modules)} more module(s) of this run were still running."
    lines = ["# Mutation testing of the core (cosmic-ray)", "",
             f"{killed} of {total} mutants killed: score {data['score']:.3f} "
             f"({data['score_without_equivalent']:.3f} without {len(equivalent)} equivalent mutants), "
             f"{data['seconds'] / 60:.0f} min.", "", "Modules: " + ", ".join(f"`{m}`" for m in data["modules"]) + partial + "." + running,
             "", "| module | line | operator | function | equivalent |", "|---|---:|---|---|---|"]
    lines += [f"| {r['module']} | {r['line']} | {r['operator']} | {r['function']} | {EQUIVALENT.get((r['module'], r['line'], r['operator']), '')} |"
              for r in survivors]
    write_results("mutation", data, "\n".join(lines) + "\n")
    print("\n".join(lines[:5]), flush=True)

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
