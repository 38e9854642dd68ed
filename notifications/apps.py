from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        # The offline path reacts to what the core announces (messaging.hooks).
        from . import triggers

        triggers.connect()
