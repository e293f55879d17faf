"""The table of bad inputs: every verb of the CLI and the Python API, every file type dforce reads.

Used by ``tests/test_bad_inputs.py`` (one test per case) and ``benchmarks/reliability.py`` (the
counts in ``benchmarks/results/reliability.json``). Each case runs in a fresh copy of a template
folder (good models, checkpoints and data next to broken ones) with that copy as the working
directory, and asserts:

- the error type (API) or the exit status 2 with exactly one ``error: ...`` line and no
  traceback (CLI);
- that the message holds every ``needles`` entry (case-insensitive): the problem and the fix;
- that the message names the file (``file``), where the input is a file;
- that no file in the copy changed, appeared or disappeared.

Cases are grouped by verb.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch



@dataclass
class Case:
    verb: str
    name: str
    argv: Optional[list[str]] = None  # CLI: arguments of `dforce`, "{r}" = the work folder
    call: Optional[Callable[[Path], Any]] = None  # API: called with the work folder
    error: type = ValueError  # API: expected exception type
    needles: tuple[str, ...] = ()
    file: Optional[str] = None  # a path (relative to the work folder) the message must name

    @property
    def id(self) -> str:
        return f"{self.verb}: {self.name}"


@dataclass
class Outcome:
    status: str  # clear_error | traceback | silent_wrong | unclear_message | user_files_changed
    message: str = ""
    detail: str = ""
    changed: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- template
def _tiny_model(dim=2, frame_stack=1, window=8):
    from dforce import DiffusionForcing, Transformer

    torch.manual_seed(0)
    return DiffusionForcing(Transformer(dim=dim * frame_stack, width=16, depth=1, heads=2), window=window, frame_stack=frame_stack)


def _export(model, path, **extra):
    from dforce.training import export_model

    return export_model(model, path, extra=extra)


def _edit_config(path: Path, fn) -> None:
    cfg = json.loads((path / "config.json").read_text())
    fn(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def build_template(root: Path) -> Path:
    """Write the template folder (about 1 MB) and return it."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    stats = dict(mean=[0.0, 0.0], std=[1.0, 1.0], sample={"steps": 4, "scheduling": "autoregressive"})
    model = _tiny_model()
    good = _export(model, root / "model", **stats)
    _export(_tiny_model(frame_stack=2), root / "model_fs2", **stats)
    bm = root / "bad_models"
    bm.mkdir()
    weights = (good / "model.safetensors").read_bytes()

    def variant(name: str) -> Path:
        shutil.copytree(good, bm / name)
        return bm / name

    (variant("truncated") / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (variant("random") / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    (variant("pickled") / "model.safetensors").write_bytes(pickle.dumps({"w": _Evil()}))
    (variant("empty_weights") / "model.safetensors").write_bytes(b"")
    (variant("cfg_invalid_json") / "config.json").write_text('{"format": "dforce-model-1", "model": ')
    (variant("cfg_binary") / "config.json").write_bytes(b"\xff\xfe\x00\x01garbage")
    (variant("cfg_list") / "config.json").write_text("[1, 2, 3]")
    (variant("cfg_empty") / "config.json").write_text("")

    def set_format(c):
        c["format"] = "other-1"

    def drop_model(c):
        c.pop("model")

    def width(c):
        c["model"]["backbone"]["kwargs"]["width"] = 32

    def backbone(c):
        c["model"]["backbone"]["name"] = "resnet"

    def kwargs(c):
        c["model"]["backbone"]["kwargs"]["bogus"] = 1

    def window(c):
        c["model"]["window"] = 0

    for name, fn in (("cfg_format", set_format), ("cfg_no_model", drop_model), ("cfg_width", width),
                     ("cfg_backbone", backbone), ("cfg_kwargs", kwargs), ("cfg_window", window)):
        _edit_config(variant(name), fn)
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        m = _tiny_model()
        with torch.no_grad():
            m.backbone.embed.weight[0, 0] = value
        _export(m, bm / name, **stats)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["backbone.embed.weight"][0, 0] += 1.0
    save_file(state, str(variant("tampered") / "model.safetensors"))
    (variant("no_config") / "config.json").unlink()
    (variant("no_weights") / "model.safetensors").unlink()
    (bm / "empty_dir").mkdir()
    (bm / "a_file").write_text("not a model")

    # outputs that exist, a user's folder
    (root / "notes.txt").write_text("user notes")
    np.save(root / "existing.npy", np.zeros(3))
    (root / "existing.png").write_bytes(b"\x89PNG user image")
    (root / "existing.csv").write_text("a,b\n1,2\n")
    (root / "existing.json").write_text("{}")
    (root / "existing.gif").write_bytes(b"GIF89a")
    (root / "existing.npz").write_bytes(b"PK user archive")
    (root / "userdir" / "sub").mkdir(parents=True)
    (root / "userdir" / "notes.txt").write_text("keep")
    (root / "userdir" / "sub" / "x.txt").write_text("keep")
    (root / "outdir").mkdir()

    # contexts
    rng = np.random.default_rng(0)
    ctx = root / "ctx"
    ctx.mkdir()
    np.save(ctx / "good.npy", rng.normal(size=(4, 2)).astype(np.float32))
    (ctx / "text.csv").write_text("1,2\n3,abc\n5,6\n")
    (ctx / "empty.csv").write_text("")
    (ctx / "three_cols.csv").write_text("1,2,3\n4,5,6\n")
    (ctx / "nan.csv").write_text("1,2\nnan,3\n")
    arr = rng.normal(size=(4, 2)).astype(np.float32)
    arr[1, 1] = np.nan
    np.save(ctx / "nan.npy", arr)
    np.save(ctx / "object.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.savez(ctx / "two.npz", a=np.zeros((4, 2)), b=np.zeros((4, 2)))
    np.save(ctx / "four_d.npy", np.zeros((1, 1, 4, 2), np.float32))
    np.save(ctx / "three_dims.npy", np.zeros((4, 3), np.float32))
    full = (ctx / "good.npy").read_bytes()
    (ctx / "truncated.npy").write_bytes(full[:100])
    (ctx / "random.npy").write_bytes(rng.bytes(256))
    (ctx / "frames.txt").write_text("1 2\n3 4\n")
    np.save(ctx / "strings.npy", np.array(["a", "b"]))
    np.save(ctx / "odd.npy", np.zeros((3, 2), np.float32))
    np.save(ctx / "no_frames.npy", np.zeros((0, 2), np.float32))
    (ctx / "a_dir.npy").mkdir()

    # scheduling matrices
    mx = root / "matrix"
    mx.mkdir()
    (mx / "rises.csv").write_text("2,2\n1,2\n2,1\n0,0\n")
    (mx / "float.csv").write_text("2,2\n1.5,2\n0,0\n")
    (mx / "first_row.csv").write_text("2,1\n1,0\n0,0\n")
    (mx / "last_row.csv").write_text("2,2\n1,1\n0,1\n")
    (mx / "header.csv").write_text("t0,t1\n2,2\n0,0\n")
    (mx / "negative.csv").write_text("2,2\n-1,0\n0,0\n")
    np.save(mx / "object.npy", np.array([[2, None]], dtype=object), allow_pickle=True)
    np.save(mx / "one_d.npy", np.array([2, 1, 0]))
    (mx / "good.csv").write_text("2,2\n1,2\n0,1\n0,0\n")

    # training data
    dd = root / "data"
    dd.mkdir()
    np.save(dd / "good.npy", rng.normal(size=(200, 2)).astype(np.float32))
    np.save(dd / "one_d.npy", np.zeros(200, np.float32))
    d = rng.normal(size=(200, 2)).astype(np.float32)
    d[10, 1] = np.nan
    np.save(dd / "nan.npy", d)
    np.save(dd / "object.npy", np.array([[1, "x"]], dtype=object), allow_pickle=True)
    (dd / "truncated.npy").write_bytes((dd / "good.npy").read_bytes()[:90])
    np.save(dd / "short.npy", np.zeros((5, 2), np.float32))
    np.save(dd / "four_d.npy", np.zeros((2, 2, 50, 2), np.float32))
    (dd / "text.csv").write_text("a,b\n1,2\n3,oops\n5,6\n" + "".join(f"{i},{i}\n" for i in range(40)))
    (dd / "empty.csv").write_text("")
    (dd / "nan.csv").write_text("a,b\n1,2\n,3\n" + "".join(f"{i},{i}\n" for i in range(40)))
    (dd / "all_text.csv").write_text("a,b\nx,y\nz,w\n")
    (dd / "series.txt").write_text("1,2\n")
    (dd / "binary.csv").write_bytes(b"\x00\xff\xfe" * 50)
    (dd / "bad.yaml").write_text("model: {width: [1, 2\n")
    (dd / "unknown_key.yaml").write_text("model: {widht: 32}\n")
    (dd / "not_a_mapping.yaml").write_text("- 1\n- 2\n")

    # forecasting data and checkpoint
    import pandas as pd

    t = pd.date_range("2022-01-01", periods=60, freq="D")
    df = pd.DataFrame({"time": t.strftime("%Y-%m-%d"), "a": np.sin(np.arange(60) / 4) + 5, "b": np.cos(np.arange(60) / 4) + 5})
    fd = root / "fc_data"
    fd.mkdir()
    df.to_csv(fd / "all.csv", index=False)
    df.iloc[:40].to_csv(fd / "hist.csv", index=False)
    text = df.copy().astype({"a": object})
    text.loc[7, "a"] = "n/a?"
    text.to_csv(fd / "text.csv", index=False)
    text.iloc[:40].to_csv(fd / "hist_text.csv", index=False)
    (fd / "empty.csv").write_text("")
    (fd / "binary.csv").write_bytes(b"\x00\xff\xfe" * 50)
    (fd / "bad_dates.csv").write_text("time,a\nnot-a-date,1\nalso-not,2\n")
    from dforce.timeseries.forecaster import Forecaster, ForecasterConfig

    fc = Forecaster(ForecasterConfig(context_length=4, prediction_length=2, width=8, depth=1, heads=2, max_steps=1, batch_size=2,
                                     steps=2, precision="32-true", calendar=False))
    from dforce.timeseries.data import read_csv

    fc.fit(read_csv(fd / "all.csv"))
    fc.save(root / "fc")

    # a resumable run whose last.ckpt is a malicious pickle, another with a truncated one
    for name, data in (("evil_run", pickle.dumps({"x": _Evil()})), ("trunc_run", b"PK\x03\x04 truncated")):
        (root / name / "checkpoints").mkdir(parents=True)
        (root / name / "checkpoints" / "last.ckpt").write_bytes(data)
    # a video model, and a run folder that holds a file where model/ goes
    from dforce.video.data import SpriteConfig
    from dforce.video.experiment import build_video_model

    torch.manual_seed(0)
    _export(build_video_model("df", 32, 4, "tiny"), root / "video_model", sprites=SpriteConfig().to_dict(), method="df")
    (root / "run_with_file").mkdir()
    (root / "run_with_file" / "model").write_text("user file named model")
    (root / "plan_dir").mkdir()
    (root / "plan_dir" / "notes.txt").write_text("keep")
    np.savez(root / "plan.npz", observations=np.zeros((10, 4)), actions=np.zeros((10, 2)))
    return root


# ----------------------------------------------------------------------------------- the cases
def _cli(verb, name, argv, needles, file=None):
    return Case(verb, name, argv=argv, needles=tuple(needles), file=file)


def _api(verb, name, call, error, needles, file=None):
    return Case(verb, name, call=call, error=error, needles=tuple(needles), file=file)


REEXPORT = "re-export"
BM = "bad_models"


def _sample_cases() -> list[Case]:
    s = lambda *a: ["sample", "model", "--horizon", "4", "--sample.steps", "2", *a]  # noqa: E731
    c = [
        _cli("sample", "model folder missing", ["sample", "nope", "--horizon", "4"], ["does not exist", "pass the model/ folder"], "nope"),
        _cli("sample", "model path is a file", ["sample", f"{BM}/a_file", "--horizon", "4"], ["is a file", "pass the model folder"], f"{BM}/a_file"),
        _cli("sample", "empty folder", ["sample", f"{BM}/empty_dir", "--horizon", "4"], ["not an exported dforce model", "missing config.json"], f"{BM}/empty_dir"),
        _cli("sample", "config.json missing", ["sample", f"{BM}/no_config", "--horizon", "4"], ["missing config.json", "dforce train"], f"{BM}/no_config"),
        _cli("sample", "weights missing", ["sample", f"{BM}/no_weights", "--horizon", "4"], ["missing model.safetensors", "dforce train"], f"{BM}/no_weights"),
    ]
    for name, needles in (
        ("truncated", ["not a readable safetensors file", REEXPORT]),
        ("random", ["not a readable safetensors file", REEXPORT]),
        ("pickled", ["not a readable safetensors file", REEXPORT]),
        ("empty_weights", ["not a readable safetensors file", REEXPORT]),
    ):
        c.append(_cli("sample", f"weights {name}", ["sample", f"{BM}/{name}", "--horizon", "4"], ["model.safetensors", REEXPORT],
                      f"{BM}/{name}/model.safetensors"))
    c += [
        _cli("sample", "config not JSON", ["sample", f"{BM}/cfg_invalid_json", "--horizon", "4"], ["not valid JSON", "re-export"], f"{BM}/cfg_invalid_json/config.json"),
        _cli("sample", "config binary", ["sample", f"{BM}/cfg_binary", "--horizon", "4"], ["not a text JSON file", REEXPORT], f"{BM}/cfg_binary/config.json"),
        _cli("sample", "config is a list", ["sample", f"{BM}/cfg_list", "--horizon", "4"], ["JSON object", REEXPORT], f"{BM}/cfg_list/config.json"),
        _cli("sample", "config empty", ["sample", f"{BM}/cfg_empty", "--horizon", "4"], ["not valid JSON", REEXPORT], f"{BM}/cfg_empty/config.json"),
        _cli("sample", "config other format", ["sample", f"{BM}/cfg_format", "--horizon", "4"], ["format 'other-1'", REEXPORT], f"{BM}/cfg_format/config.json"),
        _cli("sample", "config without model", ["sample", f"{BM}/cfg_no_model", "--horizon", "4"], ["no 'model' section", REEXPORT], f"{BM}/cfg_no_model/config.json"),
        _cli("sample", "config edited width", ["sample", f"{BM}/cfg_width", "--horizon", "4"], ["do not fit", "config was edited"], f"{BM}/cfg_width/config.json"),
        _cli("sample", "config unknown backbone", ["sample", f"{BM}/cfg_backbone", "--horizon", "4"], ["unknown backbone 'resnet'", REEXPORT], f"{BM}/cfg_backbone/config.json"),
        _cli("sample", "config unknown kwarg", ["sample", f"{BM}/cfg_kwargs", "--horizon", "4"], ["bogus", REEXPORT], f"{BM}/cfg_kwargs/config.json"),
        _cli("sample", "config window 0", ["sample", f"{BM}/cfg_window", "--horizon", "4"], ["window", REEXPORT], f"{BM}/cfg_window/config.json"),
        _cli("sample", "NaN weights", ["sample", f"{BM}/nan", "--horizon", "4"], ["NaN or inf weights", "retrain"], f"{BM}/nan/model.safetensors"),
        _cli("sample", "inf weights", ["sample", f"{BM}/inf", "--horizon", "4"], ["NaN or inf weights", "retrain"], f"{BM}/inf/model.safetensors"),
        _cli("sample", "weights modified after export", ["sample", f"{BM}/tampered", "--horizon", "4"], ["checksum", REEXPORT], f"{BM}/tampered/model.safetensors"),
        _cli("sample", "horizon 0", s("--horizon", "0"), ["--horizon must be >= 1"]),
        _cli("sample", "horizon negative", s("--horizon", "-3"), ["--horizon must be >= 1"]),
        _cli("sample", "horizon not a number", s("--horizon", "ten"), ["horizon", "expected a <class 'int'>", "--help"]),
        _cli("sample", "horizon missing", ["sample", "model"], ["horizon", "required", "--help"]),
        _cli("sample", "horizon not a multiple of frame_stack", ["sample", "model_fs2", "--horizon", "3"], ["frame_stack=2", "multiple"]),
        _cli("sample", "num_samples 0", s("--num_samples", "0"), ["--num_samples must be >= 1"]),
        _cli("sample", "num_samples negative", s("--num_samples", "-2"), ["--num_samples must be >= 1"]),
        _cli("sample", "precision fp16", s("--precision", "fp16"), ["--precision must be fp32 or bf16"]),
        _cli("sample", "unknown option", s("--bogus", "1"), ["bogus", "--help"]),
        _cli("sample", "seed not a number", s("--seed", "x"), ["seed", "--help"]),
        _cli("sample", "out exists", s("--out", "existing.npy"), ["already exists", "--overwrite"], "existing.npy"),
        _cli("sample", "out is a folder", s("--out", "outdir"), ["is a folder", "file name"], "outdir"),
        _cli("sample", "out not .npy", s("--out", "x.csv"), ["must end in .npy"], "x.csv"),
        _cli("sample", "out under a file", s("--out", "notes.txt/x.npy"), ["is a file, not a folder", "choose another path"], "notes.txt"),
        _cli("sample", "plot exists", s("--plot", "existing.png"), ["already exists", "--overwrite"], "existing.png"),
        _cli("sample", "plot not png", s("--plot", "p.jpg"), ["must end in .png"], "p.jpg"),
        _cli("sample", "steps 0", s("--sample.steps", "0"), ["steps must be an integer >= 1"]),
        _cli("sample", "unknown schedule", s("--sample.scheduling", "pyramidal"), ["unknown scheduling 'pyramidal'", "choose one of"]),
        _cli("sample", "eta negative", s("--sample.eta", "-1"), ["eta must lie in [0, 1]"]),
        _cli("sample", "history unknown", s("--sample.history", "bogus"), ["unknown history 'bogus'", "choose one of"]),
        _cli("sample", "stabilization_level 1.5", s("--sample.stabilization_level", "1.5"), ["stabilization_level must lie in [0, 1)"]),
        _cli("sample", "context_level negative", s("--sample.context_level", "-0.1"), ["context_level must lie in [0, 1)"]),
        _cli("sample", "chunk_size 0", s("--sample.chunk_size", "0"), ["chunk_size must be >= 1"]),
        _cli("sample", "history_len negative", s("--sample.history_len", "-2"), ["history_len must be >= 0"]),
        _cli("sample", "uncertainty_scale negative", s("--sample.uncertainty_scale", "-1"), ["uncertainty_scale must be >= 0"]),
        _cli("sample", "level_spacing unknown", s("--sample.level_spacing", "log"), ["level_spacing 'log'", "choose"]),
        _cli("sample", "matrix file missing", s("--sample.scheduling", "matrix/none.csv"), ["does not exist", ".npy or .csv"], "matrix/none.csv"),
        _cli("sample", "matrix rises", s("--sample.scheduling", "matrix/rises.csv"), ["non-increasing", "row"], "matrix/rises.csv"),
        _cli("sample", "matrix non-integer", s("--sample.scheduling", "matrix/float.csv"), ["integer levels"], "matrix/float.csv"),
        _cli("sample", "matrix first row", s("--sample.scheduling", "matrix/first_row.csv"), ["first row must be pure noise"], "matrix/first_row.csv"),
        _cli("sample", "matrix last row", s("--sample.scheduling", "matrix/last_row.csv"), ["last row must be clean"], "matrix/last_row.csv"),
        _cli("sample", "matrix with header", s("--sample.scheduling", "matrix/header.csv"), ["not a readable scheduling matrix", "without a header"], "matrix/header.csv"),
        _cli("sample", "matrix negative", s("--sample.scheduling", "matrix/negative.csv"), ["levels must lie in"], "matrix/negative.csv"),
        _cli("sample", "matrix pickled", s("--sample.scheduling", "matrix/object.npy"), ["not a readable scheduling matrix", "integer levels"], "matrix/object.npy"),
        _cli("sample", "matrix 1-D", s("--sample.scheduling", "matrix/one_d.npy"), ["2-D numeric matrix"], "matrix/one_d.npy"),
        _cli("sample", "matrix steps disagree", s("--sample.scheduling", "matrix/good.csv", "--sample.steps", "5"), ["levels up to 2", "--sample.steps 2"]),
        _cli("sample", "context missing", s("--context", "ctx/none.npy"), ["does not exist", ".npy, .npz or .csv"], "ctx/none.npy"),
        _cli("sample", "context is a folder", s("--context", "ctx/a_dir.npy"), ["is a folder", "give a .npy"], "ctx/a_dir.npy"),
        _cli("sample", "context .txt", s("--context", "ctx/frames.txt"), ["unsupported file type .txt", "use .npy, .npz or .csv"], "ctx/frames.txt"),
        _cli("sample", "context csv text cell", s("--context", "ctx/text.csv"), ["'abc'", "not a number", "fix the cell"], "ctx/text.csv"),
        _cli("sample", "context csv empty", s("--context", "ctx/empty.csv"), ["is empty", "one row per frame"], "ctx/empty.csv"),
        _cli("sample", "context csv 3 columns", s("--context", "ctx/three_cols.csv"), ["3 values per frame", "expects 2"], "ctx/three_cols.csv"),
        _cli("sample", "context csv NaN", s("--context", "ctx/nan.csv"), ["NaN", "fill or drop"], "ctx/nan.csv"),
        _cli("sample", "context npy NaN", s("--context", "ctx/nan.npy"), ["NaN", "fill or drop"], "ctx/nan.npy"),
        _cli("sample", "context npy pickled objects", s("--context", "ctx/object.npy"), ["pickled", "numpy.save"], "ctx/object.npy"),
        _cli("sample", "context npz two arrays", s("--context", "ctx/two.npz"), ["holds 2 arrays", "exactly one array"], "ctx/two.npz"),
        _cli("sample", "context 4-D", s("--context", "ctx/four_d.npy"), ["has shape (1, 1, 4, 2)", "expected [frames, 2]"], "ctx/four_d.npy"),
        _cli("sample", "context wrong width", s("--context", "ctx/three_dims.npy"), ["3 values per frame", "expects 2"], "ctx/three_dims.npy"),
        _cli("sample", "context truncated npy", s("--context", "ctx/truncated.npy"), ["not a readable .npy file", "numpy.save"], "ctx/truncated.npy"),
        _cli("sample", "context random bytes", s("--context", "ctx/random.npy"), ["not a readable .npy file", "numpy.save"], "ctx/random.npy"),
        _cli("sample", "context strings", s("--context", "ctx/strings.npy"), ["numeric", "save"], "ctx/strings.npy"),
        _cli("sample", "context no frames", s("--context", "ctx/no_frames.npy"), ["no frames", "at least one row"], "ctx/no_frames.npy"),
        _cli("sample", "context not a multiple of frame_stack", ["sample", "model_fs2", "--horizon", "4", "--context", "ctx/odd.npy"],
             ["frame_stack=2", "drop the first 1 frame"], "ctx/odd.npy"),
        _cli("sample", "threads 0", s("--threads", "0"), ["--threads must be >= 1"]),
        _cli("sample", "threads not a number", s("--threads", "many"), ["--threads expects an integer"]),
        _cli("sample", "video model", ["sample", "video_model", "--horizon", "4"], ["vector frames only", "dforce rollout"]),
    ]
    return c


def _train_cases() -> list[Case]:
    base = ["train", "model.width=16", "model.depth=1", "model.heads=2", "model.window=8", "train.max_steps=1", "train.batch_size=2",
            "data.lorenz_trajectories=1", "data.lorenz_steps=50", "--out_dir", "run"]
    t = lambda *a: [*base, *a]  # noqa: E731
    return [
        _cli("train", "config file missing", ["train", "nope.yaml"], ["does not exist", "give a YAML or JSON file"], "nope.yaml"),
        _cli("train", "config invalid YAML", ["train", "data/bad.yaml"], ["not valid YAML at line 2", "fix the file"], "data/bad.yaml"),
        _cli("train", "config unknown key", ["train", "data/unknown_key.yaml"], ["widht", "--help"]),
        _cli("train", "config not a mapping", ["train", "data/not_a_mapping.yaml"], ["must hold a mapping", "fix the file"], "data/not_a_mapping.yaml"),
        _cli("train", "config is binary", ["train", "--config", "data/binary.csv"], ["not a text file"], "data/binary.csv"),
        _cli("train", "unknown override", t("model.widht=3"), ["widht", "--help"]),
        _cli("train", "width not a number", t("model.width=wide"), ["model.width", "--help"]),
        _cli("train", "data.source unknown", t("data.source=parquet"), ["unknown data.source 'parquet'", "choose lorenz, npy or csv"]),
        _cli("train", "npy without path", t("data.source=npy"), ["needs data.path"]),
        _cli("train", "data file missing", t("data.source=npy", "data.path=data/none.npy"), ["does not exist", "give a .npy"], "data/none.npy"),
        _cli("train", "npy source with a txt file", t("data.source=npy", "data.path=data/series.txt"), ["reads .npy or .npz", "data.source=csv"], "data/series.txt"),
        _cli("train", "npy 1-D", t("data.source=npy", "data.path=data/one_d.npy"), ["expected an array [L, D] or [M, L, D]"], "data/one_d.npy"),
        _cli("train", "npy 4-D", t("data.source=npy", "data.path=data/four_d.npy"), ["expected an array [L, D] or [M, L, D]"], "data/four_d.npy"),
        _cli("train", "npy NaN", t("data.source=npy", "data.path=data/nan.npy"), ["missing / non-finite", "fill or drop"], "data/nan.npy"),
        _cli("train", "npy pickled objects", t("data.source=npy", "data.path=data/object.npy"), ["pickled", "numeric array"], "data/object.npy"),
        _cli("train", "npy truncated", t("data.source=npy", "data.path=data/truncated.npy"), ["not a readable .npy file", "numpy.save"], "data/truncated.npy"),
        _cli("train", "series shorter than window", t("data.source=npy", "data.path=data/short.npy"), ["shorter", "lower model.window"]),
        _cli("train", "csv non-numeric cell", t("data.source=csv", "data.path=data/text.csv"), ["'oops'", "not a number", "fix the cell"], "data/text.csv"),
        _cli("train", "csv empty", t("data.source=csv", "data.path=data/empty.csv"), ["is empty", "header row"], "data/empty.csv"),
        _cli("train", "csv NaN", t("data.source=csv", "data.path=data/nan.csv"), ["missing / non-finite", "fill or drop"], "data/nan.csv"),
        _cli("train", "csv no numbers", t("data.source=csv", "data.path=data/all_text.csv"), ["no numeric columns", "data.columns"], "data/all_text.csv"),
        _cli("train", "csv binary", t("data.source=csv", "data.path=data/binary.csv"), ["binary.csv"], "data/binary.csv"),
        _cli("train", "csv unknown column", t("data.source=csv", "data.path=data/text.csv", "--data.columns", '["zz"]'), ["data.columns ['zz']", "its columns are"]),
        _cli("train", "width 0", t("model.width=0"), ["model.width must be >= 1"]),
        _cli("train", "depth 0", t("model.depth=0"), ["model.depth must be >= 1"]),
        _cli("train", "heads 0", t("model.heads=0"), ["model.heads must be >= 1"]),
        _cli("train", "width not divisible by heads", t("model.heads=3"), ["divisible by model.heads=3"]),
        _cli("train", "window 0", t("model.window=0"), ["model.window must be >= 1"]),
        _cli("train", "history_len -2", t("model.history_len=-2"), ["model.history_len must lie in"]),
        _cli("train", "dropout 1.5", t("model.dropout=1.5"), ["model.dropout must lie in [0, 1)"]),
        _cli("train", "parametrization unknown", t("model.parametrization=score"), ["unknown parametrization 'score'"]),
        _cli("train", "noise schedule unknown", t("model.noise_schedule=quadratic"), ["quadratic"]),
        _cli("train", "training noise unknown", t("model.training_noise=random"), ["unknown training noise levels 'random'", "choose one of"]),
        _cli("train", "max_steps 0", t("train.max_steps=0"), ["max_steps must be >= 1"]),
        _cli("train", "batch_size 0", t("train.batch_size=0"), ["batch_size must be >= 1"]),
        _cli("train", "lr 0", t("train.lr=0"), ["lr must be > 0"]),
        _cli("train", "logger unknown", t("train.logger=mlflow"), ["unknown logger 'mlflow'", "choose one of"]),
        _cli("train", "precision unknown", t("train.precision=fp8"), ["unknown precision 'fp8'", "use 'auto', 'bf16-mixed' or '32-true'"]),
        _cli("train", "ema_decay 1", t("train.ema_decay=1.0"), ["ema_decay must lie in [0, 1)"]),
        _cli("train", "checkpoint_every 0", t("train.checkpoint_every=0"), ["checkpoint_every must be >= 1"]),
        _cli("train", "sample.scheduling unknown", t("sample.scheduling=pyramidal"), ["unknown scheduling 'pyramidal'", "choose one of"]),
        _cli("train", "sample.steps 0", t("sample.steps=0"), ["steps must be an integer >= 1"]),
        _cli("train", "sample.eta negative", t("sample.eta=-0.5"), ["eta must lie in [0, 1]"]),
        _cli("train", "out_dir is a file", [*base[:-2], "--out_dir", "notes.txt"], ["is an existing file", "give a folder"], "notes.txt"),
        _cli("train", "model/ is a user file", [*base[:-2], "--out_dir", "run_with_file"], ["is an existing file", "choose a new folder"], "run_with_file/model"),
        _cli("train", "model/ exists", [*base[:-2], "--out_dir", "."], ["already holds a dforce model", "--overwrite"], "model"),
        _cli("train", "checkpoint to resume is a pickle", [*base[:-2], "--out_dir", "evil_run"], ["cannot be read safely", "new out_dir"], "evil_run/checkpoints/last.ckpt"),
        _cli("train", "checkpoint to resume is truncated", [*base[:-2], "--out_dir", "trunc_run"], ["cannot be read safely", "new out_dir"], "trunc_run/checkpoints/last.ckpt"),
        _cli("train", "lorenz_steps 0", t("data.lorenz_steps=0"), ["data.lorenz_steps must be >= 1"]),
    ]


def _forecast_cases() -> list[Case]:
    tr = ["forecast", "train", "--data.csv", "fc_data/all.csv", "--model.context_length", "4", "--model.prediction_length", "2",
          "--model.max_steps", "1", "--model.width", "8", "--model.depth", "1", "--model.heads", "2", "--data.test_windows", "2"]
    t = lambda *a: [*tr, *a]  # noqa: E731
    pr = ["forecast", "predict", "fc", "--input", "fc_data/hist.csv", "--num_samples", "2", "--steps", "2"]
    p = lambda *a: [*pr, *a]  # noqa: E731
    ev = ["forecast", "eval", "fc", "--num_samples", "2", "--steps", "2", "--data.csv", "fc_data/all.csv", "--data.test_windows", "2"]
    e = lambda *a: [*ev, *a]  # noqa: E731
    return [
        _cli("forecast train", "out is a user folder (data loss in issue 13)", t("--out", "userdir"), ["files dforce did not write", "new or empty folder"], "userdir"),
        _cli("forecast train", "out user folder even with --overwrite", t("--out", "userdir", "--overwrite"), ["files dforce did not write", "new or empty folder"], "userdir"),
        _cli("forecast train", "out is a user file", t("--out", "notes.txt"), ["is an existing file", "new folder name"], "notes.txt"),
        _cli("forecast train", "out is an earlier model", t("--out", "fc"), ["already holds a dforce model", "--overwrite"], "fc"),
        _cli("forecast train", "no data", ["forecast", "train", "--out", "new"], ["no data", "data.csv"]),
        _cli("forecast train", "dataset and csv", t("--data.dataset", "tourism", "--out", "new"), ["either data.dataset or data.csv"]),
        _cli("forecast train", "unknown dataset", [*tr[:2], "--data.dataset", "m4", "--out", "new"], ["unknown dataset 'm4'", "choose one of"]),
        _cli("forecast train", "csv missing", [*tr[:2], "--data.csv", "fc_data/none.csv", "--out", "new"], ["does not exist", "CSV file"], "fc_data/none.csv"),
        _cli("forecast train", "csv non-numeric cell", [*tr[:2], "--data.csv", "fc_data/text.csv", "--out", "new", *tr[4:]], ["'n/a?'", "not a number", "fix the cell"], "fc_data/text.csv"),
        _cli("forecast train", "csv empty", [*tr[:2], "--data.csv", "fc_data/empty.csv", "--out", "new"], ["is empty", "header row"], "fc_data/empty.csv"),
        _cli("forecast train", "csv binary", [*tr[:2], "--data.csv", "fc_data/binary.csv", "--out", "new"], ["binary.csv"], "fc_data/binary.csv"),
        _cli("forecast train", "csv bad dates", [*tr[:2], "--data.csv", "fc_data/bad_dates.csv", "--out", "new"], ["time column", "as dates"], "fc_data/bad_dates.csv"),
        _cli("forecast train", "context_length 0", t("--model.context_length", "0", "--out", "new"), ["context_length and prediction_length must be >= 1"]),
        _cli("forecast train", "mode unknown", t("--model.mode", "local", "--out", "new"), ["mode must be 'joint' or 'global'"]),
        _cli("forecast train", "scheduling unknown", t("--model.scheduling", "pyramidal", "--out", "new"), ["scheduling must be autoregressive"]),
        _cli("forecast train", "max_steps 0", t("--model.max_steps", "0", "--out", "new"), ["model.max_steps must be >= 1"]),
        _cli("forecast train", "test_windows 0", t("--data.test_windows", "0", "--out", "new"), ["data.test_windows must be >= 1"]),
        _cli("forecast train", "too many test windows", t("--data.test_windows", "40", "--out", "new"), ["do not fit"]),
        _cli("forecast train", "time column missing", t("--data.time_col", "when", "--out", "new"), ["time column 'when' not in the table", "columns are"], "fc_data/all.csv"),
        _cli("forecast train", "target column missing", t("--data.target_cols", '["zz"]', "--out", "new"), ["['zz']", "columns are"], "fc_data/all.csv"),
        _cli("forecast train", "covariate missing", t("--data.covariate_cols", '["temp"]', "--out", "new"), ["covariate column(s) ['temp']", "columns are"], "fc_data/all.csv"),
        _cli("forecast train", "out missing", ["forecast", "train", "--data.csv", "fc_data/all.csv"], ["out", "required"]),
        _cli("forecast predict", "horizon 0", p("--horizon", "0", "--out", "p.csv"), ["--horizon must be >= 1"]),
        _cli("forecast predict", "horizon -3", p("--horizon", "-3", "--out", "p.csv"), ["--horizon must be >= 1"]),
        _cli("forecast predict", "num_samples 0", p("--num_samples", "0", "--out", "p.csv"), ["--num_samples must be >= 1"]),
        _cli("forecast predict", "steps 0", p("--steps", "0", "--out", "p.csv"), ["--steps must be >= 1"]),
        _cli("forecast predict", "scheduling unknown", p("--scheduling", "zigzag", "--out", "p.csv"), ["--scheduling must be"]),
        _cli("forecast predict", "quantile 1.5", p("--quantiles", "[0.5, 1.5]", "--out", "p.csv"), ["--quantiles must be levels strictly between 0 and 1"]),
        _cli("forecast predict", "out exists", p("--out", "existing.csv"), ["already exists", "--overwrite"], "existing.csv"),
        _cli("forecast predict", "out not csv", p("--out", "p.txt"), ["must end in .csv"], "p.txt"),
        _cli("forecast predict", "plot exists", p("--out", "p.csv", "--plot", "existing.png"), ["already exists", "--overwrite"], "existing.png"),
        _cli("forecast predict", "checkpoint missing", ["forecast", "predict", "nope", "--input", "fc_data/hist.csv", "--out", "p.csv"], ["does not exist", "model/ folder"], "nope"),
        _cli("forecast predict", "checkpoint not a forecaster", ["forecast", "predict", "model", "--input", "fc_data/hist.csv", "--out", "p.csv"], ["not a Forecaster"], "model"),
        _cli("forecast predict", "checkpoint truncated weights", ["forecast", "predict", f"{BM}/truncated", "--input", "fc_data/hist.csv", "--out", "p.csv"], ["model.safetensors", REEXPORT], f"{BM}/truncated"),
        _cli("forecast predict", "input missing", ["forecast", "predict", "fc", "--input", "fc_data/none.csv", "--out", "p.csv"], ["does not exist", "CSV file"], "fc_data/none.csv"),
        _cli("forecast predict", "input non-numeric", ["forecast", "predict", "fc", "--input", "fc_data/hist_text.csv", "--out", "p.csv"], ["'n/a?'", "not a number"], "fc_data/hist_text.csv"),
        _cli("forecast predict", "input empty", ["forecast", "predict", "fc", "--input", "fc_data/empty.csv", "--out", "p.csv"], ["is empty"], "fc_data/empty.csv"),
        _cli("forecast predict", "future missing", p("--future", "fc_data/none.csv", "--out", "p.csv"), ["--future", "does not exist"], "fc_data/none.csv"),
        _cli("forecast eval", "out exists", e("--out", "existing.json"), ["already exists", "--overwrite"], "existing.json"),
        _cli("forecast eval", "out not json", e("--out", "m.csv"), ["must end in .json"], "m.csv"),
        _cli("forecast eval", "num_samples 0", e("--num_samples", "0", "--out", "m.json"), ["--num_samples must be >= 1"]),
        _cli("forecast eval", "no data record", ["forecast", "eval", "model", "--out", "m.json"], ["not a Forecaster"], "model"),
        _cli("forecast", "unknown subcommand", ["forecast", "fit"], ["unknown command 'fit'", "choose train, predict or eval"]),
    ]


def _schedule_cases() -> list[Case]:
    return [
        _cli("schedule", "unknown name", ["schedule", "show", "zigzag"], ["unknown scheduling matrix 'zigzag'", "choose one of"]),
        _cli("schedule", "tokens 0", ["schedule", "show", "pyramid", "--tokens", "0"], ["--tokens must be >= 1"]),
        _cli("schedule", "steps 0", ["schedule", "show", "pyramid", "--steps", "0"], ["--steps must be >= 1"]),
        _cli("schedule", "chunk_size 0", ["schedule", "show", "chunked", "--chunk_size", "0"], ["--chunk_size must be >= 1"]),
        _cli("schedule", "uncertainty_scale negative", ["schedule", "show", "pyramid", "--uncertainty_scale", "-1"], ["--uncertainty_scale must be >= 0"]),
        _cli("schedule", "plot exists", ["schedule", "show", "pyramid", "--plot", "existing.png"], ["already exists", "--overwrite"], "existing.png"),
        _cli("schedule", "plot not png", ["schedule", "show", "pyramid", "--plot", "m.svg"], ["must end in .png"], "m.svg"),
        _cli("schedule", "unknown action", ["schedule", "draw", "pyramid"], ["action", "--help"]),
        _cli("schedule", "matrix missing", ["schedule", "show", "matrix/none.npy"], ["does not exist"], "matrix/none.npy"),
        _cli("schedule", "matrix rises", ["schedule", "show", "matrix/rises.csv"], ["non-increasing"], "matrix/rises.csv"),
        _cli("schedule", "matrix float", ["schedule", "show", "matrix/float.csv"], ["integer levels"], "matrix/float.csv"),
        _cli("schedule", "matrix header", ["schedule", "show", "matrix/header.csv"], ["without a header"], "matrix/header.csv"),
        _cli("schedule", "matrix pickled", ["schedule", "show", "matrix/object.npy"], ["not a readable scheduling matrix"], "matrix/object.npy"),
    ]


def _rollout_cases() -> list[Case]:
    g = ["rollout", "generate", "video_model", "--num", "1", "--context", "2", "--horizon", "2", "--rollout.sampling.steps", "1"]
    return [
        _cli("rollout train", "method unknown", ["rollout", "train", "--method", "gan", "--out", "r"], ["--method must be df, tf or fs"]),
        _cli("rollout train", "steps 0", ["rollout", "train", "--steps", "0", "--out", "r"], ["--steps must be >= 1"]),
        _cli("rollout train", "lr 0", ["rollout", "train", "--lr", "0", "--out", "r"], ["--lr must be > 0"]),
        _cli("rollout train", "out is a file", ["rollout", "train", "--out", "notes.txt"], ["is an existing file", "give a folder"], "notes.txt"),
        _cli("rollout train", "model/ is a user file", ["rollout", "train", "--out", "run_with_file"], ["is an existing file", "choose a new folder"], "run_with_file/model"),
        _cli("rollout generate", "checkpoint missing", ["rollout", "generate", "nope"], ["does not exist"], "nope"),
        _cli("rollout generate", "not a video model", ["rollout", "generate", "model", "--out", "v.gif"], ["not written by `dforce rollout train`", "pass a model folder"], "model"),
        _cli("rollout generate", "out not a video", [*g, "--out", "v.txt"], ["must end in .gif or .mp4"], "v.txt"),
        _cli("rollout generate", "out exists", [*g, "--out", "existing.gif"], ["already exists", "--overwrite"], "existing.gif"),
        _cli("rollout generate", "keyframes not integers", [*g, "--keyframes", "a,b", "--out", "v.gif"], ["not a frame index", "comma-separated integers"]),
        _cli("rollout generate", "keyframe outside window", [*g, "--keyframes", "0,99", "--out", "v.gif"], ["frame 99 is outside", "window"]),
        _cli("rollout generate", "num 0", ["rollout", "generate", "video_model", "--num", "0", "--out", "v.gif"], ["--num must be >= 1"]),
        _cli("rollout eval", "out not json", ["rollout", "eval", "video_model", "--out", "m.csv"], ["must end in .json"], "m.csv"),
        _cli("rollout eval", "horizon 0", ["rollout", "eval", "video_model", "--horizon", "0"], ["--horizon must be >= 1"]),
        _cli("rollout eval", "split unknown", ["rollout", "eval", "video_model", "--split", "train"], ["--split must be val or test"]),
        _cli("rollout train", "config missing", ["rollout", "train", "--config", "none.yaml"], ["does not exist"], "none.yaml"),
        _cli("plan train", "config invalid", ["plan", "train", "--config", "data/bad.yaml"], ["not valid YAML", "fix the file"], "data/bad.yaml"),
        _cli("forecast train", "config not a mapping", ["forecast", "train", "data/not_a_mapping.yaml"], ["must hold a mapping"], "data/not_a_mapping.yaml"),
        _cli("rollout", "unknown subcommand", ["rollout", "play"], ["unknown subcommand 'play'", "choose train, generate or eval"]),
    ]


def _plan_cases() -> list[Case]:
    return [
        _cli("plan generate-data", "maze unknown", ["plan", "generate-data", "--maze", "huge", "--out", "d.npz"], ["--maze: unknown maze 'huge'", "medium_diverse_g", "JSON"]),
        _cli("plan generate-data", "maze map with a bad cell", ["plan", "generate-data", "--maze", '[[1,1,1],[1,"x",1],[1,1,1]]', "--out", "d.npz"],
             ["--maze: maze map cells must be 1 (wall), 0 (free)", "'x'"]),
        _cli("plan generate-data", "out not npz", ["plan", "generate-data", "--out", "d.csv"], ["must end in .npz"]),
        _cli("plan generate-data", "out exists", ["plan", "generate-data", "--out", "existing.npz"], ["already exists", "--overwrite"], "existing.npz"),
        _cli("plan generate-data", "steps 0", ["plan", "generate-data", "--steps", "0", "--out", "d.npz"], ["--steps must be >= 1"]),
        _cli("plan train", "data missing", ["plan", "train", "--data", "none.npz", "--out", "p.dfplan"], ["does not exist", "generate-data"], "none.npz"),
        _cli("plan train", "out is a file", ["plan", "train", "--data", "plan.npz", "--out", "notes.txt"], ["is an existing file", "new folder"], "notes.txt"),
        _cli("plan train", "out is a user folder", ["plan", "train", "--data", "plan.npz", "--out", "plan_dir"], ["files dforce did not write", "new or empty folder"], "plan_dir"),
        _cli("plan eval", "checkpoint missing", ["plan", "eval", "--checkpoint", "none.dfplan"], ["is not a folder", "dforce plan train"], "none.dfplan"),
        _cli("plan eval", "episodes 0", ["plan", "eval", "--checkpoint", "plan_dir", "--episodes", "0"], ["--episodes must be >= 1"]),
        _cli("plan eval", "setting unknown", ["plan", "eval", "--checkpoint", "plan_dir", "--setting", "maze"], ["--setting must be single_goal or random"]),
        _cli("plan eval", "out exists", ["plan", "eval", "--checkpoint", "plan_dir", "--out", "existing.json"], ["already exists", "--overwrite"], "existing.json"),
        _cli("plan", "no subcommand", ["plan"], ["command", "--help"]),
    ]


def _demo_and_main_cases() -> list[Case]:
    return [
        _cli("demo", "train_steps 0", ["demo", "--train_steps", "0"], ["--train_steps must be >= 1"]),
        _cli("demo", "width 0", ["demo", "--width", "0"], ["--width must be >= 1"]),
        _cli("demo", "out_dir is a file", ["demo", "--out_dir", "notes.txt"], ["is an existing file", "give a folder"], "notes.txt"),
        _cli("demo", "unknown option", ["demo", "--fast"], ["fast", "--help"]),
        _cli("dforce", "unknown command", ["fit"], ["unknown command 'fit'", "choose one of"]),
        _cli("bench", "unknown benchmark", ["bench", "everything"], ["unknown benchmark 'everything'", "choose one of"]),
    ]


# ------------------------------------------------------------------------------- API cases
def _api_cases() -> list[Case]:
    from dforce import DiffusionForcing, Transformer

    def model(**kw):
        return DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2), window=8, **kw)

    x = lambda b=2, n=8: torch.randn(b, n, 2)  # noqa: E731
    m = model()

    def sample(**kw):
        base = {"horizon": 4, "steps": 2} if "context" in kw or "batch_size" in kw else {"horizon": 4, "steps": 2, "batch_size": 1}
        return lambda r: m.sample(**{**base, **kw})

    from dforce.sampling.scheduling import scheduling_matrix, validate
    from dforce.training import RandomWindows, TrainConfig, export_model, load_model
    from dforce.training.lightning import load_checkpoint
    from dforce.timeseries.data import from_dataframe, read_csv
    import pandas as pd

    return [
        _api("api DiffusionForcing", "window 0", lambda r: DiffusionForcing(Transformer(dim=2, width=16, depth=1, heads=2), window=0), ValueError, ["window and frame_stack must be >= 1"]),
        _api("api DiffusionForcing", "frame_stack 0", lambda r: model(frame_stack=0), ValueError, ["frame_stack must be >= 1"]),
        _api("api DiffusionForcing", "frame_stack does not divide", lambda r: model(frame_stack=3), ValueError, ["not divisible by frame_stack=3"]),
        _api("api DiffusionForcing", "cond_dropout 1.5", lambda r: model(cond_dropout=1.5), ValueError, ["cond_dropout must lie in [0, 1)"]),
        _api("api DiffusionForcing", "history_len -2", lambda r: model(training_noise="teacher_forcing", history_len=-2), ValueError, ["history_len must lie in"]),
        _api("api DiffusionForcing", "history_len = window", lambda r: model(history_len=8), ValueError, ["history_len must lie in"]),
        _api("api DiffusionForcing", "noise_clip 0", lambda r: model(noise_clip=0.0), ValueError, ["noise_clip must be > 0"]),
        _api("api DiffusionForcing", "parametrization unknown", lambda r: model(parametrization="score"), ValueError, ["unknown parametrization 'score'"]),
        _api("api DiffusionForcing", "backbone without token_shape", lambda r: DiffusionForcing(torch.nn.Linear(2, 2), window=8), TypeError, ["token_shape", "check_backbone"]),
        _api("api Transformer", "dim 0", lambda r: Transformer(dim=0), ValueError, ["dim must be > 0"]),
        _api("api Transformer", "width 0", lambda r: Transformer(dim=2, width=0), ValueError, ["width must be > 0"]),
        _api("api Transformer", "depth 0", lambda r: Transformer(dim=2, depth=0), ValueError, ["depth must be > 0"]),
        _api("api Transformer", "heads 0", lambda r: Transformer(dim=2, heads=0), ValueError, ["heads must be > 0"]),
        _api("api Transformer", "heads do not divide width", lambda r: Transformer(dim=2, width=10, heads=4), ValueError, ["divisible by heads"]),
        _api("api Transformer", "dropout 1", lambda r: Transformer(dim=2, dropout=1.0), ValueError, ["dropout must lie in [0, 1)"]),
        _api("api RNN", "width 0", lambda r: __import__("dforce.backbones.rnn", fromlist=["RNN"]).RNN(dim=2, width=0), ValueError, ["width must be > 0"]),
        _api("api VideoTransformer", "patch 0", lambda r: __import__("dforce.backbones.video_transformer", fromlist=["x"]).VideoTransformer(patch_size=0), ValueError, ["patch_size must be > 0"]),
        _api("api loss", "empty batch", lambda r: m.loss(torch.zeros(0, 8, 2)), ValueError, ["empty batch", "at least one sequence"]),
        _api("api loss", "no frames", lambda r: m.loss(torch.zeros(2, 0, 2)), ValueError, ["empty batch"]),
        _api("api loss", "noise levels 2.0", lambda r: m.loss(x(), noise_levels=torch.full((2, 8), 2.0)), ValueError, ["noise_levels must lie in [0, 1]", "rescale"]),
        _api("api loss", "noise levels negative", lambda r: m.loss(x(), noise_levels=torch.full((2, 8), -0.1)), ValueError, ["noise_levels must lie in [0, 1]"]),
        _api("api loss", "noise levels NaN", lambda r: m.loss(x(), noise_levels=torch.full((2, 8), float("nan"))), ValueError, ["noise_levels must lie in [0, 1]"]),
        _api("api loss", "noise levels wrong shape", lambda r: m.loss(x(), noise_levels=torch.zeros(2, 3)), ValueError, ["noise_levels must have shape"]),
        _api("api loss", "x NaN", lambda r: m.loss(torch.full((2, 8, 2), float("nan"))), ValueError, ["NaN", "mask=False"]),
        _api("api loss", "x wrong frame size", lambda r: m.loss(torch.zeros(2, 8, 3)), ValueError, ["x must have shape [B, N, 2]"]),
        _api("api loss", "x integer", lambda r: m.loss(torch.zeros(2, 8, 2, dtype=torch.long)), TypeError, ["floating-point tensor"]),
        _api("api loss", "mask wrong shape", lambda r: m.loss(x(), mask=torch.ones(2, 3, dtype=torch.bool)), ValueError, ["mask must have shape"]),
        _api("api loss", "reduction unknown", lambda r: m.loss(x(), reduction="sum"), ValueError, ["reduction must be 'mean' or 'none'"]),
        _api("api sample", "horizon 0", sample(horizon=0), ValueError, ["horizon"]),
        _api("api sample", "horizon -3", sample(horizon=-3), ValueError, ["horizon"]),
        _api("api sample", "steps 0", sample(steps=0), ValueError, ["steps must be an integer >= 1"]),
        _api("api sample", "schedule unknown", sample(scheduling="pyramidal"), ValueError, ["unknown scheduling 'pyramidal'"]),
        _api("api sample", "unknown option", sample(stepz=3), TypeError, ["unknown sampling option", "stepz"]),
        _api("api sample", "context NaN", sample(context=torch.full((1, 4, 2), float("nan"))), ValueError, ["NaN", "context_mask"]),
        _api("api sample", "context wrong frame size", sample(context=torch.zeros(1, 4, 3)), ValueError, ["context must have shape"]),
        _api("api sample", "precision fp16", sample(precision="fp16"), ValueError, ["precision must be 'fp32' or 'bf16'"]),
        _api("api sample", "stabilization_level 1.5", sample(stabilization_level=1.5), ValueError, ["stabilization_level must lie in [0, 1)"]),
        _api("api sample", "history_len -2", sample(context=torch.zeros(1, 4, 2), history_len=-2), ValueError, ["history_len"]),
        _api("api sample", "batch_size disagrees with context", sample(context=torch.zeros(2, 4, 2), batch_size=5), ValueError, ["batch_size"]),
        _api("api sample", "batch_size 0", sample(batch_size=0), ValueError, ["batch_size"]),
        _api("api sample", "chunk_size 0", sample(chunk_size=0), ValueError, ["chunk_size"]),
        _api("api sample", "eta negative", sample(eta=-1.0), ValueError, ["eta"]),
        _api("api scheduling", "tokens 0", lambda r: scheduling_matrix("pyramid", 0, 4), ValueError, ["tokens must be >= 1"]),
        _api("api scheduling", "steps 0", lambda r: scheduling_matrix("pyramid", 4, 0), ValueError, ["steps must be >= 1"]),
        _api("api scheduling", "unknown name", lambda r: scheduling_matrix("zigzag", 4, 4), ValueError, ["unknown scheduling matrix 'zigzag'", "choose one of"]),
        _api("api scheduling", "chunk_size 0", lambda r: scheduling_matrix("chunked", 4, 4, chunk_size=0), ValueError, ["chunk_size must be >= 1"]),
        _api("api scheduling", "uncertainty negative", lambda r: scheduling_matrix("pyramid", 4, 4, uncertainty_scale=-1), ValueError, ["uncertainty_scale must be >= 0"]),
        _api("api scheduling", "custom matrix rises", lambda r: validate(torch.tensor([[2, 2], [1, 2], [2, 0], [0, 0]])), ValueError, ["non-increasing"]),
        _api("api scheduling", "custom matrix 1-D", lambda r: validate(torch.tensor([2, 1, 0])), ValueError, ["must be 2-D"]),
        _api("api scheduling", "custom matrix wrong width", lambda r: scheduling_matrix(torch.tensor([[2, 2], [0, 0]]), 3, 2), ValueError, ["2 columns but 3 tokens"]),
        _api("api export_model", "path is a user file", lambda r: export_model(m, r / "notes.txt"), FileExistsError, ["is an existing file", "choose a new folder"], "notes.txt"),
        _api("api export_model", "path is a user folder", lambda r: export_model(m, r / "userdir"), FileExistsError, ["files dforce did not write", "new or empty folder"], "userdir"),
        _api("api export_model", "earlier model without overwrite", lambda r: export_model(m, r / "model", overwrite=False), FileExistsError, ["already holds a dforce model", "--overwrite"], "model"),
        _api("api load_model", "missing", lambda r: load_model(r / "nope"), FileNotFoundError, ["does not exist", "model/ folder"], "nope"),
        _api("api load_model", "NaN weights", lambda r: load_model(r / BM / "nan"), ValueError, ["NaN or inf", "retrain"], f"{BM}/nan/model.safetensors"),
        _api("api load_model", "edited config", lambda r: load_model(r / BM / "cfg_width"), ValueError, ["do not fit", "config was edited"], f"{BM}/cfg_width/config.json"),
        _api("api load_model", "pickled weights", lambda r: load_model(r / BM / "pickled"), ValueError, ["model.safetensors", REEXPORT], f"{BM}/pickled"),
        _api("api load_checkpoint", "pickle", lambda r: load_checkpoint(r / "evil_run" / "checkpoints" / "last.ckpt"), ValueError, ["cannot be read safely"], "evil_run/checkpoints/last.ckpt"),
        _api("api TrainConfig", "max_steps 0", lambda r: TrainConfig(max_steps=0).check(), ValueError, ["max_steps must be >= 1"]),
        _api("api TrainConfig", "lr negative", lambda r: TrainConfig(lr=-1).check(), ValueError, ["lr must be > 0"]),
        _api("api TrainConfig", "betas", lambda r: TrainConfig(betas=(0.9, 1.5)).check(), ValueError, ["betas must be two numbers in [0, 1)"]),
        _api("api TrainConfig", "warmup negative", lambda r: TrainConfig(warmup_steps=-1).check(), ValueError, ["warmup_steps must be >= 0"]),
        _api("api RandomWindows", "series shorter than window", lambda r: RandomWindows(np.zeros((4, 2)), 8), ValueError, ["shorter", "training window"]),
        _api("api RandomWindows", "no series", lambda r: RandomWindows([], 8), ValueError, ["series is empty"]),
        _api("api RandomWindows", "cond misaligned", lambda r: RandomWindows(np.zeros((20, 2)), 8, cond=np.zeros((10, 1))), ValueError, ["one row per frame"]),
        _api("api read_csv", "non-numeric cell", lambda r: read_csv(r / "fc_data" / "text.csv"), ValueError, ["'n/a?'", "not a number", "fix the cell"], "fc_data/text.csv"),
        _api("api read_csv", "missing", lambda r: read_csv(r / "fc_data" / "none.csv"), FileNotFoundError, ["does not exist"], "fc_data/none.csv"),
        _api("api from_dataframe", "non-numeric target", lambda r: from_dataframe(pd.DataFrame({"t": ["2020-01-01", "2020-01-02", "2020-01-03"], "a": [1, "x", 3]}), time_col="t"),
             ValueError, ["column 'a' holds 'x'", "fix the cell"]),
        _api("api from_dataframe", "not a DataFrame", lambda r: from_dataframe([1, 2, 3]), TypeError, ["expected a pandas DataFrame"]),
        _api("api Forecaster.load", "plain dforce model", lambda r: __import__("dforce.timeseries.forecaster", fromlist=["x"]).Forecaster.load(r / "model"), ValueError, ["not a Forecaster"], "model"),
    ]


def all_cases() -> list[Case]:
    return [*_sample_cases(), *_train_cases(), *_forecast_cases(), *_schedule_cases(), *_rollout_cases(), *_plan_cases(),
            *_demo_and_main_cases(), *_api_cases()]


# ----------------------------------------------------------------------------------- running
def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def run_case(case: Case, template: Path) -> Outcome:
    """Run ``case`` in a fresh copy of ``template``; classify what happened."""
    from dforce.cli.main import main

    with tempfile.TemporaryDirectory(prefix="dforce-bad-") as tmp:
        root = Path(tmp) / "w"
        shutil.copytree(template, root, symlinks=True)
        before = snapshot(root)
        cwd = os.getcwd()
        os.chdir(root)
        err, out = io.StringIO(), io.StringIO()
        env_before = os.environ.get("DFORCE_DEBUG")
        try:
            if case.argv is not None:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                    try:
                        code = main([a.replace("{r}", str(root)) for a in case.argv])
                    except SystemExit as e:  # must not happen: main returns a status
                        code = f"SystemExit({e.code})"
                    except BaseException:
                        code = "exception"
                        err.write(traceback.format_exc())
                text = err.getvalue()
                result = _classify_cli(case, code, text)
            else:
                try:
                    case.call(root)
                    result = Outcome("silent_wrong", detail="no exception")
                except BaseException as e:  # noqa: BLE001
                    result = _classify_api(case, e)
        finally:
            os.chdir(cwd)
            if env_before is None:
                os.environ.pop("DFORCE_DEBUG", None)
        changed = _changed(before, snapshot(root))
        if (root / "PWNED").exists():
            changed.append("PWNED (code ran from a pickle)")
        if changed and result.status == "clear_error":
            result = Outcome("user_files_changed", result.message, "files changed", changed)
        result.changed = changed
        return result


def _needles_ok(case: Case, message: str) -> Optional[str]:
    low = message.lower()
    missing = [n for n in case.needles if n.lower() not in low]
    if missing:
        return f"message lacks {missing}"
    if case.file is not None and Path(case.file).name.lower() not in low:
        return f"message does not name the file {case.file}"
    return None


def _classify_cli(case: Case, code, text: str) -> Outcome:
    lines = [l for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error:")]
    if "Traceback (most recent call last)" in text or code in ("exception",) or isinstance(code, str):
        return Outcome("traceback", text[-400:], f"exit {code}")
    if code == 0:
        return Outcome("silent_wrong", text[-400:], "exit 0")
    if code != 2 or len(errors) != 1 or lines[-1] != errors[0]:
        return Outcome("traceback", text[-400:], f"exit {code}, {len(errors)} error lines")
    bad = _needles_ok(case, errors[0])
    if bad:
        return Outcome("unclear_message", errors[0], bad)
    return Outcome("clear_error", errors[0])


def _classify_api(case: Case, e: BaseException) -> Outcome:
    message = f"{type(e).__name__}: {e}"
    if not isinstance(e, case.error):
        return Outcome("traceback", message, f"expected {case.error.__name__}")
    if "\n" in str(e).strip():
        return Outcome("unclear_message", message, "multi-line message")
    bad = _needles_ok(case, str(e))
    if bad:
        return Outcome("unclear_message", message, bad)
    return Outcome("clear_error", message)
