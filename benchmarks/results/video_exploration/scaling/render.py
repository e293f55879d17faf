"""The fade, seen: 80 frames of plain DF (chunks of 4, 10 steps) from the 12000-step `probe.py` run on 6
validation clips, every 4th frame, truth above each rollout (fade_tiny_12000.png); prints the validation
clips' calibration rows (copy-last, ground truth) for the tables of `sampler.py`.

    PYTHONPATH=src python benchmarks/results/video_exploration/scaling/render.py RUN_DIR
"""
import os, sys

import imageio.v3 as iio
import numpy as np
import torch

torch.set_num_threads(1)
from dforce.sampling import SamplingConfig
from dforce.video import metrics as M
from dforce.video.experiment import RolloutConfig, generate, score, summarize, train_video_model

from common import HERE, SPRITES, build, clips

c = clips("val")
context, truth, reference, known = c["context"], c["truth"], c["reference"], c["known"]
for name, pred in (("copy last", context[:, -1:].expand_as(truth)), ("ground truth", truth)):
    sm = summarize(score(pred, truth, reference, 8, M.sprite_counts(truth), **known))
    print(name, {k: round(sm[k], 3) for k in ("psnr_1_8", "centroid_err_1_8", "identity_rel_73_80", "hist_tv_73_80", "frechet_73_80")},
          "sprites 73-80", round(sm["per_segment"]["73-80"]["sprites"], 2), "identity 1-8 (absolute)",
          round(sm["per_segment"]["1-8"]["identity_acc"], 3))
model = train_video_model(build("tiny"), SPRITES, 12000, batch_size=32, lr=1e-3, seed=0, out_dir=sys.argv[1])  # finished: EMA weights
rc = RolloutConfig("df", sampling=SamplingConfig(scheduling="full_sequence", steps=10, chunk_size=4, history_len=4))
with torch.no_grad():
    pred = generate(model, context, 80, rc, seed=0)
to_u8 = lambda a: np.pad((np.clip((a + 1) / 2, 0, 1) * 255).astype(np.uint8), 1, constant_values=128)  # noqa: E731
rows = [np.concatenate([to_u8(src[i, 0].numpy()) for i in range(0, 80, 4)], 1) for k in range(6) for src in (truth[k], pred[k])]
iio.imwrite(os.path.join(HERE, "fade_tiny_12000.png"), np.concatenate(rows, 0).repeat(2, 0).repeat(2, 1))
