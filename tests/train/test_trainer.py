import json
import sys

import pytest
import torch
from safetensors.torch import load_file
from train_toys import LinearToyTask, MaskedToyTask, NanOnStepsTask, ToyVideos, collate, tokens

from vidfm.config import load_config
from vidfm.train.trainer import EpochSampler, TrainConfig, Trainer, TrainingError


def cfg(**kw) -> TrainConfig:
    base = dict(
        steps=6,
        batch_size=4,
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=2,
        weight_decay=0.05,
        log_every=1,
        ckpt_every=0,
        workers=0,
        device="cpu",
        precision="fp32",
        progress=False,
        seed=7,
    )
    base.update(kw)
    return TrainConfig(**base)


def run(run_dir, c: TrainConfig, task_cls=MaskedToyTask, n=24, on_log=None, **task_kw) -> Trainer:
    torch.manual_seed(0)  # same initial weights (and teacher) in every run
    trainer = Trainer(task_cls(**task_kw), c, run_dir, ToyVideos(n), collate, on_log=on_log)
    trainer.fit()
    return trainer


def losses(run_dir) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == sorted(set(steps)), "metrics.jsonl must have one record per step"
    return {json.loads(line)["step"]: json.loads(line)["loss"] for line in lines}


@pytest.mark.parametrize("workers", [0, 2])
def test_stop_then_resume_equals_uninterrupted(tmp_path, workers):
    k = 4
    # Constant schedules: the two runs have different ``steps``, and a cosine depends on its length.
    c = dict(lr=1e-2, min_lr=1e-2, warmup_steps=0, workers=workers)
    run(tmp_path / "full", cfg(steps=k + 5, **c))
    run(tmp_path / "part", cfg(steps=k, **c))
    resumed = run(tmp_path / "part", cfg(steps=k + 5, **c))
    assert resumed.history[0]["step"] == k + 1  # it did resume
    if workers == 0:  # fetches are visible in this process: the skipped batches were never decoded
        order = EpochSampler(24, 4, seed=7)
        expected = [(0, i) for i in order.epoch_indices(0)[k * 4 :]] + [
            (1, i) for i in order.epoch_indices(1)
        ]
        assert resumed.dataset.fetched == expected[: 5 * 4]
    full, part = losses(tmp_path / "full"), losses(tmp_path / "part")
    assert list(part) == list(range(1, k + 6))
    # 24 items / batch 4 = 6 batches per epoch: steps 7..9 are in the second epoch.
    for step in range(1, k + 6):
        assert part[step] == full[step], step


def test_crash_and_resume_with_cosine_schedule_and_accumulation(tmp_path):
    c = cfg(steps=9, warmup_steps=2, ckpt_every=4, accum_steps=2, weight_decay_end=0.2, clip_grad=1.0)

    def crash_at_6(record):
        if record["step"] == 6:
            raise KeyboardInterrupt

    run(tmp_path / "full", c)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crash", c, on_log=crash_at_6)
    assert max(losses(tmp_path / "crash")) == 6
    with open(tmp_path / "crash" / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')  # a record torn by the crash
    resumed = run(tmp_path / "crash", c)
    assert resumed.history[0]["step"] == 5
    assert losses(tmp_path / "crash") == losses(tmp_path / "full")
    # Same final weights too.
    a = load_file(str(tmp_path / "full/checkpoints/step_00000009/model.safetensors"))
    b = load_file(str(tmp_path / "crash/checkpoints/step_00000009/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_outputs_schedules_and_frozen_teacher(tmp_path):
    seen = []

    def check_groups(record):
        # The optimizer groups carry this step's lr/wd times each group's scale.
        i = record["step"] - 1
        for g in trainer_ref[0].optimizer.param_groups:
            assert g["lr"] == pytest.approx(trainer_ref[0].lr[i] * g["lr_scale"])
            assert g["weight_decay"] == pytest.approx(trainer_ref[0].wd[i] * g["wd_scale"])
        seen.append(record)

    c = cfg(steps=7, warmup_steps=3, weight_decay_end=0.3, ckpt_every=3, keep_last=2, log_every=2)
    torch.manual_seed(0)
    trainer_ref = [Trainer(MaskedToyTask(), c, tmp_path, ToyVideos(8), collate, on_log=check_groups)]
    trainer = trainer_ref[0]
    summary = trainer.fit()
    assert summary["step"] == 7 and summary["skipped_steps"] == 0 and set(summary["parts"]) >= {"pixel"}
    assert [r["step"] for r in seen] == [2, 4, 6, 7] and trainer.history == seen
    assert seen[0]["lr"] == pytest.approx(c.lr / 2)  # warmup 0 -> lr over 3 steps: step 2 is halfway
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    for key in (
        "step",
        "loss",
        "pixel",
        "visible",
        "lr",
        "wd",
        "clips_per_s",
        "data_wait_frac",
        "grad_norm",
        "time",
    ):
        assert key in rec
    assert 0.0 <= rec["data_wait_frac"] <= 1.0 and rec["clips_per_s"] > 0
    assert load_config(TrainConfig, tmp_path / "config.yaml") == c
    # 8 items / batch 4 = 2 batches per epoch; epochs 0..3 were used, set_epoch called in order.
    assert trainer.dataset.epochs_seen == [0, 1, 2, 3]
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("step_"))
    assert ckpts == ["step_00000006", "step_00000007"]
    weights = load_file(str(tmp_path / "checkpoints/step_00000007/model.safetensors"))
    assert weights and not any(key.startswith("teacher") for key in weights)
    assert not trainer.task.teacher.training and not trainer.task.teacher.weight.requires_grad
    assert trainer.task.net.training
    # Running again on a finished run does nothing.
    again = Trainer(MaskedToyTask(), c, tmp_path, ToyVideos(8), collate).fit()
    assert again["steps_this_run"] == 0 and again["resumed"]


def test_nan_steps_are_skipped_and_counted(tmp_path):
    weights = {}

    def snap(record):
        weights[record["step"]] = trainer.task.proj.weight.detach().clone()

    torch.manual_seed(0)
    # Calls 2 and 3 (steps 3 and 4) are NaN.
    trainer = Trainer(
        NanOnStepsTask({2, 3}), cfg(steps=6, max_bad_steps=3), tmp_path, ToyVideos(), collate, on_log=snap
    )
    summary = trainer.fit()
    assert summary["skipped_steps"] == 2 and summary["step"] == 6
    bad = [r for r in trainer.history if "skipped" in r]
    assert [r["step"] for r in bad] == [3, 4] and bad[0]["loss"] is None and bad[1]["skipped"] == 2
    assert torch.equal(weights[2], weights[3]) and torch.equal(weights[3], weights[4])  # no update
    assert not torch.equal(weights[4], weights[5])  # training went on


def test_nan_in_a_row_raises(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(
        NanOnStepsTask(set(range(1, 100))), cfg(steps=20, max_bad_steps=3), tmp_path, ToyVideos(), collate
    )
    with pytest.raises(
        TrainingError, match=r"not finite for 3 steps in a row at step 4 .*; last parts: .*aux"
    ):
        trainer.fit()


def test_accumulation_equals_large_batch(tmp_path):
    big = run(tmp_path / "big", cfg(steps=3, batch_size=8, clip_grad=0.5), task_cls=LinearToyTask, n=32)
    acc = run(
        tmp_path / "acc",
        cfg(steps=3, batch_size=4, accum_steps=2, clip_grad=0.5),
        task_cls=LinearToyTask,
        n=32,
    )
    for p, q in zip(big.task.parameters(), acc.task.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    for a, b in zip(big.history, acc.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], abs=1e-6)


def test_sampler_resume_skips_and_shards():
    s = EpochSampler(10, batch_size=3, seed=1)
    assert s.batches_per_epoch == 3
    s.set_epoch(2)
    full = list(s)
    assert len(full) == 9 and {e for e, _ in full} == {2} and len({i for _, i in full}) == 9
    s.set_epoch(2, start_batch=2)
    assert list(s) == full[6:] and len(s) == 3
    s.set_epoch(3)
    assert [i for _, i in s] != [i for _, i in full]  # a new order each epoch
    shards = [EpochSampler(10, 2, seed=1, rank=r, world_size=2).epoch_indices(0) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4 and not set(shards[0]) & set(shards[1])
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochSampler(5, batch_size=3, seed=0, world_size=2)


def test_bad_inputs_are_clear_errors(tmp_path):
    class NoLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, batch, generator):
            return {"total": self.w.sum()}

    with pytest.raises(TypeError, match="'loss'"):
        Trainer(NoLoss(), cfg(), tmp_path, ToyVideos(), collate).fit()
    with pytest.raises(ValueError, match="warmup_steps"):
        Trainer(NoLoss(), cfg(steps=2, warmup_steps=3), tmp_path, ToyVideos(), collate)
    with pytest.raises(ValueError, match="layer_decay"):
        Trainer(NoLoss(), cfg(layer_decay=0.5), tmp_path, ToyVideos(), collate)


def test_bf16_autocast_and_progress_bar(tmp_path, capsys, monkeypatch):
    dtypes = []

    class Probe(LinearToyTask):
        def forward(self, batch, generator):
            dtypes.append(self.proj(tokens(batch).mean(1)).dtype)
            return super().forward(batch, generator)

    torch.manual_seed(0)
    trainer = Trainer(Probe(), cfg(steps=2, precision="bf16", progress=True), tmp_path, ToyVideos(), collate)
    summary = trainer.fit()
    assert dtypes == [torch.bfloat16] * 2 and summary["loss"] is not None
    assert trainer.task.proj.weight.dtype == torch.float32  # autocast never changes the stored weights
    # Redirected output (not a terminal): no bar, whatever train.progress says; the log lines remain.
    assert "%|" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar is drawn
    Trainer(LinearToyTask(), cfg(steps=2, progress=True), tmp_path / "tty", ToyVideos(), collate).fit()
    assert "train: 100%|" in capsys.readouterr().err


def test_init_from_starts_a_new_run_from_given_weights_and_checks_them(tmp_path):
    from vidfm.io import save_tensors
    from vidfm.train.checkpoint import trainable_state_dict

    torch.manual_seed(3)
    start = {k: v + 0.5 for k, v in trainable_state_dict(MaskedToyTask()).items()}
    save_tensors(start, tmp_path / "init.safetensors")
    trainer = Trainer(MaskedToyTask(), cfg(steps=2, init_from=str(tmp_path / "init.safetensors")), tmp_path / "r",
                      ToyVideos(8), collate)  # fmt: skip
    seen = trainable_state_dict(trainer.task)
    assert all(torch.equal(seen[k], v) for k, v in start.items())  # loaded before any step
    trainer.fit()
    # A file that misses trainable tensors is an error, not a half-initialised run.
    save_tensors(dict(list(start.items())[:1]), tmp_path / "part.safetensors")
    with pytest.raises(KeyError, match="missing"):
        Trainer(
            MaskedToyTask(),
            cfg(init_from=str(tmp_path / "part.safetensors")),
            tmp_path / "r2",
            ToyVideos(8),
            collate,
        )
