from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hub.api.ops import healthz, metrics_view, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include("hub.api.urls")),
    path("admin/", admin.site.urls),
    # daphne serves no static files of its own: the admin's and the API docs' assets come from
    # the installed apps through the finders (small and cacheable; a CDN may front them).
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
