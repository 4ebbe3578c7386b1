"""Official UMT stage-2 models (ViT student + ALBEF-style BERT with top fusion layers + projections and heads)
-> vidfm's ``umt_stage2`` layout -> back: key by key, and by outputs against a reference forward written from
official ``multi_modality/models/umt.py``, ``criterions.py``, ``backbones/vit/vit.py`` and ``bert/xbert.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_reference as ref  # noqa: E402

from vidfm.cli import main  # noqa: E402
from vidfm.convert import build_converted, detect_layout, read_checkpoint  # noqa: E402
from vidfm.convert.umt_stage2 import from_official_umt_stage2, to_official_umt_stage2  # noqa: E402

D, DEPTH, HEADS, PATCH, FRAMES, SIDE, K, E_CLIP = 48, 2, 4, 8, 2, 16, 2, 16
N = FRAMES * (SIDE // PATCH) ** 2
W, LAYERS, FUSE, TH, VOCAB, POS, EMBED = 32, 4, 2, 4, 50, 16, 24  # BERT: 4 layers, fusion from layer 2
BERT, MLM, V = "text_encoder.bert.", "text_encoder.cls.predictions.", "vision_encoder."
DROPPED = {"clip_teacher.conv1.weight", f"{BERT}pooler.dense.weight", f"{BERT}pooler.dense.bias"}
DROPPED |= {f"{BERT}embeddings.position_ids"}


def _linear(name: str, out: int, inp: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out, inp), f"{name}.bias": (out,)}


def official_stage2(seed: int = 0) -> dict[str, torch.Tensor]:
    shapes: dict[str, tuple[int, ...]] = {
        f"{V}encoder.patch_embed.proj.weight": (D, 3, 1, PATCH, PATCH),
        f"{V}encoder.patch_embed.proj.bias": (D,),
        f"{V}encoder.norm.weight": (D,),
        f"{V}encoder.norm.bias": (D,),
        f"{V}pool_norm.weight": (D,),
        f"{V}pool_norm.bias": (D,),
        "temp": (),
        f"{BERT}embeddings.word_embeddings.weight": (VOCAB, W),
        f"{BERT}embeddings.position_embeddings.weight": (POS, W),
        f"{BERT}embeddings.token_type_embeddings.weight": (2, W),
        f"{BERT}embeddings.LayerNorm.weight": (W,),
        f"{BERT}embeddings.LayerNorm.bias": (W,),
        f"{MLM}bias": (VOCAB,),
        f"{MLM}transform.LayerNorm.weight": (W,),
        f"{MLM}transform.LayerNorm.bias": (W,),
        **_linear(f"{MLM}transform.dense", W, W),
        **_linear("vision_proj", EMBED, D),
        **_linear("text_proj", EMBED, W),
        **_linear("itm_head", 2, W),
        **_linear(f"{BERT}pooler.dense", W, W),
        "clip_teacher.conv1.weight": (8, 3, 4, 4),
    }
    for i in range(DEPTH):
        shapes |= ref.block_shapes(f"{V}encoder.blocks.{i}.", D, 4 * D, "qv")
    for j in range(K):
        shapes |= _linear(f"{V}clip_decoder.{j}.head", E_CLIP, D) | {
            f"{V}clip_decoder.{j}.norm.weight": (E_CLIP,),
            f"{V}clip_decoder.{j}.norm.bias": (E_CLIP,),
        }
    for i in range(LAYERS):
        p = f"{BERT}encoder.layer.{i}."
        parts = ["attention"] + (["crossattention"] if i >= FUSE else [])
        for a in parts:
            for n in ("query", "key", "value"):
                shapes |= _linear(f"{p}{a}.self.{n}", W, D if a == "crossattention" and n != "query" else W)
            shapes |= _linear(f"{p}{a}.output.dense", W, W)
            shapes |= {f"{p}{a}.output.LayerNorm.weight": (W,), f"{p}{a}.output.LayerNorm.bias": (W,)}
        shapes |= _linear(f"{p}intermediate.dense", 2 * W, W) | _linear(f"{p}output.dense", W, 2 * W)
        shapes |= {f"{p}output.LayerNorm.weight": (W,), f"{p}output.LayerNorm.bias": (W,)}
    sd = ref.perturbed(shapes, seed)
    sd["temp"] = torch.tensor(0.05)
    sd[f"{MLM}decoder.weight"] = sd[f"{BERT}embeddings.word_embeddings.weight"]  # tied, as in BERT
    sd[f"{MLM}decoder.bias"] = sd[f"{MLM}bias"]
    sd[f"{BERT}embeddings.position_ids"] = torch.arange(POS)[None]
    return sd


def convert(sd: dict) -> object:
    return from_official_umt_stage2(
        {"model": sd}, heads=HEADS, text_heads=TH, num_frames=FRAMES, img_size=SIDE
    )


def test_round_trip_is_key_by_key_exact() -> None:
    sd = official_stage2()
    conv = convert(sd)
    assert conv.layout == "umt_stage2" and conv.text.num_hidden_layers == FUSE
    modules = build_converted(conv)  # every key and shape fits vidfm's modules, strictly
    assert {
        "encoder",
        "align_heads",
        "text_encoder",
        "decoder",
        "contrastive",
        "vtm_head",
        "mlm_head",
    } == set(modules)
    assert len(modules["decoder"].layers) == LAYERS - FUSE
    back = to_official_umt_stage2(conv)
    assert set(back) == set(sd) - DROPPED
    for k, v in back.items():
        assert torch.equal(v, sd[k]), k


def _ln(x: torch.Tensor, sd: dict, p: str, eps: float = 1e-12) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], eps)


def _lin(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.linear(x, sd[f"{p}.weight"], sd[f"{p}.bias"])


def _bert_attention(x, ctx, sd, p, bias):  # noqa: ANN001, ANN202 - xbert BertSelfAttention
    b, n, _ = x.shape
    q, k, v = _lin(x, sd, f"{p}.query"), _lin(ctx, sd, f"{p}.key"), _lin(ctx, sd, f"{p}.value")
    q, k, v = (t.view(b, -1, TH, W // TH).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / (W // TH) ** 0.5 + bias
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, W)


def _bert_layer(x, sd, i, bias, video=None):  # noqa: ANN001, ANN202 - post-norm BertLayer
    p = f"{BERT}encoder.layer.{i}."
    x = _ln(x + _lin(_bert_attention(x, x, sd, f"{p}attention.self", bias), sd, f"{p}attention.output.dense"),
            sd, f"{p}attention.output.LayerNorm")  # fmt: skip
    if video is not None:
        c = _bert_attention(x, video, sd, f"{p}crossattention.self", 0.0)
        x = _ln(x + _lin(c, sd, f"{p}crossattention.output.dense"), sd, f"{p}crossattention.output.LayerNorm")
    h = F.gelu(_lin(x, sd, f"{p}intermediate.dense"))
    return _ln(x + _lin(h, sd, f"{p}output.dense"), sd, f"{p}output.LayerNorm")


def test_converted_modules_compute_what_the_official_model_computes() -> None:
    sd = official_stage2(seed=1)
    m = build_converted(convert(sd))
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, 3, FRAMES, SIDE, SIDE, generator=g)
    ids = torch.randint(5, VOCAB, (2, 6), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    # Vision (backbones/vit/vit.py, no mask): tokens after encoder.norm, pool_norm(mean), vision_proj.
    x = ref.patch_tokens(
        video, sd[f"{V}encoder.patch_embed.proj.weight"], sd[f"{V}encoder.patch_embed.proj.bias"]
    )
    x = x + ref.sinusoid_1d(N, D)
    for i in range(DEPTH):
        x = ref.block(x, sd, f"{V}encoder.blocks.{i}.", HEADS)
    tokens = ref.layer_norm(x, sd, f"{V}encoder.norm.", 1e-6)
    ref_video = _lin(_ln(tokens.mean(1), sd, f"{V}pool_norm", 1e-6), sd, "vision_proj")
    with torch.no_grad():
        out = m["encoder"](video)
        torch.testing.assert_close(out.tokens, tokens, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            m["contrastive"].video(out.tokens.mean(1)), ref_video, rtol=1e-4, atol=1e-4
        )
        # Text (mode="text"): the layers below the fusion layer, [CLS] state, text_proj.
        e = (
            sd[f"{BERT}embeddings.word_embeddings.weight"][ids]
            + sd[f"{BERT}embeddings.position_embeddings.weight"][:6]
        )
        t = _ln(
            e + sd[f"{BERT}embeddings.token_type_embeddings.weight"][0], sd, f"{BERT}embeddings.LayerNorm"
        )
        bias = (1.0 - mask[:, None, None, :].float()) * -10000.0
        for i in range(FUSE):
            t = _bert_layer(t, sd, i, bias)
        text_out = m["text_encoder"](ids, mask)
        torch.testing.assert_close(text_out.tokens, t, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            m["contrastive"].text(text_out.pooled), _lin(t[:, 0], sd, "text_proj"), rtol=1e-4, atol=1e-4
        )
        # Fusion (mode="fusion"): the top layers with cross-attention to the video tokens; VTM and MLM heads.
        f = t
        for i in range(FUSE, LAYERS):
            f = _bert_layer(f, sd, i, bias, tokens)
        fused = m["decoder"](text_out.tokens, mask, out.tokens)
        torch.testing.assert_close(fused, f, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            m["vtm_head"](fused[:, 0]), _lin(f[:, 0], sd, "itm_head"), rtol=1e-4, atol=1e-4
        )
        h = _ln(F.gelu(_lin(f, sd, f"{MLM}transform.dense")), sd, f"{MLM}transform.LayerNorm")
        ref_logits = F.linear(h, sd[f"{MLM}decoder.weight"], sd[f"{MLM}decoder.bias"])
        logits = m["mlm_head"](fused, m["text_encoder"].word_embeddings.weight)
        torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)


def test_what_cannot_map_is_refused_in_one_line() -> None:
    sd = official_stage2()
    low = {k.replace("layer.3.crossattention", "layer.1.crossattention"): v for k, v in sd.items()}
    with pytest.raises(ValueError, match="not the top layers"):
        convert(low)
    untied = dict(sd) | {f"{MLM}decoder.weight": sd[f"{MLM}decoder.weight"] + 1}
    with pytest.raises(ValueError, match="not tied"):
        convert(untied)
    with pytest.raises(ValueError, match="no known UMT stage-2 part"):
        convert(dict(sd) | {"extra_head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="pass --text-heads"):
        from_official_umt_stage2(sd, heads=HEADS, num_frames=FRAMES, img_size=SIDE)
    conv = convert(sd)
    no_norm = {k: v for k, v in conv.state_dict.items() if not k.startswith("contrastive.video_norm")}
    with pytest.raises(ValueError, match="no pool norm"):
        to_official_umt_stage2(conv._replace(state_dict=no_norm))


def test_cli_detects_the_layout_and_writes_it_back(tmp_path, capsys) -> None:  # noqa: ANN001
    sd = official_stage2()
    torch.save({"model": sd, "epoch": 3}, tmp_path / "umt_stage2.pth")
    assert detect_layout({"model": sd}) == "umt_stage2"
    size = [
        "--heads",
        str(HEADS),
        "--text-heads",
        str(TH),
        "--num-frames",
        str(FRAMES),
        "--img-size",
        str(SIDE),
    ]
    assert main(["convert", str(tmp_path / "umt_stage2.pth"), str(tmp_path / "v"), *size]) == 0
    assert "detected the official umt_stage2 layout" in capsys.readouterr().err
    conv = read_checkpoint(tmp_path / "v")  # the vidfm folder, with its text sizes
    assert conv.layout == "umt_stage2" and conv.text.num_hidden_layers == FUSE
    assert main(["convert", str(tmp_path / "v"), str(tmp_path / "o"), "--to", "official"]) == 0
    back = torch.load(tmp_path / "o" / "checkpoint.pth", weights_only=True)["model"]
    assert set(back) == set(sd) - DROPPED and all(torch.equal(v, sd[k]) for k, v in back.items())
    assert (
        main(["convert", str(tmp_path / "umt_stage2.pth"), str(tmp_path / "x"), "--from", "umt_stage2"]) == 2
    )
