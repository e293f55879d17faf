import json, sys, time
from dataclasses import replace
import torch
torch.set_num_threads(1)
from dforce.sampling import SamplingConfig
from dforce.video import metrics as M
from dforce.video.data import SpriteConfig, fixed_split
from dforce.video.experiment import RolloutConfig, generate, score, summarize
from dforce.training import load_model
sprites = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 2), speed=(1.0, 3.0))
WINDOW, CTX, HOR, SEED = 8, 4, 80, 0
m = load_model(sys.argv[1])[0]
test = fixed_split(sprites, sys.argv[2], 16, CTX + HOR, seed=SEED)
context, truth = test["x"][:, :CTX], test["x"][:, CTX:]
counts = M.sprite_counts(truth)
reference = fixed_split(sprites, "val", 64, WINDOW, seed=SEED)["x"]
known = dict(labels=test["labels"], centroids=test["centroids"][:, CTX:], sprites=sprites)
for spec in sys.argv[3:]:
    sched, c, h, stab, eta, g, w = spec.split(":")
    s = SamplingConfig(scheduling=sched, steps=10, chunk_size=int(c), history_len=int(h), stabilization_level=float(stab), eta=float(eta))
    with torch.no_grad():
        pred = generate(m, context, HOR, RolloutConfig("df", sampling=s, guidance=g, guidance_scale=float(w)), seed=SEED)
    sm = summarize(score(pred, truth, reference, WINDOW, counts, **known))
    last = sm["per_segment"]["73-80"]
    print(spec, json.dumps({k: round(float(v), 3) for k, v in dict(psnr_1_8=sm["psnr_1_8"], cen=sm["centroid_err_1_8"], id_rel=sm["identity_rel_73_80"], hist=sm["hist_tv_73_80"],
          fr=sm["frechet_73_80"], sprites=last["sprites"], inten=last["mean_intensity"]).items()}), flush=True)
