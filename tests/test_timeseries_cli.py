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
