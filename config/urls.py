from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hub.api.errors import api_not_found
from hub.api.ops import healthz, metrics_view, readyz

# Errors Django answers itself (no view, or outside DRF): the JSON format under /api/, its own pages elsewhere.
handler400 = "hub.api.errors.bad_request"
handler403 = "hub.api.errors.permission_denied"
handler404 = "hub.api.errors.page_not_found"
handler500 = "hub.api.errors.server_error"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include("hub.api.urls")),
    # Whatever else is under /api/ (an unknown path, an id that is not a UUID): the JSON 404, DEBUG or not.
    re_path(r"^api(?:/.*)?$", api_not_found),
    path("admin/", admin.site.urls),
    # daphne serves no static files of its own: the admin's and the API docs' assets come from
    # the installed apps through the finders (small and cacheable; a CDN may front them).
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
