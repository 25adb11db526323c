from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from hub import models


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
