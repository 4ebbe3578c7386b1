import pytest
import torch
from torch import nn

from vidfm.layers.frozen import FrozenModule
from vidfm.train.optim import build_optimizer, param_groups, set_lr_wd, vit_layer_id
from vidfm.train.schedule import cosine_schedule


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)
        self.gamma = nn.Parameter(torch.ones(d))


class Encoder(nn.Module):
    def __init__(self, d: int = 8, depth: int = 2) -> None:
        super().__init__()
        self.patch_embed = nn.Conv3d(3, d, (2, 4, 4), (2, 4, 4))
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, d))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.rel_table = nn.Parameter(torch.zeros(5, 2))  # 2-D, excluded only via no_weight_decay()
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.norm = nn.LayerNorm(d)

    def no_weight_decay(self) -> set[str]:
        return {"rel_table"}


class Task(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder_mask_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.head = nn.Linear(8, 4)
        self.proj = nn.Linear(8, 8)
        self.teacher = FrozenModule(nn.Linear(8, 8))
        self.text_tower = FrozenModule(nn.Linear(8, 8))
        self.fixed = nn.Parameter(torch.zeros(3, 3), requires_grad=False)


def names_by_wd(groups):
    out = {0.0: set(), 1.0: set()}
    for g in groups:
        out[g["wd_scale"]].update(g["param_names"])
    return out


def test_no_decay_names_and_frozen_parameters_left_out():
    task = Task()
    groups = param_groups(task, 0.05, extra_no_decay=("proj.weight",))
    by = names_by_wd(groups)
    assert by[1.0] == {
        "encoder.patch_embed.weight",
        "encoder.blocks.0.fc.weight",
        "encoder.blocks.1.fc.weight",
        "head.weight",
    }
    assert {
        "encoder.pos_embed",
        "encoder.cls_token",
        "decoder_mask_token",  # keyword names
        "encoder.rel_table",  # no_weight_decay() of a submodule, prefixed
        "proj.weight",  # extra_no_decay, suffix match
        "encoder.blocks.0.norm.weight",
        "encoder.blocks.0.fc.bias",
        "encoder.blocks.1.gamma",
        "head.bias",  # ndim<=1
    } <= by[0.0]
    everything = by[0.0] | by[1.0]
    assert not any(n.startswith(("teacher", "text_tower")) for n in everything)
    assert "fixed" not in everything
    # Every trainable parameter appears exactly once.
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(everything)
    for g in groups:
        assert g["weight_decay"] == pytest.approx(0.05 * g["wd_scale"]) and g["lr_scale"] == 1.0


def test_layer_decay_scales_follow_videomae():
    task = Task()
    depth, decay = 2, 0.75
    groups = param_groups(
        task,
        0.05,
        layer_id=lambda n: vit_layer_id(n, depth, prefix="encoder."),
        layer_decay=decay,
        num_layers=depth,
    )
    scale = {n: g["lr_scale"] for g in groups for n in g["param_names"]}
    # lr_scale = decay ** (num_layers + 1 - layer_id); embeddings are layer 0, blocks.i is i + 1, heads last.
    assert scale["encoder.patch_embed.weight"] == pytest.approx(decay**3)
    assert scale["encoder.pos_embed"] == pytest.approx(decay**3)
    assert scale["encoder.blocks.0.fc.weight"] == pytest.approx(decay**2)
    assert scale["encoder.blocks.1.norm.bias"] == pytest.approx(decay**1)
    assert scale["encoder.norm.weight"] == scale["head.weight"] == 1.0
    assert vit_layer_id("blocks.11.attn.qkv.weight", 12) == 12
    with pytest.raises(ValueError, match="num_layers"):
        param_groups(task, 0.05, layer_id=lambda n: 0)


def test_per_step_lr_and_wd_applied_through_scales():
    task = Task()
    groups = param_groups(
        task, 0.05, layer_id=lambda n: vit_layer_id(n, 2, "encoder."), layer_decay=0.5, num_layers=2
    )
    opt = build_optimizer(groups, lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    assert opt.defaults["fused"] is False  # CPU parameters: no fused kernel
    lr = cosine_schedule(1e-3, 1e-5, 20, 5)
    wd = cosine_schedule(0.04, 0.4, 20, 0)
    for step in (0, 3, 4, 5, 12, 19):
        set_lr_wd(opt, float(lr[step]), float(wd[step]))
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(lr[step] * g["lr_scale"])
            assert g["weight_decay"] == pytest.approx(wd[step] * g["wd_scale"])
    assert {g["weight_decay"] for g in opt.param_groups if g["wd_scale"] == 0} == {0.0}


def test_no_trainable_parameters_is_an_error():
    class OnlyTeacher(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.teacher = FrozenModule(nn.Linear(2, 2))

    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(OnlyTeacher(), 0.05)
