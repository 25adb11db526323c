from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import models as djmodels
from django.http import HttpRequest

from hub import models
from hub.services.users import user_deactivate


@admin.register(models.User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "display_name", "role", "is_active", "last_seen_at")
    list_filter = ("role", "is_active", "is_staff")
    search_fields = ("email", "display_name", "phone")
    readonly_fields = ("id", "last_seen_at", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("id", "email", "password")}),
        ("Profile", {"fields": ("display_name", "role", "phone", "timezone", "locale", "avatar_url")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Activity", {"fields": ("last_login", "last_seen_at", "created_at", "updated_at")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "role", "password1", "password2")}),)
    actions = ["deactivate"]
    formfield_overrides = {djmodels.URLField: {"assume_scheme": "https"}}  # Django 6's default, now

    def save_model(self, request: HttpRequest, obj: models.User, form: Any, change: bool) -> None:
        """Unticking "active" signs the user out everywhere at once, as `user_deactivate` does."""
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            user_deactivate(user_id=obj.id)

    @admin.action(description="Deactivate (close their connections at once)")
    def deactivate(self, request: HttpRequest, queryset: Any) -> None:
        for user_id in queryset.values_list("id", flat=True):
            user_deactivate(user_id=user_id)


@admin.register(models.Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ("business_name", "user", "is_verified", "rating")
    list_filter = ("is_verified",)
    search_fields = ("business_name", "user__email")
    raw_id_fields = ("user",)


@admin.register(models.Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "parent")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(models.Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ("name", "provider", "category", "price", "is_active")
    list_filter = ("is_active", "category")
    raw_id_fields = ("provider",)


@admin.register(models.Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = ("id", "customer", "provider", "status", "scheduled_at")
    list_filter = ("status",)
    raw_id_fields = ("customer", "provider", "service")
    date_hierarchy = "scheduled_at"


@admin.register(models.Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ("booking", "provider", "rating", "created_at")
    raw_id_fields = ("booking", "customer", "provider")


class MemberInline(admin.TabularInline):
    model = models.ConversationMember
    raw_id_fields = ("user",)
    extra = 0


@admin.register(models.Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "booking", "last_seq", "last_message_at")
    list_filter = ("kind",)
    raw_id_fields = ("booking",)
    inlines = [MemberInline]


@admin.register(models.Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "seq", "sender", "kind", "created_at", "deleted_at")
    list_filter = ("kind",)
    raw_id_fields = ("conversation", "sender")


@admin.register(models.Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("name", "uploader", "content_type", "size", "message")
    raw_id_fields = ("uploader", "message")


@admin.register(models.Block)
class BlockAdmin(admin.ModelAdmin):
    list_display = ("blocker", "blocked", "created_at")
    raw_id_fields = ("blocker", "blocked")
