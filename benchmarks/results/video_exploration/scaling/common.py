"""What the scripts of this folder share: the benchmark's sprites, clips and the DF model under test."""
import os, sys

from dforce.model import DiffusionForcing
from dforce.video import metrics as M
from dforce.video.data import SpriteConfig, fixed_split
from dforce.video.experiment import build_video_model

HERE = os.path.dirname(os.path.abspath(__file__))
SPRITES = SpriteConfig(sprite="digits", frame_size=32, num_sprites=(1, 2), speed=(1.0, 3.0))
WINDOW, CTX, HOR = 8, 4, 80


def clips(split: str) -> dict:
    """16 clips of ``split`` (80 frames after 4 true ones) and what ``score`` needs besides the samples."""
    c = fixed_split(SPRITES, split, 16, CTX + HOR, seed=0)
    truth = c["x"][:, CTX:]
    return dict(context=c["x"][:, :CTX], truth=truth, counts=M.sprite_counts(truth),
                reference=fixed_split(SPRITES, "val", 64, WINDOW, seed=0)["x"],
                known=dict(labels=c["labels"], centroids=c["centroids"][:, CTX:], sprites=SPRITES))


def build(backbone: str) -> DiffusionForcing:
    """The benchmark's DF model (``tiny``) or the U-Net of ``../weighting/video_unet.py`` (``unet_WIDTH_MULTS_STEM``)."""
    if backbone == "tiny":
        return build_video_model("df", frame_size=32, window=WINDOW, preset="tiny", parametrization="x0", weighting="fused_snr")
    sys.path.insert(0, os.path.join(HERE, "..", "weighting"))
    from video_unet import VideoUNet

    w, mults, stem = backbone.split("_")[1:]
    return DiffusionForcing(VideoUNet(width=int(w), mults=[int(c) for c in mults], stem=int(stem)), window=WINDOW,
                            parametrization="x0", weighting="fused_snr")
