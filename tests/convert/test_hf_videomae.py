"""HF transformers VideoMAE <-> vidfm: output parity, lossless round trips, folder reading, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")

from vidfm.convert import (  # noqa: E402
    build_models,
    from_hf_videomae,
    hf_mask_to_indices,
    load_encoder,
    to_hf_videomae,
)

TINY = dict(
    image_size=32,
    patch_size=16,
    num_frames=4,
    tubelet_size=2,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=256,
    decoder_hidden_size=32,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=128,
)


def tiny_hf(cls_name: str = "VideoMAEModel", seed: int = 0, **overrides) -> torch.nn.Module:
    """A random tiny HF model whose biases and norms are non-trivial (HF inits them to 0 and 1)."""
    torch.manual_seed(seed)
    config = transformers.VideoMAEConfig(**{**TINY, **overrides})
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def mask_of(batch: int = 2, n: int = 8, masked: int = 5, seed: int = 1) -> torch.Tensor:
    """bool [B,N], True = masked, the same count per sample (HF and vidfm both require it)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    for b in range(batch):
        mask[b, torch.randperm(n, generator=g)[:masked]] = True
    return mask


def video(batch: int = 2) -> torch.Tensor:
    """HF layout [B,T,C,H,W]; vidfm takes its permute(0,2,1,3,4)."""
    return torch.randn(batch, 4, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("mean_pooling", [False, True])
def test_encoder_parity_with_and_without_mask(mean_pooling: bool) -> None:
    hf = tiny_hf(use_mean_pooling=mean_pooling)
    enc_cfg, dec_cfg, sd = from_hf_videomae(hf)
    assert dec_cfg is None and enc_cfg.qkv_bias == "qv" and enc_cfg.final_norm is not mean_pooling
    encoder, _ = build_models(enc_cfg, None, sd)
    x, mask = video(), mask_of()
    visible, _ = hf_mask_to_indices(mask)
    with torch.no_grad():
        full_hf = hf(x).last_hidden_state
        full = encoder(x.permute(0, 2, 1, 3, 4)).tokens
        vis_hf = hf(x, bool_masked_pos=mask).last_hidden_state
        vis = encoder(x.permute(0, 2, 1, 3, 4), visible=visible).tokens
    assert full.shape == full_hf.shape == (2, 8, 64) and vis.shape == vis_hf.shape == (2, 3, 64)
    assert (full - full_hf).abs().max() <= 1e-5
    assert (vis - vis_hf).abs().max() <= 1e-5
    assert (vis - full[:, :3]).abs().max() > 1e-3  # the mask really changes what is encoded


def test_pretraining_decoder_logits_match_masked_decoder() -> None:
    # HF's decoder norm has eps 1e-5 fixed while its blocks use layer_norm_eps (1e-12 by default):
    # DecoderConfig.final_norm_eps carries the difference.
    hf = tiny_hf("VideoMAEForPreTraining")
    enc_cfg, dec_cfg, sd = from_hf_videomae(hf)
    assert dec_cfg is not None and (dec_cfg.depth, dec_cfg.width, dec_cfg.heads) == (2, 32, 2)
    encoder, decoder = build_models(enc_cfg, dec_cfg, sd)
    x, mask = video(), mask_of()
    visible, masked = hf_mask_to_indices(mask)
    with torch.no_grad():
        logits = hf(x, bool_masked_pos=mask).logits
        pred = decoder(encoder(x.permute(0, 2, 1, 3, 4), visible=visible).tokens, visible, masked)
    assert pred.shape == logits.shape == (2, 5, 3 * 2 * 16 * 16)
    assert (pred - logits).abs().max() <= 1e-5


@pytest.mark.parametrize("cls_name", ["VideoMAEModel", "VideoMAEForPreTraining"])
def test_round_trip_is_bit_exact(cls_name: str) -> None:
    hf = tiny_hf(cls_name)
    enc_cfg, dec_cfg, sd = from_hf_videomae(hf)
    back = to_hf_videomae(enc_cfg, dec_cfg, sd)
    assert type(back).__name__ == cls_name
    hf_sd, back_sd = hf.state_dict(), back.state_dict()
    assert hf_sd.keys() == back_sd.keys()
    assert all(torch.equal(hf_sd[k], back_sd[k]) for k in hf_sd)
    enc2, dec2, sd2 = from_hf_videomae(back)
    assert (enc2, dec2) == (enc_cfg, dec_cfg)
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)


def test_half_precision_round_trip_keeps_dtype() -> None:
    enc_cfg, dec_cfg, sd = from_hf_videomae(tiny_hf())
    half = {k: v.half() for k, v in sd.items()}
    _, _, back = from_hf_videomae(to_hf_videomae(enc_cfg, dec_cfg, half))
    assert all(back[k].dtype == torch.float16 and torch.equal(back[k], half[k]) for k in half)


def test_folder_and_transformers_4_bias_names(tmp_path) -> None:
    hf = tiny_hf("VideoMAEForPreTraining")
    hf.save_pretrained(tmp_path / "new")
    ref = from_hf_videomae(hf)
    from_folder = from_hf_videomae(tmp_path / "new")
    assert from_folder[:2] == ref[:2]
    assert all(torch.equal(from_folder[2][k], v) for k, v in ref[2].items())
    # transformers 4.x wrote attention.attention.{q,v}_bias and config "qkv_bias"; the biases must survive.
    old = tmp_path / "old"
    old.mkdir()
    renamed = {
        k.replace("attention.query.bias", "attention.q_bias").replace(
            "attention.value.bias", "attention.v_bias"
        ): v
        for k, v in load_file(tmp_path / "new" / "model.safetensors").items()
    }
    assert any(k.endswith(".q_bias") for k in renamed)
    torch.save(renamed, old / "pytorch_model.bin")  # 4.x's default weights file
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    config["qkv_bias"] = config.pop("qv_bias")
    (old / "config.json").write_text(json.dumps(config))
    enc_cfg, _, sd = from_hf_videomae(old)
    assert enc_cfg.qkv_bias == "qv"
    q_bias = sd["encoder.blocks.1.attn.q_bias"]
    assert q_bias.abs().sum() > 0 and torch.equal(q_bias, ref[2]["encoder.blocks.1.attn.q_bias"])
    assert torch.equal(sd["decoder.blocks.0.attn.v_bias"], ref[2]["decoder.blocks.0.attn.v_bias"])


def test_no_qv_bias_and_classifier_is_dropped() -> None:
    enc_cfg, dec_cfg, sd = from_hf_videomae(tiny_hf("VideoMAEForVideoClassification", qv_bias=False))
    assert enc_cfg.qkv_bias == "none" and dec_cfg is None
    assert not any("bias" in k and "attn.q" in k for k in sd)
    assert not any("classifier" in k or "fc_norm" in k for k in sd)
    build_models(enc_cfg, None, sd)


def test_bad_inputs_are_clear_errors() -> None:
    enc_cfg, dec_cfg, sd = from_hf_videomae(tiny_hf("VideoMAEForPreTraining"))
    with pytest.raises(ValueError, match="fused"):
        to_hf_videomae(enc_cfg.__class__(**{**enc_cfg.__dict__, "qkv_bias": "fused"}), None, sd)
    with pytest.raises(ValueError, match="class token"):
        to_hf_videomae(enc_cfg.__class__(**{**enc_cfg.__dict__, "cls_token": True}), None, sd)
    with pytest.raises(ValueError, match="lacks"):
        to_hf_videomae(enc_cfg, dec_cfg, {k: v for k, v in sd.items() if "blocks.1.mlp" not in k})
    with pytest.raises(ValueError, match="does not account"):
        to_hf_videomae(enc_cfg, None, {**sd, "encoder.extra.weight": torch.zeros(1)})
    hf = tiny_hf()
    hf.register_buffer("stray", torch.zeros(2))
    with pytest.raises(ValueError, match="stray"):
        from_hf_videomae(hf)
    with pytest.raises(ValueError, match="same number"):
        hf_mask_to_indices(torch.tensor([[True, False], [True, True]]))


def test_cli_round_trip(tmp_path, monkeypatch) -> None:
    from vidfm import cli

    # Only this command's module: the test checks convert, not the other commands' imports.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["vidfm.commands.convert"])
    hf = tiny_hf("VideoMAEForPreTraining")
    hf.save_pretrained(tmp_path / "hf")
    assert cli.main(["convert", str(tmp_path / "hf"), str(tmp_path / "vidfm"), "--from", "hf"]) == 0
    assert (tmp_path / "vidfm" / "model.safetensors").is_file() and (
        tmp_path / "vidfm" / "config.yaml"
    ).is_file()
    args = ["convert", str(tmp_path / "vidfm"), str(tmp_path / "hf2"), "--from", "vidfm", "--to", "hf"]
    assert cli.main(args) == 0
    back = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path / "hf2")
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in hf.state_dict().items())
    encoder = load_encoder(tmp_path / "vidfm")  # auto-detected vidfm folder
    with torch.no_grad():
        ref = hf.videomae(video()).last_hidden_state
        assert (encoder(video().permute(0, 2, 1, 3, 4)).tokens - ref).abs().max() <= 1e-5
        assert (
            load_encoder(tmp_path / "hf")(video().permute(0, 2, 1, 3, 4)).tokens - ref
        ).abs().max() <= 1e-5
    assert cli.main(["convert", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2


def test_training_run_folder_loads_and_converts_to_hf(tmp_path, monkeypatch) -> None:
    # A run as the trainer leaves it: RUN/config.yaml (the recipe) + RUN/checkpoints/step_*/model.safetensors.
    from vidfm import cli
    from vidfm.config import to_dict
    from vidfm.train.checkpoint import save_checkpoint

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["vidfm.commands.convert"])
    hf = tiny_hf("VideoMAEForPreTraining", layer_norm_eps=1e-6)
    enc_cfg, dec_cfg, sd = from_hf_videomae(hf)
    # shaped like a recipe config (vidfm.recipes.videomae.VideoMAERecipe): sections beside encoder/decoder
    run_cfg = {"recipe": "videomae", "encoder": to_dict(enc_cfg), "decoder": to_dict(dec_cfg)}
    run_cfg |= {"mask": {"kind": "tube", "ratio": 0.9}, "train": {"batch_size": 2, "steps": 10}}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(run_cfg))
    save_checkpoint(tmp_path / "run", 5, {k: torch.zeros_like(v) for k, v in sd.items()}, {})
    save_checkpoint(tmp_path / "run", 10, sd, {})  # the latest step is the one read
    x = video().permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        assert (
            load_encoder(tmp_path / "run")(x).tokens - hf.videomae(video()).last_hidden_state
        ).abs().max() <= 1e-5
    args = ["convert", str(tmp_path / "run"), str(tmp_path / "hf"), "--from", "vidfm", "--to", "hf"]
    assert cli.main(args) == 0
    back = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path / "hf")
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in hf.state_dict().items())
