"""Target providers: where a task's teacher targets come from, chosen outside the task.

A recipe builds its task with a :class:`TargetSource`; for each teacher the task needs it asks
``targets.teacher(name, build)`` and keeps the :class:`TargetProvider` it gets. The task calls it once per
step, ``provider(clip, batch)`` with the student's crop in [0, 1] ([B,C,T,H,W]), and reads
``provider.spec`` (:class:`~vidfm.teachers.base.TeacherSpec`: width, returned layers, ...) to size its heads.
It does not know where the targets come from:

- :data:`LIVE` (:class:`TargetSource`) calls ``build()`` and wraps the frozen teacher in :class:`LiveTargets`,
  which runs it on the clip;
- :class:`vidfm.teachers.cache.CachedTargets` returns lookups of stored targets in ``batch["targets"]`` and
  never calls ``build`` (no teacher weights are loaded);
- :class:`vidfm.teachers.cache.RecordingTargets` runs the live teachers and keeps their outputs, to build
  that cache.

The crop itself travels in the batch (``batch["view"]``, see :class:`~vidfm.data.transforms.VideoAugment`),
so a cached target and the crop the student sees always belong to the same view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vidfm.layers.frozen import Frozen
from vidfm.teachers.base import Teacher, TeacherOutput, TeacherSpec

__all__ = ["LIVE", "LiveTargets", "TargetProvider", "TargetSource", "TeacherSpec"]


class TargetProvider(Frozen):
    """The targets of one teacher, as a task sees them: ``spec`` and ``forward(clip, batch)``.

    Frozen (:mod:`vidfm.layers.frozen`): never optimised, never saved, always in eval mode.

    Args:
        spec: the teacher's declared output shape.
    """

    def __init__(self, spec: TeacherSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, clip: torch.Tensor, batch: dict[str, Any]) -> TeacherOutput:
        """clip [B,C,T,H,W] in [0, 1] (what the teacher would see); batch: the step's batch."""
        raise NotImplementedError


class LiveTargets(TargetProvider):
    """A frozen teacher run on the clip at every step; the batch is not read.

    Args:
        teacher: the :class:`~vidfm.teachers.base.Teacher` (it resizes and normalises the clip itself).
    """

    def __init__(self, teacher: Teacher) -> None:
        super().__init__(teacher.spec)
        self.teacher = teacher

    def forward(self, clip: torch.Tensor, batch: dict[str, Any]) -> TeacherOutput:
        return self.teacher(clip)


class TargetSource:
    """Live teacher targets: ``teacher(name, build)`` is ``LiveTargets(build())``.

    The teacher is built under a forked RNG, so building it (or not, from a cache) never changes the
    random initial weights of the student built next to it.
    """

    def teacher(self, name: str, build: Callable[[], Teacher]) -> TargetProvider:
        """The provider of teacher ``name`` (the task's attribute name, e.g. ``"teacher_image"``)."""
        with torch.random.fork_rng(devices=[]):
            return LiveTargets(build())


LIVE = TargetSource()
