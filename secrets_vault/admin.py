"""Admin for the vault: metadata, rotation, version history, access log. Never plaintext.

Value fields are password inputs that never render their value back; the most the admin
shows of a value is the masked hint (last 4 characters, opt-out per secret).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from unfold.admin import ModelAdmin, TabularInline
from unfold.widgets import UnfoldAdminPasswordWidget

from core.errors import ApplicationError
from secrets_vault import selectors, services
from secrets_vault.crypto import SecretValue
from secrets_vault.models import Secret, SecretAccessEvent, SecretVersion, VersionState


class SecretValueFormField(forms.CharField):
    """A password input that never renders a value, cleaned into a ``SecretValue``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", UnfoldAdminPasswordWidget(render_value=False))
        kwargs.setdefault("strip", False)
        kwargs.setdefault("max_length", services.MAX_VALUE_CHARS)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, SecretValue):  # wrapped by _wrap_posted_values
            return value.reveal()
        return super().to_python(value)

    def clean(self, value: Any) -> SecretValue:
        return SecretValue(super().clean(value))


def _wrap_posted_values(request: HttpRequest, *names: str) -> None:
    """Replace posted values by ``SecretValue`` wrappers before any form reads them.

    ``sensitive_post_parameters`` only hides POST data from error reports when DEBUG is
    off; with the wrappers even DEBUG's technical 500 page prints a mask.
    """
    if request.method != "POST" or not any(n in request.POST for n in names):
        return
    post = request.POST.copy()
    for name in names:
        if name in post:
            post.setlist(name, [SecretValue(v) for v in post.getlist(name)])
    post._mutable = False
    request.POST = post  # type: ignore[assignment]


class SecretAddForm(forms.ModelForm):
    value = SecretValueFormField(help_text="Stored encrypted; it is never shown again.")

    class Meta:
        model = Secret
        fields = ["name", "description", "agents", "show_hint", "rotation_interval_days"]


class SecretChangeForm(forms.ModelForm):
    class Meta:
        model = Secret
        fields = ["description", "agents", "show_hint", "rotation_interval_days"]


class SecretRotateForm(forms.Form):
    value = SecretValueFormField(label="New value")
    confirm = SecretValueFormField(label="New value (again)")
    expected_version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)

    @sensitive_variables()
    def clean(self) -> dict[str, Any]:
        data = super().clean()
        value, confirm = data.get("value"), data.get("confirm")
        if value is not None and confirm is not None and value != confirm:
            raise forms.ValidationError("The two values differ.")
        return data


class SecretVersionInline(TabularInline):
    model = SecretVersion
    fields = ["version", "state", "masked_hint", "kek_id", "created_by", "created_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    ordering = ["-version"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SecretVersion]:
        return super().get_queryset(request).defer("value_ciphertext", "wrapped_dek")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="hint")
    def masked_hint(self, version: SecretVersion) -> str:
        return version.masked_hint


@admin.register(Secret)
class SecretAdmin(ModelAdmin):
    list_display = [
        "name",
        "current_version",
        "current_hint",
        "last_rotated_at",
        "last_accessed",
        "rotation_due_marker",
    ]
    search_fields = ["name", "description"]
    list_filter = ["show_hint"]
    autocomplete_fields = ["agents"]
    inlines = [SecretVersionInline]
    actions = ["rotate_selected"]
    change_readonly = ["name", "current_version", "last_rotated_at", "created_at", "updated_at"]

    @method_decorator(sensitive_post_parameters("value"))
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # The add form posts the value: keep it out of error pages and error e-mails.
        _wrap_posted_values(request, "value")
        return super().changeform_view(request, *args, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Secret]:
        # The hint column reads the current version: one query per page, not one per row.
        return selectors.secret_list().prefetch_related(_versions_without_ciphertext())

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = SecretChangeForm if obj is not None else SecretAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["name", "value", "description", "agents", "show_hint", "rotation_interval_days"]
        return [
            *self.change_readonly[:3],
            "description",
            "agents",
            "show_hint",
            "rotation_interval_days",
            *self.change_readonly[3:],
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return self.change_readonly if obj is not None else []

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        return self.inlines if obj is not None else []

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<path:object_id>/rotate/",
                self.admin_site.admin_view(self.rotate_view),
                name=f"{self.opts.app_label}_{self.opts.model_name}_rotate",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="hint")
    def current_hint(self, secret: Secret) -> str:
        versions = [v for v in secret.versions.all() if v.version == secret.current_version]
        return versions[0].masked_hint if versions else "-"

    @admin.display(description="last accessed", ordering="last_accessed_at")
    def last_accessed(self, secret: Secret) -> Any:
        return getattr(secret, "last_accessed_at", None) or "-"

    @admin.display(description="rotation due", boolean=True)
    def rotation_due_marker(self, secret: Secret) -> bool | None:
        return secret.rotation_due if secret.rotation_interval_days else None

    @sensitive_variables()
    def save_model(self, request: HttpRequest, obj: Secret, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.secret_update(
                secret=obj,
                description=data["description"],
                agents=data["agents"],
                rotation_interval_days=data["rotation_interval_days"],
                show_hint=data["show_hint"],
                actor=request.user,
            )
            return
        created = services.secret_create(
            name=data["name"],
            value=data["value"],
            description=data["description"],
            agents=data["agents"],
            rotation_interval_days=data["rotation_interval_days"],
            show_hint=data["show_hint"],
            actor=request.user,
        )
        obj.pk, obj.current_version = created.pk, created.current_version
        obj.last_rotated_at, obj.created_at = created.last_rotated_at, created.created_at
        obj._state.adding, obj._state.db = False, created._state.db

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The services already stored the agents; the version inline is read-only.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Versions go with their secret; that their own admin refuses a lone delete must
        # not block deleting the secret.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed.discard(SecretVersion._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Secret) -> None:
        services.secret_delete(secret=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Secret]) -> None:
        for secret in queryset:
            services.secret_delete(secret=secret, actor=request.user)

    @admin.action(description="Rotate the selected secret (enter a new value)")
    def rotate_selected(self, request: HttpRequest, queryset: QuerySet[Secret]) -> Any:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one secret to rotate.", messages.WARNING)
            return None
        secret = queryset.get()
        return HttpResponseRedirect(reverse("admin:secrets_vault_secret_rotate", args=[secret.pk]))

    @sensitive_variables()
    @method_decorator(sensitive_post_parameters("value", "confirm"))
    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        secret = get_object_or_404(Secret, pk=object_id)
        if not self.has_change_permission(request, secret):
            raise PermissionDenied
        if request.method == "POST":
            _wrap_posted_values(request, "value", "confirm")
            form = SecretRotateForm(request.POST)
            if form.is_valid():
                try:
                    version = services.secret_rotate(
                        secret=secret,
                        value=form.cleaned_data["value"],
                        expected_version=form.cleaned_data["expected_version"],
                        actor=request.user,
                    )
                except ApplicationError as exc:
                    form.add_error(None, exc.message)
                else:
                    self.log_change(request, secret, f"Rotated to version {version.version}.")
                    self.message_user(
                        request,
                        f"Secret '{secret.name}' is now at version {version.version}.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(
                        reverse("admin:secrets_vault_secret_change", args=[secret.pk])
                    )
            # Re-rendered with its errors; password inputs never render a submitted value.
        else:
            form = SecretRotateForm(initial={"expected_version": secret.current_version})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": secret,
            "title": f"Rotate {secret.name}",
            "form": form,
            "versions": selectors.secret_version_list(secret)[:10],
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/secrets_vault/secret/rotate.html", context)


def _versions_without_ciphertext() -> Any:
    from django.db.models import Prefetch

    return Prefetch(
        "versions", queryset=SecretVersion.objects.defer("value_ciphertext", "wrapped_dek")
    )


@admin.register(SecretVersion)
class SecretVersionAdmin(ModelAdmin):
    list_display = [
        "secret",
        "version",
        "state",
        "is_current",
        "hint_display",
        "kek_id",
        "created_by",
        "created_at",
    ]
    list_filter = ["state", "kek_id"]
    search_fields = ["secret__name"]
    list_select_related = ["secret", "created_by"]
    fields = [
        "secret",
        "version",
        "state",
        "hint_display",
        "kek_id",
        "algorithm",
        "format_version",
        "created_by",
        "created_at",
        "disabled_at",
        "destroyed_at",
    ]
    readonly_fields = fields
    actions = ["disable_versions", "enable_versions", "destroy_versions"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SecretVersion]:
        return super().get_queryset(request).defer("value_ciphertext", "wrapped_dek")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Detail pages are read-only; state changes go through the actions (POST on the list).
        if obj is not None:
            return False
        return super().has_change_permission(request, obj)

    @admin.display(description="hint")
    def hint_display(self, version: SecretVersion) -> str:
        return version.masked_hint

    @admin.display(description="current", boolean=True)
    def is_current(self, version: SecretVersion) -> bool:
        return version.version == version.secret.current_version

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[SecretVersion], action: Any, verb: str
    ) -> None:
        done = 0
        for row in queryset.select_related("secret").order_by("secret_id", "version"):
            try:
                action(secret=row.secret, version=row.version, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.WARNING)
                continue
            self.log_change(request, row, f"{verb.capitalize()} version {row.version}.")
            done += 1
        self.message_user(request, f"{verb.capitalize()} {done} version(s).", messages.SUCCESS)

    @admin.action(description="Disable the selected versions")
    def disable_versions(self, request: HttpRequest, queryset: QuerySet[SecretVersion]) -> None:
        self._apply(request, queryset, services.secret_version_disable, "disabled")

    @admin.action(description="Re-enable the selected disabled versions")
    def enable_versions(self, request: HttpRequest, queryset: QuerySet[SecretVersion]) -> None:
        self._apply(request, queryset, services.secret_version_enable, "enabled")

    @admin.action(description="Destroy the selected versions (irreversible)")
    def destroy_versions(
        self, request: HttpRequest, queryset: QuerySet[SecretVersion]
    ) -> HttpResponse | None:
        if request.POST.get("confirm") == "yes":
            self._apply(request, queryset, services.secret_version_destroy, "destroyed")
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Destroy secret versions?",
            "versions": queryset.select_related("secret").exclude(state=VersionState.DESTROYED),
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/secrets_vault/secretversion/destroy_confirmation.html", context
        )


@admin.register(SecretAccessEvent)
class SecretAccessEventAdmin(ModelAdmin):
    list_display = [
        "created_at",
        "secret_name",
        "version",
        "outcome",
        "actor_label",
        "agent_slug",
        "purpose",
    ]
    list_filter = ["outcome", "created_at"]
    search_fields = ["secret_name", "purpose", "actor_label", "agent_slug"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "secret_link",
        "secret_name",
        "version",
        "outcome",
        "actor",
        "actor_label",
        "agent_slug",
        "purpose",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="secret")
    def secret_link(self, event: SecretAccessEvent) -> str:
        if event.secret_id is None:
            return "(deleted)"
        url = reverse("admin:secrets_vault_secret_change", args=[event.secret_id])
        return format_html('<a href="{}">{}</a>', url, event.secret_name)
