"""Mutation testing of the core with cosmic-ray: how many injected bugs does the suite catch?

    python benchmarks/mutation.py                       # every core module (hours on 2 cores)
    python benchmarks/mutation.py --modules src/dforce/diffusion/weighting.py --jobs 2
    python benchmarks/mutation.py --sample 0.2 --jobs 2          # a seeded 20% of every module's mutants
    python benchmarks/mutation.py --modules model.py --merge      # rerun one module, keep the others' results

Each core module is mutated by cosmic-ray (operators: arithmetic, comparison, boolean, number,
unary, ... replacements) inside a throwaway ``git worktree`` of the commit HEAD had at the start, so the checkout you work in is
never touched; every mutant runs the test files that cover that module (``TESTS``), stopping at
the first failure, leaving out the ``slow`` integration tests. A mutant is *killed* when a test fails or times out, *survived* otherwise.
Writes ``benchmarks/results/mutation.{json,md}`` after every finished module (a stopped run keeps them): ``killed``, ``survived``, ``total``, ``score``,
``modules``, the survivors (module, line, operator, function) and ``git_sha`` / ``command``.
Mutants inside type annotations are equivalent by construction (never evaluated) and not run.
``--sample F`` runs a seeded uniform random share ``F`` of each module's mutants (the others are
marked skipped and left out of every count; ``population`` gives the full number), and the
markdown adds a 95% Wilson interval for the score.
``--merge`` keeps the existing results of the modules not run again (``runs`` lists the commit and
command behind each module's numbers).
Survivors that are equivalent mutants (no input distinguishes them) are listed in
``EQUIVALENT`` with the reason, and reported apart.
"""

from __future__ import annotations

import argparse
import ast
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
from common import RESULTS, machine, provenance, write_results  # noqa: E402

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
    "sampling/cached.py": ["test_cached.py", "test_rnn.py", "test_decode.py"],
    "guidance/cfg.py": ["test_model.py", "test_history.py", "test_cached.py"],
    "guidance/history.py": ["test_history.py", "test_cached.py"],
    "guidance/reward.py": ["test_reward.py"],
    "guidance/reconstruction.py": ["test_video_backbone_sampling.py"],
    "model.py": ["test_model.py", "test_rollout.py", "test_cached.py"],
    "distillation.py": ["test_distillation.py"],
}
# (module, line, operator) -> why no input can tell the mutant from the original
EQUIVALENT: dict[tuple[str, int, str], str] = {
    ("diffusion/noise_levels.py", 114, "core/ReplaceBinaryOperator_Add_Sub"):
        "`+ jitter` -> `- jitter`: the jitter is uniform on [-0.025, 0.025], so both have one distribution "
        "(the line's other `+` flips the pyramid and is killed)",
    ("diffusion/noise_levels.py", 112, "core/NumberReplacer"):
        "`max(tokens, 1)` only keeps log() finite for an empty window; for one token `pos - anchor` is 0, so the rise is never used",
    ("diffusion/weighting.py", 71, "core/ReplaceComparisonOperator_Eq_GtE"):
        "`kind >= 'sigmoid'`: check_weighting has admitted only uniform (returned earlier), sigmoid, min_snr and fused_snr, "
        "and only 'sigmoid' of those is >= 'sigmoid'",
    ("model.py", 148, "core/ReplaceComparisonOperator_Eq_LtE"):
        "`x.shape[0] == 0` -> `<= 0`: a shape is never negative",
    ("model.py", 194, "core/ReplaceComparisonOperator_Gt_GtE"):
        "`target_w > 0` -> `>= 0`: the weight is then multiplied by target_w, zero where the two differ, and w is finite "
        "(clipped logSNR)",
    ("sampling/sampler.py", 231, "core/ReplaceComparisonOperator_Eq_GtE"):
        "`solver == 'dpm++2m'` -> `>=`: check_solver has admitted only 'ddim' and 'dpm++2m', and 'ddim' < 'dpm++2m'",
    ("sampling/cached.py", 90, "core/NumberReplacer"):
        "`self.inputs[0]` -> `self.inputs[1]`: the cached tokens and their levels always have the same number of tokens",
    ("sampling/cached.py", 108, "core/ReplaceComparisonOperator_GtE_Is"):
        "`drop >= length` -> `drop is length`: for a larger drop, drop_front(drop) empties every built-in cache just as clear() does",
    ("sampling/cached.py", 108, "core/ReplaceComparisonOperator_GtE_Eq"):
        "`drop >= length` -> `drop == length`: as above",
}


def annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``((line, col), (end_line, end_col))`` of every type annotation in a module."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        found = []
        if isinstance(node, ast.arg) or isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node.returns)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found if a is not None]
    return spans


def keep_sample(session: Path, share: float, seed: int, module: str, source: Path) -> tuple[int, int]:
    """Mark all but a seeded random ``share`` of the session's mutants as skipped, and every mutant
    inside a type annotation (``from __future__ import annotations``: never evaluated, so equivalent
    by construction). Returns ``(population, annotation mutants)``."""
    import random

    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        items = sorted(db.work_items, key=lambda w: tuple((m.operator_name, m.occurrence, tuple(m.start_pos)) for m in w.mutations))
        spans = annotation_spans(source)
        typed = [w for w in items if any(a <= tuple(w.mutations[0].start_pos) < b for a, b in spans)]
        live = [w for w in items if w not in typed]
        keep = set(range(len(live)))
        if share < 1.0:
            keep = set(random.Random(f"{seed}:{module}").sample(range(len(live)), max(1, round(share * len(live)))))
        skip = typed + [w for i, w in enumerate(live) if i not in keep]
        if skip:
            db.set_multiple_results([w.job_id for w in skip], WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        return len(live), len(typed)


def run_module(module: str, python: str, timeout: float, work: Path, share: float, seed: int, sha: str) -> tuple[list[dict], tuple[int, int]]:
    """Mutate one module in its own worktree; returns one record per mutant."""
    tree = work / module.replace("/", "_").removesuffix(".py")
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), sha], cwd=ROOT, check=True)
    try:
        tests = " ".join(f"tests/{t}" for t in TESTS[module])
        cfg, session = tree / "cosmic-ray.toml", tree / "session.sqlite"
        cfg.write_text(
            "[cosmic-ray]\n"
            f'module-path = "{CORE}/{module}"\n'
            f"timeout = {timeout}\n"
            "excluded-modules = []\n"
            f'test-command = "env PYTHONPATH=src OMP_NUM_THREADS=1 {python} -m pytest -x -q -p no:cacheprovider -m \\"not slow\\" {tests}"\n'
            "[cosmic-ray.distributor]\n"
            'name = "local"\n'
        )
        cr = [python, "-m", "cosmic_ray.cli"]
        subprocess.run([*cr, "init", str(cfg), str(session)], cwd=tree, check=True, capture_output=True)
        population = keep_sample(session, share, seed, module, tree / CORE / module)
        subprocess.run([*cr, "exec", str(cfg), str(session)], cwd=tree, check=True, capture_output=True)
        dump = subprocess.run([*cr, "dump", str(session)], cwd=tree, check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    out = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if (result or {}).get("worker_outcome") == "skipped":
            continue
        m = item["mutations"][0]
        outcome = (result or {}).get("test_outcome")
        out.append({"module": module, "line": m["start_pos"][0], "operator": m["operator_name"],
                    "function": m.get("definition_name"), "outcome": outcome})
    return out, population


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", nargs="*", default=sorted(TESTS), help="core modules relative to src/dforce (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="modules mutated in parallel (one core each)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run before it counts as killed")
    ap.add_argument("--sample", type=float, default=1.0, help="share of each module's mutants to run, in (0, 1] (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --sample draw")
    ap.add_argument("--merge", action="store_true", help="keep the existing results of the modules not run again")
    args = ap.parse_args()
    if not 0.0 < args.sample <= 1.0:
        sys.exit(f"error: --sample must lie in (0, 1], got {args.sample}")
    modules = [m.removeprefix(f"{CORE}/") for m in args.modules]
    unknown = [m for m in modules if m not in TESTS]
    if unknown:
        sys.exit(f"error: no test map for {unknown}; known modules: {sorted(TESTS)}")
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src", "tests"], cwd=ROOT,
                      capture_output=True, text=True).stdout.strip():
        sys.exit("error: src/ or tests/ has uncommitted changes; commit them first (mutants run on HEAD)")
    start = time.time()
    work = Path(tempfile.mkdtemp(prefix="dforce-mutation-"))
    kept: dict = {}  # a module run again keeps its old results until the new ones are in
    if args.merge and (RESULTS / "mutation.json").exists():
        old = json.loads((RESULTS / "mutation.json").read_text())
        if "per_module" not in old:
            sys.exit("error: --merge needs results written by this version of the script; run without --merge")
        kept = old["per_module"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    run = {**provenance(), "sample": args.sample, "seed": args.seed}
    per_module = dict(kept)
    try:
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_module, m, sys.executable, args.timeout, work, args.sample, args.seed, head): m for m in modules}
            for future in as_completed(futures):  # results are written after every module: a stopped run keeps them
                recs, (pop, ann) = future.result()
                per_module[futures[future]] = {"records": recs, "population": pop, "annotation_mutants": ann, "run": run}
                write(per_module, len(set(kept) | set(modules)), start, run)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n``."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    mid, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return mid - half, mid + half


def write(per_module: dict, asked: int, start: float, run: dict) -> None:
    """``results/mutation.{json,md}`` for the modules finished so far (``per_module``: records and run per module)."""
    modules = sorted(per_module)
    records = [r for m in modules for r in per_module[m]["records"]]
    population = sum(per_module[m]["population"] for m in modules)
    typed = sum(per_module[m]["annotation_mutants"] for m in modules)
    survivors = [r for r in records if r["outcome"] == "survived"]
    equivalent = [r for r in survivors if (r["module"], r["line"], r["operator"]) in EQUIVALENT]
    killed = sum(r["outcome"] in ("killed", "incompetent") for r in records)
    total = len(records)
    runs = {json.dumps(per_module[m]["run"], sort_keys=True) for m in modules}
    shares = {m: per_module[m]["run"]["sample"] for m in modules}
    scores = {m: sum(r["outcome"] in ("killed", "incompetent") for r in per_module[m]["records"]) / max(len(per_module[m]["records"]), 1)
              for m in modules}
    weighted = sum(scores[m] * per_module[m]["population"] for m in modules) / max(population, 1)
    data = {
        "git_sha": run["git_sha"], "command": run["command"],
        "killed": killed, "survived": len(survivors), "total": total, "score": killed / max(total, 1),
        "score_without_equivalent": killed / max(total - len(equivalent), 1),
        "modules": [f"{CORE}/{m}" for m in modules], "modules_asked": asked,
        "population": population, "annotation_mutants": typed, "sample": shares, "score_ci95": wilson(killed, total),
        "score_population_weighted": weighted,
        "survivors": [{**r, "equivalent": EQUIVALENT.get((r["module"], r["line"], r["operator"]))} for r in survivors],
        "runs": [{**json.loads(r), "modules": [m for m in modules if json.dumps(per_module[m]["run"], sort_keys=True) == r]} for r in sorted(runs)],
        "per_module": per_module, "seconds": time.time() - start, "machine": machine(),
    }
    partial = "" if len(modules) == len(TESTS) else f" ({len(modules)} of the core's {len(TESTS)} modules: a partial run)"
    running = "" if len(modules) == asked else f" {asked - len(modules)} more module(s) of this run were still running."
    lines = ["# Mutation testing of the core (cosmic-ray)", "",
             f"{killed} of {total} mutants killed: score {data['score']:.3f} "
             f"({data['score_without_equivalent']:.3f} without {len(equivalent)} equivalent mutants).", "",
             (f"A seeded random share of each module's mutants ({total} of {population}; the share per module is in the table); "
              f"the score's 95% Wilson interval is [{data['score_ci95'][0]:.3f}, {data['score_ci95'][1]:.3f}], and weighted by each "
              f"module's number of mutants it is {weighted:.3f}." if total < population else f"Every mutant ({population}).")
             + f" Not run: {typed} mutants inside type annotations, which `from __future__ import annotations` never evaluates"
             " (equivalent by construction).", "", "Modules: " + ", ".join(f"`{m}`" for m in data["modules"]) + partial + "." + running,
             "", "| module | mutants | share run | run | killed | score | commit |", "|---|---:|---:|---:|---:|---:|---|"]
    for m in modules:
        rs = per_module[m]["records"]
        k = sum(r["outcome"] in ("killed", "incompetent") for r in rs)
        lines.append(f"| {m} | {per_module[m]['population']} | {shares[m]:.0%} | {len(rs)} | {k} | {k / max(len(rs), 1):.3f} | "
                     f"`{per_module[m]['run']['git_sha'][:7]}` |")
    lines += ["", "Runs:", ""] + [f"- `{r['command']}` at `{r['git_sha']}`: {', '.join(r['modules'])}" for r in data["runs"]]
    lines += ["", "Survivors:", "", "| module | line | operator | function | equivalent |", "|---|---:|---|---|---|"]
    lines += [f"| {r['module']} | {r['line']} | {r['operator']} | {r['function']} | {EQUIVALENT.get((r['module'], r['line'], r['operator']), '')} |"
              for r in survivors]
    write_results("mutation", data, "\n".join(lines) + "\n")
    print("\n".join(lines[:5]), flush=True)

if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
