"""Cached teacher targets: teacher outputs for K fixed augmented views per clip, computed once.

Distillation (MVD, UMT, ...) runs frozen teachers on the full clip at every step, often costing more
than the student itself. Teachers see the clip but not the mask, so their outputs depend only on the
view (frames and crop): with K views per clip fixed in advance, every epoch can reuse them.

Building (:func:`build_teacher_cache`, ``vidfm data cache-targets``). View ``v`` of clip ``i`` is the
dataset's item ``i`` at "epoch" ``v`` (its frames come from ``(seed, v, i)``) with a multi-scale crop box
and flip drawn from ``(seed, v, i)``. The task's own forward runs on that view with every ``teacher*``
module replaced by a recorder, so the stored outputs are exactly what the teachers receive from the task
in training. They are stored in fp16 or bf16 in ``targets-NNNNNN.safetensors`` shards (``[M, K, ...]``
per teacher call and output field, plus the boxes and flips), listed in ``cache.json`` with the
storage cost per clip. Shards already written are kept, so an interrupted build resumes.

Training (``train.teacher_cache=DIR``). The trainer wraps the dataset so item ``i`` of epoch ``e`` is
one of its cached views, ``v`` from ``(seed, e, i)``, with that view's targets, and :meth:`TeacherCache.attach`
swaps the task's teachers for lookups (their weights leave the device) and its crop for the view's box.
Nothing in the task changes; a task whose teachers' outputs depend on anything else than the view
(e.g. a teacher on the masked clip) cannot be cached.
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
from torch.utils.data import DataLoader, Dataset

from vidfm.data.transforms import VideoAugment, crop_and_resize, multiscale_boxes, normalize, to_float
from vidfm.io import atomic_write_text, save_tensors
from vidfm.layers.frozen import Frozen
from vidfm.teachers.base import Teacher, TeacherOutput
from vidfm.train.distributed import is_distributed, to_device
from vidfm.utils import log, make_generator

INDEX_FILE = "cache.json"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
FIELDS = ("tokens", "pooled", "attention")  # TeacherOutput fields stored (``hidden`` as hidden.LAYER)
_VIEW_STREAM = 0x71E7  # stream ids mixed into (seed, ...) so view choice and crops never share a sequence
_BOX_STREAM = 0xB0C5


def teacher_names(task: nn.Module) -> list[str]:
    """The task's top-level :class:`~vidfm.teachers.base.Teacher` modules."""
    return [name for name, module in task.named_children() if isinstance(module, Teacher)]


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


# ----------------------------------------------------------------------------- modules swapped in
class ViewAugment(VideoAugment):
    """VideoAugment whose training crop and flip are given per batch (the cached view's) instead of
    drawn from the step's generator; evaluation crops and ``unnormalize`` are unchanged."""

    def __init__(self, augment: VideoAugment) -> None:
        """Args: augment: the task's augmentation (its config is reused)."""
        super().__init__(augment.cfg)
        self.to(augment.mean.device)
        self.boxes: list[tuple[int, int, int, int]] | None = None
        self.flips: torch.Tensor | None = None

    def forward(
        self, video: torch.Tensor, generator: torch.Generator | None = None, train: bool = True
    ) -> torch.Tensor:
        if not train:
            return super().forward(video, generator, train=False)
        if self.boxes is None or len(self.boxes) != video.shape[0]:
            raise RuntimeError("ViewAugment: no view boxes for this batch (the batch has no 'cache' entry)")
        x = crop_and_resize(to_float(video), self.boxes, self.cfg.size)  # [B,C,T,S,S]
        x = torch.where(self.flips.to(x.device).view(-1, 1, 1, 1, 1), x.flip(-1), x)
        return normalize(x, self.mean, self.std)


class CachedTeacher(Frozen):
    """Stands in for teacher ``name``: returns the cached outputs of the current batch, call by call.

    Simple attributes of the teacher (``dim``, ``per_frame``, ``size``, ...) are copied, since tasks read
    them; its weights are dropped.
    """

    def __init__(self, teacher: nn.Module, name: str, calls: list[dict[str, Any]]) -> None:
        """Args: teacher: the live teacher; name: its attribute name; calls: per call, its grid."""
        super().__init__()
        for key, value in vars(teacher).items():
            if not key.startswith("_") and key != "training" and isinstance(value, (int, float, str, tuple)):
                setattr(self, key, value)
        self.name, self.grids = name, [tuple(c["grid"]) for c in calls]
        self.outputs: list[dict[str, torch.Tensor]] = []
        self.calls = 0

    def feed(self, outputs: list[dict[str, torch.Tensor]]) -> None:
        self.outputs, self.calls = outputs, 0

    def forward(self, video: torch.Tensor) -> TeacherOutput:
        if self.calls >= len(self.outputs):
            raise RuntimeError(
                f"{self.name} called {self.calls + 1} times in a step, but the cache holds {len(self.outputs)} "
                "call(s) per step"
            )
        out, grid = self.outputs[self.calls], self.grids[self.calls]
        self.calls += 1
        if out["tokens"].shape[0] != video.shape[0]:
            raise RuntimeError(
                f"{self.name}: cached batch of {out['tokens'].shape[0]}, video of {video.shape[0]}"
            )
        hidden = {int(k.split(".")[1]): v.float() for k, v in out.items() if k.startswith("hidden.")}
        return TeacherOutput(
            tokens=out["tokens"].float(),
            grid=grid,  # type: ignore[arg-type]
            pooled=out["pooled"].float() if "pooled" in out else None,
            attention=out["attention"].float() if "attention" in out else None,
            hidden=hidden,
        )


class _Recorder(Frozen):
    """Runs the live teacher and keeps each call's output (for building the cache)."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher
        self.calls: list[TeacherOutput] = []

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.teacher, name)  # dim, per_frame, ... as the task reads them

    def forward(self, video: torch.Tensor) -> TeacherOutput:
        out = self.teacher(video)
        self.calls.append(out)
        return out


def _fields(out: TeacherOutput) -> dict[str, torch.Tensor]:
    found = {f: getattr(out, f) for f in FIELDS if getattr(out, f) is not None}
    found.update({f"hidden.{k}": v for k, v in out.hidden.items()})
    return found


def _feed_views(augment: ViewAugment, cache: dict[str, Any]) -> None:
    augment.boxes = [tuple(int(x) for x in box) for box in cache["box"].tolist()]
    augment.flips = cache["flip"].bool()


# ----------------------------------------------------------------------------- dataset side
class _CachedViews(Dataset):
    """Item ``i`` of epoch ``e``: the wrapped dataset's item at view ``v = view_of(seed, e, i)``, plus
    ``cache``: that view's box, flip and teacher outputs."""

    def __init__(self, dataset: Dataset, cache: TeacherCache, seed: int) -> None:
        self.dataset, self.cache, self.seed, self.epoch = dataset, cache, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        view = view_of(self.seed, self.epoch, index, self.cache.views)
        item = _view_item(self.dataset, view, index)
        return {**item, "cache": self.cache.read(index, view)}


def _view_item(dataset: Dataset, view: int, index: int) -> dict[str, Any]:
    """The dataset's item ``index`` with the frames of view ``view`` (its per-epoch sampling at ``view``)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(view)
    return dataset[index]


class _CacheCollate:
    """Collates the items without their ``cache`` entry, then stacks those into ``batch["cache"]``."""

    def __init__(self, collate: Callable[[list], dict] | None) -> None:
        from torch.utils.data import default_collate

        self.collate = collate or default_collate

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        caches = [it["cache"] for it in items]
        batch = self.collate([{k: v for k, v in it.items() if k != "cache"} for it in items])
        batch["cache"] = {k: torch.stack([c[k] for c in caches]) for k in caches[0]}
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
        self.views = int(self.index["views"])
        self.teachers: dict[str, list[dict[str, Any]]] = self.index["teachers"]
        self._starts = [s["start"] for s in self.index["shards"]]
        self._open: dict[int, Any] = {}

    def wrap_dataset(
        self, dataset: Dataset, collate: Callable[[list], dict] | None, seed: int
    ) -> tuple[Dataset, Callable[[list], dict]]:
        """(dataset of cached views, collate that batches their targets); checks the dataset matches."""
        fp = dataset_fingerprint(dataset)
        if fp != self.index["dataset"]:
            raise ValueError(
                f"teacher cache {self.root} was built for another dataset: cache {self.index['dataset']}, "
                f"this one {fp}"
            )
        return _CachedViews(dataset, self, seed), _CacheCollate(collate)

    def attach(self, task: nn.Module) -> None:
        """Swap ``task``'s teachers for cache lookups and its crop for the view's (in place)."""
        names = teacher_names(task)
        if sorted(names) != sorted(self.teachers):
            raise ValueError(f"task teachers {names} differ from the cached ones {sorted(self.teachers)}")
        for name in names:
            setattr(task, name, CachedTeacher(getattr(task, name), name, self.teachers[name]))
        _attach_views(task)
        cached = [getattr(task, n) for n in names]

        def feed(module: nn.Module, args: tuple, kwargs: dict) -> None:
            cache = (args[0] if args else kwargs["batch"])["cache"]
            _feed_views(module.augment, cache)
            for teacher in cached:
                calls = self.teachers[teacher.name]
                teacher.feed([_call_fields(cache, teacher.name, c) for c in range(len(calls))])

        task.register_forward_pre_hook(feed, with_kwargs=True)

    def read(self, index: int, view: int) -> dict[str, torch.Tensor]:
        """Clip ``index``'s view ``view``: ``box`` int32 [4], ``flip`` uint8 [] and every stored field."""
        if not 0 <= index < self.index["num_clips"]:
            raise IndexError(f"clip {index} not in the cache of {self.index['num_clips']} clips")
        s = max(i for i, start in enumerate(self._starts) if start <= index)
        if s not in self._open:  # memory-mapped; only the slices read are loaded
            self._open[s] = safe_open(str(self.root / self.index["shards"][s]["name"]), "pt")
        f, row = self._open[s], index - self._starts[s]
        return {k: f.get_slice(k)[row, view] for k in f.keys()}

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the files themselves
        return {**self.__dict__, "_open": {}}


def _call_fields(cache: dict[str, torch.Tensor], name: str, call: int) -> dict[str, torch.Tensor]:
    prefix = f"{name}.{call}."
    return {k[len(prefix) :]: v for k, v in cache.items() if k.startswith(prefix)}


def _attach_views(task: nn.Module) -> ViewAugment:
    augment = getattr(task, "augment", None)
    if not isinstance(augment, VideoAugment):
        raise ValueError(f"{type(task).__name__} has no VideoAugment 'augment': its crops cannot be cached")
    if not isinstance(augment, ViewAugment):
        task.augment = ViewAugment(augment)
    return task.augment


# ----------------------------------------------------------------------------- building
class _ViewsOf(Dataset):
    """Items ``indices`` of ``dataset`` at view ``view``, each with its crop box and flip."""

    def __init__(
        self, dataset: Dataset, indices: list[int], view: int, augment: VideoAugment, seed: int
    ) -> None:
        self.dataset, self.indices, self.view, self.augment, self.seed = dataset, indices, view, augment, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        index = self.indices[k]
        item = _view_item(self.dataset, self.view, index)
        h, w = item["video"].shape[-3:-1]
        cfg = self.augment.cfg
        g = make_generator(self.seed, _BOX_STREAM, self.view, index)
        box = multiscale_boxes(h, w, cfg.size, tuple(cfg.scales), cfg.max_distort, 1, g)[0]
        flip = bool(torch.rand((), generator=g) < cfg.flip_prob)
        return {
            **item,
            "cache": {
                "box": torch.tensor(box, dtype=torch.int32),
                "flip": torch.tensor(flip, dtype=torch.uint8),
            },
        }


def build_teacher_cache(
    task: nn.Module,
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
    """Compute and store ``task``'s teacher outputs for ``views`` views of every clip; returns ``cache.json``.

    Args:
        task: the task as the recipe builds it (teachers loaded); it is modified (recorders, view crop).
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
    names = teacher_names(task)
    if not names:
        raise ValueError(f"{type(task).__name__} has no teacher* modules: nothing to cache")
    recorders = {n: _Recorder(getattr(task, n)) for n in names}
    for n, r in recorders.items():
        setattr(task, n, r)
    augment = _attach_views(task)
    task.to(device).eval()
    autocast = device.type == "cuda" if autocast is None else autocast
    n_clips = len(dataset)  # type: ignore[arg-type]
    collate = _CacheCollate(collate)

    def run(
        indices: list[int], view: int
    ) -> tuple[dict[str, list[torch.Tensor]], dict[str, list], torch.Tensor]:
        """Per stored key, the outputs of ``indices`` at ``view`` (in order), the call grids, the views."""
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
            for r in recorders.values():
                r.calls = []
            cache = batch["cache"]
            _feed_views(augment, cache)
            batch = to_device(batch, device)
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
                task(batch, make_generator(seed, view, indices[b * batch_size], device=device))
            for n, r in recorders.items():
                if not r.calls:
                    raise RuntimeError(f"the task never called {n} (weight 0?): drop it before caching")
                grids[n] = [list(c.grid) for c in r.calls]
                for c, call in enumerate(r.calls):
                    for f, t in _fields(call).items():
                        stored.setdefault(f"{n}.{c}.{f}", []).append(t.to(DTYPES[dtype]).cpu())
            views_meta.append(torch.cat([cache["box"], cache["flip"][:, None].int()], 1))
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
        "version": 1,
        "views": views,
        "dtype": dtype,
        "num_clips": n_clips,
        "seed": seed,
        "dataset": dataset_fingerprint(dataset),
        "teachers": {
            n: [
                {"grid": g, "fields": sorted(f.split(".", 2)[2] for f in probe if f.startswith(f"{n}.{c}."))}
                for c, g in enumerate(grids[n])
            ]
            for n in names
        },
        "bytes_per_clip": per_clip,
        "shards": shards,
    }
    if world_size > 1 and is_distributed():
        torch.distributed.barrier()  # every rank's shards are written before rank 0 checks them
    if rank == 0 and all((out / s["name"]).is_file() for s in shards):
        atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    return index
