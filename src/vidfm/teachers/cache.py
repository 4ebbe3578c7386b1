"""Cached teacher targets: teacher outputs for K fixed augmented views per clip, computed once.

Distillation (MVD, UMT, ...) runs frozen teachers on the full clip at every step, often costing more
than the student itself. Teachers see the clip but not the mask, so their outputs depend only on the
view (frames and crop): with K views per clip fixed in advance, every epoch can reuse them.

Building (:func:`build_teacher_cache`, ``vidfm data cache-targets``). View ``v`` of clip ``i`` is the
dataset's item ``i`` at "epoch" ``v`` (its frames come from ``(seed, v, i)``) with a multi-scale crop box
and flip drawn from ``(seed, v, i)``, handed to the task in ``batch["view"]``. The task is built with a
:class:`RecordingTargets` source: live teachers whose outputs are kept, so the stored targets are exactly
what the task asks of its teachers in training. They are stored in fp16 or bf16 in
``targets-NNNNNN.safetensors`` shards (``[M, K, ...]`` per teacher and output field, plus the boxes and
flips), listed in ``cache.json`` with each teacher's :class:`~vidfm.teachers.base.TeacherSpec` and token
grid and the storage cost per clip. Shards already written are kept, so an interrupted build resumes.

Training (``train.teacher_cache=DIR``). ``train/pretrain.py`` builds the task with
:meth:`TeacherCache.targets` (:class:`CachedTargets`): each provider reads its teacher's targets from
``batch["targets"]`` and the teacher is never built. The trainer wraps the dataset
(:meth:`TeacherCache.wrap_dataset`) so item ``i`` of epoch ``e`` is one of its cached views, ``v`` from
``(seed, e, i)``, with that view's crop in ``batch["view"]`` and its targets in ``batch["targets"]``. A
task whose teachers' outputs depend on anything else than the view (e.g. a teacher on the masked clip)
cannot be cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from vidfm.data.transforms import AugmentConfig, multiscale_boxes
from vidfm.errors import ConfigError, UserError
from vidfm.io import atomic_write_text, save_tensors
from vidfm.teachers.base import Teacher, TeacherOutput, TeacherSpec
from vidfm.teachers.targets import TargetProvider, TargetSource
from vidfm.train.distributed import is_distributed, to_device
from vidfm.utils import log, make_generator

INDEX_FILE = "cache.json"
VERSION = 2  # 2: one call per teacher and step, specs in cache.json, views in batch["view"]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
FIELDS = ("tokens", "pooled", "attention")  # TeacherOutput fields stored (``hidden`` as hidden.LAYER)
_VIEW_STREAM = 0x71E7  # stream ids mixed into (seed, ...) so view choice and crops never share a sequence
_BOX_STREAM = 0xB0C5


def dataset_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """What ties a cache to its dataset: length, class, record paths, sampling, size, seed."""
    fp: dict[str, Any] = {"type": type(dataset).__name__, "len": len(dataset)}  # type: ignore[arg-type]
    records = getattr(dataset, "records", None)
    if records:
        fp["records"] = hashlib.sha1("\n".join(r.path for r in records).encode()).hexdigest()
    sampling = getattr(dataset, "sampling", None)
    if dataclasses.is_dataclass(sampling):
        fp["sampling"] = dataclasses.asdict(sampling)
    for key in ("seed", "short_side", "crop_square"):
        if hasattr(dataset, key):
            fp[key] = getattr(dataset, key)
    return fp


def view_of(seed: int, epoch: int, index: int, views: int) -> int:
    """Which cached view clip ``index`` uses in ``epoch``."""
    g = make_generator(seed, _VIEW_STREAM, epoch, index)
    return int(torch.randint(views, (1,), generator=g))


# ----------------------------------------------------------------------------- target sources
class CachedTargets(TargetSource):
    """Targets read from ``batch["targets"]``: ``teacher(name, build)`` never calls ``build``.

    Args:
        teachers: per cached teacher, its ``cache.json`` entry (``spec``, ``grid``, ``fields``).
        root: the cache folder (for messages).
    """

    def __init__(self, teachers: dict[str, dict[str, Any]], root: str | Path) -> None:
        self.teachers, self.root = teachers, Path(root)
        self.asked: list[str] = []

    def teacher(self, name: str, build: Callable[[], Teacher]) -> TargetProvider:
        if name not in self.teachers:
            raise UserError(
                f"the teacher cache {self.root} holds no targets of {name!r} (it holds "
                f"{sorted(self.teachers)}): rebuild it with vidfm data cache-targets for this recipe"
            )
        self.asked.append(name)
        entry = self.teachers[name]
        spec = entry["spec"]
        spec = TeacherSpec(**{**spec, "layers": tuple(spec["layers"])})
        return CachedProvider(name, spec, tuple(entry["grid"]))  # type: ignore[arg-type]

    def check_all_used(self) -> None:
        """After the task is built: every cached teacher was asked for (else the recipe differs)."""
        unused = sorted(set(self.teachers) - set(self.asked))
        if unused:
            raise UserError(
                f"the teacher cache {self.root} holds targets of {unused}, which this task does not use: "
                "rebuild it with vidfm data cache-targets for this recipe"
            )


class CachedProvider(TargetProvider):
    """Teacher ``name``'s stored outputs for the batch's views (``batch["targets"][name]``).

    Args:
        name: the teacher's name in the cache. spec: its spec. grid: its token grid (T, H, W).
    """

    def __init__(self, name: str, spec: TeacherSpec, grid: tuple[int, int, int]) -> None:
        super().__init__(spec)
        self.name, self.grid = name, grid

    def forward(self, clip: torch.Tensor, batch: dict[str, Any]) -> TeacherOutput:
        stored = batch.get("targets", {}).get(self.name)
        if stored is None:
            raise RuntimeError(
                f"{self.name}: the batch has no cached targets (the dataset is not wrapped by "
                "TeacherCache.wrap_dataset)"
            )
        if stored["tokens"].shape[0] != clip.shape[0]:
            raise RuntimeError(
                f"{self.name}: cached batch of {stored['tokens'].shape[0]}, clip of {clip.shape[0]}"
            )
        hidden = {int(k.split(".")[1]): v.float() for k, v in stored.items() if k.startswith("hidden.")}
        return TeacherOutput(
            tokens=stored["tokens"].float(),
            grid=self.grid,
            pooled=stored["pooled"].float() if "pooled" in stored else None,
            attention=stored["attention"].float() if "attention" in stored else None,
            hidden=hidden,
        )


class RecordingTargets(TargetSource):
    """Live teachers whose outputs are kept, to build a cache: ``providers[name].outputs`` holds the
    outputs of the calls since the last :meth:`reset`."""

    def __init__(self) -> None:
        self.providers: dict[str, _Recording] = {}

    def teacher(self, name: str, build: Callable[[], Teacher]) -> TargetProvider:
        self.providers[name] = _Recording(super().teacher(name, build))
        return self.providers[name]

    def reset(self) -> None:
        for provider in self.providers.values():
            provider.outputs = []


class _Recording(TargetProvider):
    def __init__(self, live: TargetProvider) -> None:
        super().__init__(live.spec)
        self.live = live
        self.outputs: list[TeacherOutput] = []

    def forward(self, clip: torch.Tensor, batch: dict[str, Any]) -> TeacherOutput:
        out = self.live(clip, batch)
        self.outputs.append(out)
        return out


def _fields(out: TeacherOutput) -> dict[str, torch.Tensor]:
    found = {f: getattr(out, f) for f in FIELDS if getattr(out, f) is not None}
    found.update({f"hidden.{k}": v for k, v in out.hidden.items()})
    return found


# ----------------------------------------------------------------------------- dataset side
class _CachedViews(Dataset):
    """Item ``i`` of epoch ``e``: the wrapped dataset's item at view ``v = view_of(seed, e, i)``, plus
    that view's crop (``view``) and teacher targets (``targets``)."""

    def __init__(self, dataset: Dataset, cache: TeacherCache, seed: int) -> None:
        self.dataset, self.cache, self.seed, self.epoch = dataset, cache, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        view = view_of(self.seed, self.epoch, index, self.cache.views)
        item = _view_item(self.dataset, view, index)
        stored = self.cache.read(index, view)
        targets: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in stored.items():
            if key not in ("box", "flip"):
                name, field = key.split(".", 1)
                targets.setdefault(name, {})[field] = value
        return {**item, "view": {"box": stored["box"], "flip": stored["flip"].bool()}, "targets": targets}


def _view_item(dataset: Dataset, view: int, index: int) -> dict[str, Any]:
    """The dataset's item ``index`` with the frames of view ``view`` (its per-epoch sampling at ``view``)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(view)
    return dataset[index]


class _ViewCollate:
    """Collates the items without their ``view``/``targets`` entries (the dataset's own collate), then
    stacks those into ``batch["view"]`` and ``batch["targets"]``."""

    KEYS = ("view", "targets")

    def __init__(self, collate: Callable[[list], dict] | None) -> None:
        self.collate = collate or default_collate

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate([{k: v for k, v in it.items() if k not in self.KEYS} for it in items])
        for key in self.KEYS:
            if key in items[0]:
                batch[key] = default_collate([it[key] for it in items])
        return batch


class TeacherCache:
    """A built cache, opened for training: see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        """Args: root: folder written by :func:`build_teacher_cache`."""
        self.root = Path(root)
        path = self.root / INDEX_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{root} is not a teacher cache (no {INDEX_FILE}; see vidfm data cache-targets)"
            )
        self.index = json.loads(path.read_text())
        if self.index.get("version") != VERSION:
            raise UserError(
                f"the teacher cache {root} has version {self.index.get('version')}, this vidfm reads "
                f"version {VERSION}: rebuild it with vidfm data cache-targets"
            )
        self.views = int(self.index["views"])
        self.teachers: dict[str, dict[str, Any]] = self.index["teachers"]
        self._starts = [s["start"] for s in self.index["shards"]]
        self._open: dict[int, Any] = {}

    def targets(self) -> CachedTargets:
        """The target source a task is built with to train from this cache (no teacher is loaded)."""
        return CachedTargets(self.teachers, self.root)

    def wrap_dataset(
        self, dataset: Dataset, collate: Callable[[list], dict] | None, seed: int
    ) -> tuple[Dataset, Callable[[list], dict]]:
        """(dataset of cached views, collate that batches their views and targets); checks the dataset
        matches."""
        fp = dataset_fingerprint(dataset)
        if fp != self.index["dataset"]:
            cached = self.index["dataset"]
            differ = ", ".join(
                f"{k}: cache {cached.get(k)!r}, this run {fp.get(k)!r}"
                for k in sorted(set(cached) | set(fp))
                if cached.get(k) != fp.get(k)
            )
            # A user mistake (e.g. another train.seed than the cache's): one line, no traceback.
            raise ConfigError(
                f"teacher cache {self.root} was built for another dataset ({differ}); rebuild it with "
                "vidfm data cache-targets and the run's settings"
            )
        return _CachedViews(dataset, self, seed), _ViewCollate(collate)

    def read(self, index: int, view: int) -> dict[str, torch.Tensor]:
        """Clip ``index``'s view ``view``: ``box`` int32 [4], ``flip`` uint8 [] and every stored
        ``NAME.FIELD``."""
        if not 0 <= index < self.index["num_clips"]:
            raise IndexError(f"clip {index} not in the cache of {self.index['num_clips']} clips")
        s = max(i for i, start in enumerate(self._starts) if start <= index)
        if s not in self._open:  # memory-mapped; only the slices read are loaded
            self._open[s] = safe_open(str(self.root / self.index["shards"][s]["name"]), "pt")
        f, row = self._open[s], index - self._starts[s]
        return {k: f.get_slice(k)[row, view] for k in f.keys()}

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the files themselves
        return {**self.__dict__, "_open": {}}


# ----------------------------------------------------------------------------- building
class _ViewsOf(Dataset):
    """Items ``indices`` of ``dataset`` at view ``view``, each with its crop box and flip (``view``)."""

    def __init__(
        self, dataset: Dataset, indices: list[int], view: int, augment: AugmentConfig, seed: int
    ) -> None:
        self.dataset, self.indices, self.view, self.augment, self.seed = dataset, indices, view, augment, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        index = self.indices[k]
        item = _view_item(self.dataset, self.view, index)
        h, w = item["video"].shape[-3:-1]
        cfg = self.augment
        g = make_generator(self.seed, _BOX_STREAM, self.view, index)
        box = multiscale_boxes(h, w, cfg.size, tuple(cfg.scales), cfg.max_distort, 1, g)[0]
        flip = bool(torch.rand((), generator=g) < cfg.flip_prob)
        return {**item, "view": {"box": torch.tensor(box, dtype=torch.int32), "flip": torch.tensor(flip)}}


def build_teacher_cache(
    build_task: Callable[[TargetSource], nn.Module],
    dataset: Dataset,
    out: str | Path,
    views: int = 4,
    collate: Callable[[list], dict] | None = None,
    batch_size: int = 8,
    dtype: str = "fp16",
    max_bytes: int = 1 << 30,
    seed: int = 0,
    workers: int = 0,
    device: torch.device | str = "cpu",
    autocast: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Compute and store a task's teacher outputs for ``views`` views of every clip; returns ``cache.json``.

    Args:
        build_task: builds the task from a target source (a recipe's ``build_task``); it is called once
            with a :class:`RecordingTargets` source, which loads the teachers.
        dataset: the training dataset; item ``i`` at epoch ``v`` gives view ``v``'s frames.
        out: cache folder (created; shards already there are kept).
        views: K, augmented views per clip.
        collate: the dataset's collate (torch's default when None).
        batch_size: clips per teacher forward.
        dtype: ``"fp16"`` or ``"bf16"`` storage.
        max_bytes: shard size; clips per shard follow from the measured size of one clip.
        seed: crop and flip seed.
        workers: DataLoader workers decoding clips.
        device: where the task runs; ``autocast``: bf16 autocast (default: on CUDA).
        rank, world_size: shards ``rank, rank + world_size, ...`` are this process's; rank 0 writes the
            index once every shard exists (run the ranks, then rank 0 last, or all under a barrier).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    out, device = Path(out), torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    recording = RecordingTargets()
    task = build_task(recording)
    recorders = recording.providers
    if not recorders:
        raise ValueError(f"{type(task).__name__} has no teachers: nothing to cache")
    augment = getattr(getattr(task, "augment", None), "cfg", None)
    if not isinstance(augment, AugmentConfig):
        raise ValueError(f"{type(task).__name__} has no VideoAugment 'augment': its crops cannot be cached")
    task.to(device).eval()
    autocast = device.type == "cuda" if autocast is None else autocast
    n_clips = len(dataset)  # type: ignore[arg-type]
    collate = _ViewCollate(collate)

    def run(
        indices: list[int], view: int
    ) -> tuple[dict[str, list[torch.Tensor]], dict[str, list], torch.Tensor]:
        """Per stored key, the outputs of ``indices`` at ``view`` (in order), the grids, the views."""
        loader = DataLoader(
            _ViewsOf(dataset, indices, view, augment, seed),
            batch_size,
            collate_fn=collate,
            num_workers=workers,
        )
        stored: dict[str, list[torch.Tensor]] = {}
        grids: dict[str, list] = {}
        views_meta = []
        for b, batch in enumerate(loader):
            recording.reset()
            batch = to_device(batch, device)
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
                task(batch, make_generator(seed, view, indices[b * batch_size], device=device))
            for n, r in recorders.items():
                if len(r.outputs) != 1:
                    raise RuntimeError(
                        f"the task called {n} {len(r.outputs)} times in a step; a cache holds one call per "
                        "step (a weight of 0 never calls it: drop it before caching)"
                    )
                grids[n] = list(r.outputs[0].grid)
                for f, t in _fields(r.outputs[0]).items():
                    stored.setdefault(f"{n}.{f}", []).append(t.to(DTYPES[dtype]).cpu())
            v = batch["view"]
            views_meta.append(torch.cat([v["box"], v["flip"][:, None].int()], 1).cpu())
        return stored, grids, torch.cat(views_meta)

    # Clips per shard from the size of one clip's K views (measured on clip 0).
    probe, grids, _ = run([0], 0)
    per_clip = views * (sum(t[0].numel() * t[0].element_size() for t in probe.values()) + 4 * 4 + 1)
    per_shard = max(1, int(max_bytes // per_clip))
    starts = list(range(0, n_clips, per_shard))
    shards = []
    for s, start in enumerate(starts):
        name = f"targets-{s:06d}.safetensors"
        indices = list(range(start, min(start + per_shard, n_clips)))
        shards.append({"name": name, "start": start, "count": len(indices)})
        if s % world_size != rank or (out / name).is_file():
            continue
        per_view = [run(indices, v) for v in range(views)]
        tensors = {
            k: torch.stack([torch.cat(pv[0][k]) for pv in per_view], 1) for k in per_view[0][0]
        }  # [M,K,...]
        meta = torch.stack([pv[2] for pv in per_view], 1)  # [M,K,5]
        tensors["box"], tensors["flip"] = (
            meta[..., :4].contiguous(),
            meta[..., 4].to(torch.uint8).contiguous(),
        )
        save_tensors(tensors, out / name)
        log.info("teacher cache: wrote %s (%d clips x %d views)", name, len(indices), views)
    index = {
        "version": VERSION,
        "views": views,
        "dtype": dtype,
        "num_clips": n_clips,
        "seed": seed,
        "dataset": dataset_fingerprint(dataset),
        "teachers": {
            n: {
                "spec": dataclasses.asdict(r.spec),
                "grid": grids[n],
                "fields": sorted(f.split(".", 1)[1] for f in probe if f.startswith(f"{n}.")),
            }
            for n, r in recorders.items()
        },
        "bytes_per_clip": per_clip,
        "shards": shards,
    }
    if world_size > 1 and is_distributed():
        torch.distributed.barrier()  # every rank's shards are written before rank 0 checks them
    if rank == 0 and all((out / s["name"]).is_file() for s in shards):
        atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    return index
