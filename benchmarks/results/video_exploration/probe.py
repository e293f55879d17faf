"""Exploration (kept for the record): equal-wall-clock comparison of small VideoTransformer backbones for DF on the video benchmark data.
usage: probe.py time NAME [NAME...]            -> seconds/step (10 vs 40 steps slope)
       probe.py run NAME STEPS [PARAM]         -> train + eval, writes res_NAME_PARAM.json next to this file
"""
import json, os, sys, time
from dataclasses import replace
import torch
torch.set_num_threads(1)
from dforce.sampling import SamplingConfig
from dforce.video import metrics as M
from dforce.video.data import SpriteConfig, fixed_split
from dforce.video import experiment
from dforce.video.experiment import RolloutConfig, build_video_model, generate, score, summarize, train_video_model

experiment.PRESETS["p8w128"] = dict(patch_size=8, width=128, depth=3, heads=4)
experiment.PRESETS["p4w64"] = dict(patch_size=4, width=64, depth=3, heads=4)
experiment.PRESETS["p8w128d2"] = dict(patch_size=8, width=128, depth=2, heads=4)

sprites = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 2), speed=(1.0, 3.0))
NS = (10, 40)
WINDOW, CTX, HOR, SEED = 8, 4, 16, 0

def build(name, param="x0"):
    torch.manual_seed(SEED)
    return build_video_model("df", frame_size=32, window=WINDOW, preset=name, parametrization=param)

def nparams(m):
    return sum(p.numel() for p in m.backbone.parameters())

def timing(names):
    for name in names:
        ts = {}
        for n in NS:
            m = build(name)
            t0 = time.time(); train_video_model(m, sprites, n, batch_size=32, lr=1e-3, seed=SEED); ts[n] = time.time() - t0
        sps = (ts[NS[1]] - ts[NS[0]]) / (NS[1] - NS[0])
        print(json.dumps(dict(name=name, params=nparams(m), t=ts, s_per_step=sps, steps_for_520s=int(520 / sps))), flush=True)

def run(name, steps, param="x0"):
    test = fixed_split(sprites, "test", 16, CTX + HOR, seed=SEED)
    context, truth = test["x"][:, :CTX], test["x"][:, CTX:]
    counts = M.sprite_counts(truth)
    reference = fixed_split(sprites, "val", 64, WINDOW, seed=SEED)["x"]
    known = dict(labels=test["labels"], centroids=test["centroids"][:, CTX:], sprites=sprites)
    out = {"name": name, "param": param, "steps": steps, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    copy = summarize(score(context[:, -1:].expand_as(truth), truth, reference, WINDOW, counts, **known))
    out["copy_last"] = {k: copy[k] for k in ("psnr_1_8", "centroid_err_1_8")} | {"identity_rel_1_8": copy["per_segment"]["1-8"]["identity_rel"]}
    m = build(name, param)
    out["params"] = nparams(m)
    t0 = time.time()
    m = train_video_model(m, sprites, steps, batch_size=32, lr=1e-3, seed=SEED)
    out["train_seconds"] = time.time() - t0
    print(f"{name} {param} trained {steps} steps in {out['train_seconds']:.0f}s", flush=True)
    base = SamplingConfig(scheduling="full_sequence", steps=10, chunk_size=4, history_len=4)
    for tag, s in (("chunked", base), ("ar", replace(base, scheduling="autoregressive", chunk_size=1))):
        t0 = time.time()
        with torch.no_grad():
            pred = generate(m, context, HOR, RolloutConfig("df", sampling=s), seed=SEED)
        dt = time.time() - t0
        sm = summarize(score(pred, truth, reference, WINDOW, counts, **known))
        ps = sm["per_segment"]
        out[tag] = dict(psnr_1_8=sm["psnr_1_8"], centroid_err_1_8=sm["centroid_err_1_8"], identity_rel_1_8=ps["1-8"]["identity_rel"],
                        psnr_9_16=ps["9-16"]["psnr"], centroid_err_9_16=ps["9-16"]["centroid_err"], identity_rel_9_16=ps["9-16"]["identity_rel"],
                        sample_seconds=dt)
        print(tag, json.dumps(out[tag]), flush=True)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"res_{name}_{param}.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out), flush=True)

if __name__ == "__main__":
    if sys.argv[1] == "time":
        timing(sys.argv[2:])
    else:
        run(sys.argv[2], int(sys.argv[3]), *(sys.argv[4:5]))
