import json

import pytest

from dforce.cli.common import UserError
from dforce.cli.video import main
from dforce.training import load_model


def test_rollout_cli_train_generate_eval(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--frame_size", "16", "--window", "4", "--num_sprites", "[1, 1]"]
    assert main(["train", "--method", "fs", "--steps", "2", "--batch_size", "2", "--weighting", "min_snr", "--out", str(run), *common]) == 0
    model = str(run / "model")
    assert load_model(model)[0].weighting == "min_snr"
    gif = tmp_path / "roll.gif"
    assert main(["generate", model, "--num", "2", "--context", "2", "--horizon", "6", "--rollout.sampling.steps", "2",
                 "--rollout.sampling.chunk_size", "2", "--rollout.sampling.history_len", "2", "--out", str(gif)]) == 0
    assert gif.stat().st_size > 0 and (tmp_path / "roll.npy").exists()
    assert main(["generate", model, "--num", "1", "--keyframes", "0,3", "--rollout.sampling.steps", "2", "--out", str(tmp_path / "k.mp4")]) == 0
    out = tmp_path / "m.json"
    assert main(["eval", model, "--num", "2", "--context", "2", "--horizon", "4", "--rollout.sampling.steps", "2",
                 "--rollout.sampling.chunk_size", "2", "--rollout.sampling.history_len", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["psnr"]) == {"1-4"} and res["drift"][0]["frames"] == "1-4" and res["config"]["method"] == "fs"
    assert main(["nope"]) == 2
    with pytest.raises(UserError, match="--weighting must be one of uniform, min_snr, sigmoid, fused_snr, got 'snr'"):
        main(["train", "--weighting", "snr", "--out", str(tmp_path / "w")])
    assert not (tmp_path / "w").exists()
    with pytest.raises(SystemExit):
        main(["generate", model, "--rollout.guidance", "vanilla", "--bogus"])
