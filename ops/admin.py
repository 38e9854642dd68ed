"""Degraded mode in the admin: the measured state, read-only, and the override an operator sets.

Saving goes through ops.degraded.do_set_override (which logs who forced what); the
gateways pick the change up within a tick (PARLEY_GATEWAY_TICK_SECONDS).
"""
from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from . import degraded
from .models import DegradedModeOverride


@admin.register(DegradedModeOverride)
class DegradedModeOverrideAdmin(admin.ModelAdmin):
    list_display = ("__str__", "measured", "note", "updated_by", "updated_at")
    fields = ("mode", "note", "measured", "signals", "updated_by", "updated_at")
    readonly_fields = ("measured", "signals", "updated_by", "updated_at")

    def has_add_permission(self, request) -> bool:
        return not DegradedModeOverride.objects.exists()  # one row; the migration makes it

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        degraded.do_set_override(mode=obj.mode, actor=request.user, note=obj.note)

    @admin.display(description="in force now")
    def measured(self, obj=None) -> str:
        state = degraded.shared_state()
        level = state.get("level", 0)
        shed = ", ".join(degraded.SHED_BY_LEVEL[level]) or "nothing"
        how = "forced" if state.get("forced") else "automatic"
        return f"level {level} ({how}): shedding {shed}"

    @admin.display(description="last measured signals")
    def signals(self, obj=None) -> str:
        state = degraded.shared_state()
        signals = state.get("signals")
        if not signals:
            return "no gateway has measured yet"
        automatic = state.get("auto", {})
        rows = [
            ("gateway lag", f"{signals.get('late_ticks', 0)} of {signals.get('ticks', 0)} ticks late, "
                            f"{signals.get('recent_late_ticks', 0)} of {signals.get('recent_ticks', 0)} lately"),
            ("devices timing out", f"{signals.get('device_timeout_share', 0.0):.0%} of about "
                                   f"{signals.get('devices', 0.0):.0f} devices with acks "
                                   f"({signals['ack_timeout_ratio']:.2%} of the message frames)"),
            ("queue lag", f"{signals['queue_lag']:.1f} s"),
            ("disconnects", f"{signals['disconnects']} (about {signals['connections']:.0f} open)"),
            ("automatic level", f"{automatic.get('level', 0)}; hot: {', '.join(automatic.get('reasons', ())) or 'nothing'}"),
        ]
        return format_html("<table>{}</table>",
                           format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))
