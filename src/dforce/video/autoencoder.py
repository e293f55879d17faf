"""A small convolutional frame autoencoder for latent video diffusion (as in DFoT's line of work).

Diffusion Forcing then runs over latent frames instead of pixels: a 32x32x1 sprite frame becomes
an 8x8xC latent (``C = latent_channels``), the :class:`~dforce.backbones.VideoTransformer` treats
the latent as a C-channel 8x8 image, and rollouts are decoded back to pixels for the metrics.

Plain autoencoder (MSE) with two regularisers that keep the latent space diffusion-friendly:

- a small L2 penalty on the latents (keeps them bounded, like a weak KL);
- latent noise during training (``latent_noise``): the decoder learns to ignore the small errors
  a diffusion sampler leaves in its latents.

After training, :meth:`FrameAutoencoder.fit_normalization` stores a per-channel mean / std so that
:meth:`~FrameAutoencoder.encode` returns roughly unit-variance latents (what the noise schedules
assume) and :meth:`~FrameAutoencoder.decode` undoes it.

    ae = FrameAutoencoder(channels=1, image_size=32, latent_channels=4)   # 32x32x1 <-> 4x8x8
    z = ae.encode(frames)          # [..., 1, 32, 32] -> [..., 4, 8, 8]
    x = ae.decode(z)               # [..., 4, 8, 8] -> [..., 1, 32, 32] in [-1, 1]
    export_autoencoder(ae, "runs/ae");  ae2 = load_autoencoder("runs/ae")   # safetensors + JSON, no pickle
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AE_FORMAT = "dforce-autoencoder-1"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class FrameAutoencoder(nn.Module):
    """Per-frame conv autoencoder: ``[..., channels, H, W] <-> [..., latent_channels, H/f, W/f]``.

    Args:
        channels: frame channels (1 for the sprite videos).
        image_size: frame side H = W (divisible by ``2 ** downsample``).
        latent_channels: channels C of a latent frame.
        width: channels of the first conv stage (doubled once after the first downsampling).
        downsample: number of stride-2 stages (2: 32x32 -> 8x8, f = 4).
        latent_noise: std of the Gaussian noise added to normalised latents while training the decoder.
        latent_l2: weight of the L2 penalty on the raw latents.

    Leading dimensions are free: ``[B, C, H, W]`` and ``[B, T, C, H, W]`` both work (flattened inside).
    Frames are in [-1, 1]; the decoder ends in ``tanh``.
    """

    registry_name = "frame_autoencoder"

    def __init__(self, channels: int = 1, image_size: int = 32, latent_channels: int = 4, width: int = 32, downsample: int = 2,
                 latent_noise: float = 0.1, latent_l2: float = 1e-4) -> None:
        super().__init__()
        if image_size % (2**downsample):
            raise ValueError(f"image_size {image_size} must be divisible by 2**downsample = {2 ** downsample}")
        if width % 8:
            raise ValueError(f"width must be a multiple of 8 (GroupNorm), got {width}")
        self.config = dict(channels=channels, image_size=image_size, latent_channels=latent_channels, width=width,
                           downsample=downsample, latent_noise=latent_noise, latent_l2=latent_l2)
        self.channels, self.image_size, self.latent_channels = channels, image_size, latent_channels
        self.latent_noise, self.latent_l2 = latent_noise, latent_l2
        self.latent_size = image_size // 2**downsample
        widths = [width * min(2**i, 2) for i in range(downsample + 1)]
        enc: list[nn.Module] = [_block(channels, widths[0])]
        for i in range(downsample):
            enc += [nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1), nn.SiLU(), _block(widths[i + 1], widths[i + 1])]
        enc += [nn.Conv2d(widths[-1], latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 3, padding=1), nn.SiLU(), _block(widths[-1], widths[-1])]
        for i in reversed(range(downsample)):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(widths[i + 1], widths[i], 3, padding=1), nn.SiLU(),
                    _block(widths[i], widths[i])]
        dec += [nn.Conv2d(widths[0], channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape of one latent frame ``(C, h, w)``."""
        return (self.latent_channels, self.latent_size, self.latent_size)

    def _norm(self, z: Tensor) -> Tensor:
        return (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def _denorm(self, z: Tensor) -> Tensor:
        return z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]

    def _check(self, x: Tensor, shape: tuple, name: str) -> None:
        if x.dim() < 4 or tuple(x.shape[-3:]) != tuple(shape):
            raise ValueError(f"{name} must have shape [..., {', '.join(map(str, shape))}], got {tuple(x.shape)}")

    def encode_raw(self, x: Tensor) -> Tensor:
        """Frames [..., channels, H, W] -> un-normalised latents [..., C, h, w]."""
        self._check(x, (self.channels, self.image_size, self.image_size), "frames")
        lead = x.shape[:-3]
        return self.encoder(x.reshape(-1, *x.shape[-3:])).reshape(*lead, *self.latent_shape)

    def encode(self, x: Tensor) -> Tensor:
        """Frames [..., channels, H, W] in [-1, 1] -> normalised latents [..., C, h, w]."""
        return self._norm(self.encode_raw(x))

    def decode(self, z: Tensor) -> Tensor:
        """Normalised latents [..., C, h, w] -> frames [..., channels, H, W] in [-1, 1]."""
        self._check(z, self.latent_shape, "latents")
        lead = z.shape[:-3]
        z = self._denorm(z).reshape(-1, *self.latent_shape)
        return torch.tanh(self.decoder(z)).reshape(*lead, self.channels, self.image_size, self.image_size)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of frames [..., channels, H, W]."""
        return self.decode(self.encode(x))

    def loss(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Training loss on frames [..., channels, H, W]: pixel MSE of the reconstruction from noised
        normalised latents, plus ``latent_l2`` times the mean squared raw latent."""
        zr = self.encode_raw(x)
        z = self._norm(zr)
        if self.latent_noise > 0:
            z = z + self.latent_noise * torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        rec = self.decode(z)
        return F.mse_loss(rec, x) + self.latent_l2 * zr.pow(2).mean()

    @torch.no_grad()
    def fit_normalization(self, frames: Tensor | Iterable[Tensor]) -> None:
        """Set the per-channel latent mean / std from frames [..., channels, H, W] (a tensor or batches)."""
        batches = [frames] if torch.is_tensor(frames) else frames
        zs = [self.encode_raw(b).reshape(-1, *self.latent_shape).transpose(0, 1).reshape(self.latent_channels, -1) for b in batches]
        z = torch.cat(zs, 1)
        self.latent_mean.copy_(z.mean(1))
        self.latent_std.copy_(z.std(1).clamp_min(1e-6))


def train_autoencoder(ae: FrameAutoencoder, frames, steps: int, *, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                      log_every: int = 0) -> list[float]:
    """A plain training loop: AdamW with cosine decay. ``frames`` is a tensor [K, channels, H, W]
    (random batches are drawn from it) or a callable ``step -> [batch, channels, H, W]``.
    Fits the latent normalisation at the end. Returns the loss per step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(ae.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    losses = []
    ae.train()
    for step in range(steps):
        if callable(frames):
            x = frames(step)
        else:
            x = frames[torch.randint(0, len(frames), (batch_size,), generator=g)]
        loss = ae.loss(x, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f"ae step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.5f}", flush=True)
    ae.eval()
    sample = frames(steps) if callable(frames) else frames[: min(len(frames), 4096)]
    ae.fit_normalization(sample)
    return losses


# ------------------------------------------------------------------------------ export / load
def export_autoencoder(ae: FrameAutoencoder, path: str | os.PathLike, extra: Optional[dict] = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (format ``dforce-autoencoder-1``) to the folder
    ``path`` with the writer of :func:`dforce.training.export_model` (atomic; an earlier dforce
    folder is replaced, a folder with files dforce did not write is refused). No pickle."""
    from dforce.training.export import check_export_path, write_folder

    check_export_path(path)
    cfg = {"format": AE_FORMAT, "autoencoder": {"name": ae.registry_name, "kwargs": dict(ae.config)}, "extra": extra or {}}
    return write_folder(Path(path), ae.state_dict(), cfg)


def load_autoencoder(path: str | os.PathLike, map_location: str = "cpu") -> tuple[FrameAutoencoder, dict]:
    """Inverse of :func:`export_autoencoder`: ``(autoencoder in eval mode, extra)``."""
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{cfg_file} not found: export the autoencoder with export_autoencoder first")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("format") != AE_FORMAT:
        raise ValueError(f"{path} holds format {cfg.get('format')!r}, expected {AE_FORMAT!r}")
    spec = cfg["autoencoder"]
    if spec["name"] != FrameAutoencoder.registry_name:
        raise ValueError(f"unknown autoencoder {spec['name']!r}")
    ae = FrameAutoencoder(**spec["kwargs"])
    ae.load_state_dict(load_file(str(path / "model.safetensors"), device="cpu"))
    return ae.to(map_location).eval(), cfg.get("extra", {})


__all__ = ["AE_FORMAT", "FrameAutoencoder", "export_autoencoder", "load_autoencoder", "train_autoencoder"]
