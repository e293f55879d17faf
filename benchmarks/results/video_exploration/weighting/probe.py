import json, os, sys, time
from dataclasses import replace
import torch
torch.set_num_threads(1)
from dforce.model import DiffusionForcing
from video_unet import VideoUNet  # this folder (exploration record, not part of dforce)
from dforce.sampling import SamplingConfig
from dforce.video import metrics as M
from dforce.video.data import SpriteConfig, fixed_split
from dforce.video.experiment import RolloutConfig, build_video_model, generate, score, summarize, train_video_model

sprites = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 2), speed=(1.0, 3.0))
WINDOW, CTX, HOR, SEED = 8, 4, 16, 0
name, steps, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
noise = sys.argv[4] if len(sys.argv) > 4 else "independent"
weighting = sys.argv[5] if len(sys.argv) > 5 else "min_snr"
torch.manual_seed(SEED)
if name == "tiny":
    m = build_video_model("df", preset="tiny"); m.training_noise = noise; m.weighting = weighting
else:
    w, mults, stem = name.split("_")[1:]
    net = VideoUNet(width=int(w), mults=[int(c) for c in mults], stem=int(stem))
    m = DiffusionForcing(net, window=WINDOW, training_noise=noise, parametrization="x0", weighting=weighting)
test = fixed_split(sprites, "test", 16, CTX + HOR, seed=SEED)
context, truth = test["x"][:, :CTX], test["x"][:, CTX:]
counts = M.sprite_counts(truth)
reference = fixed_split(sprites, "val", 64, WINDOW, seed=SEED)["x"]
known = dict(labels=test["labels"], centroids=test["centroids"][:, CTX:], sprites=sprites)
out = dict(name=name, steps=steps, bs=bs, noise=noise, weighting=weighting, params=sum(p.numel() for p in m.parameters()))
t0 = time.time()
m = train_video_model(m, sprites, steps, batch_size=bs, lr=1e-3, seed=SEED)
out["train_seconds"] = time.time() - t0
print(name, "trained", out["train_seconds"], flush=True)
m.eval()
with torch.no_grad():  # conditional mean of frame 5 given 4 clean frames
    x = torch.cat([context, torch.randn_like(truth[:, :1])], 1)
    tt = torch.zeros(16, CTX + 1); tt[:, -1] = 1
    x0, _ = m.denoise(x, tt)
    out["meanpred_psnr"] = float(M.psnr(x0[:, -1:], truth[:, :1]).mean())
    out["copy_psnr_f1"] = float(M.psnr(context[:, -1:], truth[:, :1]).mean())
print(out, flush=True)
base = SamplingConfig(scheduling="full_sequence", steps=10, chunk_size=4, history_len=4)
for tag, s in (("chunked", base), ("ar", replace(base, scheduling="autoregressive", chunk_size=1))):
    t0 = time.time()
    with torch.no_grad():
        pred = generate(m, context, HOR, RolloutConfig("df", sampling=s), seed=SEED)
    sm = summarize(score(pred, truth, reference, WINDOW, counts, **known))
    ps = sm["per_segment"]
    out[tag] = dict(psnr_1_8=sm["psnr_1_8"], centroid_err_1_8=sm["centroid_err_1_8"], identity_rel_1_8=ps["1-8"]["identity_rel"],
                    psnr_9_16=ps["9-16"]["psnr"], centroid_err_9_16=ps["9-16"]["centroid_err"], identity_rel_9_16=ps["9-16"]["identity_rel"],
                    sample_seconds=time.time() - t0)
    print(tag, json.dumps(out[tag]), flush=True)
json.dump(out, open(f"{os.path.dirname(os.path.abspath(__file__))}/res_{name}_{steps}_{bs}_{noise.replace(':','').replace(',','')}_{weighting}.json", "w"), indent=1)
