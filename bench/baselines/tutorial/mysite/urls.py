"""URL configuration of the tutorial project (the chat pages are not needed by the benchmark)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
