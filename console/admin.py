"""Users, groups and API tokens in the console's look (their stock admins, on unfold's base)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from knox.admin import AuthTokenAdmin as BaseAuthTokenAdmin
from knox.models import AuthToken
from unfold.admin import ModelAdmin
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

for model in (User, Group, AuthToken):
    admin.site.unregister(model)


@admin.register(User)
class UserAdmin(BaseUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin, ModelAdmin):
    pass


@admin.register(AuthToken)
class AuthTokenAdmin(BaseAuthTokenAdmin, ModelAdmin):
    list_display = ("token_name", "user", "created", "last_used", "expiry")
    list_select_related = ("user", "info")
    search_fields = ("info__name", "user__username")

    @admin.display(description="name", ordering="info__name")
    def token_name(self, token: AuthToken) -> str:
        info = getattr(token, "info", None)
        return (info.name if info else "") or "(unnamed)"

    @admin.display(description="last used", ordering="info__last_used_at")
    def last_used(self, token: AuthToken) -> object:
        info = getattr(token, "info", None)
        return info.last_used_at if info and info.last_used_at else "never"
