"""Every MVD stage from the command line on CPU: image MAE and VideoMAE teachers, the co-teaching student
(and its resume), then the teachers' cross-frame similarity."""

from __future__ import annotations

import json

import pytest

from vidfm.cli import main

pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits

# A 1-block, 32-wide model at 32² and a couple of steps: the point is the plumbing, not the numbers.
SMALL = ["encoder.depth=1", "encoder.width=32", "encoder.heads=2", "encoder.img_size=32", "augment.size=32"]
TRAIN = [
    "data.short_side=32",
    "train.steps=2",
    "train.batch_size=2",
    "train.warmup_steps=0",
    "train.workers=0",
    "train.progress=false",
    "train.ckpt_every=0",
]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> str:
    from vidfm.data.digits import make_digits_motion

    return str(make_digits_motion(tmp_path_factory.mktemp("digits"), n=8, size=32, seed=0))


def pretrain(recipe: str, out, manifest: str, *extra: str) -> None:
    args = ["pretrain", "--recipe", recipe, "--out", str(out)]
    assert main(args + sets(f"data.manifest={manifest}", *SMALL, *TRAIN, *extra)) == 0


def test_mvd_stages_from_the_cli(tmp_path, manifest, capsys) -> None:
    from vidfm.recipes import load_run_config, load_run_encoder
    from vidfm.train.checkpoint import latest_checkpoint

    small_decoder = ("decoder.depth=1", "decoder.width=32", "decoder.heads=2")
    pretrain("mae_image:tiny", tmp_path / "img", manifest, *small_decoder)
    pretrain("videomae:tiny", tmp_path / "vid", manifest, *small_decoder)
    teachers = (f"teachers.image={tmp_path / 'img'}", f"teachers.video={tmp_path / 'vid'}")
    pretrain("mvd:tiny", tmp_path / "mvd", manifest, "decoder.depth=1", *teachers)

    rows = [json.loads(line) for line in (tmp_path / "mvd" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and {"loss", "loss_image", "loss_video"} <= set(rows[-1])
    cfg = load_run_config(tmp_path / "mvd")
    assert cfg.teachers.image == str(tmp_path / "img") and cfg.encoder.pos_embed == "sincos_3d_mvd"
    from vidfm.io import load_tensors

    saved = load_tensors(latest_checkpoint(tmp_path / "mvd") / "model.safetensors")
    assert any(k.startswith("decoder_image.") for k in saved) and not any(
        k.startswith("teacher") for k in saved
    )
    encoder, _ = load_run_encoder(tmp_path / "mvd")
    assert encoder.width == 32

    # resume: one more step on top of the checkpoint, teachers reloaded from their runs
    pretrain("mvd:tiny", tmp_path / "mvd", manifest, "decoder.depth=1", *teachers, "train.steps=3")
    out = capsys.readouterr().out
    assert "'resumed': True" in out and "'steps_this_run': 1" in out

    # a single-teacher student: the zero-weight teacher is never loaded (its path does not even exist)
    missing = f"teachers.image={tmp_path / 'missing'}"
    pretrain(
        "mvd:tiny",
        tmp_path / "mvd_vid",
        manifest,
        "decoder.depth=1",
        teachers[1],
        missing,
        "teachers.image_weight=0",
    )
    last = json.loads((tmp_path / "mvd_vid" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "loss_video" in last and "loss_image" not in last

    args = [
        "teacher",
        "similarity",
        "--teacher",
        f"image={tmp_path / 'img'}",
        "--teacher",
        f"video={tmp_path / 'vid'}",
    ]
    args += ["--data", manifest, "--split", "all", "--stride", "1", "--max-clips", "4", "--workers", "0"]
    assert main(args + ["--out", str(tmp_path / "sim.png")]) == 0
    out = capsys.readouterr().out
    assert "| image (image) |" in out and "| video (video) |" in out
    assert (tmp_path / "sim.png").is_file()
