from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Celery signal handlers (enqueue timestamps for queue lag, task ids in the logs) and
        # the observers of the core and the tasks must be connected in every process that
        # writes, publishes or runs tasks.
        from . import checks, observers, queues  # noqa: F401 - checks: registers the system checks

        observers.connect()
