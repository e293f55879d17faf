"""Does a sampler setting stop the fade of a longer-trained DF model? (issue 12 exploration)

Loads the EMA weights of a finished `probe.py` run (RUN_DIR, STEPS; a finished run resumed trains nothing)
and rolls out 80 frames after 4 true ones on 16 validation clips (SPLIT=val, for choosing) or the
benchmark's 16 test clips (SPLIT=test), in chunks of 4, for a grid of sampling steps, eta and history
guidance, then for the other history guidance forms and sampler options (10 steps, eta 0); writes
sampler_BACKBONE_STEPS_SPLIT.json next to this file.

    PYTHONPATH=src python benchmarks/results/video_exploration/scaling/sampler.py RUN_DIR 12000 val [BACKBONE BATCH]
"""
import json, os, sys, time

import torch

torch.set_num_threads(1)
from dataclasses import replace

from dforce.sampling import SamplingConfig
from dforce.video.experiment import RolloutConfig, generate, score, summarize, train_video_model

from common import CTX, HERE, HOR, SPRITES, WINDOW, build, clips

run_dir, steps, split = sys.argv[1], int(sys.argv[2]), sys.argv[3]
backbone = sys.argv[4] if len(sys.argv) > 4 else "tiny"
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 32
c = clips(split)
context, truth, counts, reference, known = c["context"], c["truth"], c["counts"], c["reference"], c["known"]
model = build(backbone)
model = train_video_model(model, SPRITES, steps, batch_size=batch, lr=1e-3, seed=0, out_dir=run_dir)  # finished: EMA weights
base = SamplingConfig(scheduling="full_sequence", steps=10, chunk_size=CTX, history_len=CTX)
grid = []  # (row fields, RolloutConfig)
for guidance, scale in (("none", 1.0), ("vanilla", 1.5), ("vanilla", 2.0), ("vanilla", 3.0)):
    for n, eta in ((10, 0.0), (10, 1.0), (50, 0.0), (50, 1.0)):
        if scale == 3.0 and n == 50:
            continue
        grid.append((dict(guidance=guidance, scale=scale, steps=n, eta=eta),
                     RolloutConfig("df", sampling=replace(base, steps=n, eta=eta), guidance=guidance, guidance_scale=scale)))
for guidance, scale, stabilized in (("temporal", 1.5, False), ("temporal", 2.0, False), ("temporal", 3.0, False), ("fractional", 1.5, False),
                                    ("fractional", 2.0, False), ("vanilla", 1.5, True), ("vanilla", 4.0, True)):
    grid.append((dict(guidance=guidance + (" stabilized" if stabilized else ""), scale=scale, steps=10, eta=0.0),
                 RolloutConfig("df", sampling=base, guidance=guidance, guidance_scale=scale, stabilized=stabilized)))
for option, sampling in (("clip_x0=1", replace(base, clip_x0=1.0)), ("stabilization_level=0", replace(base, stabilization_level=0.0)),
                         ("history=relabel", replace(base, history="relabel")), ("scheduling=pyramid", replace(base, scheduling="pyramid")),
                         ("one frame at a time, history 7", replace(base, scheduling="autoregressive", chunk_size=1, history_len=WINDOW - 1))):
    grid.append((dict(guidance="none", scale=1.0, steps=10, eta=0.0, option=option), RolloutConfig("df", sampling=sampling)))
rows = []
for fields, rc in grid:
    t0 = time.time()
    with torch.no_grad():
        pred = generate(model, context, HOR, rc, seed=0)
    sm = summarize(score(pred, truth, reference, WINDOW, counts, **known))
    ps = sm["per_segment"]
    row = dict(**fields, seconds=time.time() - t0,
               **{k: sm[k] for k in ("psnr_1_8", "centroid_err_1_8", "identity_rel_73_80", "hist_tv_73_80", "frechet_73_80")},
               identity_rel_1_8=ps["1-8"]["identity_rel"], sprites_73_80=ps["73-80"]["sprites"],
               sprites_by_segment=[round(s["sprites"], 2) for s in ps.values()])
    print(json.dumps(row), flush=True)
    rows.append(row)
    json.dump({"rows": rows, "command": " ".join(sys.argv)}, open(os.path.join(HERE, f"sampler_{backbone}_{steps}_{split}.json"), "w"), indent=1)
