"""CLIP image towers in the OpenAI layout (full, visual-only, UMT's 3-D ``conv1``), in every common wrapper,
compared with HF ``CLIPVisionModelWithProjection`` on the same weights; heads are asked for, not guessed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidfm.convert import detect_layout, load_vidfm_checkpoint, read_checkpoint
from vidfm.teachers.clip import CLIPTeacher, CLIPVisionTower, load_clip_teacher

transformers = pytest.importorskip("transformers")
WIDTH, HEADS = 48, 3  # a 16-wide head: OpenAI's width // 64 rule cannot give it


def hf_model() -> torch.nn.Module:
    cfg = transformers.CLIPVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = transformers.CLIPVisionModelWithProjection(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a swapped weight cannot hide
        for name, p in model.named_parameters():
            p.add_((0.3 if "norm" in name or name.endswith("bias") else 0.02) * torch.randn_like(p))
    return model


def openai_layout(model: torch.nn.Module, conv3d: bool = False) -> dict[str, torch.Tensor]:
    """The same weights under OpenAI ``clip/model.py`` names (``visual.``), written key by key here."""
    hf = {k.removeprefix("vision_model."): v.clone() for k, v in model.state_dict().items()}
    conv = hf["embeddings.patch_embedding.weight"]
    sd = {
        "conv1.weight": conv.unsqueeze(2) if conv3d else conv,  # UMT: nn.Conv3d, kernel (1, p, p)
        "class_embedding": hf["embeddings.class_embedding"],
        "positional_embedding": hf["embeddings.position_embedding.weight"],
        "proj": hf["visual_projection.weight"].t().contiguous(),
    }
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        sd |= {f"{a}.weight": hf[f"{b}.weight"], f"{a}.bias": hf[f"{b}.bias"]}
    for i in range(2):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            sd[f"{dst}attn.in_proj_{p}"] = torch.cat([hf[f"{src}self_attn.{n}_proj.{p}"] for n in "qkv"])
            sd[f"{dst}attn.out_proj.{p}"] = hf[f"{src}self_attn.out_proj.{p}"]
            sd[f"{dst}ln_1.{p}"] = hf[f"{src}layer_norm1.{p}"]
            sd[f"{dst}ln_2.{p}"] = hf[f"{src}layer_norm2.{p}"]
            sd[f"{dst}mlp.c_fc.{p}"] = hf[f"{src}mlp.fc1.{p}"]
            sd[f"{dst}mlp.c_proj.{p}"] = hf[f"{src}mlp.fc2.{p}"]
    return sd


def expected_tokens(model: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
    """HF: last block's patch tokens -> post_layernorm -> visual_projection -> L2, per frame."""
    frames = video.transpose(1, 2).flatten(0, 1)
    with torch.no_grad():
        out = model(pixel_values=frames, output_hidden_states=True)
        x = model.visual_projection(model.vision_model.post_layernorm(out.hidden_states[-1][:, 1:]))
    return F.normalize(x, dim=-1).reshape(video.shape[0], -1, x.shape[-1])


WRAPS = {
    "visual_only": lambda sd: sd,
    "full_model": lambda sd: {f"visual.{k}": v for k, v in sd.items()} | {"logit_scale": torch.tensor(4.6)},
    "model": lambda sd: {"model": sd, "epoch": 3},
    "module_ddp": lambda sd: {"module": {f"module.{k}": v for k, v in sd.items()}},
    "state_dict": lambda sd: {"state_dict": {f"visual.{k}": v for k, v in sd.items()}},
    "model_ema": lambda sd: {"model_ema": sd},
}


@pytest.mark.parametrize(("wrap", "conv3d"), [(w, False) for w in sorted(WRAPS)] + [("state_dict", True)])
def test_openai_and_umt_layouts_in_every_wrapper_match_hf(tmp_path, wrap: str, conv3d: bool) -> None:
    model = hf_model()
    obj = WRAPS[wrap](openai_layout(model, conv3d))
    torch.save(obj, tmp_path / "clip.pth")
    assert detect_layout(obj) == "clip"
    conv = read_checkpoint(tmp_path / "clip.pth", heads=HEADS)
    assert conv.layout == "clip" and conv.tower.encoder.heads == HEADS
    tower = CLIPVisionTower(conv.tower)
    tower.load_state_dict({k.removeprefix("visual."): v for k, v in conv.state_dict.items()}, strict=True)
    video = torch.randn(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(1))
    got = CLIPTeacher(tower.eval(), layers=(-1,)).encode(video).tokens
    assert (got - expected_tokens(model, video)).abs().max() <= 1e-4


def test_heads_are_asked_for_and_a_converted_tower_is_a_teacher(tmp_path) -> None:
    from vidfm import cli

    model = hf_model()
    torch.save({"model": openai_layout(model, conv3d=True)}, tmp_path / "umt_clip.pth")
    with pytest.raises(ValueError, match="pass --heads"):
        read_checkpoint(tmp_path / "umt_clip.pth")
    assert cli.main(["convert", str(tmp_path / "umt_clip.pth"), str(tmp_path / "out"), "--heads", "3"]) == 0
    assert load_vidfm_checkpoint(tmp_path / "out").layout == "clip"
    teacher = load_clip_teacher(tmp_path / "out")  # a UMT recipe's teacher.path can be this folder
    video = torch.randn(1, 3, 2, 32, 32, generator=torch.Generator().manual_seed(2))
    assert (teacher.encode(video).tokens - expected_tokens(model, video)).abs().max() <= 1e-4
    # A wrong head count gives other outputs: heads matter and are not in the shapes.
    conv = read_checkpoint(tmp_path / "umt_clip.pth", heads=1)
    tower = CLIPVisionTower(conv.tower)
    tower.load_state_dict({k.removeprefix("visual."): v for k, v in conv.state_dict.items()})
    wrong = CLIPTeacher(tower.eval(), layers=(-1,)).encode(video).tokens
    assert (wrong - expected_tokens(model, video)).abs().max() > 1e-3
