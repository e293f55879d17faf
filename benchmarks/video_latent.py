"""Latent video diffusion on the bouncing sprites: a frame autoencoder, then DF / TF over latent frames.

Exploration for issue 12 (the pixel video models draw grey blobs). Stages, each cached in
``--workdir`` so that methods can be trained in parallel processes and evaluated afterwards:

1. ``FrameAutoencoder`` (32x32x1 <-> 8x8xC) trained on single frames, exported (safetensors + JSON);
2. DF (independent per-frame noise) and TF (teacher forcing) on the *same* VideoTransformer over
   normalised latent frames, same wall-clock budget each (lr warm-up + cosine decay over the
   budget's time, EMA weights), exported with ``dforce.training.export_model``;
3. evaluation: 4 true context frames, 80-frame rollouts on held-out test clips, decoded to pixels;
   PSNR frames 1-8 / 73-80 against copy-last, blank frames and the autoencoder's reconstruction of
   the truth (the ceiling); sprite-count and histogram drift; GIF (truth, DF, TF rows).

    PYTHONPATH=src python benchmarks/video_latent.py --stage ae
    PYTHONPATH=src python benchmarks/video_latent.py --stage train --methods df &   # in parallel
    PYTHONPATH=src python benchmarks/video_latent.py --stage train --methods tf &
    PYTHONPATH=src python benchmarks/video_latent.py --stage eval
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from dforce.backbones.video_transformer import VideoTransformer
from dforce.model import DiffusionForcing
from dforce.sampling import SamplingConfig
from dforce.training.export import export_model, load_model
from dforce.video import metrics as M
from dforce.video.autoencoder import FrameAutoencoder, export_autoencoder, load_autoencoder, train_autoencoder
from dforce.video.data import SpriteConfig, batch, fixed_split

ROOT = Path(__file__).resolve().parent
METHODS = {"df": "independent", "tf": "teacher_forcing"}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=["ae", "train", "eval", "all"], default="all")
    p.add_argument("--methods", default="df,tf")
    p.add_argument("--workdir", default="runs/video_latent")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--num-sprites", default="1,2")
    # autoencoder
    p.add_argument("--latent-channels", type=int, default=4)
    p.add_argument("--ae-width", type=int, default=16)
    p.add_argument("--ae-steps", type=int, default=400)
    p.add_argument("--ae-clips", type=int, default=1000)
    # latent DF / TF
    p.add_argument("--patch-size", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--parametrization", default="v")
    p.add_argument("--weighting", default="fused_snr", help="loss weighting: fused_snr (+0.7 dB PSNR 1-8 over min_snr at equal time, docs/video.md) or min_snr")
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--minutes", type=float, default=9.0, help="training wall-clock budget per method")
    p.add_argument("--max-steps", type=int, default=100000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--train-clips", type=int, default=4000)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast while training")
    # evaluation
    p.add_argument("--test-clips", type=int, default=16)
    p.add_argument("--context", type=int, default=4)
    p.add_argument("--horizon", type=int, default=80)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "results" / "video_latent"))
    return p.parse_args()


def sprites(a) -> SpriteConfig:
    lo, hi = (int(v) for v in a.num_sprites.split(","))
    return SpriteConfig(sprite="digits", frame_size=32, num_sprites=(lo, hi))


def stage_ae(a) -> FrameAutoencoder:
    path = Path(a.workdir) / "ae"
    if (path / "config.json").exists():
        return load_autoencoder(path)[0]
    frames = batch(sprites(a), a.ae_clips, 8, seed=123)["x"].reshape(-1, 1, 32, 32)
    ae = FrameAutoencoder(latent_channels=a.latent_channels, width=a.ae_width)
    t0 = time.time()
    losses = train_autoencoder(ae, frames, a.ae_steps, batch_size=64, log_every=100)
    secs = time.time() - t0
    test = fixed_split(sprites(a), "test", 16, 12)["x"].reshape(-1, 1, 32, 32)
    with torch.no_grad():
        rec = float(M.psnr(ae(test), test).mean())
    print(f"autoencoder: {secs:.0f} s, final loss {sum(losses[-50:]) / 50:.5f}, test reconstruction PSNR {rec:.2f} dB", flush=True)
    export_autoencoder(ae, path, extra={"train_seconds": secs, "steps": a.ae_steps, "test_psnr": rec})
    return ae


def build(a, method: str) -> DiffusionForcing:
    net = VideoTransformer(channels=a.latent_channels, image_size=8, patch_size=a.patch_size, width=a.width, depth=a.depth,
                           heads=a.heads, causal=True)
    return DiffusionForcing(net, window=a.window, training_noise=METHODS[method], parametrization=a.parametrization,
                            weighting=a.weighting)


def stage_train(a, ae: FrameAutoencoder, method: str) -> None:
    path = Path(a.workdir) / method
    if (path / "config.json").exists():
        print(f"{method}: already trained at {path}")
        return
    torch.manual_seed(0)
    clips = batch(sprites(a), a.train_clips, a.window, seed=0)["x"]  # [N, T, 1, 32, 32]
    with torch.no_grad():
        lat = torch.cat([ae.encode(c) for c in clips.split(256)])  # [N, T, C, 8, 8]
    del clips
    model = build(a, method)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-3, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(1)
    budget, warm = a.minutes * 60, 100
    t0, step, log = time.time(), 0, []
    model.train()
    while step < a.max_steps:
        frac = (time.time() - t0) / budget
        if frac >= 1:
            break
        lr = a.lr * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        idx = torch.randint(0, len(lat), (a.batch_size,), generator=g)
        x = lat[idx]
        rev = torch.rand(a.batch_size, generator=g) < 0.5  # time reversal: a bouncing clip played backwards is a clip
        x = torch.where(rev[:, None, None, None, None], x.flip(1), x)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model.loss(x, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        d = 0.0 if step < warm else a.ema
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - d)
        log.append(float(loss.detach()))
        if step % 100 == 0:
            print(f"{method} step {step} {time.time() - t0:.0f}s lr {lr:.2e} loss {sum(log[-100:]) / 100:.4f}", flush=True)
    secs = time.time() - t0
    print(f"{method}: {step} steps in {secs:.0f} s", flush=True)
    export_model(ema, path, extra={"train_seconds": secs, "steps": step, "final_loss": sum(log[-100:]) / max(1, len(log[-100:])),
                                   "args": vars(a)})


@torch.no_grad()
def rollout(model: DiffusionForcing, method: str, ctx, horizon: int, steps: int):
    if method == "df":
        cfg = SamplingConfig(scheduling="full_sequence", steps=steps, chunk_size=4, history_len=4)
    else:  # teacher forcing: next frame after clean history, on its own outputs
        cfg = SamplingConfig(scheduling="full_sequence", steps=steps, chunk_size=1, history_len=model.window - 1,
                             stabilization_level=0.0)
    return model.sample(ctx, horizon, config=cfg, seed=0)


def stage_eval(a, ae: FrameAutoencoder) -> None:
    cfg = sprites(a)
    test = fixed_split(cfg, "test", a.test_clips, a.context + a.horizon)
    x, counts = test["x"], test["count"]
    ctx, truth = x[:, : a.context], x[:, a.context:]
    true_counts = M.sprite_counts(truth)
    ref = fixed_split(cfg, "val", 32, 8)["x"]
    preds = {"ground_truth": truth, "ae_reconstruction": ae.decode(ae.encode(truth)).detach(),
             "copy_last": ctx[:, -1:].expand_as(truth), "blank": torch.full_like(truth, -1.0)}
    info = {}
    for method in a.methods.split(","):
        model, extra = load_model(Path(a.workdir) / method)
        t0 = time.time()
        z = rollout(model, method, ae.encode(ctx), a.horizon, a.sample_steps)
        preds[method] = ae.decode(z).detach()
        info[method] = {"train_seconds": extra["train_seconds"], "train_steps": extra["steps"], "final_loss": extra["final_loss"],
                        "sample_seconds": time.time() - t0}
        print(f"{method}: sampled in {info[method]['sample_seconds']:.0f} s", flush=True)
    rows = {}
    for name, p in preds.items():
        ps = M.psnr(p, truth)  # [B, N]
        drift = M.drift_by_segment(p, ref, 8, true_counts)
        rows[name] = {
            "psnr_1_8": float(ps[:, :8].mean()), "psnr_73_80": float(ps[:, 72:80].mean()) if a.horizon >= 80 else None,
            "psnr_by_segment": M.by_horizon(ps, 8), "ssim_1_8": float(M.ssim(p[:, :8], truth[:, :8]).mean()),
            "hist_tv_1_8": drift[0]["hist_tv"], "hist_tv_73_80": drift[-1]["hist_tv"],
            "sprites_1_8": drift[0]["sprites"], "sprites_73_80": drift[-1]["sprites"], **info.get(name, {}),
        }
    ae_extra = load_autoencoder(Path(a.workdir) / "ae")[1]
    sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {
        "methods": rows, "autoencoder": ae_extra, "git_sha": sha, "command": getattr(a, "command", None),
        "args": vars(a), "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": a.threads,
                                     "loadavg": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    gif_rows = [truth[:4]] + [preds[m][:4] for m in a.methods.split(",")]
    M.write_video(out.with_suffix(".gif"), [torch.cat([ctx[:4], r], 1) for r in gif_rows], fps=8, scale=2)
    write_md(out.with_suffix(".md"), result, a)
    print(out.with_suffix(".md").read_text())


def write_md(path: Path, r: dict, a) -> None:
    m = r["methods"]
    lines = [
        "# Latent video diffusion on the bouncing sprites (issue 12 exploration)", "",
        f"{r['date']}, git {r['git_sha'][:10]}, {r['machine']['platform']}, torch {r['machine']['torch']}, "
        f"threads {a.threads}, load average at the end {tuple(round(v, 2) for v in r['machine']['loadavg'])} (2 cores shared).", "",
        f"Command(s): `{r['command']}`", "",
        f"Autoencoder: 32x32x1 -> {a.latent_channels}x8x8, width {a.ae_width}, {a.ae_steps} steps "
        f"({r['autoencoder'].get('train_seconds', 0):.0f} s), test reconstruction PSNR {r['autoencoder'].get('test_psnr', 0):.2f} dB. "
        f"DF / TF: VideoTransformer over latents (patch {a.patch_size}, width {a.width}, depth {a.depth}), window {a.window}, "
        f"{a.parametrization} parametrization, {a.weighting} weighting, {a.minutes} min wall-clock budget each, batch {a.batch_size}, lr {a.lr} cosine, "
        f"EMA {a.ema}. Rollouts: {a.context} true context frames, {a.horizon} frames, {a.sample_steps} DDIM steps "
        f"(DF: chunks of 4 after 4 history frames, stabilization 0.02; TF: one frame at a time), {a.test_clips} test clips.", "",
        "GIF (`video_latent.gif`): ground truth, DF, TF rows (context frames included), four test clips.", "",
        "| method | PSNR 1-8 | PSNR 73-80 | SSIM 1-8 | hist TV 1-8 | hist TV 73-80 | sprites 1-8 | sprites 73-80 | train s | steps | sample s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in m.items():
        f = lambda k, d=2: "-" if v.get(k) is None else f"{v[k]:.{d}f}"  # noqa: E731
        lines.append(f"| {name} | {f('psnr_1_8')} | {f('psnr_73_80')} | {f('ssim_1_8', 3)} | {f('hist_tv_1_8', 3)} | "
                     f"{f('hist_tv_73_80', 3)} | {f('sprites_1_8')} | {f('sprites_73_80')} | {f('train_seconds', 0)} | "
                     f"{v.get('train_steps', '-')} | {f('sample_seconds', 0)} |")
    segs = list(m["copy_last"]["psnr_by_segment"])
    lines += ["", "PSNR (dB) per 8-frame segment:", "", "| method | " + " | ".join(segs) + " |", "|---" * (len(segs) + 1) + "|"]
    for name, v in m.items():
        lines.append(f"| {name} | " + " | ".join(f"{v['psnr_by_segment'][s]:.2f}" for s in segs) + " |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    a = parse()
    a.command = "PYTHONPATH=src python " + " ".join(shlex.quote(s) for s in ["benchmarks/video_latent.py", *sys.argv[1:]])
    torch.set_num_threads(a.threads)
    Path(a.workdir).mkdir(parents=True, exist_ok=True)
    ae = stage_ae(a)
    ae.requires_grad_(False)
    if a.stage in ("train", "all"):
        for method in a.methods.split(","):
            stage_train(a, ae, method)
    if a.stage in ("eval", "all"):
        stage_eval(a, ae)


if __name__ == "__main__":
    main()
