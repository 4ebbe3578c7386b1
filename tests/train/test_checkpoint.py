import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import vidfm.train.checkpoint as ckpt_mod
from vidfm.layers.frozen import FrozenModule
from vidfm.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_model_weights,
    load_trainer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state_dict,
)


class Task(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        # Declared frozen (never saved): a teacher, a list of them, another fixed tower.
        self.teacher = FrozenModule(nn.Linear(4, 4))
        self.teachers = FrozenModule(nn.ModuleList([nn.Linear(4, 2)]))
        self.clip = FrozenModule(nn.Linear(4, 3))


def state(step: int) -> dict:
    opt = torch.optim.AdamW(nn.Linear(2, 2).parameters())
    return {
        "step": step,
        "epoch": 1,
        "batch_in_epoch": 3,
        "optimizer": opt.state_dict(),
        "rng": rng_state(),
        "names": ["a", "b"],
        "nested": {"x": 1.5, "y": None},
    }


def save(run, step, task=None, keep_last=2):
    task = task or Task()
    return save_checkpoint(run, step, trainable_state_dict(task), state(step), keep_last=keep_last)


def test_layout_weights_only_and_frozen_keys_absent(tmp_path):
    task = Task()
    path = save(tmp_path, 123, task)
    assert path == tmp_path / "checkpoints" / "step_00000123"
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000123"
    weights = load_file(str(path / "model.safetensors"))
    assert set(weights) == {k for k in task.state_dict() if k.startswith("encoder.")}
    assert "encoder.1.running_mean" in weights  # buffers are part of the trainable state
    # The trainer state is plain data: torch.load(weights_only=True) accepts it.
    loaded = torch.load(path / "trainer_state.pt", weights_only=True)
    assert loaded["step"] == 123 and loaded["nested"] == {"x": 1.5, "y": None}
    assert load_trainer_state(path)["names"] == ["a", "b"]


def test_keep_last_k(tmp_path):
    for step in (10, 20, 30, 40):
        save(tmp_path, step, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert latest_checkpoint(tmp_path).name == "step_00000040"
    save(tmp_path, 50, keep_last=1)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [50]


def test_crash_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    save(tmp_path, 10)

    def crash(*args, **kwargs):
        raise OSError("disk died")

    # The model file is written, then the trainer state write fails: a torn temp folder is left behind.
    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(OSError, match="disk died"):
        save(tmp_path, 20)
    monkeypatch.undo()
    leftovers = list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert leftovers and (leftovers[0] / "model.safetensors").is_file()
    assert latest_checkpoint(tmp_path).name == "step_00000010"
    # A fresh save works and removes the leftover.
    save(tmp_path, 20)
    assert latest_checkpoint(tmp_path).name == "step_00000020"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_latest_falls_back_to_scanning(tmp_path):
    save(tmp_path, 5)
    save(tmp_path, 6)
    (tmp_path / "checkpoints" / "latest").write_text("step_00000099\n")  # names a folder that is gone
    assert latest_checkpoint(tmp_path).name == "step_00000006"
    (tmp_path / "checkpoints" / "step_00000007").mkdir()  # incomplete: no files
    assert latest_checkpoint(tmp_path).name == "step_00000006"
    assert latest_checkpoint(tmp_path / "nowhere") is None


def test_saving_the_same_step_twice_replaces_it(tmp_path):
    save(tmp_path, 3)
    task = Task()
    with torch.no_grad():
        task.encoder[0].weight.fill_(7.0)
    save(tmp_path, 3, task)
    out = Task()
    load_model_weights(tmp_path, out)
    assert torch.all(out.encoder[0].weight == 7.0)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3]


def test_load_model_weights_run_folder_prefix_and_strict(tmp_path):
    src = Task()
    save(tmp_path, 1, src)
    dst = Task()
    teacher_before = dst.teacher.weight.clone()
    res = load_model_weights(tmp_path, dst)
    assert res.missing == [] and res.unexpected == []
    for k, v in trainable_state_dict(src).items():
        assert torch.equal(dst.state_dict()[k], v)
    assert torch.equal(dst.teacher.weight, teacher_before)  # teachers are never touched
    # prefix: the encoder of a task into a bare encoder.
    bare = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    load_model_weights(tmp_path / "checkpoints" / "step_00000001", bare, prefix="encoder.")
    assert torch.equal(bare[0].weight, src.encoder[0].weight)
    # strict: a module that does not match is a clear error; non-strict reports.
    other = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(KeyError, match="missing 0 key.*unexpected"):
        load_model_weights(tmp_path, other, prefix="encoder.")
    res = load_model_weights(tmp_path, other, strict=False, prefix="encoder.")
    assert "1.running_mean" in res.unexpected
    with pytest.raises(FileNotFoundError):
        load_model_weights(tmp_path / "empty", other)


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    snap = rng_state()
    torch.save(snap, tmp_path / "rng.pt")
    expect = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1])
    assert expect[2] == got[2] and expect[3] == got[3]
