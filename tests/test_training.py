"""Training layer: Lightning loop, EMA, resume, export, config checks, CLI and 2-process DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dforce import DiffusionForcing, Transformer
from dforce.training import RandomWindows, TrainConfig, build_model, export_model, load_model, model_spec, train


def small_model(width=32):
    return DiffusionForcing(Transformer(dim=4, width=width, depth=1, heads=2), window=8, frame_stack=2)


def sine_series(n=2000):
    t = np.arange(n) * 0.2
    return np.stack([np.sin(t), np.cos(t)], 1).astype(np.float32)


def quick_cfg(tmp_path, **kw):
    base = dict(max_steps=20, batch_size=8, out_dir=str(tmp_path), progress=False, log_every=5, checkpoint_every=10,
                precision="32-true", accelerator="cpu", warmup_steps=5)
    base.update(kw)
    return TrainConfig(**base)


def test_train_logs_checkpoints_and_resumes(tmp_path):
    data = RandomWindows(sine_series(), 16)
    train(small_model(), data, quick_cfg(tmp_path))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    state = torch.load(ckpt, weights_only=False)
    assert state["global_step"] == 20 and "dforce_spec" in state
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))  # atomic: no temporary left
    # "killed" run: a new call with a larger budget continues from step 20, not from 0
    train(small_model(), data, quick_cfg(tmp_path, max_steps=30))
    assert torch.load(ckpt, weights_only=False)["global_step"] == 30
    logs = sorted((tmp_path / "logs").glob("version_*/metrics.csv"))
    assert len(logs) == 2
    steps = [int(line.split(",")[1]) for line in logs[-1].read_text().splitlines()[1:] if line]
    assert min(steps) >= 20


def test_resume_with_another_config_names_the_difference(tmp_path):
    data = RandomWindows(sine_series(), 16)
    train(small_model(), data, quick_cfg(tmp_path, max_steps=5))
    with pytest.raises(ValueError, match=r"different config \(backbone.kwargs.width: 32 != 48\)"):
        train(small_model(width=48), data, quick_cfg(tmp_path, max_steps=10))


def test_ema_weights_are_returned(tmp_path):
    data = RandomWindows(sine_series(), 16)
    torch.manual_seed(0)
    m_ema = train(small_model(), data, quick_cfg(tmp_path / "a", ema_decay=0.9))
    torch.manual_seed(0)
    m_raw = train(small_model(), data, quick_cfg(tmp_path / "b", ema_decay=0.0))
    diffs = [(a - b).abs().max().item() for a, b in zip(m_ema.parameters(), m_raw.parameters())]
    assert max(diffs) > 1e-6  # EMA weights differ from the raw last iterate


def test_a_finished_run_resumed_returns_its_ema_weights(tmp_path):
    """Resuming a run that already reached max_steps trains nothing and returns the same EMA weights."""
    data = RandomWindows(sine_series(), 8, seed=0)
    first = train(small_model(), data, quick_cfg(tmp_path, ema_decay=0.9))
    again = train(small_model(), data, quick_cfg(tmp_path, ema_decay=0.9))
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"at step 20, past max_steps=10: raise max_steps"):
        train(small_model(), data, quick_cfg(tmp_path, ema_decay=0.9, max_steps=10))


def test_extending_a_finished_run_equals_one_longer_run(tmp_path):
    """A map-style dataset (a shuffled epoch of 5 batches): 6 steps, then the same run extended to
    14, gives the uninterrupted 14-step run's weights bit for bit (the resume re-enters the epoch's
    order, and continues from the trained weights, not from the EMA copy the first call returned)."""
    seqs = torch.randn(20, 8, 2)
    cfg = dict(batch_size=4, ema_decay=0.9, warmup_steps=2, checkpoint_every=100, logger="none")
    torch.manual_seed(0)
    one = train(small_model(), seqs, quick_cfg(tmp_path / "one", max_steps=14, **cfg))
    torch.manual_seed(0)
    first = train(small_model(), seqs, quick_cfg(tmp_path / "staged", max_steps=6, **cfg))
    staged = train(small_model(), seqs, quick_cfg(tmp_path / "staged", max_steps=14, **cfg))
    for a, b in zip(one.state_dict().values(), staged.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), staged.state_dict().values()))


def test_a_model_in_eval_mode_trains_in_training_mode(tmp_path):
    """train() returns its model in eval mode; passing it back (to extend the run) must train with
    condition dropout and dropout on, not silently without them."""
    import lightning.pytorch as pl

    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append((module.model.training, module.model.backbone.training))

    model = small_model().eval()
    train(model, torch.randn(16, 8, 2), quick_cfg(tmp_path, max_steps=3, logger="none"), callbacks=[Spy()])
    assert seen and all(a and b for a, b in seen)
    assert not model.training  # returned for sampling


def test_the_resumable_sampler_keeps_random_samplers_order_and_re_enters_it():
    from torch.utils.data import RandomSampler

    from dforce.training.lightning import ResumableRandomSampler

    torch.manual_seed(3)
    expected = list(RandomSampler(range(10)))
    torch.manual_seed(3)
    s = ResumableRandomSampler(10)
    assert list(s) == expected
    s.resume_at(s.epoch_seed, 4)
    assert list(s) == expected[4:]
    assert list(s) != expected  # the next epoch draws a new order


def test_precision_auto_is_fp32_on_cpus_and_bf16_on_cuda_gpus(tmp_path, monkeypatch):
    from lightning.pytorch import Callback

    from dforce.training.lightning import resolved_precision

    assert TrainConfig().precision == "auto"
    assert resolved_precision("auto", "cpu") == "32-true"
    assert resolved_precision("bf16-mixed", "cpu") == "bf16-mixed"  # an explicit choice is kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolved_precision("auto", "auto") == "bf16-mixed"
    assert resolved_precision("auto", "cpu") == "32-true"
    monkeypatch.undo()

    class Seen(Callback):
        def on_train_start(self, trainer, module):
            self.precision = trainer.precision

    seen = Seen()
    train(small_model(), RandomWindows(sine_series(), 16), quick_cfg(tmp_path, max_steps=1, precision="auto"), callbacks=[seen])
    assert seen.precision == "32-true"


def test_loss_falls_with_lightning_bf16(tmp_path):
    data = RandomWindows(sine_series(), 16)
    model = small_model()
    fixed = torch.from_numpy(np.stack([sine_series(400)[i : i + 16] for i in range(0, 320, 10)]))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    with torch.no_grad():
        before = model.loss(fixed, generator=g()).item()
    model = train(model, data, quick_cfg(tmp_path, max_steps=120, precision="bf16-mixed", lr=2e-3, ema_decay=0.0))
    with torch.no_grad():
        after = model.loss(fixed, generator=g()).item()
    assert after < 0.6 * before


def test_export_round_trip_without_lightning(tmp_path):
    model = small_model()
    path = export_model(model, tmp_path / "m", extra={"mean": [1.0, 2.0]})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded, extra = load_model(path)
    assert extra == {"mean": [1.0, 2.0]}
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert model_spec(build_model(model_spec(model))) == model_spec(model)
    # overwrite atomically
    export_model(small_model(), path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an exported dforce model"):
        load_model(tmp_path)
    path = export_model(small_model(), tmp_path / "m")
    other = model_spec(small_model(width=64))
    with pytest.raises(ValueError, match="different config: backbone.kwargs.width: 32 != 64"):
        load_model(path, expect=other)
    cfg = json.loads((path / "config.json").read_text())
    cfg["format"] = "something-else"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format 'something-else'"):
        load_model(path)


def test_train_config_errors():
    with pytest.raises(ValueError, match="unknown logger 'mlflow'"):
        TrainConfig(logger="mlflow").check()
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.5).check()
    with pytest.raises(ValueError, match="shorter"):
        RandomWindows(np.zeros((5, 2)), 16)


def _dforce(*args, timeout=600):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "dforce.cli.main", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_cli_train_config_overrides_and_sample(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "model: {width: 32, depth: 1, heads: 2, window: 8, frame_stack: 2}\n"
        "data: {source: lorenz, lorenz_trajectories: 2, lorenz_steps: 300}\n"
        "train: {max_steps: 4, batch_size: 4, precision: 32-true, progress: false, accelerator: cpu}\n"
    )
    r = _dforce("train", str(cfg), "train.max_steps=6", f"--out_dir={tmp_path / 'run'}", "--print_config")
    assert r.returncode == 0, r.stderr
    assert "max_steps: 6" in r.stdout and "width: 32" in r.stdout
    r = _dforce("train", str(cfg), "train.max_steps=6", f"--out_dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr
    model_dir = tmp_path / "run" / "model"
    assert (model_dir / "model.safetensors").is_file()
    out = tmp_path / "s.npy"
    r = _dforce("sample", str(model_dir), "--horizon", "8", "--num_samples", "3", "--out", str(out), "--sample.steps", "2")
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (3, 8, 3)
    r = _dforce("train", str(cfg), "model.parametrization=score", f"--out_dir={tmp_path / 'bad'}")
    assert r.returncode != 0 and "unknown parametrization 'score'" in r.stderr


def test_cli_help_and_schedule(tmp_path):
    r = _dforce("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("train", "sample", "schedule", "demo"))
    r = _dforce("train", "--help")
    assert r.returncode == 0 and "--model.width" in r.stdout and "transformer width" in r.stdout
    r = _dforce("demo", "--help")
    assert r.returncode == 0 and "--train_steps" in r.stdout and "--rollout_windows" in r.stdout
    png = tmp_path / "m.png"
    r = _dforce("schedule", "show", "pyramid", "--tokens", "4", "--steps", "3", "--plot", str(png))
    assert r.returncode == 0 and png.is_file()
    assert "7 rows x 4 tokens, 6 network calls" in r.stdout
    r = _dforce("schedule", "show", "zigzag")
    assert r.returncode != 0 and "zigzag" in r.stderr


def test_ddp_two_processes_on_cpu(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "model: {width: 32, depth: 1, heads: 2, window: 8, frame_stack: 2}\n"
        "data: {source: lorenz, lorenz_trajectories: 2, lorenz_steps: 300}\n"
        "train: {max_steps: 6, batch_size: 4, precision: 32-true, progress: false, accelerator: cpu, devices: 2, strategy: ddp, checkpoint_every: 3, log_every: 1}\n"
    )
    r = _dforce("train", str(cfg), f"--out_dir={tmp_path / 'run'}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    assert "trained on 2 process(es)" in r.stdout, r.stdout  # two DDP processes ran


def test_validation_samples_and_logs_metrics(tmp_path):
    from dforce.training import SequenceDataset

    series = sine_series(600)
    val = SequenceDataset(np.stack([series[i : i + 16] for i in range(0, 160, 16)]))
    train(small_model(), RandomWindows(series, 16), quick_cfg(tmp_path, max_steps=10, val_every=5, val_sample_steps=2), val_data=val)
    text = next((tmp_path / "logs").glob("version_*/metrics.csv")).read_text()
    header = text.splitlines()[0].split(",")
    assert "val/loss" in header and "val/sample_mse" in header
    col = header.index("val/sample_mse")
    values = [float(r.split(",")[col]) for r in text.splitlines()[1:] if r.split(",")[col]]
    assert len(values) == 2 and all(np.isfinite(values))


def test_normalize_argv():
    from dforce.cli.common import normalize_argv

    assert normalize_argv(["run.yaml", "train.lr=0.1", "--out", "m.json", "--model.width", "8"]) == [
        "--config", "run.yaml", "--train.lr=0.1", "--out", "m.json", "--model.width", "8"]
    assert normalize_argv(["--print_config", "run.yml"]) == ["--print_config", "--config", "run.yml"]
