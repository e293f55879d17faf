"""Single-seed probes of DF's short-horizon CRPS and roughness (see README.md in this folder).

    python probe.py MODE SYSTEM "NOISE|NOISE..." TRAIN_STEPS

Trains one DF model per training-noise spec with ``dforce.dynamics.experiment`` (the benchmark's
settings, seed 0) and prints W1 of the last segment, roughness, CRPS and MSE over the first 8
tokens. ``teacher_forcing`` as a spec trains and samples teacher forcing. MODE ``guidance``: DF
AR, no stabilization, 25 sampling steps, vanilla history guidance 1.5 / 2 / 3; MODE
``schedules``: DF AR, no stabilization, pyramid.
"""
import sys
import time

import torch

from dforce.dynamics.experiment import SETTINGS, RunConfig, Trainer, batches, evaluate, load_system, make_model, sample, short_horizon
from dforce.guidance import HistoryGuidance

torch.set_num_threads(1)
mode, name, noises, steps_train = sys.argv[1], sys.argv[2], sys.argv[3].split("|"), int(sys.argv[4])
VARIANTS = {
    "guidance": [("no_stab", "df_ar_no_stab", {}), ("steps=25", "df_ar", {"steps": 25})]
    + [(f"hg vanilla {w}", "df_ar", {"guidance": HistoryGuidance.vanilla(w)}) for w in (1.5, 2.0, 3.0)],
    "schedules": [("no_stab", "df_ar_no_stab", {}), ("pyramid", "df_pyramid", {})],
}[mode]
s, seed = SETTINGS[name], 0
cfg = RunConfig(train_steps=steps_train)
train, test, reference = load_system(name, s, cfg, seed)
horizon = cfg.rollout_windows * s.window
truth, ctx = test[: cfg.num_rollouts, s.context:], test[: cfg.num_rollouts, : s.context]


def run(model, label, method, **over):
    t0 = time.time()
    r = evaluate(sample(model, ctx, horizon, s, cfg, method, seed, **over), truth, reference, s.window, name == "kuramoto_sivashinsky")
    r.update(short_horizon(model, method, test, s, cfg, seed, **over))
    print(f"{label:60s} W1 {r['w1_last']:.3f} rough {r['roughness_ratio']:.2f} crps {r['crps_first8']:.3f} "
          f"mse {r['mse_first8']:.3f} ({time.time() - t0:.0f}s)", flush=True)


for noise in noises:
    torch.manual_seed(seed)
    t0 = time.time()
    tr = Trainer(make_model(train.shape[-1], s, noise), cfg, cfg.train_steps, seed)
    data = batches(train, s.window, cfg.batch_size, torch.Generator().manual_seed(seed))
    for _ in range(cfg.train_steps):
        tr.step(next(data))
    print(f"trained {noise} in {time.time() - t0:.0f}s", flush=True)
    method = "teacher_forcing" if noise == "teacher_forcing" else "df_ar"
    run(tr.ema, f"{noise} {method}", method)
    for label, m, over in VARIANTS if method == "df_ar" else []:
        run(tr.ema, f"{noise} {label}", m, **over)
