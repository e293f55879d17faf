# Old demo setting (frame_stack 2, stride 2, window 32 tokens, 16 context frames): where does the jaggedness come from?
import json, time, numpy as np, torch
torch.set_num_threads(1)
from dforce import DiffusionForcing, Transformer
from dforce.dynamics.systems import lorenz63
from dforce.dynamics.experiment import RunConfig, Trainer, batches
from dforce.dynamics.metrics import roughness_ratio, marginal_w1
tr_traj = lorenz63(32, 6000, stride=2, seed=0); te = lorenz63(16, 16 + 640, stride=2, seed=1)
mean, std = tr_traj.reshape(-1, 3).mean(0), tr_traj.reshape(-1, 3).std(0)
n = lambda a: ((a - mean) / std).astype(np.float32)
train, test = torch.from_numpy(n(tr_traj)), n(te)
ref = n(tr_traj).reshape(-1, 3)
out = {}
for noise in ("independent", "independent:0.25,autoregressive:0.5,pyramid:0.25"):
    torch.manual_seed(0)
    m = DiffusionForcing(Transformer(dim=6, width=64, depth=3, heads=4, causal=True), window=32, frame_stack=2, training_noise=noise)
    t = Trainer(m, RunConfig(), 1200, 0)
    data = batches(train, 64, 64, torch.Generator().manual_seed(0))
    t0 = time.time()
    for _ in range(1200):
        t.step(next(data))
    for label, kw in (("old demo plan (24 new tokens per window)", {}), ("one token per window", dict(chunk_size=1, history_len=31))):
        with torch.inference_mode():
            y = t.ema.sample(context=torch.from_numpy(test[:, :16]), horizon=640, steps=16, stabilization_level=0.05, seed=0, cache="window", **kw).numpy()
        r = {"roughness": roughness_ratio(y, test[:, 16:]), "w1_last": marginal_w1(y[:, -64:], ref)}
        out[f"{noise} | {label}"] = r
        print(noise, "|", label, r, f"{time.time()-t0:.0f}s", flush=True)
json.dump(out, open("/tmp/jag/jag.json", "w"), indent=1)
