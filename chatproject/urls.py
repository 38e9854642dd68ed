from django.contrib import admin
from django.urls import include, path

from ops import health, metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/", include("api.urls")),
    path("", include("web.urls")),
]

# JSON for /api/ paths, Django's page elsewhere.
handler404 = "api.errors.not_found"
