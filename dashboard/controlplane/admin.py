"""Django admin: staff manage users, roles and API tokens here.

Apps, revisions and operations are shown read-only. Their state changes only through the
control API's operations (DESIGN.md §7), which check the rules (the Current revision is a
Deployed revision of its app, Current is never deleted), tell the runtime and record
History; a form that wrote the rows directly would skip all three.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from dashboard.controlplane.models import (
    ApiToken,
    App,
    Operation,
    OperationStep,
    Profile,
    Revision,
)

User = get_user_model()


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    verbose_name = verbose_name_plural = "Switchboard role"


class SwitchboardUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, ProfileInline]


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, SwitchboardUserAdmin)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "role", "hint", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["role"]
    search_fields = ["name", "user__username", "hint"]
    readonly_fields = ["hint", "created_at", "last_used_at"]
    fields = ["user", "name", "role", "hint", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new token: generate the secret here, store its hash, show the raw value once.
        token, raw = ApiToken.issue(obj.user, obj.name, obj.role)
        obj.pk, obj.token_hash, obj.hint = token.pk, token.token_hash, token.hint
        obj.created_at = token.created_at
        messages.warning(request, f"The token is shown only this once; copy it now: {raw}")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(App)
class AppAdmin(ReadOnlyAdmin):
    list_display = ["name", "current_revision", "auth_mode", "owner", "updated_at"]
    search_fields = ["name"]
    list_select_related = ["current_revision", "owner"]


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdmin):
    list_display = ["id", "app", "status", "created_at", "deployed_by", "message"]
    list_filter = ["status"]
    search_fields = ["app__name", "message"]
    list_select_related = ["app", "deployed_by"]


class StepInline(admin.TabularInline):
    model = OperationStep
    extra = 0
    readonly_fields = ["at", "message"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Operation)
class OperationAdmin(ReadOnlyAdmin):
    # The record of what happened must not be edited after the fact either.
    list_display = ["created_at", "app", "kind", "state", "requester_name", "source"]
    list_filter = ["kind", "state", "source"]
    search_fields = ["app__name", "requester_name", "reason"]
    list_select_related = ["app"]
    inlines = [StepInline]
