import json, os, sys, time
from dataclasses import replace
import torch
torch.set_num_threads(1)
from dforce.sampling import SamplingConfig
from dforce.video import metrics as M
from dforce.video.data import SpriteConfig, fixed_split
from dforce.video.experiment import RolloutConfig, build_video_model, generate, score, summarize, train_video_model
from dforce.training import export_model, load_model

sprites = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 2), speed=(1.0, 3.0))
WINDOW, CTX, HOR, SEED = 8, 4, 16, 0
steps = int(sys.argv[1]); path = f"/tmp/s15/model_tiny_fused_{steps}"  
if os.path.exists(path):
    m = load_model(path)[0]
else:
    torch.manual_seed(SEED)
    m = build_video_model("df", preset="tiny")
    t0 = time.time(); m = train_video_model(m, sprites, steps, batch_size=32, lr=1e-3, seed=SEED); print("trained", time.time() - t0, flush=True)
    export_model(m, path)
test = fixed_split(sprites, "test", 16, CTX + HOR, seed=SEED)
context, truth = test["x"][:, :CTX], test["x"][:, CTX:]
counts = M.sprite_counts(truth)
reference = fixed_split(sprites, "val", 64, WINDOW, seed=SEED)["x"]
known = dict(labels=test["labels"], centroids=test["centroids"][:, CTX:], sprites=sprites)
out = {}
for spec in sys.argv[2:]:
    sched, n, c, h = spec.split(":")
    n, c, h = int(n), int(c), int(h)
    for tag, s in ((spec, SamplingConfig(scheduling=sched, steps=n, chunk_size=c, history_len=h)),):
        t0 = time.time()
        with torch.no_grad():
            pred = generate(m, context, HOR, RolloutConfig("df", sampling=s), seed=SEED)
        sm = summarize(score(pred, truth, reference, WINDOW, counts, **known))
        ps = sm["per_segment"]
        out[tag] = r = dict(psnr_1_8=sm["psnr_1_8"], centroid_err_1_8=sm["centroid_err_1_8"], identity_rel_1_8=ps["1-8"]["identity_rel"],
                    psnr_9_16=ps["9-16"]["psnr"], identity_rel_9_16=ps["9-16"]["identity_rel"], sample_seconds=time.time() - t0)
        print(tag, json.dumps(r), flush=True)
