"""Frozen teachers behind one interface (:class:`vidfm.teachers.base.Teacher`)."""
