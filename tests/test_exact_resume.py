"""Exact resume: kill -9 a training subprocess, resume, and compare every later loss bit for bit."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

WORKER = textwrap.dedent('''
    import sys
    import torch
    torch.set_num_threads(1)
    import lightning.pytorch as pl
    from dforce import DiffusionForcing, Transformer
    from dforce.training import RandomWindows, TrainConfig, train
    import numpy as np

    out, log, max_steps, precision = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    class LogLoss(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            with open(log, "a") as f:
                f.write(f"{trainer.global_step} {outputs['loss'].item().hex()}\\n")

    t = np.arange(3000) * 0.1
    series = np.stack([np.sin(t), np.cos(1.3 * t)], 1).astype(np.float32)
    pl.seed_everything(0, verbose=False)
    model = DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2, dropout=0.1), window=8)
    cfg = TrainConfig(max_steps=max_steps, batch_size=4, out_dir=out, progress=False, logger="none", checkpoint_every=3,
                      precision=precision, accelerator="cpu", warmup_steps=4, ema_decay=0.9, seed=0)
    train(model, RandomWindows(series, 8, seed=0), cfg, callbacks=[LogLoss()])
''')


def _losses(log: Path) -> dict[int, str]:
    out = {}
    for line in log.read_text().splitlines():
        step, loss = line.split()
        out[int(step)] = loss  # a step redone after a resume overwrites the killed run's entry
    return out


def _run(script, out, log, steps, precision="32-true"):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, str(script), str(out), str(log), str(steps), precision], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_killed_and_resumed(tmp_path: Path, steps: int = 30, kill_after: int = 14, precision: str = "32-true"):
    """(uninterrupted losses, resumed losses after the kill, first resumed step)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    p = _run(script, tmp_path / "a", tmp_path / "a.log", steps, precision)
    assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    ref = _losses(tmp_path / "a.log")
    log = tmp_path / "b.log"
    p = _run(script, tmp_path / "b", log, steps, precision)
    deadline = time.time() + 600
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < kill_after):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    killed_at = len(log.read_text().splitlines())
    assert killed_at < steps, "the run finished before the kill; raise steps"
    log.write_text(log.read_text() + "RESUME\n")
    p = _run(script, tmp_path / "b", log, steps, precision)
    assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    after = log.read_text().split("RESUME\n", 1)[1]
    resumed = {int(s): v for s, v in (line.split() for line in after.splitlines())}
    return ref, resumed, killed_at


@pytest.mark.slow
def test_kill9_and_resume_is_bit_identical(tmp_path):
    ref, resumed, killed_at = run_killed_and_resumed(tmp_path)
    assert resumed, "the resumed run logged no step"
    first = min(resumed)
    assert first <= killed_at + 1 and max(resumed) == max(ref) == 30
    mismatched = [s for s in resumed if resumed[s] != ref[s]]
    assert not mismatched, f"steps {mismatched[:5]} differ from the uninterrupted run"
    # the losses really are different step to step (the comparison is not vacuous)
    assert len(set(resumed.values())) == len(resumed)
    assert not list((tmp_path / "b" / "checkpoints").glob(".*dforce-tmp*"))


def test_checkpoint_holds_rng_and_data_position_and_loads_without_pickle(tmp_path):
    from dforce import DiffusionForcing, Transformer
    from dforce.training import RandomWindows, TrainConfig, train
    from dforce.training.lightning import load_checkpoint
    import numpy as np

    series = np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)
    model = DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2), window=8)
    cfg = TrainConfig(max_steps=6, batch_size=4, out_dir=str(tmp_path), progress=False, logger="none", checkpoint_every=3,
                      precision="32-true", accelerator="cpu", warmup_steps=2)
    train(model, RandomWindows(series, 8), cfg)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # weights_only=True inside
    state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("ExactResume"))
    assert state["batches"] == 6 and state["items"] == 24
    assert torch.is_tensor(state["rng"]["torch"]) and "numpy" in state["rng"]


def test_stale_temp_files_are_removed_and_user_files_kept(tmp_path):
    from dforce import DiffusionForcing, Transformer
    from dforce.training import RandomWindows, TrainConfig, train
    import numpy as np

    ck = tmp_path / "checkpoints"
    ck.mkdir(parents=True)
    stale = ck / ".last.ckpt.dforce-tmp-abc123"
    stale.write_bytes(b"x" * 1000)
    mine = ck / "notes.txt"
    mine.write_text("keep me")
    series = np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)
    model = DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2), window=8)
    cfg = TrainConfig(max_steps=2, batch_size=4, out_dir=str(tmp_path), progress=False, logger="none", checkpoint_every=1,
                      precision="32-true", accelerator="cpu", warmup_steps=1)
    train(model, RandomWindows(series, 8), cfg)
    assert not stale.exists() and mine.read_text() == "keep me"


def test_malicious_checkpoint_is_not_unpickled(tmp_path):
    import pickle

    from dforce.training.lightning import load_checkpoint

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "last.ckpt"
    bad.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_checkpoint(bad)
    torch.save({"x": Evil()}, tmp_path / "evil2.ckpt")  # torch's own zip format, with a code-running object inside
    with pytest.raises(ValueError, match="evil2.ckpt cannot be read safely"):
        load_checkpoint(tmp_path / "evil2.ckpt")
    assert not marker.exists()


def test_a_killed_export_or_output_write_is_cleaned_by_the_next_one(tmp_path):
    import numpy as np

    from dforce import DiffusionForcing, Transformer
    from dforce.training import export_model
    from dforce.training.files import atomic_write

    (tmp_path / ".m.dforce-tmp-abcd1234").mkdir()  # a killed export of m
    (tmp_path / ".m.dforce-tmp-abcd1234" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / ".s.npy.dforce-tmp-x1y2.npy").write_bytes(b"partial")  # a killed write of s.npy
    (tmp_path / ".other.dforce-tmp-zz").write_bytes(b"another output's temporary: kept")
    (tmp_path / ".notes").write_text("a user's hidden file: kept")
    export_model(DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2), window=8), tmp_path / "m")
    atomic_write(tmp_path / "s.npy", lambda tmp: np.save(tmp, np.zeros(2)), suffix=".npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes", ".other.dforce-tmp-zz", "m", "s.npy"]


def test_every_checkpoint_load_of_a_resume_passes_weights_only(tmp_path, monkeypatch):
    """torch < 2.6 defaults to weights_only=False: dforce must pass True itself, on every load."""
    import numpy as np

    from dforce import DiffusionForcing, Transformer
    from dforce.training import RandomWindows, TrainConfig, train

    series = np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)
    cfg = dict(batch_size=4, out_dir=str(tmp_path), progress=False, logger="none", checkpoint_every=2,
               precision="32-true", accelerator="cpu", warmup_steps=1)
    make = lambda: DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2), window=8)  # noqa: E731
    train(make(), RandomWindows(series, 8), TrainConfig(max_steps=2, **cfg))
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    train(make(), RandomWindows(series, 8), TrainConfig(max_steps=4, **cfg))
    assert calls and all(w is True for w in calls), calls
