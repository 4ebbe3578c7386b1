"""Official VideoMAE checkpoints -> vidfm: layouts, wrappers, q/v biases, classifier extras, the CLI."""

from __future__ import annotations

import argparse
import datetime

import pytest
import torch

from vidfm.convert import build_models, from_official_videomae, load_encoder, load_vidfm_checkpoint
from vidfm.models.decoder import DecoderConfig, MaskedDecoder
from vidfm.models.encoder import EncoderConfig, VideoEncoder

ENC = dict(size="S/16", depth=2, width=64, heads=4, num_frames=4, img_size=32, norm_eps=1e-6)


def randomise(*modules: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial weights everywhere, q/v biases included (they init to zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def official_block_key(k: str) -> str:
    # modeling_finetune.py Block names LayerScale gamma_1/gamma_2; everything else matches vidfm.
    return k.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2")


def pretrain_layout(encoder: VideoEncoder, decoder: MaskedDecoder) -> dict[str, torch.Tensor]:
    """Keys as official modeling_pretrain.py's PretrainVisionTransformer.state_dict() names them."""
    sd = {f"encoder.{official_block_key(k)}": v.clone() for k, v in encoder.state_dict().items()}
    for k, v in decoder.state_dict().items():
        if k in ("encoder_to_decoder.weight", "mask_token"):
            sd[k] = v.clone()  # top-level in PretrainVisionTransformer
        else:
            sd[f"decoder.{official_block_key(k)}"] = v.clone()
    return sd


def tiny_pretrain() -> tuple[VideoEncoder, MaskedDecoder]:
    torch.manual_seed(0)
    encoder = VideoEncoder(EncoderConfig(**ENC)).eval()
    # width 96 is no official decoder: the converter is told its heads (decoder_heads=3).
    dec_cfg = DecoderConfig(depth=2, width=96, heads=3, norm_eps=1e-6)
    decoder = MaskedDecoder(64, dec_cfg, 96, 3, 3 * 2 * 16 * 16, encoder.grid).eval()
    randomise(encoder, decoder)
    return encoder, decoder


def clip() -> torch.Tensor:
    return torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3))


VISIBLE = torch.tensor([[0, 3, 6], [1, 2, 7]])
MASKED = torch.tensor([[1, 2, 4, 5, 7], [0, 3, 4, 5, 6]])


@pytest.mark.parametrize("wrapper", ["model", "module", "ddp_prefix"])
def test_pretrain_checkpoint_loads_with_biases_and_same_output(tmp_path, wrapper: str) -> None:
    encoder, decoder = tiny_pretrain()
    sd = pretrain_layout(encoder, decoder)
    if wrapper == "model":  # utils.save_model also pickles the args Namespace and the epoch
        obj = {"model": sd, "epoch": 799, "args": argparse.Namespace(model="pretrain_videomae_small")}
    elif wrapper == "module":  # DeepSpeed
        obj = {"module": sd}
    else:
        obj = {f"module.{k}": v for k, v in sd.items()}
    torch.save(obj, tmp_path / "checkpoint.pth")
    conv = from_official_videomae(
        tmp_path / "checkpoint.pth", heads=4, num_frames=4, img_size=32, decoder_heads=3
    )
    assert conv.encoder.qkv_bias == "qv" and conv.encoder.final_norm and conv.extras == {}
    assert (conv.decoder.depth, conv.decoder.width, conv.decoder.heads) == (2, 96, 3)
    for i in range(2):
        for name in ("q_bias", "v_bias"):
            file_bias = sd[f"encoder.blocks.{i}.attn.{name}"]
            assert file_bias.abs().sum() > 0
            assert torch.equal(conv.state_dict[f"encoder.blocks.{i}.attn.{name}"], file_bias)
            assert torch.equal(
                conv.state_dict[f"decoder.blocks.{i}.attn.{name}"], sd[f"decoder.blocks.{i}.attn.{name}"]
            )
    enc2, dec2 = build_models(conv.encoder, conv.decoder, conv.state_dict)
    x = clip()
    with torch.no_grad():
        ref_tokens = encoder(x, visible=VISIBLE).tokens
        tokens = enc2(x, visible=VISIBLE).tokens
        assert (tokens - ref_tokens).abs().max() <= 1e-6
        assert (dec2(tokens, VISIBLE, MASKED) - decoder(ref_tokens, VISIBLE, MASKED)).abs().max() <= 1e-6
        # The biases matter: without them the output moves (the failure mode of a loader that zeroes them).
        no_bias = {
            k: (torch.zeros_like(v) if k.endswith(("q_bias", "v_bias")) else v)
            for k, v in conv.state_dict.items()
        }
        enc3, _ = build_models(conv.encoder, None, no_bias)
        assert (enc3(x, visible=VISIBLE).tokens - ref_tokens).abs().max() > 1e-3


def test_finetuned_checkpoint_keeps_classifier_and_layer_scale(tmp_path) -> None:
    # modeling_finetune.py VisionTransformer with use_mean_pooling, init_values > 0, learnable positions:
    # no final norm, fc_norm on the pooled feature, head.*, gamma_1/gamma_2, pos_embed [1,N,D].
    torch.manual_seed(0)
    cfg = EncoderConfig(**{**ENC, "final_norm": False, "layer_scale": 0.1, "pos_embed": "learned"})
    encoder = VideoEncoder(cfg).eval()
    randomise(encoder)
    sd = {official_block_key(k): v.clone() for k, v in encoder.state_dict().items()}
    head = {"fc_norm.weight": torch.rand(64), "fc_norm.bias": torch.rand(64)}
    head |= {"head.weight": torch.randn(5, 64), "head.bias": torch.randn(5)}
    torch.save({"model": {**sd, **head}}, tmp_path / "finetuned.pth")
    conv = from_official_videomae(tmp_path / "finetuned.pth", heads=4, num_frames=4, img_size=32)
    assert not conv.encoder.final_norm and conv.encoder.layer_scale and conv.encoder.pos_embed == "learned"
    assert conv.decoder is None and conv.extras.keys() == head.keys()
    assert all(torch.equal(conv.extras[k], v) for k, v in head.items())
    enc2, _ = build_models(conv.encoder, None, conv.state_dict)
    with torch.no_grad():
        assert (enc2(clip()).tokens - encoder(clip()).tokens).abs().max() <= 1e-6
    with pytest.raises(ValueError, match="pos_embed has 8 positions"):
        from_official_videomae(tmp_path / "finetuned.pth", heads=4, num_frames=8, img_size=32)


def test_sizes_come_from_shapes_and_heads_from_the_caller() -> None:
    torch.manual_seed(0)
    encoder = VideoEncoder(EncoderConfig(size="S/16", depth=2, num_frames=4, img_size=32, qkv_bias="none"))
    sd = {k: v for k, v in encoder.state_dict().items()}
    # A 2-block ViT-S width is no official model: the heads are not guessed from the width.
    with pytest.raises(ValueError, match="pass --heads"):
        from_official_videomae(sd, num_frames=4, img_size=32)
    conv = from_official_videomae(sd, heads=6, num_frames=4, img_size=32)
    assert (conv.encoder.dims()[:3], conv.encoder.qkv_bias, conv.encoder.tubelet) == ((384, 2, 6), "none", 2)
    with pytest.raises(ValueError, match="does not divide"):
        from_official_videomae(sd, heads=5, num_frames=4, img_size=32)
    with pytest.raises(ValueError, match="pass --decoder-heads"):
        from_official_videomae(pretrain_layout(*tiny_pretrain()), heads=4, num_frames=4, img_size=32)


def test_unknown_layouts_name_the_keys(tmp_path) -> None:
    encoder, decoder = tiny_pretrain()
    sd = pretrain_layout(encoder, decoder)
    with pytest.raises(ValueError, match="teacher.proj.weight"):
        from_official_videomae(
            {**sd, "teacher.proj.weight": torch.zeros(1)}, heads=4, num_frames=4, img_size=32
        )
    finetuned = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    with pytest.raises(ValueError, match="blocks.0.attn.rel_pos_bias"):
        from_official_videomae({**finetuned, "blocks.0.attn.rel_pos_bias": torch.zeros(1)}, heads=4)
    with pytest.raises(ValueError, match="no state dict found"):
        from_official_videomae({"state": sd, "epoch": 3}, heads=4)
    with pytest.raises(ValueError, match="not an official VideoMAE encoder"):
        from_official_videomae({"visual.conv1.weight": torch.zeros(1)})
    # Anything beyond plain tensors and the args Namespace is refused (weights_only=True).
    torch.save({"model": sd, "when": datetime.datetime(2023, 1, 1)}, tmp_path / "unsafe.pth")
    with pytest.raises(ValueError, match="weights_only"):
        from_official_videomae(tmp_path / "unsafe.pth", heads=4)


def test_cli_official_to_vidfm_and_hf(tmp_path, monkeypatch) -> None:
    from vidfm import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ["vidfm.commands.convert"])
    encoder, decoder = tiny_pretrain()
    head = {"head.weight": torch.randn(3, 64), "head.bias": torch.randn(3)}
    torch.save({"model": pretrain_layout(encoder, decoder)}, tmp_path / "ckpt.pth")
    size = ["--heads", "4", "--decoder-heads", "3", "--num-frames", "4", "--img-size", "32"]
    assert cli.main(["convert", str(tmp_path / "ckpt.pth"), str(tmp_path / "out"), *size]) == 0
    conv = load_vidfm_checkpoint(tmp_path / "out")
    assert conv.decoder is not None and conv.encoder.qkv_bias == "qv"
    with torch.no_grad():
        assert (load_encoder(tmp_path / "out")(clip()).tokens - encoder(clip()).tokens).abs().max() <= 1e-6
        # load_encoder reads the official file directly too.
        direct = load_encoder(tmp_path / "ckpt.pth", heads=4, num_frames=4, img_size=32)
        assert (direct(clip()).tokens - encoder(clip()).tokens).abs().max() <= 1e-6
    sd = {k: v for k, v in encoder.state_dict().items()}
    torch.save({"model": {**sd, **head}}, tmp_path / "ft.pth")
    assert (
        cli.main(["convert", str(tmp_path / "ft.pth"), str(tmp_path / "ft"), "--from", "official", *size])
        == 0
    )
    extras = load_vidfm_checkpoint(tmp_path / "ft").extras
    assert extras.keys() == head.keys() and torch.equal(extras["head.weight"], head["head.weight"])
    pytest.importorskip("transformers")
    assert cli.main(["convert", str(tmp_path / "ckpt.pth"), str(tmp_path / "hf"), "--to", "hf", *size]) == 0
    assert (tmp_path / "hf" / "config.json").is_file()
