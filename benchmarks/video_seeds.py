"""Training-seed spread of the video benchmark: mean and standard deviation over seeds.

Reads the runs of ``benchmarks/video.py`` that differ only in ``--seed`` (same ``--data-seed``,
so the same test clips): ``video[_BUDGET].json`` for seed 0 and ``video[_BUDGET]_seedN.json``,
and writes ``video[_BUDGET]_seeds.json`` / ``.md``: for every method and scalar metric of the
runs' ``methods`` rows (and sprites per frame in the last segment), the per-seed values, their mean and their sample standard deviation;
the same for the world model's centroid errors and for the cache speed-ups.

    PYTHONPATH=src python benchmarks/video.py --seed 1 && PYTHONPATH=src python benchmarks/video.py --seed 2
    PYTHONPATH=src python benchmarks/video_seeds.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from common import RESULTS, provenance, write_results

# what must agree between the runs for their spread to be a training-seed spread
SAME = (("meta", "data", "data_seed"), ("meta", "data", "test_clips"), ("meta", "data", "horizon"), ("meta", "train", "steps"),
        ("meta", "train", "preset"), ("meta", "train", "weighting"), ("meta", "train", "parametrization"), ("meta", "sampling_steps"))


def run_name(budget: str, seed: int) -> str:
    return ("video" if budget == "short" else f"video_{budget}") + (f"_seed{seed}" if seed else "")


def _get(run: dict, path: tuple) -> object:
    for k in path:
        run = run.get(k, {}) if isinstance(run, dict) else {}
    if path[-1] == "data_seed" and run == {}:
        return 0  # runs made before --data-seed used the test clips of seed 0
    return run


def spread(values: list[float]) -> dict:
    return {"values": values, "mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def aggregate(runs: dict[int, dict]) -> dict:
    """``runs``: seed -> a ``video.py`` payload. Raises ValueError if they differ in more than the seed."""
    first = next(iter(runs.values()))
    for path in SAME:
        vals = {s: _get(r, path) for s, r in runs.items()}
        if len({json.dumps(v) for v in vals.values()}) > 1:
            raise ValueError(f"the runs differ in {'.'.join(path)} ({vals}); rerun them with the same settings and --data-seed")
    seeds = list(runs)
    methods = {}
    for key, row in first["methods"].items():
        metrics = [m for m, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        methods[key] = {"name": row["name"], **{m: spread([runs[s]["methods"][key][m] for s in seeds]) for m in metrics}}
        last = list(row["per_segment"])[-1]  # sprites per frame in the last segment: where a rollout fades or not
        if "sprites" in row["per_segment"][last]:
            methods[key][f"sprites_{last.replace('-', '_')}"] = spread([runs[s]["methods"][key]["per_segment"][last]["sprites"] for s in seeds])
    world = {name: spread([runs[s]["world_model"]["rows"][name]["centroid_err_1_16"] for s in seeds]) for name in first["world_model"]["rows"]}
    world["ratio_unconditional_to_guided_1_16"] = spread([runs[s]["world_model"]["ratio_unconditional_to_guided_1_16"] for s in seeds])
    world["selected_cfg_scale"] = [runs[s]["world_model"]["selected_cfg_scale"] for s in seeds]
    cache = {c: spread([runs[s]["cache_speedup"]["speedup"][c] for s in seeds]) for c in first["cache_speedup"]["speedup"]}
    return {"seeds": seeds, "sources": {str(s): {"git_sha": r["git_sha"], "command": r["command"]} for s, r in runs.items()},
            "settings": {".".join(p): _get(first, p) for p in SAME}, "methods": methods, "world_model": world, "cache_speedup": cache}


def markdown(agg: dict, budget: str) -> str:
    def cell(d: dict, digits: int) -> str:
        return f"{d['mean']:.{digits}f} ± {d['sd']:.{digits}f}"

    first = next(iter(agg["methods"].values()))
    metrics = [m for m in first if m != "name" and not m.startswith("frechet_data")]
    digits = {m: 3 if m.startswith(("identity", "hist")) else 2 for m in metrics}
    lines = [f"# Video benchmark, budget `{budget}`: spread over training seeds {', '.join(map(str, agg['seeds']))}", "",
             "Mean ± sample standard deviation over the seeds; every run uses the same test clips (`--data-seed`). Settings: "
             + ", ".join(f"{k.split('.')[-1]} {v}" for k, v in agg["settings"].items()) + ".", "",
             "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for row in agg["methods"].values():  # in the runs' order
        lines.append(f"| {row['name']} | " + " | ".join(cell(row[m], digits[m]) for m in metrics) + " |")
    w = agg["world_model"]
    lines += ["", "World model, centroid error of the controlled sprite over frames 1-16 (pixels):", "", "| condition | error |", "|---|---|"]
    lines += [f"| {k} | {cell(v, 2)} |" for k, v in w.items() if isinstance(v, dict) and k != "ratio_unconditional_to_guided_1_16"]
    lines += ["", f"Unconditional / guided (scale picked on validation clips per seed: {w['selected_cfg_scale']}): "
              f"{cell(w['ratio_unconditional_to_guided_1_16'], 2)}.", "",
              "KV-cache speed-up of DF's autoregressive rollout: " + ", ".join(f"{c} {cell(v, 2)}x" for c, v in agg["cache_speedup"].items()) + ".",
              "", "Runs: " + "; ".join(f"seed {s}: `{v['command']}` at `{v['git_sha'][:10]}`" for s, v in agg["sources"].items()) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="short", help="the budget of the runs (their file names: video.json or video_BUDGET.json)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (at least two)")
    a = p.parse_args(argv)
    prov = provenance()
    seeds = [int(s) for s in a.seeds.split(",")]
    if len(seeds) < 2:
        raise SystemExit("--seeds needs at least two seeds, e.g. --seeds 0,1,2")
    runs = {}
    for s in seeds:
        path = RESULTS / f"{run_name(a.budget, s)}.json"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run `python benchmarks/video.py --budget {a.budget} --seed {s}` first")
        runs[s] = json.loads(path.read_text())
    try:
        agg = aggregate(runs)
    except ValueError as e:
        raise SystemExit(str(e))
    name = run_name(a.budget, 0) + "_seeds"
    write_results(name, {**agg, **prov}, markdown(agg, a.budget))
    print(f"wrote {RESULTS / name}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
