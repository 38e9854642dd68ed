"""What an operator sets by hand. The measured state of degraded mode lives in the cache
(ops.degraded); only the override is stored, so it survives restarts of Redis and
of every process."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class DegradedModeOverride(models.Model):
    """The one row (pk 1, made by the migration) that can force degraded mode's level."""

    class Mode(models.TextChoices):
        AUTO = "auto", "Automatic (follow the measured signals)"
        NORMAL = "normal", "Force normal: shed nothing"
        SHED_EPHEMERAL = "shed_ephemeral", "Force level 1: shed typing and presence"
        DEFER_RECEIPTS = "defer_receipts", "Force level 2: also defer receipt broadcasts"

    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.AUTO)
    note = models.CharField(max_length=200, blank=True, default="", help_text="Why, for the next person on call.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)

    class Meta:
        verbose_name = "degraded mode"
        verbose_name_plural = "degraded mode"
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="degraded_override_singleton")]

    def __str__(self) -> str:
        return f"Degraded mode: {self.get_mode_display()}"
