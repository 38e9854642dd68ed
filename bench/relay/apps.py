from django.apps import AppConfig


class RelayConfig(AppConfig):
    name = "bench.relay"
    label = "relay"
    default_auto_field = "django.db.models.BigAutoField"
