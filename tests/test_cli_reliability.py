"""The fixes of issue 13 that are not a bad input: typed options win, seeded runs repeat, user
files survive --overwrite, custom scheduling matrices on the command line, --debug, --threads."""

import json
import os

import numpy as np
import pytest
import torch

from dforce import DiffusionForcing, Transformer
from dforce.cli.main import main
from dforce.sampling import SamplingConfig
from dforce.training import export_model, load_model


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2), window=8)


@pytest.fixture
def saved_model(tmp_path):
    return export_model(tiny_model(), tmp_path / "m", extra={"mean": [0.0, 0.0], "std": [1.0, 1.0],
                                                           "sample": {"steps": 16, "stabilization_level": 0.1}})


def _sample(model_dir, out, *args):
    assert main(["sample", str(model_dir), "--horizon", "6", "--out", str(out), *args]) == 0
    return np.load(out)


def test_a_typed_option_equal_to_the_default_wins_over_the_saved_one(saved_model, tmp_path, monkeypatch):
    default_steps = SamplingConfig().steps  # 50: the value that used to be dropped
    typed = _sample(saved_model, tmp_path / "a.npy", "--sample.steps", str(default_steps))
    saved = _sample(saved_model, tmp_path / "b.npy")
    model, _ = load_model(saved_model)
    want = model.sample(batch_size=1, horizon=6, seed=0, config=SamplingConfig(steps=default_steps, stabilization_level=0.1)).numpy()
    assert np.array_equal(typed, want)
    assert not np.array_equal(typed, saved)
    # the same for the stabilization level (default 0.02, saved 0.1): the config handed to sample()
    seen = []
    real = DiffusionForcing.sample

    def spy(self, *args, **kwargs):
        seen.append(kwargs["config"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DiffusionForcing, "sample", spy)
    default_level = SamplingConfig().stabilization_level
    _sample(saved_model, tmp_path / "c.npy", "--sample.steps", "2", "--sample.stabilization_level", str(default_level))
    _sample(saved_model, tmp_path / "d.npy", "--sample.steps", "2")
    assert seen[0].stabilization_level == default_level and seen[1].stabilization_level == 0.1
    assert seen[0].steps == seen[1].steps == 2


def test_custom_scheduling_matrix_from_a_file(saved_model, tmp_path):
    (tmp_path / "m.csv").write_text("2,2\n1,2\n0,1\n0,0\n")
    out = _sample(saved_model, tmp_path / "s.npy", "--sample.scheduling", str(tmp_path / "m.csv"), "--sample.chunk_size", "2")
    model, _ = load_model(saved_model)
    m = torch.tensor([[2, 2], [1, 2], [0, 1], [0, 0]])
    want = model.sample(batch_size=1, horizon=6, seed=0, config=SamplingConfig(scheduling=m, steps=2, chunk_size=2, stabilization_level=0.1))
    assert np.array_equal(out, want.numpy())
    assert main(["schedule", "show", str(tmp_path / "m.csv")]) == 0


def test_dforce_train_with_the_same_seed_gives_the_same_model(tmp_path, capsys):
    args = ["model.width=16", "model.depth=1", "model.heads=2", "model.window=8", "train.max_steps=2", "train.batch_size=2",
            "train.precision=32-true", "train.progress=false", "train.logger=none", "train.accelerator=cpu",
            "data.lorenz_trajectories=1", "data.lorenz_steps=100"]
    torch.manual_seed(123)  # the global RNG state before the command must not matter
    assert main(["train", *args, "--out_dir", str(tmp_path / "a")]) == 0
    torch.randn(100)
    assert main(["train", *args, "--out_dir", str(tmp_path / "b")]) == 0
    a = (tmp_path / "a" / "model" / "model.safetensors").read_bytes()
    b = (tmp_path / "b" / "model" / "model.safetensors").read_bytes()
    assert a == b
    # a finished run is not exported over without --overwrite; with it, only dforce's files are replaced
    (tmp_path / "a" / "model" / "my_notes.txt").write_text("mine")
    assert main(["train", *args, "--out_dir", str(tmp_path / "a")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", *args, "--out_dir", str(tmp_path / "a"), "--overwrite"]) == 0
    assert (tmp_path / "a" / "model" / "my_notes.txt").read_text() == "mine"
    load_model(tmp_path / "a" / "model")


def test_export_never_destroys_user_files(tmp_path):
    user = tmp_path / "out"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("notes")
    with pytest.raises(FileExistsError, match="files dforce did not write"):
        export_model(tiny_model(), user)
    assert (user / "notes.txt").read_text() == "notes" and (user / "sub").is_dir()
    f = tmp_path / "file"
    f.write_text("precious")
    with pytest.raises(FileExistsError, match="existing file"):
        export_model(tiny_model(), f)
    assert f.read_text() == "precious" and not list(tmp_path.glob(".*"))
    # a model folder with a user file: --overwrite replaces only the model's files
    path = export_model(tiny_model(0), tmp_path / "m")
    (path / "README.md").write_text("my model card")
    export_model(tiny_model(1), path, overwrite=True)
    assert (path / "README.md").read_text() == "my model card"
    loaded, _ = load_model(path)
    assert torch.equal(loaded.backbone.embed.weight, tiny_model(1).backbone.embed.weight)
    # a torn replacement (new weights, old config) is detected by the checksum
    cfg = (path / "config.json").read_text()
    export_model(tiny_model(2), path, overwrite=True)
    (path / "config.json").write_text(cfg)
    with pytest.raises(ValueError, match="checksum"):
        load_model(path)


def test_forecast_train_refuses_a_user_folder_and_keeps_it(tmp_path, capsys):
    import pandas as pd

    df = pd.DataFrame({"time": pd.date_range("2022-01-01", periods=40, freq="D").strftime("%Y-%m-%d"),
                       "a": np.sin(np.arange(40.0)), "b": np.cos(np.arange(40.0))})
    df.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "DIR"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("user notes")
    argv = ["forecast", "train", "--data.csv", str(tmp_path / "d.csv"), "--model.context_length", "4", "--model.prediction_length", "2",
            "--model.max_steps", "1", "--model.width", "8", "--model.depth", "1", "--model.heads", "2", "--data.test_windows", "2",
            "--model.precision", "32-true", "--out", str(out)]
    for extra in ([], ["--overwrite"]):
        assert main(argv + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error:") and "files dforce did not write" in err[-1]
        assert (out / "notes.txt").read_text() == "user notes" and (out / "sub").is_dir()
    assert main(argv[:-1] + [str(tmp_path / "new")]) == 0
    assert json.loads((tmp_path / "new" / "config.json").read_text())["files"] == ["data.json"]
    assert main(argv[:-1] + [str(tmp_path / "new")]) == 2  # an earlier model: needs --overwrite
    assert main(argv[:-1] + [str(tmp_path / "new"), "--overwrite"]) == 0


def test_debug_shows_the_traceback_and_threads_are_set(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DFORCE_DEBUG", raising=False)
    assert main(["sample", str(tmp_path / "none"), "--horizon", "2"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("error:")
    assert main(["sample", str(tmp_path / "none"), "--horizon", "2", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("error:")
    os.environ.pop("DFORCE_DEBUG", None)
    before = torch.get_num_threads()
    try:
        assert main(["schedule", "show", "pyramid", "--tokens", "2", "--steps", "2", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("DFORCE_THREADS", "2")
        assert main(["schedule", "show", "pyramid", "--tokens", "2", "--steps", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_default_threads_do_not_oversubscribe(monkeypatch):
    from dforce.cli.common import default_threads

    monkeypatch.delenv("DFORCE_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert default_threads() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert default_threads() == 8


def test_overwrite_replaces_an_output_file(saved_model, tmp_path, capsys):
    out = tmp_path / "s.npy"
    np.save(out, np.zeros(1))
    assert main(["sample", str(saved_model), "--horizon", "2", "--sample.steps", "1", "--out", str(out)]) == 2
    assert np.load(out).shape == (1,)
    assert main(["sample", str(saved_model), "--horizon", "2", "--sample.steps", "1", "--out", str(out), "--overwrite"]) == 0
    assert np.load(out).shape == (1, 2, 2)
    assert not [p for p in tmp_path.iterdir() if "dforce-tmp" in p.name]
