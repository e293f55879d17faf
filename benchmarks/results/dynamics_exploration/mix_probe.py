"""KS roughness exploration: which knob makes DF rollouts as smooth as the system?"""
import sys, time, json
import numpy as np, torch
torch.set_num_threads(1)
from dforce.dynamics.experiment import SETTINGS, RunConfig, Trainer, batches, evaluate, load_system, make_model, sample, short_horizon
from dforce.guidance import HistoryGuidance

name = sys.argv[1] if len(sys.argv) > 1 else "kuramoto_sivashinsky"
noises = sys.argv[2].split("|") if len(sys.argv) > 2 else ["independent:0.25,autoregressive:0.5,pyramid:0.25"]
steps_train = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
s = SETTINGS[name]; cfg = RunConfig(train_steps=steps_train); seed = 0
train, test, reference = load_system(name, s, cfg, seed)
horizon = cfg.rollout_windows * s.window
truth = test[: cfg.num_rollouts, s.context:]; ctx = test[: cfg.num_rollouts, : s.context]
FULL = False
field_ = name == "kuramoto_sivashinsky"
def run(model, label, method="df_ar", **over):
    t0 = time.time()
    r = evaluate(sample(model, ctx, horizon, s, cfg, method, seed, **over), truth, reference, s.window, field_)
    r.update(short_horizon(model, method, test, s, cfg, seed, **over))
    print(f"{label:60s} W1 {r['w1_last']:.3f} rough {r['roughness_ratio']:.2f} crps {r['crps_first8']:.3f} mse {r['mse_first8']:.3f} ({time.time()-t0:.0f}s)", flush=True)
for noise in noises:
    torch.manual_seed(seed)
    t0 = time.time()
    tr = Trainer(make_model(train.shape[-1], s, noise), cfg, cfg.train_steps, seed)
    data = batches(train, s.window, cfg.batch_size, torch.Generator().manual_seed(seed))
    for _ in range(cfg.train_steps):
        tr.step(next(data))
    print(f"trained {noise} in {time.time()-t0:.0f}s", flush=True)
    m = tr.ema
    method = "teacher_forcing" if noise == "teacher_forcing" else "df_ar"
    run(m, f"{noise} {method}", method)
    if method == "df_ar" and FULL:
        run(m, f"{noise} no_stab", "df_ar_no_stab")
        run(m, f"{noise} steps=25", steps=25)
        for w in (1.5, 2.0, 3.0):
            run(m, f"{noise} hg vanilla {w}", guidance=HistoryGuidance.vanilla(w))
    if method == "df_ar":
        run(m, f"{noise} no_stab", "df_ar_no_stab")
        run(m, f"{noise} pyramid", "df_pyramid")
