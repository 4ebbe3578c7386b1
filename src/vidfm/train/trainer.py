"""The one trainer: a task ``(batch, generator) -> {"loss", parts}`` over any map-style dataset.

It owns what every method shares: resumable data order, per-step lr/wd schedules, autocast, gradient
accumulation and clipping, skipping non-finite steps, metrics, checkpoints and resume. Randomness is
a function of ``(seed, rank, step)``: the task's generator and the global torch RNG (dropout) are
re-seeded from it every step, and each epoch's order comes from ``(seed, epoch)``, so a resumed run
repeats the uninterrupted one exactly.

Distributed: the trainer joins the ``torchrun`` process group itself (``init_distributed``), so one
command runs as 1 process, N processes or several machines. The sampler shards each epoch by rank,
metrics are averaged over ranks (so they equal one process on the concatenated batch) and only rank 0
writes files. ``self.task`` is the raw module (state dict, optimizer groups); ``self.model`` is what the
step calls: the task with activation checkpointing, regional compile and a DDP or FSDP2 wrapper from
:func:`vidfm.train.distributed.parallelize`. Checkpoints hold full (unsharded) tensors, so a run resumes
under any world size and either wrapper.

With ``cfg.ema`` set, one submodule of the task is a frozen exponential moving average of another (V-JEPA's
target encoder): the trainer declares it frozen before building the optimizer and applies the update after
every optimizer step (:mod:`vidfm.train.ema`); being model weights, it is checkpointed and resumed with them.

Streaming datasets (``IterableDataset`` with ``plan(batch_size, rank, world_size)`` and
``set_epoch(epoch, start_batch)``, e.g. :class:`vidfm.data.shards.ShardDataset`) split and resume
themselves. With ``teacher_cache`` set, the trainer wraps the dataset so each clip comes with one of its K
cached augmented views: its crop in ``batch["view"]`` and its teacher targets in ``batch["targets"]``
(:mod:`vidfm.teachers.cache`). The task reads them through the target providers it was built with
(``train/pretrain.py`` builds it from the cache); the trainer never changes the task.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from vidfm.config import to_dict
from vidfm.data.clip_store import ClipStoreDataset
from vidfm.data.datasets import init_worker
from vidfm.io import atomic_write_text
from vidfm.train.checkpoint import (
    latest_checkpoint,
    load_model_weights,
    load_trainer_state,
    match_optimizer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state_dict,
)
from vidfm.train.config import TrainConfig, effective_lr, validate_train_config
from vidfm.train.distributed import (
    DevicePrefetcher,
    all_reduce_mean,
    full_tensors,
    gradient_sync,
    init_distributed,
    parallelize,
    shard_optimizer_state,
    total_grad_norm,
)
from vidfm.train.ema import EMA
from vidfm.train.optim import build_optimizer, frozen_prefixes, param_groups, set_lr_wd
from vidfm.train.run_config import check_resume, record
from vidfm.train.samplers import EpochDataset, EpochSampler, StreamOrder
from vidfm.train.schedule import cosine_schedule
from vidfm.utils import log, make_generator, on_terminal

# Stream id mixed into (seed, rank, step) for the global RNG (dropout), so that it never replays the
# task generator's sequence.
_GLOBAL_RNG_STREAM = 0x5EED
# Record keys the trainer owns; a task part with one of these names would overwrite a metric.
_RESERVED = frozenset(
    "step lr wd momentum grad_norm clips_per_s data_wait_frac time epoch skipped ok".split()
)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite for ``max_bad_steps`` steps)."""


class _ResidentBatches:
    """The loader of a resident clip store: the sampler's ``(epoch, index)`` keys in whole batches, each
    gathered on the device by one index (:meth:`ClipStoreDataset.batch`)."""

    def __init__(self, dataset: ClipStoreDataset, sampler: EpochSampler, batch_size: int) -> None:
        self.dataset, self.sampler, self.batch_size = dataset, sampler, batch_size

    def __iter__(self) -> Iterator[dict]:
        keys = list(self.sampler)
        for start in range(0, len(keys) - self.batch_size + 1, self.batch_size):
            yield self.dataset.batch(keys[start : start + self.batch_size])


class Trainer:
    """Trains ``task`` on ``dataset`` for ``cfg.steps`` optimizer updates; see the module docstring."""

    def __init__(
        self,
        task: nn.Module,
        cfg: TrainConfig,
        run_dir: str | Path,
        dataset: Dataset,
        collate: Callable[[list], dict] | None = None,
        config_to_save: Any = None,
        on_log: Callable[[dict], None] | None = None,
        force: bool = False,
    ) -> None:
        """Args:
        task: module with ``forward(batch, generator) -> {"loss": scalar, **parts}``; frozen parts live
            are :class:`~vidfm.layers.frozen.Frozen` submodules (teachers, fixed towers) and are neither
            optimised nor saved.
        cfg: trainer settings.
        run_dir: run folder (config.yaml, metrics.jsonl, checkpoints/); resumed from when it has a
            checkpoint and ``cfg.resume``.
        dataset: any map-style dataset (``set_epoch(epoch)`` is called when it has one), or a streaming
            one with ``plan(batch_size, rank, world_size)`` and ``set_epoch(epoch, start_batch)``.
        collate: ``list of items -> batch dict`` (torch's default collate when None).
        config_to_save: the resolved run config written to config.yaml (``cfg`` itself when None).
        on_log: called with every logged record (rank 0).
        force: resume even when the run folder's config differs in more than the step budget; the new
            config is recorded beside the old (:mod:`vidfm.train.run_config`).
        """
        validate_train_config(cfg)
        self.cfg, self.run_dir, self.on_log, self.force = cfg, Path(run_dir), on_log, force
        self.config_to_save = config_to_save
        info = init_distributed(device=cfg.device)
        self.rank, self.world_size, self.device = info.rank, info.world_size, info.device
        # A resident store moves to the device once; batches are then gathered there (no loader workers).
        self.resident = isinstance(dataset, ClipStoreDataset) and dataset.resident
        if self.resident:
            dataset.to_device(self.device)
        if cfg.teacher_cache:
            from vidfm.teachers.cache import TeacherCache

            dataset, collate = TeacherCache(cfg.teacher_cache).wrap_dataset(dataset, collate, seed=cfg.seed)
        self.task = task.to(self.device)
        self._freeze()
        # Before the optimizer is built: the EMA target is frozen by declaration, not by its name.
        self.ema = EMA(self.task, cfg.ema, cfg.steps) if cfg.ema is not None else None
        self._ckpt = latest_checkpoint(self.run_dir)
        if self._ckpt is not None and not cfg.resume:
            log.warning("%s has checkpoints but resume is off: starting from step 0", self.run_dir)
            self._ckpt = None
        if self._ckpt is not None:  # full weights go in before FSDP shards them
            load_model_weights(self._ckpt, self.task, strict=True)
        elif cfg.init_from:  # every trainable tensor must come from it: a partial start is an error
            load_model_weights(cfg.init_from, self.task, strict=True)
            log.info("initial weights from %s", cfg.init_from)
        self.model = parallelize(
            self.task,
            cfg.parallel,
            self.device,
            frozen_prefixes(self.task),
            activation_checkpointing=cfg.activation_checkpointing,
            compile=cfg.compile,
        )
        self.dataset, self.collate = dataset, collate
        if isinstance(dataset, IterableDataset):
            self.sampler: EpochSampler | StreamOrder = StreamOrder(
                dataset, cfg.batch_size, self.rank, self.world_size
            )
        else:
            self.sampler = EpochSampler(len(dataset), cfg.batch_size, cfg.seed, self.rank, self.world_size)  # type: ignore[arg-type]
        lr = effective_lr(cfg, self.world_size)
        self.optimizer = build_optimizer(self._groups(), lr, tuple(cfg.betas), cfg.eps)  # type: ignore[arg-type]
        self.lr = cosine_schedule(lr, cfg.min_lr, cfg.steps, cfg.warmup_steps, cfg.warmup_lr)
        wd_end = cfg.weight_decay if cfg.weight_decay_end is None else cfg.weight_decay_end
        # Weight decay follows a cosine without warmup, as VideoMAE run_mae_pretraining.py.
        self.wd = cosine_schedule(cfg.weight_decay, wd_end, cfg.steps, 0)
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        self.step = self.epoch = self.batch_in_epoch = 0
        self.bad_total = self.bad_in_row = 0
        self._resumed_world_size = self.world_size  # the checkpoint's, once _resume has read it
        self.history: list[dict] = []  # every record logged by this process
        self.last: dict[str, Any] = {}  # the latest record
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._iter: Iterator | None = None

    # ----- set-up -----
    def _freeze(self) -> None:
        # Frozen modules get no gradients; their own train() keeps them in eval mode (no dropout/drop-path
        # in teachers) under the task's train().
        frozen = frozen_prefixes(self.task)
        self.task.train()
        for name, p in self.task.named_parameters():
            if name.startswith(frozen):
                p.requires_grad_(False)

    def _groups(self) -> list[dict]:
        cfg = self.cfg
        if cfg.layer_decay >= 1.0:
            return param_groups(self.task, cfg.weight_decay)
        if not (callable(getattr(self.task, "layer_id", None)) and hasattr(self.task, "num_layers")):
            raise ValueError("layer_decay < 1 needs task.layer_id(name) -> int and task.num_layers")
        return param_groups(
            self.task,
            cfg.weight_decay,
            layer_id=self.task.layer_id,  # type: ignore[arg-type]
            layer_decay=cfg.layer_decay,
            num_layers=int(self.task.num_layers),  # type: ignore[arg-type]
        )

    def _loader(self) -> DataLoader | _ResidentBatches:
        if isinstance(self.dataset, ClipStoreDataset) and self.resident:
            return _ResidentBatches(self.dataset, self.sampler, self.cfg.batch_size)
        # A resident store under a wrapper (teacher cache) yields device tensors item by item: no workers.
        w = 0 if self.resident else self.cfg.workers
        stream = isinstance(self.sampler, StreamOrder)
        return DataLoader(
            self.dataset if stream else EpochDataset(self.dataset),
            batch_size=self.cfg.batch_size,
            sampler=None if stream else self.sampler,
            collate_fn=self.collate,
            num_workers=w,
            persistent_workers=w > 0,
            pin_memory=self.device.type == "cuda" and not self.resident,
            drop_last=True,
            # Each worker gets its share of the cores for decoding (PyAV's default is all of them).
            worker_init_fn=init_worker,
            prefetch_factor=4 if w > 0 else None,
            # Its own generator, so building an iterator never draws from the global RNG.
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    # ----- resume -----
    def _trainer_state(self, optimizer_state: dict[str, Any]) -> dict[str, Any]:
        epoch, pos = self.epoch, self.batch_in_epoch
        if pos >= self.sampler.batches_per_epoch:
            epoch, pos = epoch + 1, 0
        return {
            "version": 1,
            "step": self.step,
            "epoch": epoch,
            "batch_in_epoch": pos,
            "batch_size": self.cfg.batch_size,
            "world_size": self.world_size,
            "seed": self.cfg.seed,
            "optimizer": optimizer_state,
            "rng": rng_state(),
            "bad_steps_total": self.bad_total,
            "bad_steps_in_row": self.bad_in_row,
        }

    def _resume(self) -> bool:
        """Trainer state of the checkpoint whose weights the constructor loaded, if any."""
        ckpt = self._ckpt
        if ckpt is None:
            return False
        state = load_trainer_state(ckpt)
        optimizer_state = match_optimizer_state(
            state["optimizer"], [g["param_names"] for g in self.optimizer.param_groups]
        )
        if optimizer_state is None:
            raise TrainingError(f"{ckpt}: optimizer parameters differ from the task's; cannot resume")
        self.optimizer.load_state_dict(optimizer_state)
        shard_optimizer_state(self.optimizer)  # full tensors -> this rank's FSDP2 slices
        for key in ("batch_size", "world_size", "seed"):
            now = self.world_size if key == "world_size" else getattr(self.cfg, key)
            if state[key] != now:
                log.warning(
                    "resume: %s changed from %s to %s; the data order will differ", key, state[key], now
                )
        self.step, self.epoch, self.batch_in_epoch = (
            int(state[k]) for k in ("step", "epoch", "batch_in_epoch")
        )
        self._resumed_world_size = int(state["world_size"])
        if self.batch_in_epoch >= self.sampler.batches_per_epoch:  # the dataset shrank: next epoch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.bad_total, self.bad_in_row = int(state["bad_steps_total"]), int(state["bad_steps_in_row"])
        set_rng_state(state["rng"])
        log.info(
            "resumed from %s (step %d, epoch %d, batch %d)", ckpt, self.step, self.epoch, self.batch_in_epoch
        )
        return True

    def _truncate_metrics(self) -> None:
        path = self.run_dir / "metrics.jsonl"
        if self.rank != 0 or not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):  # a line torn by a crash mid-write
                continue
        atomic_write_text(path, "".join(kept))

    # ----- one step -----
    def _read(self) -> tuple[dict, int, int]:
        """The next host batch and the (epoch, batch_in_epoch) position right after it. The read cursor
        may run one batch ahead of the step (prefetch); the position saved is that of the batch used."""
        while True:
            if self._iter is None:
                if self._read_pos >= self.sampler.batches_per_epoch:
                    self._read_epoch, self._read_pos = self._read_epoch + 1, 0
                self.sampler.set_epoch(self._read_epoch, self._read_pos)
                self._iter = iter(self._data)
            try:
                batch = next(self._iter)
            except StopIteration:
                self._iter = None
                self._read_pos = self.sampler.batches_per_epoch
                continue
            self._read_pos += 1
            return batch, self._read_epoch, self._read_pos

    def _next_batch(self) -> dict:
        """The next batch, on the device."""
        batch, self.epoch, self.batch_in_epoch = next(self._prefetcher)
        return batch

    def _forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            out = self.model(batch, generator)
        if not isinstance(out, dict) or "loss" not in out:
            raise TypeError(f"task must return a dict with 'loss', got {type(out).__name__}")
        clash = _RESERVED & set(out)
        if clash:
            raise ValueError(f"task output names {sorted(clash)} clash with trainer metrics")
        parts = {}
        for k, v in out.items():
            v = torch.as_tensor(v, device=self.device)
            if v.numel() != 1:
                raise ValueError(f"task output {k!r} must be a scalar, got shape {tuple(v.shape)}")
            parts[k] = v.reshape(())
        if not parts["loss"].requires_grad:
            raise TrainingError("task loss does not require grad: nothing to train")
        return parts

    def _train_step(self, i: int) -> tuple[dict[str, torch.Tensor], float]:
        """Optimizer update ``i`` (0-based): ``accum_steps`` micro-batches, clip, step unless non-finite.

        Returns the parts averaged over micro-batches (plus ``grad_norm`` and ``ok``) and the data wait.
        """
        cfg = self.cfg
        set_lr_wd(self.optimizer, float(self.lr[i]), float(self.wd[i]))
        generator = make_generator(cfg.seed, self.rank, i, device=self.device)
        torch.manual_seed(make_generator(cfg.seed, self.rank, i, _GLOBAL_RNG_STREAM).initial_seed())
        wait, sums = 0.0, {}
        for j in range(cfg.accum_steps):
            t0 = time.perf_counter()
            batch = self._next_batch()
            wait += time.perf_counter() - t0
            # Gradients are all-reduced (DDP) / reduce-scattered (FSDP2) after the last micro-batch only.
            with gradient_sync(self.model, j == cfg.accum_steps - 1):
                parts = self._forward(batch, generator)
                (parts["loss"] / cfg.accum_steps).backward()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() / cfg.accum_steps
        if self.world_size > 1:
            # One small all-reduce: logged parts are global-batch means, and every rank takes the same
            # skip decision below even if only one rank's loss went non-finite.
            mean = all_reduce_mean(torch.stack(list(sums.values())))
            sums = dict(zip(sums, mean.unbind(), strict=True))
        norm = total_grad_norm(self._params).to(self.device)
        ok = torch.isfinite(sums["loss"]) & torch.isfinite(norm)
        sums["grad_norm"], sums["ok"] = norm.float(), ok.float()
        if bool(ok):  # the one host sync of a step
            if cfg.clip_grad is not None:
                torch.nn.utils.clip_grads_with_norm_(self._params, cfg.clip_grad, norm)
            self.optimizer.step()
            if self.ema is not None:  # the target follows the weights just updated (V-JEPA's order)
                self.ema.update(i)
        self.optimizer.zero_grad(set_to_none=True)
        return sums, wait

    # ----- outputs -----
    def _emit(self, record: dict) -> None:
        self.history.append(record)
        if self.rank != 0:
            return
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(f"train/{k}", v, record["step"])
        if self.on_log is not None:
            self.on_log(record)

    def _save(self) -> None:
        # Every rank takes part: under FSDP2 gathering the full tensors is a collective.
        weights = full_tensors(trainable_state_dict(self.task))
        optimizer = full_tensors(self.optimizer.state_dict())
        if self.rank == 0:
            save_checkpoint(
                self.run_dir, self.step, weights, self._trainer_state(optimizer), self.cfg.keep_last
            )

    def _open_outputs(self, resumed: bool) -> None:
        self._metrics, self._tb = None, None
        # Every rank checks (all refuse alike); rank 0 writes config.yaml and the segment's record.
        config = to_dict(self.cfg if self.config_to_save is None else self.config_to_save)
        section = "" if self.config_to_save is None else "train."
        worlds = (self._resumed_world_size, self.world_size)
        diffs, forced = (
            check_resume(self.run_dir, config, self.step, self.force, section, worlds)
            if resumed
            else ({}, [])
        )
        if self.rank != 0:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record(self.run_dir, config, self.step, diffs, fresh=not resumed, forced=bool(forced))
        # Records past the restart point (from an interrupted or a replaced run) give way to this run's.
        self._truncate_metrics()
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step + 1 if resumed else None)

    def _record(
        self, sums: dict[str, torch.Tensor], ok: bool, steps: int, step_time: float, wait: float
    ) -> dict:
        """One metrics record for the step just done; ``steps``/``step_time``/``wait`` cover the window
        since the previous record (clips/s and data-wait fraction are window averages)."""
        values = dict(zip(sums, torch.stack(list(sums.values())).tolist(), strict=True))
        global_batch = self.cfg.batch_size * self.cfg.accum_steps * self.world_size
        i = self.step - 1
        record: dict[str, Any] = {"step": self.step}
        # JSON has no NaN/inf: a non-finite value is written as null.
        record.update({k: (v if math.isfinite(v) else None) for k, v in values.items()})
        record.update(
            lr=float(self.lr[i]),
            wd=float(self.wd[i]),
            **({"momentum": float(self.ema.momentum[i])} if self.ema is not None else {}),
            clips_per_s=steps * global_batch / max(step_time, 1e-9),
            data_wait_frac=wait / max(step_time, 1e-9),
            epoch=self.epoch,
            time=time.time(),
        )
        if not ok:
            record["skipped"] = self.bad_total
        if self.rank != 0:  # every rank holds the same (rank-averaged) record: one of them speaks
            return record
        if not ok:
            log.warning(
                "step %d: non-finite loss or gradient, update skipped (%d so far)", self.step, self.bad_total
            )
        elif self.step % self.cfg.log_every == 0:
            log.info(
                "step %d/%d loss %.4g lr %.3g grad_norm %.3g clips/s %.1f data wait %.0f%%",
                self.step, self.cfg.steps, values["loss"], record["lr"], values["grad_norm"],
                record["clips_per_s"], 100 * record["data_wait_frac"],
            )  # fmt: skip
        return record

    def fit(self) -> dict[str, Any]:
        """Train to ``cfg.steps`` (resuming when the run folder has a checkpoint); returns a summary:
        final ``step``, ``loss`` and ``parts`` of the last logged step, ``skipped_steps``, ``time_s``."""
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        cfg, start_time = self.cfg, time.perf_counter()
        resumed = self._resume()
        start_step = self.step
        self._open_outputs(resumed)
        self._data = self._loader()
        self._read_epoch, self._read_pos = self.epoch, self.batch_in_epoch
        self._prefetcher = DevicePrefetcher(
            self._read, self.device, (cfg.steps - self.step) * cfg.accum_steps, overlap=cfg.prefetch
        )
        self.last = {}
        # A bar only on a terminal; redirected output gets the log lines every ``log_every`` steps.
        show = on_terminal(cfg.progress) and self.rank == 0
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not show, desc="train", dynamic_ncols=True)
        try:
            # Log lines go through tqdm.write so they do not tear the progress bar.
            with logging_redirect_tqdm([log]) if show else contextlib.nullcontext():
                self._loop(bar)
        finally:
            bar.close()
            self._iter = self._prefetcher = None
            del self._data  # drops the loader, which shuts its persistent workers down
            if self._metrics is not None:
                self._metrics.close()
            if self._tb is not None:
                self._tb.close()
        return {
            "step": self.step,
            "steps_this_run": self.step - start_step,
            "resumed": resumed,
            "loss": self.last.get("loss"),
            "parts": {k: v for k, v in self.last.items() if k not in _RESERVED and k != "loss"},
            "skipped_steps": self.bad_total,
            "time_s": time.perf_counter() - start_time,
            "run_dir": str(self.run_dir),
        }

    def _loop(self, bar: Any) -> None:
        cfg = self.cfg
        window = (0, 0.0, 0.0)  # steps, seconds and data-wait seconds since the last record
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            sums, wait = self._train_step(self.step)
            self.step += 1
            ok = bool(sums.pop("ok"))
            self.bad_in_row = 0 if ok else self.bad_in_row + 1
            self.bad_total += 0 if ok else 1
            window = (window[0] + 1, window[1] + time.perf_counter() - t0, window[2] + wait)
            if not ok or self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self.last = self._record(sums, ok, *window)
                window = (0, 0.0, 0.0)
                self._emit(self.last)
                loss = self.last["loss"] if self.last["loss"] is not None else float("nan")
                bar.set_postfix(
                    loss=f"{loss:.4g}",
                    lr=f"{self.last['lr']:.2e}",
                    clips_s=f"{self.last['clips_per_s']:.1f}",
                    wait=f"{100 * self.last['data_wait_frac']:.0f}%",
                    refresh=False,
                )
            bar.update(1)
            if self.bad_in_row >= cfg.max_bad_steps:
                parts = {k: v for k, v in self.last.items() if k not in _RESERVED}
                raise TrainingError(
                    f"loss was not finite for {self.bad_in_row} steps in a row at step {self.step} "
                    f"(or its gradient norm was not: {self.last.get('grad_norm')}); last parts: {parts}"
                )
            if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or self.step == cfg.steps:
                self._save()
