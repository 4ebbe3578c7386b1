"""Target providers: where a task's teacher targets come from, chosen outside the task.

A recipe builds its task with a :class:`TargetSource`; for each teacher the task needs it asks
``targets.teacher(name, build)`` and keeps what it gets. The live source calls ``build()`` (the frozen
teacher); a cached source (:mod:`vidfm.teachers.cache`) returns a lookup of stored targets and never loads
the teacher. The task does not know which one it holds: both take the [0, 1] clip and return a
:class:`~vidfm.teachers.base.TeacherOutput`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


class TargetSource:
    """Live teacher targets: ``teacher(name, build)`` is ``build()``."""

    def teacher(self, name: str, build: Callable[[], nn.Module]) -> nn.Module:
        """The provider of teacher ``name`` (the task's attribute name, e.g. ``"teacher_image"``)."""
        return build()


LIVE = TargetSource()
