"""CLIP teacher: parity with HF CLIP and an OpenAI-layout reference, attention row, loading from files."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidfm.convert.clip import from_hf_clip, from_openai_clip
from vidfm.models.clip_vision import CLIPVisionConfig, CLIPVisionTower, clip_encoder_config
from vidfm.teachers.clip import CLIPTeacher, load_clip_teacher

transformers = pytest.importorskip("transformers")


def hf_model(projection: bool = True) -> nn.Module:
    cfg = transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=16,
        attn_implementation="eager",  # output_attentions needs the explicit attention map
    )
    torch.manual_seed(0)
    cls = transformers.CLIPVisionModelWithProjection if projection else transformers.CLIPVisionModel
    model = cls(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a swapped weight cannot hide
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    return model


def teacher_from(cfg, state, layers) -> CLIPTeacher:  # noqa: ANN001
    tower = CLIPVisionTower(cfg)
    tower.load_state_dict(state, strict=True)
    return CLIPTeacher(tower, layers=layers)


@pytest.mark.parametrize("projection", [True, False])
def test_hf_clip_parity_tokens_and_attention(projection: bool) -> None:
    model = hf_model(projection)
    teacher = teacher_from(*from_hf_clip(model), layers=(0, -1))
    video = torch.randn(2, 3, 3, 32, 32)  # [B,C,T,H,W], already normalised
    frames = video.transpose(1, 2).flatten(0, 1)  # [B·T,C,H,W]
    with torch.no_grad():
        ref = model(pixel_values=frames, output_hidden_states=True, output_attentions=True)
        out = teacher.encode(video)
        vm = getattr(model, "vision_model", model)  # 5.x CLIPVisionModel holds its parts directly
        for layer in (0, 2):
            x = vm.post_layernorm(ref.hidden_states[layer + 1][:, 1:])  # hidden_states[0] = embeddings
            if projection:
                x = model.visual_projection(x)
            expected = F.normalize(x, dim=-1).reshape(2, 3 * 16, -1)
            torch.testing.assert_close(out.hidden[layer], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.tokens, out.hidden[2])
    attn = ref.attentions[-1][:, :, 0, 1:].mean(1).reshape(2, 3, 16)  # class row, heads averaged
    torch.testing.assert_close(out.attention, attn, atol=1e-6, rtol=0)
    assert out.grid == (3, 4, 4) and teacher.dim == (16 if projection else 32)


class OpenAIBlock(nn.Module):
    """OpenAI CLIP ``ResidualAttentionBlock`` (``clip/model.py``), as UMT's teacher runs it."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(d, 4 * d), gelu=nn.GELU(), c_proj=nn.Linear(4 * d, d))
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, w = self.attn(*[self.ln_1(x)] * 3, need_weights=True)  # w: head-averaged [N,L,L]
        x = x + y
        q = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(q * torch.sigmoid(1.702 * q)), w


class OpenAIVisual(nn.Module):
    def __init__(self, d: int = 128, layers: int = 2, patch: int = 8, res: int = 24, out: int = 24) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, d, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(d))
        self.positional_embedding = nn.Parameter(torch.randn((res // patch) ** 2 + 1, d))
        self.ln_pre, self.ln_post = nn.LayerNorm(d), nn.LayerNorm(d)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(OpenAIBlock(d, d // 64) for _ in range(layers))
        self.proj = nn.Parameter(torch.randn(d, out))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], 1) + self.positional_embedding
        x = self.ln_pre(x).transpose(0, 1)  # LND
        outs = []
        for blk in self.transformer.resblocks:
            x, w = blk(x)
            outs.append(F.normalize(self.ln_post(x.transpose(0, 1)[:, 1:]) @ self.proj, dim=-1))
        return outs, w[:, 0, 1:]


def test_openai_layout_parity() -> None:
    torch.manual_seed(0)
    ref = OpenAIVisual().eval()
    state = {f"visual.{k}": v for k, v in ref.state_dict().items()}
    state["logit_scale"] = torch.tensor(4.6)  # a full CLIP state dict: the text side is ignored
    teacher = teacher_from(*from_openai_clip({k: v for k, v in state.items() if k != "logit_scale"}), (0, 1))
    assert teacher.tower.blocks[0].attn.num_heads == 2  # OpenAI's width // 64
    video = torch.randn(1, 3, 2, 24, 24)
    with torch.no_grad():
        outs, attn = ref(video.transpose(1, 2).flatten(0, 1))
        got = teacher.encode(video)
    for i in (0, 1):
        torch.testing.assert_close(got.hidden[i], outs[i].reshape(1, 2 * 9, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(got.attention, attn.reshape(1, 2, 9), atol=1e-6, rtol=0)


def test_load_from_files_and_frozen(tmp_path) -> None:  # noqa: ANN001
    model = hf_model()
    model.save_pretrained(tmp_path / "hf")
    teacher = load_clip_teacher(tmp_path / "hf", layers=(-2, -1), size=32)
    assert all(not p.requires_grad for p in teacher.parameters())
    video = torch.rand(1, 3, 2, 48, 48)  # [0,1], resized to 32 by the teacher
    out = teacher(video)
    assert out.hidden[1].shape == (1, 32, 16) and out.attention.shape == (1, 2, 16)
    assert torch.allclose(out.hidden[2].norm(dim=-1), torch.ones(1, 32))
    torch.save(OpenAIVisual().state_dict(), tmp_path / "visual.pth")  # UMT's visual-only extraction
    assert load_clip_teacher(tmp_path / "visual.pth").dim == 24
    with pytest.raises(ValueError, match="not an OpenAI CLIP"):
        torch.save({"a": torch.zeros(1)}, tmp_path / "bad.pth")
        load_clip_teacher(tmp_path / "bad.pth")


def test_class_attention_builds_no_attention_map() -> None:
    """Every op's output during the teacher's forward is recorded: no [..., L, L] map (L = 1 + patches) in
    any layer, and the importance is one softmax over one query row per head."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Shapes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, tuple[int, ...]]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            out = func(*args, **(kwargs or {}))
            for o in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(o, torch.Tensor):
                    self.seen.append((str(func), tuple(o.shape)))
            return out

    torch.manual_seed(0)
    tower = CLIPVisionTower(
        CLIPVisionConfig(clip_encoder_config("T/8", img_size=40, width=32, depth=3, heads=2), embed_dim=16)
    )
    teacher = CLIPTeacher(tower, layers=(-2, -1))
    length = 1 + 25  # class token + a 5×5 grid
    with torch.no_grad(), Shapes() as mode:
        out = teacher.encode(torch.randn(2, 3, 3, 40, 40))  # 6 frames
    assert out.attention.shape == (2, 3, 25) and len(mode.seen) > 50
    assert not [s for _, s in mode.seen if len(s) >= 2 and s[-2:] == (length, length)]
    softmaxes = [s for f, s in mode.seen if "softmax" in f]
    assert softmaxes == [(6, 2, 1, length)]
