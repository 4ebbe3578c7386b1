"""Official MVD students (both feature decoders) -> vidfm's ``mvd`` layout -> back, compared by outputs with
a reference forward written from official ``modeling_student.py`` (tests/convert/official_reference.py)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_reference as ref  # noqa: E402

from vidfm.convert import (
    build_converted,
    detect_layout,
    load_vidfm_checkpoint,
    read_checkpoint,
    to_official_mvd,
)
from vidfm.convert.mvd import from_official_mvd
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.recipes.mvd import tiny as mvd_tiny
from vidfm.tasks.mvd import MVDTask
from vidfm.teachers.targets import LiveTargets
from vidfm.teachers.vit import ViTTeacher
from vidfm.train.checkpoint import load_model_weights

D, DEPTH, HEADS, PATCH, TUBELET, FRAMES, SIDE = 64, 2, 4, 8, 2, 4, 32
GRID = (FRAMES // TUBELET, SIDE // PATCH, SIDE // PATCH)  # (2, 4, 4): N = 32
N = GRID[0] * GRID[1] * GRID[2]
OUT = {"img": 40, "vid": 24}  # teacher widths


def official_student(dec_width: int = D, dec_heads: int = HEADS, seed: int = 0) -> dict[str, torch.Tensor]:
    """A PretrainMaskedVideoStudent state dict (use_cls_token=False, qkv_bias=True, init_values=0)."""
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embed.proj.weight": (D, 3, TUBELET, PATCH, PATCH),
        "patch_embed.proj.bias": (D,),
        "norm.weight": (D,),
        "norm.bias": (D,),
    }
    for i in range(DEPTH):
        shapes |= ref.block_shapes(f"blocks.{i}.", D, 4 * D)
    for b, out in OUT.items():
        shapes |= {
            f"mask_token_{b}": (1, 1, dec_width),
            f"down_{b}.weight": (dec_width, D),
            f"down_{b}.bias": (dec_width,),
        }
        for i in range(2):
            shapes |= ref.block_shapes(f"decoder_{b}.blocks.{i}.", dec_width, 4 * dec_width)
        shapes |= {
            f"decoder_{b}.norm.weight": (dec_width,),
            f"decoder_{b}.norm.bias": (dec_width,),
            f"decoder_{b}.head.weight": (out, dec_width),
            f"decoder_{b}.head.bias": (out,),
        }
    sd = ref.perturbed(shapes, seed)
    sd["pos_embed"] = ref.mvd_sincos_3d(D, GRID[1], GRID[0])
    for b in OUT:
        sd[f"pos_embed_{b}"] = ref.mvd_sincos_3d(dec_width, GRID[1], GRID[0])
    return sd


def reference_forward(sd, video, masked_bool, heads: int, dec_heads: int) -> dict[str, torch.Tensor]:
    """PretrainMaskedVideoStudent.forward: encoder on visible tokens -> norm -> per branch down, + tables,
    mask tokens after the visible ones, decoder blocks, norm + head on the masked tokens."""
    b = video.shape[0]
    x = ref.patch_tokens(video, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"]) + sd["pos_embed"]
    x = x[~masked_bool].reshape(b, -1, D)
    for i in range(DEPTH):
        x = ref.block(x, sd, f"blocks.{i}.", heads)
    x = ref.layer_norm(x, sd, "norm.", 1e-6)
    out = {}
    for br in OUT:
        y = torch.nn.functional.linear(x, sd[f"down_{br}.weight"], sd[f"down_{br}.bias"])
        pos = sd[f"pos_embed_{br}"].expand(b, -1, -1)
        c = y.shape[-1]
        vis, mask = pos[~masked_bool].reshape(b, -1, c), pos[masked_bool].reshape(b, -1, c)
        z = torch.cat([y + vis, sd[f"mask_token_{br}"] + mask], 1)
        for i in range(2):
            z = ref.block(z, sd, f"decoder_{br}.blocks.{i}.", dec_heads)
        z = ref.layer_norm(z[:, -mask.shape[1] :], sd, f"decoder_{br}.norm.", 1e-6)
        out[br] = torch.nn.functional.linear(
            z, sd[f"decoder_{br}.head.weight"], sd[f"decoder_{br}.head.bias"]
        )
    return out


MASKED = torch.tensor([[0, 3, 5, 8, 13, 21, 22, 30], [1, 2, 6, 9, 14, 17, 25, 31]])


def mask_parts() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    masked_bool = torch.zeros(2, N, dtype=torch.bool)
    masked_bool.scatter_(1, MASKED, True)
    visible = torch.stack([torch.nonzero(~row).flatten() for row in masked_bool])
    return masked_bool, visible, MASKED


def video() -> torch.Tensor:
    return torch.randn(2, 3, FRAMES, SIDE, SIDE, generator=torch.Generator().manual_seed(7))


def mvd_task(conv) -> MVDTask:
    """The vidfm MVD recipe's task around the converted configs, with tiny teachers of the right widths."""
    torch.manual_seed(1)
    small = dict(size="T/8", depth=1, heads=2, img_size=SIDE)
    image = ViTTeacher(
        VideoEncoder(EncoderConfig(**small, width=OUT["img"], tubelet=1, num_frames=1, cls_token=True))
    )
    vid = ViTTeacher(VideoEncoder(EncoderConfig(**small, width=OUT["vid"], tubelet=2, num_frames=FRAMES)))
    cfg = mvd_tiny()
    augment = dataclasses.replace(cfg.augment, size=SIDE)
    return MVDTask(conv.encoder, conv.decoder, cfg.mask, augment, LiveTargets(image), LiveTargets(vid))


def test_student_with_both_decoders_matches_the_reference_and_resumes(tmp_path, caplog) -> None:
    from vidfm import cli

    sd = official_student()
    torch.save({"model": sd, "epoch": 399}, tmp_path / "mvd.pth")
    assert detect_layout({"model": sd}) == "mvd"
    args = ["--heads", str(HEADS), "--num-frames", str(FRAMES), "--img-size", str(SIDE)]
    from vidfm.utils import log

    log.addHandler(caplog.handler)  # the vidfm logger does not propagate to the root logger
    try:
        with caplog.at_level("INFO", logger="vidfm"):
            assert cli.main(["convert", str(tmp_path / "mvd.pth"), str(tmp_path / "out"), *args]) == 0
    finally:
        log.removeHandler(caplog.handler)
    assert "detected the official mvd layout" in caplog.text  # --from auto says what it found
    conv = load_vidfm_checkpoint(tmp_path / "out")
    assert conv.layout == "mvd" and conv.encoder.pos_embed == "sincos_3d_mvd" and conv.decoder.in_bias
    # The recipe's task takes the folder strictly (what train.init_from does): encoder and both decoders.
    task = mvd_task(conv)
    load_model_weights(tmp_path / "out", task, strict=True)
    task.eval()
    masked_bool, visible, masked = mask_parts()
    x = video()
    with torch.no_grad():
        want = reference_forward(sd, x, masked_bool, HEADS, HEADS)
        tokens = task.encoder(x, visible=visible).tokens
        for br, name in (("img", "image"), ("vid", "video")):
            got = getattr(task, f"decoder_{name}")(tokens, visible, masked)
            assert (got - want[br]).abs().max() <= 1e-4, br
    # One training step of the recipe's loss runs from these weights.
    task.train()
    batch = {"video": torch.randint(0, 256, (2, FRAMES, SIDE, SIDE, 3), dtype=torch.uint8)}
    loss = task(batch, torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and task.decoder_image.encoder_to_decoder.bias.grad is not None


def test_round_trip_is_key_by_key_and_biases_matter() -> None:
    sd = official_student()
    conv = from_official_mvd({"module": sd}, heads=HEADS, num_frames=FRAMES, img_size=SIDE)
    back = to_official_mvd(conv)
    assert back.keys() == sd.keys()
    for k, v in sd.items():
        assert torch.allclose(back[k], v, atol=1e-6), k
    # Swapped q/v biases must change the output (a loader that mixes them up fails the comparison).
    swapped = dict(sd)
    swapped["blocks.0.attn.q_bias"], swapped["blocks.0.attn.v_bias"] = (
        sd["blocks.0.attn.v_bias"],
        sd["blocks.0.attn.q_bias"],
    )
    enc = build_converted(from_official_mvd(swapped, heads=HEADS, num_frames=FRAMES, img_size=SIDE))[
        "encoder"
    ]
    masked_bool, visible, _ = mask_parts()
    with torch.no_grad():
        x = (
            ref.patch_tokens(video(), sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"])
            + sd["pos_embed"]
        )
        want = x[~masked_bool].reshape(2, -1, D)
        for i in range(DEPTH):
            want = ref.block(want, sd, f"blocks.{i}.", HEADS)
        want = ref.layer_norm(want, sd, "norm.", 1e-6)
        assert (enc(video(), visible=visible).tokens - want).abs().max() > 1e-2


def test_unknown_layouts_are_named_errors(tmp_path) -> None:
    from vidfm import cli

    torch.save({"model": {"backbone.stem.weight": torch.zeros(2)}}, tmp_path / "x.pth")
    assert cli.main(["convert", str(tmp_path / "x.pth"), str(tmp_path / "o")]) == 2
    with pytest.raises(ValueError, match="no known official layout"):
        read_checkpoint(tmp_path / "x.pth")
    with pytest.raises(ValueError, match="not an official MVD student"):
        read_checkpoint(tmp_path / "x.pth", "mvd")


def test_sizes_are_asked_for_not_guessed() -> None:
    sd = official_student()
    with pytest.raises(ValueError, match="pass --heads"):
        from_official_mvd(sd, num_frames=FRAMES, img_size=SIDE)
    with pytest.raises(ValueError, match="--num-frames and --img-size"):
        from_official_mvd(sd, heads=HEADS, num_frames=8, img_size=SIDE)
    narrow = official_student(dec_width=48)
    with pytest.raises(ValueError, match="pass --decoder-heads"):
        from_official_mvd(narrow, heads=HEADS, num_frames=FRAMES, img_size=SIDE)
    conv = from_official_mvd(narrow, heads=HEADS, num_frames=FRAMES, img_size=SIDE, decoder_heads=3)
    assert (conv.decoder.width, conv.decoder.heads) == (48, 3)
    masked_bool, visible, masked = mask_parts()
    mods = build_converted(conv)
    dec = mods["decoder_video"]
    with torch.no_grad():
        want = reference_forward(narrow, video(), masked_bool, HEADS, 3)["vid"]
        got = dec(mods["encoder"](video(), visible=visible).tokens, visible, masked)
        assert (got - want).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="use_cls_token"):
        from_official_mvd({**sd, "cls_token": torch.zeros(1, 1, D)}, heads=HEADS)


def test_a_changed_encoder_table_is_kept_as_values(tmp_path) -> None:
    sd = official_student()
    sd["pos_embed"] = sd["pos_embed"] + 0.05 * torch.randn(
        sd["pos_embed"].shape, generator=torch.Generator().manual_seed(2)
    )
    torch.save(sd, tmp_path / "s.pth")
    conv = read_checkpoint(tmp_path / "s.pth", heads=HEADS, num_frames=FRAMES, img_size=SIDE)
    assert conv.layout == "mvd" and conv.encoder.pos_embed == "learned"
    masked_bool, visible, masked = mask_parts()
    task = mvd_task(conv)
    task.load_state_dict(conv.state_dict, strict=False)
    task.eval()
    with torch.no_grad():
        want = reference_forward(sd, video(), masked_bool, HEADS, HEADS)["img"]
        got = task.decoder_image(task.encoder(video(), visible=visible).tokens, visible, masked)
        assert (got - want).abs().max() <= 1e-4
    assert torch.equal(to_official_mvd(conv)["pos_embed"], sd["pos_embed"])
