"""``dforce rollout {train,generate,eval}``: video models on moving sprites.

    dforce rollout train --method df --steps 2000 --out runs/df            # exports runs/df/model
    dforce rollout generate runs/df/model --horizon 80 --out rollout.gif   # side by side with the truth
    dforce rollout generate runs/df/model --rollout.guidance vanilla --rollout.guidance_scale 1.5 --out hg.mp4
    dforce rollout generate runs/fs/model --keyframes 0,7 --out infill.gif # needs a bidirectional model
    dforce rollout eval runs/df/model --horizon 80 --out metrics.json

Every option is listed by ``dforce rollout SUBCOMMAND --help``; ``--config FILE.yaml`` reads them from a file.
"""

from __future__ import annotations

import json
from dataclasses import asdict
import os
import sys
from typing import Optional

import torch

from dforce.cli.common import UserError, add_overwrite, check_outputs, parser
from dforce.video.data import SpriteConfig
from dforce.sampling import SamplingConfig
from dforce.video.experiment import RolloutConfig

USAGE = "usage: dforce rollout {train,generate,eval} [options]   (dforce rollout SUBCOMMAND --help)"


def _sprite_args(p) -> None:
    p.add_argument("--sprite", type=str, default="digits", help="digits, fashion or balls")
    p.add_argument("--frame_size", type=int, default=32, help="frame side in pixels (32 or 64)")
    p.add_argument("--sprite_size", type=Optional[int], default=None, help="sprite side (default: frame_size // 2, balls // 4)")
    p.add_argument("--num_sprites", type=tuple[int, int], default=(1, 2), help="(min, max) sprites per clip")
    p.add_argument("--speed", type=tuple[float, float], default=(1.0, 3.0), help="(min, max) pixels per frame")
    p.add_argument("--actions", type=bool, default=False, help="controllable sprite 0; model conditioned on one-hot actions")


def _sprites(a) -> SpriteConfig:
    return SpriteConfig(sprite=a.sprite, frame_size=a.frame_size, sprite_size=a.sprite_size, num_sprites=tuple(a.num_sprites),
                        speed=tuple(a.speed), actions=a.actions)


def _train(argv: list[str]) -> int:
    p = parser("dforce rollout train", "Train a video model (Diffusion Forcing, teacher forcing or full-sequence) on moving sprites.")
    p.add_argument("--config", action="config", help="read options from a YAML/JSON file")
    _sprite_args(p)
    p.add_argument("--method", type=str, default="df", help="df (Diffusion Forcing), tf (teacher forcing) or fs (full-sequence)")
    p.add_argument("--causal", type=Optional[bool], default=None, help="causal temporal attention (default: df/tf causal, fs not)")
    p.add_argument("--preset", type=str, default="tiny", help="backbone size: tiny (CPU), small, base (GPU)")
    p.add_argument("--window", type=int, default=8, help="training clip length in frames")
    p.add_argument("--weighting", type=str, default="fused_snr",
                   help="loss weighting: fused_snr (the reference's video default; see docs/video.md), min_snr, sigmoid or uniform")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    p.add_argument("--batch_size", type=int, default=32, help="clips per step")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--ema_decay", type=float, default=0.99, help="EMA decay of the sampling weights (0 disables)")
    p.add_argument("--precision", type=str, default="32-true", help="Lightning precision: 32-true or bf16-mixed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="data, init and noise seed")
    p.add_argument("--out", type=str, default="runs/video", help="run folder: logs, checkpoints (resumable) and model/ (export)")
    add_overwrite(p)
    a = p.parse_args(argv)
    from dforce.training.export import check_export_path

    for name in ("steps", "batch_size", "window", "threads", "frame_size"):
        if getattr(a, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.method not in ("df", "tf", "fs"):
        raise UserError(f"--method must be df, tf or fs, got {a.method!r}")
    if not a.lr > 0:
        raise UserError(f"--lr must be > 0, got {a.lr}")
    from dforce.diffusion.weighting import WEIGHTINGS

    if a.weighting not in WEIGHTINGS:
        raise UserError(f"--weighting must be one of {', '.join(WEIGHTINGS)}, got {a.weighting!r}")
    if not 0.0 <= a.ema_decay < 1.0:
        raise UserError(f"--ema_decay must lie in [0, 1), got {a.ema_decay}")
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        raise UserError(f"--out {a.out} is an existing file; give a folder for the run")
    check_export_path(os.path.join(a.out, "model"), a.overwrite, option="--out model folder")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    from dforce.training import export_model
    from dforce.video.experiment import build_video_model, train_video_model

    sprites = _sprites(a)
    model = build_video_model(a.method, a.frame_size, a.window, a.preset, action_dim=sprites.action_dim, causal=a.causal,
                              weighting=a.weighting)
    model = train_video_model(model, sprites, a.steps, batch_size=a.batch_size, lr=a.lr, ema_decay=a.ema_decay, seed=a.seed,
                              out_dir=a.out, precision=a.precision, progress=True)
    path = export_model(model, os.path.join(a.out, "model"), extra={"sprites": sprites.to_dict(), "method": a.method},
                        overwrite=a.overwrite)
    print(f"exported {path}")
    return 0


def _load(checkpoint: str):
    from dforce.training import load_model

    model, extra = load_model(checkpoint)
    if "sprites" not in extra:
        raise UserError(f"{checkpoint} was not written by `dforce rollout train` (no sprite config in its extra data); "
                        "pass a model folder from dforce rollout train (OUT/model)")
    s = dict(extra["sprites"])
    s["num_sprites"], s["speed"] = tuple(s["num_sprites"]), tuple(s["speed"])
    return model.eval(), SpriteConfig(**s), extra.get("method", "df")


def _rollout_parser(name: str, description: str):
    p = parser(f"dforce rollout {name}", description)
    p.add_argument("--config", action="config", help="read options from a YAML/JSON file")
    p.add_argument("checkpoint", type=str, help="exported model folder (dforce rollout train writes OUT/model)")
    p.add_argument("--num", type=int, default=4, help="test clips")
    p.add_argument("--context", type=int, default=4, help="ground-truth frames given as context")
    p.add_argument("--horizon", type=int, default=80, help="frames to generate")
    p.add_argument("--split", type=str, default="test", help="clips from the val or test split (held-out sprites)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clips and of the sampler")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_class_arguments(RolloutConfig, "rollout", skip={"method", "extra"})
    add_overwrite(p)
    return p


def _setup(a):
    from dforce.video.data import fixed_split

    for name in ("num", "horizon", "threads"):
        if getattr(a, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(a, name)}")
    if a.context < 0:
        raise UserError(f"--context must be >= 0, got {a.context}")
    if a.split not in ("val", "test"):
        raise UserError(f"--split must be val or test, got {a.split!r}")
    torch.set_num_threads(a.threads)
    model, sprites, method = _load(a.checkpoint)
    clips = fixed_split(sprites, a.split, a.num, a.context + a.horizon, seed=a.seed)
    opts = vars(a.rollout)
    rc = RolloutConfig(method=method, **{**opts, "sampling": SamplingConfig(**vars(opts["sampling"]))})
    return model, sprites, clips, rc


def _generate(argv: list[str]) -> int:
    p = _rollout_parser("generate", "Roll a trained model out on held-out clips (or fill in between keyframes) and write a "
                        "GIF/MP4 with the ground truth on top and the samples below.")
    p.add_argument("--keyframes", type=Optional[str], default=None,
                   help="comma-separated frame indices to condition on (e.g. 0,7): keyframe interpolation within one window")
    p.add_argument("--out", type=str, default="rollout.gif", help=".gif or .mp4 (a .npy of the samples is written beside it)")
    p.add_argument("--fps", type=int, default=8, help="frames per second of the video")
    p.add_argument("--scale", type=int, default=2, help="integer upscaling of the video")
    a = p.parse_args(argv)
    import numpy as np

    if not a.out.endswith((".gif", ".mp4")):
        raise UserError(f"--out {a.out} must end in .gif or .mp4")
    if a.fps < 1 or a.scale < 1:
        raise UserError(f"--fps and --scale must be >= 1, got {a.fps} and {a.scale}")
    npy = os.path.splitext(a.out)[0] + ".npy"
    check_outputs(a.overwrite, out=a.out, **{"out (samples beside it)": npy})
    from dforce.video.experiment import generate
    from dforce.video.metrics import write_video
    from dforce.video.sampling import interpolate

    model, sprites, clips, rc = _setup(a)
    x, cond = clips["x"], clips.get("cond")
    if a.keyframes:
        n = model.window * model.frame_stack
        known = torch.zeros(n, dtype=torch.bool)
        for i in a.keyframes.split(","):
            try:
                j = int(i)
            except ValueError:
                raise UserError(f"--keyframes {a.keyframes!r}: {i!r} is not a frame index; give comma-separated integers like 0,7") from None
            if not 0 <= j < n:
                raise UserError(f"--keyframes: frame {j} is outside the model's window of {n} frames (0..{n - 1})")
            known[j] = True
        truth = x[:, :n]
        pred = interpolate(model, truth, known, steps=rc.sampling.steps, eta=rc.sampling.eta, solver=rc.sampling.solver,
                           cond=None if cond is None else cond[:, :n], seed=a.seed, precision=rc.precision)
    else:
        truth = x[:, a.context :]
        pred = generate(model, x[:, : a.context], a.horizon, rc, cond=cond, seed=a.seed)
    from dforce.training.files import atomic_write

    atomic_write(a.out, lambda tmp: write_video(str(tmp), [truth, pred], fps=a.fps, scale=a.scale), suffix=os.path.splitext(a.out)[1])
    atomic_write(npy, lambda tmp: np.save(tmp, pred.numpy()), suffix=".npy")
    print(f"wrote {a.out} and {npy} ({tuple(pred.shape)})")
    return 0


def _eval(argv: list[str]) -> int:
    p = _rollout_parser("eval", "Score rollouts against the ground-truth continuation: PSNR / SSIM / MSE per horizon bucket "
                        "and drift diagnostics (intensity-histogram distance, sprite count) per segment.")
    p.add_argument("--segment", type=Optional[int], default=None, help="frames per bucket / segment (default: the model window)")
    p.add_argument("--out", type=Optional[str], default=None, help="write the metrics as JSON here")
    a = p.parse_args(argv)
    if a.segment is not None and a.segment < 1:
        raise UserError(f"--segment must be >= 1, got {a.segment}")
    if a.out and not a.out.endswith(".json"):
        raise UserError(f"--out {a.out} must end in .json")
    check_outputs(a.overwrite, out=a.out)
    from dforce.video.data import fixed_split
    from dforce.video.experiment import generate, score
    from dforce.video.metrics import sprite_counts

    model, sprites, clips, rc = _setup(a)
    x, cond = clips["x"], clips.get("cond")
    truth = x[:, a.context :]
    pred = generate(model, x[:, : a.context], a.horizon, rc, cond=cond, seed=a.seed)
    segment = a.segment or model.window * model.frame_stack
    reference = fixed_split(sprites, "val", 64, segment, seed=a.seed)["x"]  # as in benchmarks/video.py
    res = score(pred, truth, reference, segment, sprite_counts(truth))
    res["config"] = {k: v for k, v in asdict(rc).items() if k != "extra"}
    text = json.dumps(res, indent=1)
    if a.out:
        from dforce.training.files import atomic_write_text

        atomic_write_text(a.out, text)
        print(f"wrote {a.out}")
    else:
        print(text)
    return 0


def main(argv: list[str]) -> int:
    commands = {"train": _train, "generate": _generate, "eval": _eval}
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE + "\n\n" + (__doc__ or ""))
        return 0
    if argv[0] not in commands:
        print(f"error: unknown subcommand {argv[0]!r} of dforce rollout; choose train, generate or eval", file=sys.stderr)
        return 2
    from dforce.cli.common import check_config_files

    check_config_files(argv[1:])
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
