"""``dforce forecast``: train, predict and evaluate probabilistic forecasters.

    dforce forecast train CONFIG.yaml [--model.max_steps 500 ...]
    dforce forecast predict CHECKPOINT --input history.csv --horizon 30 --out forecast.csv
    dforce forecast eval CHECKPOINT --data.dataset exchange_rate --out metrics.json
    dforce forecast train --data.dataset epf_fr_be --data.split 0.7,0.1,0.2 --data.zscore true --model.context_length 96 \
        --model.prediction_length 96 --model.patch_length 24 --model.scaling anchor --out ckpt   # validation: selection + calibration
    dforce forecast eval ckpt --stride 96 --horizons [96,192,336,720] --num_samples 10 --out m.json   # the long-horizon protocol

CONFIG holds a ``data:`` section (:class:`DataConfig`), a ``model:`` section
(:class:`dforce.timeseries.ForecasterConfig`) and ``out:`` (the checkpoint folder). Every option
can also be given on the command line; ``--help`` lists them all.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np


@dataclass
class DataConfig:
    """Where the series come from.

    Attributes:
        dataset: a named dataset (``exchange_rate``, ``vic_elec``, ``tourism``, ``pedestrian``), or None to read ``csv``.
        csv: a CSV file in wide (time column + one column per series) or long format (``id_col`` + ``value_col``).
        path: the exchange-rate file (else ``$DFORCE_EXCHANGE_RATE`` or ``../shared/data``).
        time_col: time column of the CSV (default: the first column).
        target_cols: series columns (wide format; default: every numeric non-covariate column).
        covariate_cols: columns known in the future (temperature forecasts, holidays...).
        id_col: series key column (long format).
        value_col: target column (long format).
        freq: pandas frequency (inferred when None).
        test_windows: rolling test windows of ``prediction_length`` steps held out at the end
            (``exchange_rate``: the protocol's 5 windows after row 6071); used when ``split`` is None.
        split: a split by time into train / validation / test (:meth:`dforce.timeseries.Split.parse`):
            ``0.7,0.1,0.2`` (fractions), ``rows:A,B[,C]``, ``dates:2016-01-01,2016-05-01[,END]`` or
            ``ett``. Training selects the checkpoint and calibrates on the validation rows; ``eval``
            rolls over the test rows.
        zscore: standardise every series with the mean / std of the training rows before anything
            else (the long-horizon protocol reports MSE / MAE on that scale).
    """

    dataset: Optional[str] = None
    csv: Optional[str] = None
    path: Optional[str] = None
    time_col: Optional[str] = None
    target_cols: Optional[list[str]] = None
    covariate_cols: list[str] = field(default_factory=list)
    id_col: Optional[str] = None
    value_col: Optional[str] = None
    freq: Optional[str] = None
    test_windows: int = 5
    split: Optional[str] = None
    zscore: bool = False


def load_frame(data: DataConfig):
    from dforce.timeseries.data import load_dataset, load_exchange_rate, read_csv

    if data.dataset and data.csv:
        raise ValueError("give either data.dataset or data.csv, not both")
    if data.dataset == "exchange_rate":
        return load_exchange_rate(data.path)
    if data.dataset:
        return load_dataset(data.dataset)
    if not data.csv:
        raise ValueError("no data: set data.dataset (exchange_rate, vic_elec, tourism, pedestrian) or data.csv")
    return read_csv(
        data.csv, time_col=data.time_col, target_cols=data.target_cols, covariate_cols=data.covariate_cols,
        id_col=data.id_col, value_col=data.value_col, freq=data.freq,
    )


def time_split(frame, data: DataConfig):
    """``(frame, Split)`` for ``data.split`` (the frame z-scored on the training rows when ``data.zscore``)."""
    from dforce.timeseries.evaluation import Split, zscore

    sp = Split.parse(data.split, len(frame), frame.index)
    if sp.test_end > len(frame):
        raise ValueError(f"split {data.split!r} ends at row {sp.test_end}, the data has {len(frame)} rows")
    if data.zscore:
        frame, _ = zscore(frame, sp.train_end)
    return frame, sp


def split(frame, data: DataConfig, prediction_length: int, context_length: int):
    """Training frame and the rolling test protocol."""
    from dforce.timeseries.data import EXCHANGE_RATE, RollingProtocol

    if data.dataset == "exchange_rate":
        proto = EXCHANGE_RATE
    else:
        n = data.test_windows * prediction_length
        if n >= len(frame):
            raise ValueError(f"{data.test_windows} test windows of {prediction_length} steps do not fit in {len(frame)} steps")
        proto = RollingProtocol(len(frame) - n, prediction_length, data.test_windows, context_length)
    return frame.slice(0, proto.train_end), proto


def _parser(name: str):
    from jsonargparse import ActionConfigFile

    from dforce.timeseries.forecaster import ForecasterConfig

    from dforce.cli.common import Parser, add_overwrite

    p = Parser(prog=f"dforce forecast {name}", description=__doc__.split("\n\n")[0], exit_on_error=True)
    add_overwrite(p)
    if name == "train":
        p.add_argument("--config", action=ActionConfigFile, help="YAML file with data:, model: and out: sections")
        p.add_class_arguments(DataConfig, "data")
        p.add_class_arguments(ForecasterConfig, "model")
        p.add_argument("--out", type=str, required=True, help="checkpoint folder to write (new or empty; --overwrite replaces an earlier dforce model there)")
    else:
        p.add_argument("checkpoint", type=str, help="a folder written by `dforce forecast train` / Forecaster.save")
        p.add_argument("--num_samples", type=int, default=100, help="sample paths per forecast")
        p.add_argument("--seed", type=int, default=0, help="sampling seed")
        p.add_argument("--scheduling", type=Optional[str], default=None, help="override the scheduling matrix: autoregressive, pyramid, full_sequence, trapezoid")
        p.add_argument("--steps", type=Optional[int], default=None, help="override: sampling steps per token")
        p.add_argument("--plot", type=Optional[str], default=None, help="also write a fan chart PNG here")
        p.add_argument("--out", type=str, required=True, help="output file (predict: CSV; eval: JSON)")
    if name == "predict":
        p.add_argument("--input", type=str, required=True, help="history CSV (same layout as the training data)")
        p.add_argument("--future", type=Optional[str], default=None, help="CSV with the known-future covariates of the horizon")
        p.add_argument("--horizon", type=Optional[int], default=None, help="steps to forecast (default: prediction_length)")
        p.add_argument("--time_col", type=Optional[str], default=None, help="time column (default: the first)")
        p.add_argument("--id_col", type=Optional[str], default=None, help="series key column (long format)")
        p.add_argument("--value_col", type=Optional[str], default=None, help="target column (long format)")
        p.add_argument("--quantiles", type=list[float], default=[0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95], help="quantile levels")
        p.add_argument("--samples", type=bool, default=False, help="write every sample path (long format) instead of quantiles")
    if name == "eval":
        p.add_class_arguments(DataConfig, "data")
        p.add_argument("--stride", type=Optional[int], default=None, help="rolling test windows start every STRIDE rows (needs data.split; default: the first horizon)")
        p.add_argument("--horizons", type=Optional[list[int]], default=None, help="horizons to evaluate, e.g. [96,192,336,720] (needs data.split; default: prediction_length)")
        p.add_argument("--part", type=str, default="test", help="test or val: which rows of the split to roll over")
    return p


def _atomic_write(path: Path, text: str) -> None:
    from dforce.training.files import atomic_write_text

    atomic_write_text(path, text)


def _overrides(args) -> dict:
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.scheduling is not None and args.scheduling not in ("autoregressive", "pyramid", "full_sequence", "trapezoid"):
        raise ValueError(f"--scheduling must be autoregressive, pyramid, full_sequence or trapezoid, got {args.scheduling!r}")
    return {k: v for k, v in (("scheduling", args.scheduling), ("steps", args.steps)) if v is not None}


def _check_common(args, out_suffix: str) -> None:
    from dforce.cli.common import check_outputs

    if args.num_samples < 1:
        raise ValueError(f"--num_samples must be >= 1, got {args.num_samples}")
    check_outputs(args.overwrite, out=args.out, plot=args.plot)
    if not args.out.endswith(out_suffix):
        raise ValueError(f"--out {args.out} must end in {out_suffix}")
    if args.plot and not args.plot.endswith(".png"):
        raise ValueError(f"--plot {args.plot} must end in .png")
    _overrides(args)


def cmd_train(argv: list[str]) -> int:
    from dforce.timeseries.forecaster import Forecaster, ForecasterConfig

    from dforce.cli.common import check_config_files

    if argv and not argv[0].startswith("-"):
        argv = ["--config", argv[0], *argv[1:]]
    check_config_files(argv)
    args = _parser("train").parse_args(argv)
    from dforce.training import export_model
    from dforce.training.export import check_export_path

    data = DataConfig(**vars(args.data)) if not isinstance(args.data, DataConfig) else args.data
    cfg = ForecasterConfig(**{k: v for k, v in vars(args.model).items()}) if not isinstance(args.model, ForecasterConfig) else args.model
    cfg.check()
    for name in ("max_steps", "batch_size", "width", "depth", "heads"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"model.{name} must be >= 1, got {getattr(cfg, name)}")
    if data.test_windows < 1:
        raise ValueError(f"data.test_windows must be >= 1, got {data.test_windows}")
    check_export_path(args.out, args.overwrite, option="--out")  # before any work: never replace the user's files
    frame = load_frame(data)
    if data.split:
        frame, sp = time_split(frame, data)
        train_frame, val_frame, train_end = frame.slice(0, sp.train_end), frame.slice(sp.train_end, sp.val_end), sp.train_end
        if len(val_frame) == 0:
            val_frame = None
    else:
        if data.zscore:
            raise ValueError("data.zscore needs data.split (the statistics come from the training rows)")
        train_frame, proto = split(frame, data, cfg.prediction_length, cfg.context_length)
        val_frame, train_end = None, proto.train_end
    print(f"training on {len(train_frame)} steps x {train_frame.num_series} series ({cfg.max_steps} steps"
          f"{'' if val_frame is None else f', selecting on {len(val_frame)} validation steps'})", file=sys.stderr)
    fc = Forecaster(cfg).fit(train_frame, val=val_frame)
    meta = {"data": asdict(data), "train_end": train_end, "selected_step": fc.selected_step, "spread": fc.config.spread}
    path = export_model(fc.model, args.out, extra={"forecaster": asdict(fc.config), "features": fc.features.state()},
                        overwrite=args.overwrite, files={"data.json": json.dumps(meta, indent=2)})
    print(f"saved {path}")
    return 0


def cmd_predict(argv: list[str]) -> int:
    from dforce.timeseries.data import read_csv
    from dforce.timeseries.forecaster import Forecaster

    args = _parser("predict").parse_args(argv)
    _check_common(args, ".csv")
    if args.horizon is not None and args.horizon < 1:
        raise ValueError(f"--horizon must be >= 1 step (or left out for the model's prediction_length), got {args.horizon}")
    if not args.quantiles or not all(0.0 < q < 1.0 for q in args.quantiles):
        raise ValueError(f"--quantiles must be levels strictly between 0 and 1, got {args.quantiles}")
    fc = Forecaster.load(args.checkpoint)
    feats = fc.features
    kw = dict(time_col=args.time_col, id_col=args.id_col, value_col=args.value_col, freq=feats.freq)
    if args.id_col is None:
        kw["target_cols"] = feats.columns
    kw["covariate_cols"] = feats.covariate_names
    history = read_csv(args.input, **kw)
    future = None
    if args.future:
        fut_kw = dict(kw)
        if args.id_col is None:
            import pandas as pd

            if not Path(args.future).is_file():
                raise FileNotFoundError(f"--future {args.future} does not exist; give a CSV with the covariates of the horizon")
            df = pd.read_csv(args.future)
            for c in feats.columns:  # the future has no targets yet
                if c not in df.columns:
                    df[c] = np.nan
            from dforce.timeseries.data import from_dataframe

            fut_kw["time_col"] = fut_kw["time_col"] or df.columns[0]
            future = from_dataframe(df, **fut_kw)
        else:
            future = read_csv(args.future, **fut_kw)
    out = fc.predict(history, args.horizon, args.num_samples, future=future, seed=args.seed, **_overrides(args))
    table = out.sample_frame() if args.samples else out.quantiles(args.quantiles)
    path = Path(args.out)
    from dforce.training.files import atomic_write

    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
    if args.plot:
        from dforce.timeseries.plots import fan_chart

        fan_chart(out, args.plot, history=history)
    print(f"wrote {path} ({out.horizon} steps x {len(out.columns)} series, {args.num_samples} samples)")
    return 0


def cmd_eval(argv: list[str]) -> int:
    from dforce.timeseries.data import rolling_windows
    from dforce.timeseries.forecaster import Forecaster
    from dforce.timeseries.metrics import evaluate

    args = _parser("eval").parse_args(argv)
    _check_common(args, ".json")
    data = DataConfig(**vars(args.data)) if not isinstance(args.data, DataConfig) else args.data
    fc = Forecaster.load(args.checkpoint)
    if data.dataset is None and data.csv is None:
        meta = Path(args.checkpoint) / "data.json"
        if not meta.is_file():
            raise ValueError(f"no data given and {meta} does not exist: pass --data.dataset or --data.csv")
        try:
            data = DataConfig(**json.loads(meta.read_text())["data"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{meta} is not a valid data record ({err}); pass --data.dataset or --data.csv") from None
    frame = load_frame(data)
    if data.split:
        from dforce.timeseries.evaluation import evaluate_rolling

        frame, sp = time_split(frame, data)
        if _overrides(args):
            from dataclasses import replace

            fc.config = replace(fc.config, **_overrides(args)).check()
        horizons = args.horizons or [fc.config.prediction_length]
        stride = args.stride or min(horizons)
        import time

        t0 = time.time()
        res = evaluate_rolling({"model": fc}, frame, sp, horizons, stride=stride, num_samples=args.num_samples, seed=args.seed, part=args.part)
        metrics = {"split": {"train_end": sp.train_end, "val_end": sp.val_end, "test_end": sp.test_end}, "part": args.part, "stride": stride,
                   "num_samples": args.num_samples, "zscore": data.zscore, "wall_s": time.time() - t0,
                   "horizons": {str(h): res[h]["model"] for h in horizons if "model" in res[h]}}
        if not metrics["horizons"]:
            raise ValueError(f"no {args.part} window of {min(horizons)} steps fits in the split {sp}")
        _atomic_write(Path(args.out), json.dumps(metrics, indent=2))
        print(json.dumps(metrics, indent=2))
        return 0
    if args.stride is not None or args.horizons is not None:
        raise ValueError("--stride and --horizons need a split by time: pass --data.split (e.g. 0.7,0.1,0.2)")
    _, proto = split(frame, data, fc.config.prediction_length, fc.config.context_length)
    wins = rolling_windows(frame, proto)
    outs = fc.predict_many([h for h, _ in wins], proto.prediction_length, args.num_samples, futures=[f for _, f in wins], seed=args.seed, **_overrides(args))
    y = np.stack([f.values for _, f in wins])
    samples = np.stack([o.samples for o in outs], 1)
    metrics = evaluate(y, samples, frame.columns)
    metrics["windows"] = proto.num_windows
    metrics["num_samples"] = args.num_samples
    _atomic_write(Path(args.out), json.dumps(metrics, indent=2))
    if args.plot:
        from dforce.timeseries.plots import fan_chart

        h, f = wins[-1]
        fan_chart(outs[-1], args.plot, history=h, actual=f, title=f"{data.dataset or data.csv}: last test window")
    print(json.dumps({k: v for k, v in metrics.items() if k != "crps_per_series"}, indent=2))
    return 0


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "eval": cmd_eval}


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: dforce forecast {train,predict,eval} ...  (dforce forecast COMMAND --help for its options)\n")
        print("  train CONFIG.yaml              train a Forecaster (data:, model:, out: sections)")
        print("  predict CHECKPOINT --input CSV --horizon H --out PATH   forecast quantiles (or samples) as CSV")
        print("  eval CHECKPOINT [--data.dataset NAME] [--data.split 0.7,0.1,0.2 --stride 96 --horizons [96,192]]")
        print("                                 rolling-window CRPS-sum, CRPS, MSE/MAE (median and mean), coverage, windows/s as JSON")
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r} of dforce forecast; choose train, predict or eval", file=sys.stderr)
        return 2
    from dforce.cli.common import run_guarded

    return run_guarded(lambda: COMMANDS[argv[0]](argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
