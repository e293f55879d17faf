import pytest
import torch

from dforce.video.autoencoder import FrameAutoencoder, export_autoencoder, load_autoencoder, train_autoencoder
from dforce.video.data import SpriteConfig, batch


def small_ae(**kw):
    torch.manual_seed(0)
    return FrameAutoencoder(channels=1, image_size=32, latent_channels=4, width=8, **kw)


def frames(n=4):
    return batch(SpriteConfig(num_sprites=(1, 2)), n, 4, seed=0)["x"]  # [n, 4, 1, 32, 32]


def test_shapes():
    ae = small_ae()
    x = frames(2)
    z = ae.encode(x)
    assert z.shape == (2, 4, 4, 8, 8) and ae.latent_shape == (4, 8, 8)
    y = ae.decode(z)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert ae.encode(x[:, 0]).shape == (2, 4, 8, 8)  # [B, C, H, W] too
    with pytest.raises(ValueError, match="frames must have shape"):
        ae.encode(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="latents must have shape"):
        ae.decode(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        FrameAutoencoder(image_size=30)


def test_training_improves_reconstruction_and_normalises():
    ae = small_ae()
    x = frames(8).reshape(-1, 1, 32, 32)
    with torch.no_grad():
        before = float(((ae(x) - x) ** 2).mean())
    losses = train_autoencoder(ae, x, 60, batch_size=16, lr=3e-3)
    with torch.no_grad():
        after = float(((ae(x) - x) ** 2).mean())
        z = ae.encode(x)
    assert len(losses) == 60 and after < 0.5 * before
    assert z.mean().abs() < 0.1 and (z.transpose(0, 1).reshape(4, -1).std(1) - 1).abs().max() < 0.1


def test_normalisation_round_trip():
    ae = small_ae().eval()
    ae.latent_mean.fill_(0.3)
    ae.latent_std.fill_(2.0)
    x = frames(1)[0]
    zr = ae.encode_raw(x)
    z = ae.encode(x)
    torch.testing.assert_close(z * 2.0 + 0.3, zr)
    torch.testing.assert_close(ae.decode(z), torch.tanh(ae.decoder(zr)))


def test_export_load_round_trip(tmp_path):
    ae = small_ae().eval()
    ae.latent_std.fill_(1.5)
    path = export_autoencoder(ae, tmp_path / "ae", extra={"note": 1})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    ae2, extra = load_autoencoder(path)
    assert extra == {"note": 1} and ae2.config == ae.config
    x = frames(1)
    torch.testing.assert_close(ae2(x), ae(x))
    export_autoencoder(ae, path)  # overwrite an exported folder
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("keep")
    with pytest.raises(FileExistsError):
        export_autoencoder(ae, tmp_path / "other")
    with pytest.raises(FileNotFoundError):
        load_autoencoder(tmp_path / "missing")


def test_export_refuses_a_folder_with_files_dforce_did_not_write(tmp_path):
    ae = FrameAutoencoder(image_size=16, width=8)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")  # a user's file of the same name
    with pytest.raises(FileExistsError, match="files dforce did not write"):
        export_autoencoder(ae, tmp_path / "mine")
    assert (tmp_path / "mine" / "config.json").read_text() == "{}"
    export_autoencoder(ae, tmp_path / "ae")
    export_autoencoder(ae, tmp_path / "ae")  # an earlier export is replaced
    assert sorted(p.name for p in (tmp_path / "ae").iterdir()) == ["config.json", "model.safetensors"]
