"""Official UMT stage-1 students (encoder + ``clip_decoder`` heads) -> vidfm's ``umt`` layout -> back, compared
by outputs with a reference forward written from official ``modeling_pretrain_umt.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_reference as ref  # noqa: E402

from vidfm.convert import detect_layout, load_vidfm_checkpoint, to_official_umt  # noqa: E402
from vidfm.convert.umt import from_official_umt  # noqa: E402
from vidfm.data.transforms import AugmentConfig  # noqa: E402
from vidfm.masking import MaskConfig  # noqa: E402
from vidfm.models.encoder import gather_tokens  # noqa: E402
from vidfm.tasks.umt import UMTTask, align_pos, student_layers  # noqa: E402
from vidfm.teachers.clip import CLIPTeacher, CLIPVisionConfig, CLIPVisionTower, clip_encoder_config  # noqa: E402
from vidfm.teachers.targets import LiveTargets  # noqa: E402
from vidfm.train.checkpoint import load_model_weights  # noqa: E402

D, DEPTH, HEADS, PATCH, FRAMES, SIDE, K, E = 48, 3, 4, 8, 4, 32, 2, 16
N = FRAMES * (SIDE // PATCH) ** 2  # tubelet 1: 64 tokens


def official_student(qkv_bias: str = "qv", seed: int = 0) -> dict[str, torch.Tensor]:
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.patch_embed.proj.weight": (D, 3, 1, PATCH, PATCH),
        "encoder.patch_embed.proj.bias": (D,),
        "encoder.norm.weight": (D,),
        "encoder.norm.bias": (D,),
    }
    for i in range(DEPTH):
        shapes |= ref.block_shapes(f"encoder.blocks.{i}.", D, 4 * D, qkv_bias)
    for j in range(K):
        shapes |= {
            f"clip_decoder.{j}.head.weight": (E, D),
            f"clip_decoder.{j}.head.bias": (E,),
            f"clip_decoder.{j}.norm.weight": (E,),
            f"clip_decoder.{j}.norm.bias": (E,),
        }
    return ref.perturbed(shapes, seed)


def reference_forward(sd, video: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """PretrainVisionTransformer.forward: blocks depth-K..depth-1 kept in block order, each through the
    encoder norm, + clip_pos_embed at the visible positions, Linear_Decoder (head -> norm) -> L2; [K,B,Nv,E]."""
    x = ref.patch_tokens(video, sd["encoder.patch_embed.proj.weight"], sd["encoder.patch_embed.proj.bias"])
    x = ref.visible_rows(x + ref.sinusoid_1d(N, D), visible)
    kept = []
    for i in range(DEPTH):
        x = ref.block(x, sd, f"encoder.blocks.{i}.", HEADS)
        if i >= DEPTH - K:
            kept.append(ref.layer_norm(x, sd, "encoder.norm.", 1e-6))
    pos = ref.visible_rows(ref.sinusoid_1d(N, D).expand(video.shape[0], -1, -1), visible)
    out = []
    for j, h in enumerate(kept):
        y = F.linear(h + pos, sd[f"clip_decoder.{j}.head.weight"], sd[f"clip_decoder.{j}.head.bias"])
        y = ref.layer_norm(y, sd, f"clip_decoder.{j}.norm.", 1e-6)
        out.append(y / y.norm(dim=-1, keepdim=True))
    return torch.stack(out)


def umt_task(conv) -> UMTTask:
    torch.manual_seed(3)
    tower = CLIPVisionTower(
        CLIPVisionConfig(clip_encoder_config("T/8", img_size=SIDE, width=32, depth=3, heads=2), embed_dim=E)
    )
    teacher = LiveTargets(CLIPTeacher(tower, layers=tuple(range(-K, 0))))
    return UMTTask(
        conv.encoder, MaskConfig("semantic", 0.75), AugmentConfig(size=SIDE), teacher, align_layers=K
    )


VISIBLE = torch.tensor([[0, 5, 9, 17, 30, 33, 47, 62], [2, 3, 11, 20, 28, 40, 41, 63]])


def video() -> torch.Tensor:
    return torch.randn(2, 3, FRAMES, SIDE, SIDE, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("qkv_bias", ["qv", "fused"])
def test_student_with_heads_matches_the_reference_and_resumes(tmp_path, qkv_bias: str) -> None:
    from vidfm import cli

    sd = official_student(qkv_bias)
    torch.save({"model": sd, "epoch": 199}, tmp_path / "umt.pth")
    assert detect_layout({"model": sd}) == "umt"
    args = ["--heads", str(HEADS), "--num-frames", str(FRAMES), "--img-size", str(SIDE)]
    assert cli.main(["convert", str(tmp_path / "umt.pth"), str(tmp_path / "out"), *args]) == 0
    conv = load_vidfm_checkpoint(tmp_path / "out")
    assert conv.layout == "umt" and conv.encoder.qkv_bias == qkv_bias and conv.encoder.tubelet == 1
    task = umt_task(conv)
    load_model_weights(tmp_path / "out", task, strict=True)  # what train.init_from does
    task.eval()
    x = video()
    with torch.no_grad():
        want = reference_forward(sd, x, VISIBLE)
        layers = student_layers(task.encoder, task.align_heads)
        out = task.encoder(x, visible=VISIBLE, return_layers=layers)
        pos = gather_tokens(align_pos(task.encoder).expand(2, -1, -1), VISIBLE)
        for j, (head, s) in enumerate(zip(task.align_heads, layers, strict=True)):
            got = F.normalize(head(task.encoder.norm(out.hidden[s]) + pos), dim=-1)
            assert (got - want[j]).abs().max() <= 1e-4, j
    task.train()
    batch = {"video": torch.randint(0, 256, (2, FRAMES, SIDE, SIDE, 3), dtype=torch.uint8)}
    loss = task(batch, torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and task.align_heads[0].fc.weight.grad is not None


def test_round_trip_and_swapped_biases() -> None:
    sd = official_student()
    conv = from_official_umt({"model_ema": sd}, heads=HEADS, num_frames=FRAMES, img_size=SIDE)
    back = to_official_umt(conv)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], v) for k, v in sd.items())
    swapped = dict(sd)
    q, v = "encoder.blocks.0.attn.q_bias", "encoder.blocks.0.attn.v_bias"
    swapped[q], swapped[v] = sd[v], sd[q]
    with torch.no_grad():
        diff = reference_forward(swapped, video(), VISIBLE) - reference_forward(sd, video(), VISIBLE)
    assert diff.abs().max() > 1e-2  # the reference sees the swap, so a converter that swaps fails


def test_unknown_keys_and_missing_sizes_are_errors() -> None:
    sd = official_student()
    with pytest.raises(ValueError, match="pass --heads"):
        from_official_umt(sd, num_frames=FRAMES, img_size=SIDE)
    with pytest.raises(ValueError, match="clip_decoder"):
        from_official_umt({**sd, "clip_decoder.0.proj.weight": torch.zeros(1)}, heads=HEADS)
    with pytest.raises(ValueError, match="numbered"):
        from_official_umt({k: v for k, v in sd.items() if not k.startswith("clip_decoder.0.")}, heads=HEADS)
