"""MVD's image teacher (official MAE ViT) and VideoMAE V2 checkpoints, each in its official layout, compared
with HF transformers (``ViTMAEModel``, ``VideoMAEModel``) on the same weights."""

from __future__ import annotations

import pytest
import torch

from vidfm.convert import detect_layout, load_encoder, read_checkpoint
from vidfm.convert.layouts import resolve_heads
from vidfm.teachers.vit import ViTTeacher

transformers = pytest.importorskip("transformers")


def perturb(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial norms and biases (q and v biases differ), so swaps cannot hide
        for name, p in model.named_parameters():
            p.add_((0.3 if "norm" in name or name.endswith("bias") else 0.02) * torch.randn_like(p))
    return model.eval()


def qkv(hf: dict, att: str, names: tuple[str, str, str], part: str) -> torch.Tensor:
    return torch.cat([hf[f"{att}{n}.{part}"] for n in names])


def test_mae_image_teacher_matches_hf_vitmae(tmp_path) -> None:
    cfg = transformers.ViTMAEConfig(
        hidden_size=48, intermediate_size=192, num_hidden_layers=2, num_attention_heads=3,
        image_size=32, patch_size=8, mask_ratio=0.0, layer_norm_eps=1e-6,
    )  # fmt: skip
    model = perturb(transformers.ViTMAEModel(cfg))
    hf = {k: v.clone() for k, v in model.state_dict().items()}
    # MVD modeling_teacher.py MaskedAutoencoderViT names (timm Block), plus MAE's pixel decoder, dropped.
    sd = {
        "cls_token": hf["embeddings.cls_token"],
        "pos_embed": hf["embeddings.position_embeddings"],
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf["layernorm.weight"],
        "norm.bias": hf["layernorm.bias"],
        "mask_token": torch.randn(1, 1, 32),
        "decoder_embed.weight": torch.randn(32, 48),
    }
    for i in range(2):
        a, b = f"layers.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            sd[f"{b}attn.qkv.{p}"] = qkv(hf, f"{a}attention.", ("q_proj", "k_proj", "v_proj"), p)
            sd[f"{b}attn.proj.{p}"] = hf[f"{a}attention.o_proj.{p}"]
            sd[f"{b}norm1.{p}"] = hf[f"{a}layernorm_before.{p}"]
            sd[f"{b}norm2.{p}"] = hf[f"{a}layernorm_after.{p}"]
            sd[f"{b}mlp.fc1.{p}"] = hf[f"{a}mlp.fc1.{p}"]
            sd[f"{b}mlp.fc2.{p}"] = hf[f"{a}mlp.fc2.{p}"]
    torch.save({"model": sd}, tmp_path / "mae.pth")
    assert detect_layout({"model": sd}) == "mae"
    with pytest.raises(ValueError, match="pass --heads"):
        read_checkpoint(tmp_path / "mae.pth")
    encoder = load_encoder(tmp_path / "mae.pth", heads=3)
    teacher = ViTTeacher(encoder)  # MVD's target: the last block's output before the norm
    assert teacher.kind == "image"
    frames = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(pixel_values=frames, noise=torch.arange(16.0).expand(2, -1), output_hidden_states=True)
        got = teacher.encode(frames[:, :, None])
        assert (got.tokens - out.hidden_states[-1][:, 1:]).abs().max() <= 1e-4
        assert (encoder(frames[:, :, None]).tokens - out.last_hidden_state[:, 1:]).abs().max() <= 1e-4


@pytest.mark.parametrize("wrapper", ["module", "model_ema"])
def test_videomae_v2_patch14_giant_ratio_matches_hf(tmp_path, wrapper: str) -> None:
    # VideoMAE V2 models/modeling_finetune.py (vit_giant_patch14_224: patch 14, MLP ratio 48/11 = 6144/1408,
    # q/v biases, mean pooling with fc_norm) at a tiny width with the same ratio: 44 -> 192.
    cfg = transformers.VideoMAEConfig(
        hidden_size=44, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4, image_size=28,
        patch_size=14, num_frames=4, tubelet_size=2, use_mean_pooling=True, layer_norm_eps=1e-6,
    )  # fmt: skip
    model = perturb(transformers.VideoMAEModel(cfg))
    hf = {k: v.clone() for k, v in model.state_dict().items()}
    sd = {
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "fc_norm.weight": torch.rand(44) + 0.5,
        "fc_norm.bias": torch.randn(44),
        "head.weight": torch.randn(710, 44),
        "head.bias": torch.randn(710),
    }
    for i in range(2):
        a, b = f"encoder.layer.{i}.", f"blocks.{i}."
        att = f"{a}attention.attention."
        sd[f"{b}attn.qkv.weight"] = qkv(hf, att, ("query", "key", "value"), "weight")
        sd[f"{b}attn.q_bias"], sd[f"{b}attn.v_bias"] = hf[f"{att}query.bias"], hf[f"{att}value.bias"]
        for p in ("weight", "bias"):
            sd[f"{b}attn.proj.{p}"] = hf[f"{a}attention.output.dense.{p}"]
            sd[f"{b}norm1.{p}"] = hf[f"{a}layernorm_before.{p}"]
            sd[f"{b}norm2.{p}"] = hf[f"{a}layernorm_after.{p}"]
            sd[f"{b}mlp.fc1.{p}"] = hf[f"{a}intermediate.dense.{p}"]
            sd[f"{b}mlp.fc2.{p}"] = hf[f"{a}output.dense.{p}"]
    torch.save({wrapper: sd}, tmp_path / "v2.pth")  # DeepSpeed saves {"module": sd}
    assert detect_layout({wrapper: sd}) == "videomae"
    conv = read_checkpoint(tmp_path / "v2.pth", heads=4, num_frames=4, img_size=28)
    assert conv.encoder.dims()[3] == 192 / 44 and conv.encoder.dims()[4] == 14 and not conv.encoder.final_norm
    assert conv.extras["head.weight"].shape == (710, 44)
    encoder = load_encoder(tmp_path / "v2.pth", heads=4, num_frames=4, img_size=28)
    video = torch.randn(2, 3, 4, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(pixel_values=video.transpose(1, 2)).last_hidden_state  # HF takes [B,T,C,H,W]
        assert (encoder(video).tokens - want).abs().max() <= 1e-4
    # The released ViT-g/14 and the distilled ViT-S/B need no --heads: their dimensions are registered.
    assert resolve_heads(1408, 40, 6144, None) == 16
    assert resolve_heads(768, 12, 3072, None) == 12 and resolve_heads(384, 12, 1536, None) == 6
