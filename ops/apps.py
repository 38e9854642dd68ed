from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Celery signal handlers (enqueue timestamps for queue lag, task ids in the logs) must
        # be connected in every process that publishes or runs tasks.
        from . import queues  # noqa: F401
