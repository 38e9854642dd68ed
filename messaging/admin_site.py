"""Parley's admin site: Django's, with the user model shown where people look for it.

The user model lives in this app (it carries ``display_name`` and ``suspended_at``), so the
stock index lists "Users" under "Messaging"; operators look for them under "Authentication
and Authorization", beside Groups. Only the grouping of the index and app pages changes: the
URLs stay /admin/messaging/user/.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest


class ParleyAdminSite(admin.AdminSite):
    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = super().get_app_list(request)
        user_app, user_model = settings.AUTH_USER_MODEL.split(".")
        users = None
        for app in apps:
            if app["app_label"] == user_app:
                users = next((m for m in app["models"] if m["object_name"] == user_model), None)
                if users:
                    app["models"].remove(users)
        auth = next((app for app in apps if app["app_label"] == "auth"), None)
        if users and auth:
            auth["models"] = sorted([*auth["models"], users], key=lambda m: str(m["name"]))
        elif users:  # no other auth model to sit beside: keep it where it was
            next(app for app in apps if app["app_label"] == user_app)["models"].append(users)
        apps = [app for app in apps if app["models"]]
        return [app for app in apps if app["app_label"] == app_label] if app_label else apps


class ParleyAdminConfig(AdminConfig):
    default_site = "messaging.admin_site.ParleyAdminSite"
