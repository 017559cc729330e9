"""MediaProcessors: the read-only catalogue of processors a Task can name."""

from __future__ import annotations

from .base import Rules


class MediaProcessorRules(Rules):
    set_name = "MediaProcessors"
    can_create = False
    can_update = False
    can_delete = False
