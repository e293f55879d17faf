import json

import numpy as np
import pandas as pd

from dforce.cli.forecast import main


def test_cli_train_predict_eval(tmp_path, capsys):
    t = pd.date_range("2022-01-01", periods=80, freq="h")
    df = pd.DataFrame({"time": t, "a": 10 + np.sin(np.arange(80) / 4), "b": 5 + np.cos(np.arange(80) / 4), "temp": np.sin(np.arange(80) / 7)})
    df.to_csv(tmp_path / "all.csv", index=False)
    df.iloc[:70].to_csv(tmp_path / "hist.csv", index=False)
    df.iloc[70:74][["time", "temp"]].to_csv(tmp_path / "fut.csv", index=False)
    (tmp_path / "cfg.yaml").write_text(
        f"data:\n  csv: {tmp_path / 'all.csv'}\n  covariate_cols: [temp]\n  test_windows: 2\n"
        "model:\n  context_length: 6\n  prediction_length: 4\n  width: 16\n  depth: 1\n  heads: 2\n  max_steps: 3\n"
        f"  batch_size: 4\n  steps: 2\n  precision: 32-true\nout: {tmp_path / 'ckpt'}\n"
    )
    assert main(["train", str(tmp_path / "cfg.yaml")]) == 0
    assert json.loads((tmp_path / "ckpt" / "data.json").read_text())["train_end"] == 72
    assert main(["predict", str(tmp_path / "ckpt"), "--input", str(tmp_path / "hist.csv"), "--future", str(tmp_path / "fut.csv"),
                 "--horizon", "4", "--num_samples", "3", "--out", str(tmp_path / "pred.csv")]) == 0
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns[:4]) == ["time", "series", "mean", "q0.05"] and len(pred) == 8
    assert main(["eval", str(tmp_path / "ckpt"), "--num_samples", "3", "--out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["windows"] == 2 and metrics["crps_sum"] > 0 and set(metrics["crps_per_series"]) == {"a", "b"}
    # missing future covariates: a clear error, exit code 2
    assert main(["predict", str(tmp_path / "ckpt"), "--input", str(tmp_path / "hist.csv"), "--out", str(tmp_path / "p2.csv")]) == 2
    assert "known-future covariates" in capsys.readouterr().err


def test_cli_split_by_time_rolling_eval_and_horizons(tmp_path, capsys):
    n = 120
    t = pd.date_range("2022-01-01", periods=n, freq="h")
    df = pd.DataFrame({"time": t, "a": 10 + np.sin(np.arange(n) / 4), "b": 5 + np.cos(np.arange(n) / 4)})
    df.to_csv(tmp_path / "all.csv", index=False)
    args = ["train", "--data.csv", str(tmp_path / "all.csv"), "--data.split", "rows:80,100", "--data.zscore", "true",
            "--model.context_length", "6", "--model.prediction_length", "4", "--model.width", "16", "--model.depth", "1", "--model.heads", "2",
            "--model.max_steps", "4", "--model.val_every", "2", "--model.val_windows", "2", "--model.val_samples", "3",
            "--model.batch_size", "4", "--model.steps", "2", "--model.precision", "32-true", "--out", str(tmp_path / "ck")]
    assert main(args) == 0
    meta = json.loads((tmp_path / "ck" / "data.json").read_text())
    assert meta["train_end"] == 80 and meta["selected_step"] in (2, 4) and meta["data"]["split"] == "rows:80,100"
    assert main(["eval", str(tmp_path / "ck"), "--num_samples", "3", "--stride", "5", "--horizons", "[4,8]", "--out", str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())
    # test rows [100, 120): origins 100, 105, 110, 115 for H=4 and 100, 105, 110 for H=8
    assert m["horizons"]["4"]["windows"] == 4 and m["horizons"]["8"]["windows"] == 3
    assert {"mse_median", "mae_median", "mse_mean", "crps", "coverage_90", "windows_per_s"} <= set(m["horizons"]["4"])
    assert main(["eval", str(tmp_path / "ck"), "--data.csv", str(tmp_path / "all.csv"), "--stride", "5", "--out", str(tmp_path / "x.json")]) == 2
    assert "need a split by time" in capsys.readouterr().err
