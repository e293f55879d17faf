"""Does the `cpu` budget's DF model keep improving with more training? (issue 12 exploration)

Trains the benchmark's DF model (`tiny`, x0, fused SNR, batch 32, lr 1e-3, seed 0) and extends the same
run (constant learning rate after warm-up, so step S of a long run is a run of S steps) to each of
STEPS; after each, scores the benchmark's 16 test clips as `benchmarks/video.py` does: 80 frames
after 4 true ones, chunks of 4, 10 sampling steps, plain DF and DF + vanilla history guidance 1.5.

    PYTHONPATH=src python benchmarks/results/video_exploration/scaling/probe.py RUN_DIR 3000,6000,9000,12000
    PYTHONPATH=src python benchmarks/results/video_exploration/scaling/probe.py RUN_DIR 1200,2400,4800,7200 unet_32_12_2 8
    PYTHONPATH=src python benchmarks/results/video_exploration/scaling/probe.py RUN_DIR 3000,6000,9000 tiny 32 1

The second form trains the convolutional U-Net of `../weighting/video_unet.py` (width 32, mults 1-2, stem 2) instead,
with batch 8 (its earlier probes' batch). A fifth argument is the training and sampling seed (default 0; the clips stay
the same); seed N > 0 writes scaling_BACKBONE_seedN.json.
"""
import json, os, sys, time

import torch

torch.set_num_threads(1)
from dforce.sampling import SamplingConfig
from dforce.video import metrics as M
from dforce.video.experiment import RolloutConfig, generate, score, summarize, train_video_model

from common import CTX, HERE, HOR, SPRITES, WINDOW, build, clips

run_dir, steps = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
backbone = sys.argv[3] if len(sys.argv) > 3 else "tiny"
batch = int(sys.argv[4]) if len(sys.argv) > 4 else 32
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
c = clips("test")
context, truth, counts, reference, known = c["context"], c["truth"], c["counts"], c["reference"], c["known"]
sampling = SamplingConfig(scheduling="full_sequence", steps=10, chunk_size=CTX, history_len=CTX)
torch.manual_seed(seed)
model = build(backbone)
rows = []
t_train = 0.0
for s in steps:
    t0 = time.time()
    model = train_video_model(model, SPRITES, s, batch_size=batch, lr=1e-3, seed=seed, out_dir=run_dir)
    t_train += time.time() - t0  # train() returns the EMA weights, in eval mode
    row = {"backbone": backbone, "batch": batch, "steps": s, "train_seconds": t_train}
    with torch.no_grad():  # the model's conditional mean of the first future frame
        x = torch.cat([context, torch.randn_like(truth[:, :1])], 1)
        tt = torch.zeros(truth.shape[0], CTX + 1)
        tt[:, -1] = 1
        x0, _ = model.denoise(x, tt)
        row["meanpred_psnr_frame1"] = float(M.psnr(x0[:, -1:], truth[:, :1]).mean())
    for name, rc in (("DF", RolloutConfig("df", sampling=sampling)),
                     ("DF + vanilla HG", RolloutConfig("df", sampling=sampling, guidance="vanilla", guidance_scale=1.5))):
        with torch.no_grad():
            pred = generate(model, context, HOR, rc, seed=seed)
        sm = summarize(score(pred, truth, reference, WINDOW, counts, **known))
        ps = sm["per_segment"]
        row[name] = {k: sm[k] for k in ("psnr_1_8", "centroid_err_1_8", "identity_rel_73_80", "hist_tv_73_80", "frechet_73_80")}
        row[name].update(identity_rel_1_8=ps["1-8"]["identity_rel"], identity_rel_9_16=ps["9-16"]["identity_rel"],
                         sprites_73_80=ps["73-80"]["sprites"])
    print(json.dumps(row), flush=True)
    rows.append(row)
    json.dump({"rows": rows, "command": " ".join(sys.argv)}, open(os.path.join(HERE, f"scaling_{backbone}" + (f"_seed{seed}" if seed else "") + ".json"), "w"), indent=1)
