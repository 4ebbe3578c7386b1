"""The evaluation suite: several checkpoints × several tasks -> one table and a report folder.

Tasks (``KIND:DATA[:COLUMN]``; DATA is ``digits-motion`` or a CSV manifest with train/test splits):

- ``probe:DATA:COLUMN``     frozen features, linear probe + kNN (:mod:`vidfm.eval.frozen`)
- ``attentive:DATA:COLUMN`` frozen tokens, attentive MAP probe (:mod:`vidfm.eval.attentive`)
- ``finetune:DATA:COLUMN``  end-to-end fine-tuning, multi-view test (:mod:`vidfm.eval.finetune`)
- ``retrieval:DATA``        zero-shot text-video retrieval of a video-language run

Checkpoints: a run folder (``NAME=RUN`` names it), ``random`` (random init of the first run's config, or
``random:RUN``) and ``baseline`` (colour histogram + frame differences; probe tasks only).

One encoder pass per (checkpoint, data): all probe and attentive tasks on the same manifest share it.
Every (checkpoint, task) result is stored under ``OUT/results/`` with the settings it was computed with,
so a re-run (after an interruption, or with one more checkpoint) computes only what is missing. A task that
fails for one checkpoint is reported in its cell and the report; the others go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidfm.eval.attentive import AttentiveConfig
from vidfm.utils import default_device, log

KINDS = ("probe", "attentive", "finetune", "retrieval")
DIGITS = "digits-motion"


@dataclass(frozen=True)
class Checkpoint:
    """name: column title. run: run folder (None for the trivial baseline). random_init: the run's config
    with fresh weights."""

    name: str
    run: Path | None
    random_init: bool = False

    @property
    def baseline(self) -> bool:
        return self.run is None


@dataclass(frozen=True)
class Task:
    spec: str
    kind: str
    data: str
    column: str | None = None


@dataclass
class SuiteConfig:
    """out: report folder. pool/clips/crops: clip feature of the linear/kNN probes. attentive: probe grid.
    finetune_variant/finetune_overrides: the ``finetune`` recipe variant and ``key=value`` settings.
    digits_dir: where ``digits-motion`` lives or is generated (default: beside the first run's data when
    that is digits-motion, else ``$VIDFM_CACHE/digits-motion``, ``~/.cache/vidfm`` by default)."""

    out: Path = Path("vidfm-eval")
    pool: str = "mean"
    clips: int = 1
    crops: int = 1
    attentive: AttentiveConfig = field(default_factory=AttentiveConfig)
    finetune_variant: str = "tiny"
    finetune_overrides: tuple[str, ...] = ()
    digits_dir: Path | None = None
    retrieval_split: str = "test"
    workers: int = 0
    seed: int = 0
    device: str | None = None
    progress: bool = True


@dataclass
class Cell:
    """value (None: not available); detail: how it was obtained (or why it does not apply); error."""

    value: float | None = None
    detail: str = ""
    error: str = ""


class NotApplicable(ValueError):
    """The task does not apply to this checkpoint (e.g. an attentive probe of the trivial baseline)."""


@dataclass
class SuiteResult:
    """rows: (task spec, metric, chance or None, {checkpoint name: Cell}); examples: retrieval examples
    per (checkpoint, task) as dicts with path, caption, rank."""

    checkpoints: list[Checkpoint]
    tasks: list[Task]
    rows: list[tuple[str, str, float | None, dict[str, Cell]]] = field(default_factory=list)
    examples: dict[str, list[dict]] = field(default_factory=dict)
    finetune_runs: dict[str, Path] = field(default_factory=dict)


# ----------------------------------------------------------------------------- parsing
def parse_checkpoints(specs: list[str]) -> list[Checkpoint]:
    """``RUN``, ``NAME=RUN``, ``random``, ``random:RUN``, ``baseline`` -> checkpoints (runs checked)."""
    real = [
        s.split("=", 1)[-1] for s in specs if s not in ("random", "baseline") and not s.startswith("random:")
    ]
    out = []
    for spec in specs:
        if spec == "baseline":
            out.append(Checkpoint("trivial baseline", None))
            continue
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        random_init = path == "random" or path.startswith("random:")
        if random_init:
            path = path.partition(":")[2] or (real[0] if real else "")
            if not path:
                raise ValueError("'random' needs a run to take the config from: give a run or random:RUN")
        run = Path(path)
        if not (run / "config.yaml").is_file():
            from vidfm.errors import RunFolderError

            what = "does not exist" if not run.exists() else "is not a vidfm run folder (no config.yaml)"
            raise RunFolderError(f"checkpoint {run} {what}")
        if not name:
            name = _run_name(run, real)
            name = (
                f"random init ({name})"
                if random_init and len(real) > 1
                else "random init"
                if random_init
                else name
            )
        out.append(Checkpoint(name, run, random_init))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"checkpoint names repeat: {names}; name them with NAME=RUN")
    return out


def _run_name(run: Path, all_runs: list[str]) -> str:
    # A run folder called "run" (as the demo's) says little: take its parent's name too.
    base = run.resolve().name
    if base in ("run", "runs", "checkpoints") or sum(Path(r).resolve().name == base for r in all_runs) > 1:
        return f"{run.resolve().parent.name}/{base}"
    return base


def parse_tasks(specs: list[str]) -> list[Task]:
    """``KIND:DATA:COLUMN`` (retrieval: ``retrieval:DATA``) -> tasks; bad specs raise ValueError."""
    out = []
    for spec in specs:
        kind, _, rest = spec.partition(":")
        if kind not in KINDS or not rest:
            raise ValueError(f"task {spec!r}: use KIND:DATA:COLUMN with KIND in {KINDS} (retrieval:DATA)")
        if kind == "retrieval":
            out.append(Task(spec, kind, rest))
            continue
        data, _, column = rest.rpartition(":")
        if not data or not column:
            raise ValueError(f"task {spec!r} needs a label column: {kind}:DATA:COLUMN")
        out.append(Task(spec, kind, data, column))
    if len({t.spec for t in out}) != len(out):
        raise ValueError("a task is listed twice")
    return out


def resolve_data(task: Task, first_run_cfg: Any, cfg: SuiteConfig) -> Path:
    """The manifest of a task; ``digits-motion`` is found or generated (demo size: 2000 clips, 16×64²)."""
    if task.data != DIGITS:
        path = Path(task.data)
        if not path.is_file():
            raise FileNotFoundError(f"task {task.spec}: manifest {path} not found")
        return path
    folder = cfg.digits_dir
    if folder is None and first_run_cfg is not None:
        candidate = Path(first_run_cfg.data.manifest).parent
        meta = candidate / "meta.json"
        if meta.is_file() and json.loads(meta.read_text()).get("dataset") == DIGITS:
            folder = candidate
    if folder is None:
        folder = Path(os.environ.get("VIDFM_CACHE", Path.home() / ".cache" / "vidfm")) / DIGITS
    manifest = Path(folder) / "manifest.csv"
    if not manifest.is_file():
        from vidfm.data.digits import make_digits_motion

        log.info("generating digits-motion (2000 clips) into %s", folder)
        manifest = make_digits_motion(folder, n=2000, seed=0, workers=cfg.workers)
    return manifest


def _check_column(task: Task, manifest: Path) -> float:
    """Validate the label column and splits; returns the majority-class rate on test (the chance line)."""
    from vidfm.data.datasets import read_manifest

    records = read_manifest(manifest)
    if task.column not in records.classes:
        raise KeyError(
            f"task {task.spec}: no column {task.column!r} in {manifest} (have {sorted(records.classes)})"
        )
    splits = {r.split for r in records}
    if not {"train", "test"} <= splits:
        raise ValueError(f"task {task.spec}: {manifest} needs train and test rows in its split column")
    y = np.array([r.labels[task.column] for r in records if r.split == "test" and r.labels[task.column] >= 0])
    return float(np.bincount(y).max() / len(y)) if len(y) else float("nan")


# ----------------------------------------------------------------------------- running
class _Encoders:
    """Loads each checkpoint's encoder once, on first use."""

    def __init__(self, seed: int) -> None:
        self.seed, self.cache = seed, {}

    def get(self, ckpt: Checkpoint):  # noqa: ANN201 - (encoder | None, config)
        from vidfm.recipes import load_run_encoder

        if ckpt not in self.cache:
            self.cache[ckpt] = load_run_encoder(ckpt.run, random_init=ckpt.random_init, seed=self.seed)
        return self.cache[ckpt]


class _FrozenFeatures:
    """Features of one (checkpoint, manifest), computed lazily and once: tokens when an attentive task
    needs them (the mean-pooled features then come from the same pass), else pooled features only."""

    def __init__(self, encoder, run_cfg, manifest: Path, cfg: SuiteConfig, tokens_wanted: bool) -> None:
        self.encoder, self.run_cfg, self.manifest, self.cfg = encoder, run_cfg, manifest, cfg
        self.tokens_wanted = tokens_wanted and encoder is not None
        self._pooled = self._tokens = None

    def _data(self):  # noqa: ANN202
        return dataclasses.replace(self.run_cfg.data, manifest=str(self.manifest))

    def tokens(self) -> dict:
        from vidfm.eval.attentive import split_tokens

        if self.encoder is None:
            raise ValueError("the attentive probe needs an encoder (not the trivial baseline)")
        if self._tokens is None:
            c = self.cfg
            self._tokens = split_tokens(
                self.encoder, self._data(), self.run_cfg.augment, workers=c.workers, seed=c.seed,
                device=c.device or default_device(), progress=c.progress,
            )  # fmt: skip
        return self._tokens

    def pooled(self) -> dict:
        from vidfm.eval.frozen import split_features

        c = self.cfg
        same_protocol = c.pool == "mean" and c.clips == 1 and c.crops == 1
        if self._pooled is None and self.tokens_wanted and same_protocol:
            self._pooled = {s: t.features() for s, t in self.tokens().items()}
        if self._pooled is None:
            self._pooled = split_features(
                self.encoder, self._data(), self.run_cfg.augment, views=c.clips, crops=c.crops, pool=c.pool,
                workers=c.workers, seed=c.seed, device=c.device or default_device(), progress=c.progress,
            )  # fmt: skip
        return self._pooled


def _labelled(feats, column: str):  # noqa: ANN202 - Features -> Features without unlabelled rows
    from vidfm.eval.features import Features

    keep = feats.labels[column] >= 0
    return Features(
        feats.x[keep],
        {column: feats.labels[column][keep]},
        [p for p, k in zip(feats.paths, keep, strict=True) if k],
    )


def _probe(frozen: _FrozenFeatures, task: Task, cfg: SuiteConfig) -> dict[str, Cell]:
    from vidfm.eval.frozen import probe_features

    feats = frozen.pooled()
    train, test = (_labelled(feats[s], task.column) for s in ("train", "test"))
    row = probe_features(train, test, [task.column], seed=cfg.seed)[0]
    return {"linear top-1": Cell(row.linear, row.detail), "kNN top-1": Cell(row.knn, "k=20")}


def _attentive(frozen: _FrozenFeatures, task: Task, cfg: SuiteConfig) -> dict[str, Cell]:
    import torch

    from vidfm.eval.attentive import attentive_probe

    tok = frozen.tokens()
    tr, te = (tok[s].labels[task.column] >= 0 for s in ("train", "test"))
    res = attentive_probe(
        tok["train"].x[torch.from_numpy(tr)], tok["train"].labels[task.column][tr],
        tok["test"].x[torch.from_numpy(te)], tok["test"].labels[task.column][te],
        cfg.attentive, device=cfg.device or default_device(),
    )  # fmt: skip
    return {"attentive top-1": Cell(res.top1, res.detail)}


def _finetune(ckpt: Checkpoint, task: Task, manifest: Path, run_cfg, cfg: SuiteConfig, result: SuiteResult):
    import torch

    from vidfm.eval.finetune import finetune_config, run_finetune

    if ckpt.baseline:
        raise NotApplicable("fine-tuning needs an encoder (not the trivial baseline)")
    torch.manual_seed(cfg.seed)  # the head (and a random-init encoder) start from the seed
    ft_cfg = finetune_config(
        None if ckpt.random_init else ckpt.run,
        str(manifest),
        task.column,
        variant=cfg.finetune_variant,
        overrides=list(cfg.finetune_overrides),
        base=run_cfg,
    )
    run_dir = cfg.out / "finetune" / slug(ckpt.name) / slug(task.spec)
    result.finetune_runs[f"{ckpt.name} | {task.spec}"] = run_dir
    res = run_finetune(ft_cfg, run_dir, workers=cfg.workers, device=cfg.device, progress=cfg.progress)
    detail = f"{res.steps} steps, {res.views} test views, run {run_dir}"
    cells = {"fine-tune top-1": Cell(res.top1, detail)}
    if res.top5 is not None:
        cells["fine-tune top-5"] = Cell(res.top5, detail)
    return cells


def _retrieval(ckpt: Checkpoint, task: Task, manifest: Path, run_cfg, cfg: SuiteConfig, result: SuiteResult):
    if ckpt.baseline or ckpt.random_init:
        raise NotApplicable("retrieval needs a trained video-language run")
    if not is_video_language(run_cfg):
        raise ValueError(
            f"retrieval needs a video-language run (umt_stage2, clip_image): {ckpt.run} is a "
            f"{run_cfg.recipe!r} run without a text tower"
        )
    from vidfm.eval.retrieval import evaluate_retrieval

    res = evaluate_retrieval(
        ckpt.run, str(manifest), split=cfg.retrieval_split, workers=cfg.workers,
        device=str(cfg.device or default_device()), progress=cfg.progress,
    )  # fmt: skip
    cells, examples = retrieval_cells(res)
    result.examples[f"{ckpt.name} | {task.spec}"] = examples
    return cells


def is_video_language(run_cfg: Any) -> bool:
    """Whether a run has a text tower: its recipe builds a dual encoder (``umt_stage2``, ``clip_image``),
    which is what :func:`vidfm.eval.retrieval.load_dual_encoder` needs."""
    return bool(run_cfg.has_text_tower)


def retrieval_cells(res: Any) -> tuple[dict[str, Cell], list[dict]]:
    """Cells and examples of a :class:`vidfm.eval.retrieval.RetrievalResult`: ``t2v``/``v2t`` metrics
    (R@k in percent, median/mean rank) become ``t2v R@1 (%)``, ``t2v MdR``, ...; the examples
    ``(video, caption, rank, top-1 video)`` become dicts for the thumbnails."""
    cells: dict[str, Cell] = {}
    for direction in ("t2v", "v2t"):
        for k, v in getattr(res, direction).items():
            cells[f"{direction} {k} (%)" if k.startswith("R@") else f"{direction} {k}"] = Cell(float(v))
    detail = f"{res.num_videos} videos, {res.num_captions} captions"
    cells = {k: dataclasses.replace(c, detail=detail) for k, c in cells.items()}
    examples = [
        {"path": str(path), "caption": str(caption), "rank": int(rank), "top1": str(top1)}
        for path, caption, rank, top1 in res.examples
    ]
    return cells, examples


def short_name(spec: str) -> str:
    """``probe:/data/surv_fight/manifest.csv:label`` -> ``probe surv_fight:label`` (for picture labels)."""
    task = parse_tasks([spec])[0]
    data = Path(task.data)
    name = task.data if task.data == DIGITS else (data.parent.name if data.stem == "manifest" else data.stem)
    return f"{task.kind} {name}" + (f":{task.column}" if task.column else "")


def slug(text: str) -> str:
    """``text`` as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80]


def _cache_key(ckpt: Checkpoint, task: Task, manifest: Path, cfg: SuiteConfig) -> dict:
    from vidfm.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(ckpt.run) if ckpt.run is not None and not ckpt.random_init else None
    settings: dict[str, Any] = {"seed": cfg.seed}
    if task.kind == "probe":
        settings.update(pool=cfg.pool, clips=cfg.clips, crops=cfg.crops)
    elif task.kind == "attentive":
        settings.update(dataclasses.asdict(cfg.attentive))
    elif task.kind == "finetune":
        from vidfm.config import to_dict
        from vidfm.recipes import get_recipe

        recipe = get_recipe(f"finetune:{cfg.finetune_variant}" if cfg.finetune_variant else "finetune")
        settings.update(recipe=to_dict(recipe), overrides=list(cfg.finetune_overrides))
    elif task.kind == "retrieval":
        settings.update(split=cfg.retrieval_split)  # another split is another result
    return {
        "run": str(ckpt.run.resolve()) if ckpt.run else None,
        "checkpoint": latest.name if latest else None,
        "random_init": ckpt.random_init,
        "task": task.spec,
        "manifest": str(manifest.resolve()),
        "settings": json.loads(json.dumps(settings)),
    }


def run_suite(checkpoints: list[Checkpoint], tasks: list[Task], cfg: SuiteConfig) -> SuiteResult:
    """Evaluate every checkpoint on every task; returns the table rows (see :func:`write_report`)."""
    from vidfm.io import atomic_write_text
    from vidfm.recipes import load_run_config

    real = [c for c in checkpoints if c.run is not None]
    first_cfg = load_run_config(real[0].run) if real else None
    if first_cfg is None:
        raise ValueError("give at least one run folder (the baseline takes its clip settings from it)")
    manifests = {t.spec: resolve_data(t, first_cfg, cfg) for t in tasks}
    chance = {t.spec: _check_column(t, manifests[t.spec]) if t.column else None for t in tasks}
    result = SuiteResult(checkpoints, tasks)
    cells: dict[tuple[str, str], dict[str, Cell]] = {}
    encoders = _Encoders(cfg.seed)
    (cfg.out / "results").mkdir(parents=True, exist_ok=True)
    for ckpt in checkpoints:
        run_cfg = load_run_config(ckpt.run) if ckpt.run else first_cfg
        frozen: dict[Path, _FrozenFeatures] = {}
        for task in tasks:
            manifest = manifests[task.spec]
            path = cfg.out / "results" / f"{slug(ckpt.name)}__{slug(task.spec)}.json"
            key = _cache_key(ckpt, task, manifest, cfg)
            stored = json.loads(path.read_text()) if path.is_file() else None
            if stored is not None and stored["key"] == key:
                got = {m: Cell(**c) for m, c in stored["cells"].items()}
                result.examples.update(stored.get("examples", {}))
                if task.kind == "finetune":
                    result.finetune_runs[f"{ckpt.name} | {task.spec}"] = (
                        cfg.out / "finetune" / slug(ckpt.name) / slug(task.spec)
                    )
            else:
                log.info("%s: %s", ckpt.name, task.spec)
                try:
                    got = _evaluate(
                        ckpt, task, manifest, run_cfg, cfg, result, frozen, encoders, tasks, manifests
                    )
                except NotApplicable as exc:
                    got = {_first_metric(task): Cell(detail=f"n/a: {exc}")}
                except Exception as exc:  # one failed cell must not end a long evaluation
                    log.error("%s on %s failed: %s", ckpt.name, task.spec, exc)
                    got = {_first_metric(task): Cell(error=f"{type(exc).__name__}: {exc}")}
                examples = {k: v for k, v in result.examples.items() if k == f"{ckpt.name} | {task.spec}"}
                payload = {
                    "key": key,
                    "cells": {m: dataclasses.asdict(c) for m, c in got.items()},
                    "examples": examples,
                }
                if not any(c.error for c in got.values()):  # errors are retried next time
                    atomic_write_text(path, json.dumps(payload, indent=1))
            for metric, cell in got.items():
                cells.setdefault((task.spec, metric), {})[ckpt.name] = cell
    for task in tasks:
        for (spec, metric), row in cells.items():
            if spec == task.spec:
                result.rows.append((spec, metric, chance[spec] if "top-1" in metric else None, row))
    return result


def _first_metric(task: Task) -> str:
    """The row an n/a or failed cell goes to: the task's first metric, so it lines up with the checkpoints
    that have numbers (a row of its own would leave their cells blank)."""
    return {
        "probe": "linear top-1",
        "attentive": "attentive top-1",
        "finetune": "fine-tune top-1",
        "retrieval": "t2v R@1 (%)",  # the first cell of retrieval_cells
    }[task.kind]


def _evaluate(
    ckpt, task, manifest, run_cfg, cfg, result, frozen, encoders, tasks, manifests
) -> dict[str, Cell]:  # noqa: ANN001
    if task.kind == "finetune":
        return _finetune(ckpt, task, manifest, run_cfg, cfg, result)
    if task.kind == "retrieval":
        return _retrieval(ckpt, task, manifest, run_cfg, cfg, result)
    if task.kind == "attentive" and ckpt.baseline:
        raise NotApplicable("the attentive probe needs an encoder (not the trivial baseline)")
    if manifest not in frozen:
        encoder = None if ckpt.baseline else encoders.get(ckpt)[0]
        wants_tokens = any(t.kind == "attentive" and manifests[t.spec] == manifest for t in tasks)
        frozen[manifest] = _FrozenFeatures(encoder, run_cfg, manifest, cfg, wants_tokens)
    if task.kind == "probe":
        return _probe(frozen[manifest], task, cfg)
    return _attentive(frozen[manifest], task, cfg)
