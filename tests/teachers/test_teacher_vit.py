"""ViT teachers: parity with HF ViTMAE/ViT, loading from folders and runs, frozen behaviour, errors."""

from __future__ import annotations

import pytest
import torch

from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.teachers.vit import IMAGENET_MEAN, IMAGENET_STD, ViTTeacher, load_teacher

transformers = pytest.importorskip("transformers")

TINY = dict(
    image_size=32,
    patch_size=8,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=256,
)


def tiny_hf(cls_name: str, seed: int = 0) -> torch.nn.Module:
    """A random tiny HF image ViT with non-trivial biases, norms and position table."""
    torch.manual_seed(seed)
    if cls_name.startswith("ViTMAE"):
        config = transformers.ViTMAEConfig(
            **TINY,
            mask_ratio=0.0,
            decoder_hidden_size=32,
            decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2,
            decoder_intermediate_size=64,
        )
    else:
        config = transformers.ViTConfig(**TINY)
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def clip01(batch: int = 2, frames: int = 3, size: int = 32) -> torch.Tensor:
    """[B,C,T,H,W] in [0,1], the teacher's input."""
    return torch.rand(batch, 3, frames, size, size, generator=torch.Generator().manual_seed(3))


def hf_frames(model: torch.nn.Module, video: torch.Tensor, mae: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """HF on every frame: (last block output, final-norm output) without the class token, [B, T·N, D]."""
    b, c, t, h, w = video.shape
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    frames = (video.transpose(1, 2).reshape(b * t, c, h, w) - mean) / std
    kw = {}
    if mae:  # noise = arange keeps HF's token order (its random_masking argsorts the noise)
        kw["noise"] = torch.arange((h // 8) * (w // 8), dtype=torch.float).expand(b * t, -1)
    with torch.no_grad():
        out = model(pixel_values=frames, output_hidden_states=True, **kw)
    last, normed = out.hidden_states[-1][:, 1:], out.last_hidden_state[:, 1:]
    return last.reshape(b, -1, last.shape[-1]), normed.reshape(b, -1, normed.shape[-1])


@pytest.mark.parametrize("cls_name", ["ViTMAEModel", "ViTMAEForPreTraining", "ViTModel"])
def test_hf_image_teacher_parity(cls_name: str, tmp_path) -> None:
    model = tiny_hf(cls_name)
    mae = cls_name.startswith("ViTMAE")
    base = model.vit if cls_name == "ViTMAEForPreTraining" else model
    video = clip01()
    ref_last, ref_normed = hf_frames(base, video, mae)
    model.save_pretrained(tmp_path)  # legacy key names on disk; in-memory names are read by from_hf_vit
    teacher = load_teacher(tmp_path, kind="image")
    out = teacher(video)
    assert out.grid == (3, 4, 4)
    assert out.tokens.shape == ref_last.shape
    assert (out.tokens - ref_last).abs().max().item() <= 1e-5
    normed = load_teacher(tmp_path, final_norm=True)(video).tokens
    assert (normed - ref_normed).abs().max().item() <= 1e-5


def test_hf_in_memory_module_and_intermediate_layer() -> None:
    from vidfm.convert import build_models
    from vidfm.convert.hf_vit import from_hf_vit

    model = tiny_hf("ViTMAEModel", seed=1)
    conv = from_hf_vit(model)  # 5.x in-memory names
    encoder = build_models(conv.encoder, None, conv.state_dict)[0]
    teacher = ViTTeacher(encoder, layer=0)
    video = clip01(batch=1, frames=2)
    b, c, t, h, w = video.shape
    frames = (
        video.transpose(1, 2).reshape(t, c, h, w) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        hs = model(pixel_values=frames, noise=torch.arange(16.0).expand(t, -1), output_hidden_states=True)
    ref = hs.hidden_states[1][:, 1:].reshape(1, -1, 64)  # output of block 0
    assert (teacher(video).tokens - ref).abs().max().item() <= 1e-5


def test_hf_vit_extras_and_bad_type(tmp_path) -> None:
    from vidfm.convert.hf_vit import from_hf_vit

    conv = from_hf_vit(tiny_hf("ViTModel"))
    assert set(conv.extras) == {"pooler.dense.weight", "pooler.dense.bias"}
    assert conv.encoder.cls_token and conv.encoder.tubelet == 1 and conv.encoder.qkv_bias == "fused"
    videomae = transformers.VideoMAEModel(
        transformers.VideoMAEConfig(
            image_size=32,
            patch_size=16,
            num_frames=2,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
        )
    )
    with pytest.raises(ValueError, match="not an HF image ViT"):
        from_hf_vit(videomae)


def tiny_encoder(**kw) -> VideoEncoder:
    torch.manual_seed(0)
    cfg = dict(size="T/8", depth=2, width=64, heads=4, tubelet=2, num_frames=4, img_size=32)
    return VideoEncoder(EncoderConfig(**{**cfg, **kw}))


def test_video_teacher_tokens_before_final_norm_and_frozen() -> None:
    encoder = tiny_encoder()
    teacher = ViTTeacher(encoder)
    assert teacher.kind == "video" and teacher.dim == 64
    video = clip01(frames=4)
    out = teacher(video)
    assert out.grid == (2, 4, 4) and out.tokens.shape == (2, 32, 64)
    norm = (video - teacher.mean) / teacher.std
    with torch.no_grad():
        ref = encoder(norm, return_layers=(1,))
    torch.testing.assert_close(out.tokens, ref.hidden[1])
    assert not torch.allclose(out.tokens, ref.tokens)  # the final norm is not applied
    torch.testing.assert_close(out.pooled, ref.tokens.mean(1))
    assert not out.tokens.requires_grad
    assert all(not p.requires_grad for p in teacher.parameters())
    torch.nn.Sequential(teacher).train()
    assert not teacher.training and not encoder.training


def test_teacher_resizes_to_its_own_size() -> None:
    teacher = ViTTeacher(tiny_encoder())  # built for 32 px
    out = teacher(clip01(frames=4, size=48))
    assert out.grid == (2, 4, 4)


def test_kind_and_layer_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="out of range"):
        ViTTeacher(tiny_encoder(), layer=2)
    model = tiny_hf("ViTMAEModel")
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="a video teacher is asked for"):
        load_teacher(tmp_path, kind="video")
    with pytest.raises(FileNotFoundError):
        load_teacher(tmp_path / "missing")
