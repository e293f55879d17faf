"""Reliability benchmark (issue 13): bad inputs, exact resume after kill -9, kills during
checkpoint writes, rollout memory. Writes ``results/reliability.json`` and ``.md``.

    .venv/bin/python benchmarks/reliability.py              # everything (about 10 minutes on 2 busy cores)
    .venv/bin/python benchmarks/reliability.py --kills 20 --resume_steps 60

Each part runs training / sampling in subprocesses with one torch thread.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "DFORCE_THREADS": "1"}


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ------------------------------------------------------------------------------ bad inputs
def bad_inputs() -> dict:
    from bad_inputs import all_cases, build_template, run_case

    cases = all_cases()
    counts = {"tried": 0, "clear_error": 0, "traceback": 0, "silent_wrong": 0, "unclear_message": 0, "user_files_changed": 0}
    failures, by_verb = [], {}
    with tempfile.TemporaryDirectory(prefix="dforce-bench-") as tmp:
        template = build_template(Path(tmp) / "template")
        t0 = time.time()
        for case in cases:
            out = run_case(case, template)
            counts["tried"] += 1
            counts[out.status] += 1
            if out.changed and out.status != "user_files_changed":
                counts["user_files_changed"] += 1
            verb = case.verb.split()[0]
            by_verb[verb] = by_verb.get(verb, 0) + 1
            if out.status != "clear_error":
                failures.append({"case": case.id, "status": out.status, "detail": out.detail, "message": out.message[-300:]})
        seconds = time.time() - t0
    return {**counts, "cases_by_verb": by_verb, "failures": failures, "seconds": round(seconds, 1)}


# ----------------------------------------------------------------------------- exact resume
RESUME_WORKER = textwrap.dedent('''
    import sys
    import torch
    torch.set_num_threads(1)
    import lightning.pytorch as pl
    import numpy as np
    from dforce import DiffusionForcing, Transformer
    from dforce.training import RandomWindows, TrainConfig, train

    out, log, max_steps, precision, width, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])

    class LogLoss(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            with open(log, "a") as f:
                f.write(f"{trainer.global_step} {outputs['loss'].item().hex()}\\n")

    t = np.arange(6000) * 0.05
    series = np.stack([np.sin(t), np.cos(1.3 * t), np.sin(0.7 * t) ** 3], 1).astype(np.float32)
    pl.seed_everything(0, verbose=False)
    model = DiffusionForcing(Transformer(dim=3, width=width, depth=2, heads=4, dropout=0.1), window=16)
    cfg = TrainConfig(max_steps=max_steps, batch_size=8, out_dir=out, progress=False, logger="none", checkpoint_every=every,
                      precision=precision, accelerator="cpu", warmup_steps=10, ema_decay=0.99, seed=0)
    train(model, RandomWindows(series, 16, seed=0), cfg, callbacks=[LogLoss()])
''')


def _worker(script: Path, out: Path, log: Path, steps: int, precision: str, width: int = 32, every: int = 5):
    return subprocess.Popen([sys.executable, str(script), str(out), str(log), str(steps), precision, str(width), str(every)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _losses(text: str) -> dict[int, str]:
    out = {}
    for line in text.splitlines():
        if line == "RESUME":
            continue
        step, loss = line.split()
        out[int(step)] = loss
    return out


def resume(steps: int, precisions: list[str], kills_per_run: int) -> dict:
    runs, compared, identical = [], 0, True
    with tempfile.TemporaryDirectory(prefix="dforce-resume-") as tmp:
        tmp = Path(tmp)
        script = tmp / "worker.py"
        script.write_text(RESUME_WORKER)
        rng = random.Random(0)
        for precision in precisions:
            ref_log = tmp / f"ref-{precision}.log"
            p = _worker(script, tmp / f"ref-{precision}", ref_log, steps, precision)
            if p.wait() != 0:
                raise RuntimeError(p.stderr.read()[-2000:])
            ref = _losses(ref_log.read_text())
            log = tmp / f"killed-{precision}.log"
            kill_points = []
            for _ in range(kills_per_run):
                done = max(_losses(log.read_text()) or {0: 0}) if log.exists() else 0
                target = done + rng.randint(8, 15)
                if target >= steps - 2:
                    break
                p = _worker(script, tmp / f"killed-{precision}", log, steps, precision)
                while p.poll() is None and (not log.exists() or max(_losses(log.read_text()) or {0: 0}) < target):
                    time.sleep(0.02)
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
                kill_points.append(max(_losses(log.read_text()) or {0: 0}))
                log.write_text(log.read_text() + "RESUME\n")
            p = _worker(script, tmp / f"killed-{precision}", log, steps, precision)
            if p.wait() != 0:
                raise RuntimeError(p.stderr.read()[-2000:])
            # every step logged after a resume is compared with the uninterrupted run
            after = log.read_text().split("RESUME\n")[1:]
            mismatch = 0
            n = 0
            for seg in after:
                for s, v in _losses(seg).items():
                    n += 1
                    mismatch += v != ref[s]
            compared += n
            identical &= mismatch == 0
            runs.append({"precision": precision, "steps": steps, "killed_after_steps": kill_points, "steps_compared": n,
                         "mismatched": mismatch})
    return {"steps_compared": compared, "bit_identical": bool(identical), "runs": runs}


# --------------------------------------------------------------------- kills during writes
def kill_during_write(kills: int, width: int) -> dict:
    from dforce.training.files import is_temp_name
    from dforce.training.lightning import load_checkpoint

    stats = {"kills": 0, "kills_while_temp_file_existed": 0, "latest_loads": 0, "stale_temp_files": 0,
             "stale_temp_files_before_restart": 0, "checkpoint_mb": None}
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="dforce-killwrite-") as tmp:
        tmp = Path(tmp)
        script = tmp / "worker.py"
        script.write_text(RESUME_WORKER)
        out, log = tmp / "run", tmp / "log"
        ck = out / "checkpoints"
        while stats["kills"] < kills:
            p = _worker(script, out, log, 100000, "32-true", width=width, every=1)
            # wait for a write that replaces an existing last.ckpt to start (its temporary file appears),
            # then kill at a random moment in it
            deadline = time.time() + 300
            seen_tmp = False
            while time.time() < deadline and p.poll() is None:
                if (ck / "last.ckpt").is_file() and any(is_temp_name(e.name) for e in os.scandir(ck)):
                    seen_tmp = True
                    time.sleep(rng.uniform(0.0, 0.02))
                    break
                time.sleep(0.0005)
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            stats["kills"] += 1
            temps = [e.name for e in os.scandir(ck) if is_temp_name(e.name)] if ck.is_dir() else []
            stats["kills_while_temp_file_existed"] += bool(seen_tmp and temps)
            stats["stale_temp_files_before_restart"] += len(temps)
            last = ck / "last.ckpt"
            if last.is_file():
                try:
                    load_checkpoint(last)
                    stats["latest_loads"] += 1
                except ValueError:
                    pass
                stats["checkpoint_mb"] = round(last.stat().st_size / 2**20, 1)
        # the next start removes what the kills left behind (max_steps 1: it resumes and stops at once)
        p = _worker(script, out, log, 1, "32-true", width=width, every=1)
        p.wait()
        stats["stale_temp_files"] = len([e for e in os.scandir(ck) if is_temp_name(e.name)])
        stats["final_start_exit_code"] = p.returncode
    return stats


# --------------------------------------------------------------------------- rollout memory
MEMORY_WORKER = textwrap.dedent('''
    import os, sys, json, threading, time
    import torch
    torch.set_num_threads(1)
    from dforce import DiffusionForcing, Transformer

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    tokens = int(sys.argv[1])
    torch.manual_seed(0)
    m = DiffusionForcing(Transformer(dim=3, width=32, depth=2, heads=4), window=16).eval()
    kw = dict(batch_size=4, scheduling="full_sequence", steps=2, chunk_size=8, history_len=8, seed=0)
    m.sample(horizon=64, **kw)  # warm-up: allocator caches, lazy imports
    base = rss_mb()
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.002)

    th = threading.Thread(target=watch)
    th.start()
    y = m.sample(horizon=tokens, **kw)
    stop.set()
    th.join()
    peak[0] = max(peak[0], rss_mb())
    print(json.dumps({"peak_mb": peak[0], "base_mb": base, "finite": bool(torch.isfinite(y).all()), "shape": list(y.shape)}))
''')


def rollout_memory() -> dict:
    import json

    out = {}
    with tempfile.TemporaryDirectory(prefix="dforce-mem-") as tmp:
        script = Path(tmp) / "mem.py"
        script.write_text(MEMORY_WORKER)
        for tokens, key in ((1000, "1k"), (10000, "10k")):
            t0 = time.time()
            r = subprocess.run([sys.executable, str(script), str(tokens)], env=ENV, capture_output=True, text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            out[f"tokens_{key}_mb"] = round(res["peak_mb"], 1)
            out[f"tokens_{key}_growth_mb"] = round(res["peak_mb"] - res["base_mb"], 1)
            out[f"tokens_{key}_seconds"] = round(time.time() - t0, 1)
            out[f"tokens_{key}_finite"] = res["finite"]
    out["ratio_10k_over_1k"] = round(out["tokens_10k_mb"] / out["tokens_1k_mb"], 3)
    out["setup"] = ("resident memory (RSS, sampled every 2 ms) of a process sampling 4 sequences (transformer width 32, "
                    "window 16, chunk 8, 2 steps): peak during the rollout, and its growth over the RSS before it")
    return out


def threads(steps: int = 100) -> dict:
    """Wall time of `dforce sample` (a 100-step model) with torch's default threads and with dforce's default."""

    from dforce.cli.common import default_threads

    out = {"cpus": os.cpu_count(), "dforce_default_threads": default_threads() if "DFORCE_THREADS" not in os.environ else None}
    with tempfile.TemporaryDirectory(prefix="dforce-threads-") as tmp:
        from dforce import DiffusionForcing, Transformer
        from dforce.training import export_model

        torch.manual_seed(0)
        model = DiffusionForcing(Transformer(dim=3, width=128, depth=4, heads=4), window=32)
        export_model(model, Path(tmp) / "m", extra={"sample": {"steps": steps}})
        env = {k: v for k, v in ENV.items() if k not in ("OMP_NUM_THREADS", "DFORCE_THREADS")}
        for label, extra in (("torch_default", ["--threads", str(os.cpu_count())]), ("dforce_default", [])):
            t0 = time.time()
            subprocess.run([sys.executable, "-m", "dforce.cli.main", "sample", str(Path(tmp) / "m"), "--horizon", "2",
                            "--num_samples", "4", "--out", str(Path(tmp) / f"{label}.npy"), *extra], env=env, check=True,
                           capture_output=True)
            out[f"seconds_{label}"] = round(time.time() - t0, 1)
    out["setup"] = (f"dforce sample of a {steps}-step model (transformer width 128, depth 4), 2 frames x 4 samples, "
                    "process start included; torch_default = as many threads as CPUs (torch's default)")
    out["load_avg_1min"] = os.getloadavg()[0]
    return out


def markdown(r: dict) -> str:
    b, rs, k, m = r["bad_inputs"], r["resume"], r["kill_during_write"], r["rollout_memory"]
    lines = [
        "# Reliability (issue 13)", "",
        f"`{r['command']}` at `{r['git_sha'][:10]}`, {r['machine']['date']}.", "",
        "| check | result |", "|---|---|",
        f"| bad inputs tried (CLI + API, {len(b['cases_by_verb'])} verbs) | {b['tried']} |",
        f"| clear one-line errors | {b['clear_error']} |",
        f"| tracebacks / silent wrong / unclear / user files changed | {b['traceback']} / {b['silent_wrong']} / {b['unclear_message']} / {b['user_files_changed']} |",
        f"| steps compared after kill -9 + resume | {rs['steps_compared']} (bit-identical: {rs['bit_identical']}) |",
        f"| kills during checkpoint writes | {k['kills']} ({k['kills_while_temp_file_existed']} with a temporary file on disk) |",
        f"| last.ckpt loads after a kill | {k['latest_loads']} / {k['kills']} |",
        f"| stale temporary files after the next start | {k['stale_temp_files']} (before it: {k['stale_temp_files_before_restart']}) |",
        f"| rollout peak RSS, 1k / 10k tokens | {m['tokens_1k_mb']} / {m['tokens_10k_mb']} MB (ratio {m['ratio_10k_over_1k']}; "
        f"growth during the rollout {m['tokens_1k_growth_mb']} / {m['tokens_10k_growth_mb']} MB) |",
        f"| dforce sample, {r['threads']['cpus']} threads (torch's default) / {r['threads']['dforce_default_threads']} (dforce's) "
        f"| {r['threads']['seconds_torch_default']} s / {r['threads']['seconds_dforce_default']} s (load {r['threads']['load_avg_1min']:.1f}) |" if "threads" in r else "",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="kill -9 during checkpoint writes")
    ap.add_argument("--kill_width", type=int, default=128, help="transformer width of the kill-during-write run (checkpoint size)")
    ap.add_argument("--resume_steps", type=int, default=60, help="training steps of each exact-resume run")
    ap.add_argument("--resume_kills", type=int, default=2, help="kills per exact-resume run")
    ap.add_argument("--precisions", default="32-true,bf16-mixed", help="precisions of the exact-resume runs")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: bad_inputs,resume,kill_during_write,rollout_memory,threads")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    result = {"git_sha": git_sha(), "command": shlex.join(["python", "benchmarks/reliability.py", *sys.argv[1:]]), "machine": machine()}
    t0 = time.time()
    if "bad_inputs" not in skip:
        result["bad_inputs"] = bad_inputs()
        print("bad inputs:", {k: v for k, v in result["bad_inputs"].items() if k not in ("failures", "cases_by_verb")}, flush=True)
    if "resume" not in skip:
        result["resume"] = resume(a.resume_steps, a.precisions.split(","), a.resume_kills)
        print("resume:", result["resume"], flush=True)
    if "kill_during_write" not in skip:
        result["kill_during_write"] = kill_during_write(a.kills, a.kill_width)
        print("kill during write:", result["kill_during_write"], flush=True)
    if "rollout_memory" not in skip:
        result["rollout_memory"] = rollout_memory()
        print("rollout memory:", result["rollout_memory"], flush=True)
    if "threads" not in skip:
        result["threads"] = threads()
        print("threads:", result["threads"], flush=True)
    result["seconds"] = round(time.time() - t0, 1)
    if skip:
        print("parts skipped: results not written")
        return
    paths = write_results("reliability", result, markdown(result))
    print("wrote", *paths)


if __name__ == "__main__":
    main()
