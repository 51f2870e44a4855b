"""The confirmation dialogs' forms. Every value is validated here, server side, whatever
the browser's own checks said; the control API validates again on its side."""

from __future__ import annotations

from typing import Any

from django import forms

from dashboard.controlplane import parameters
from dashboard.controlplane.parameters import PARAMETERS, ParameterError
from dashboard.controlplane.retention import KEEP_MAX, KEEP_MIN


class ActionForm(forms.Form):
    # Generated when the dialog opens, so a double-submitted dialog is one request: it is
    # the Celery task id and the control API's Idempotency-Key.
    key = forms.UUIDField(widget=forms.HiddenInput)
    reason = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "optional, recorded in History"}),
    )

    def params(self) -> dict[str, Any]:
        return {"reason": self.cleaned_data["reason"]}


class ExpectingForm(ActionForm):
    """A dialog about Current (set-rev, delete-rev, suspend, rollout) also carries the
    Current it showed: the view and the control API refuse it (409 current_changed) when
    Current has moved since, instead of silently overriding a colleague."""

    expected_current = forms.CharField(required=False, max_length=36, widget=forms.HiddenInput)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "expected_current": self.cleaned_data["expected_current"]}


class RollbackForm(ExpectingForm):
    STRATEGIES = [
        ("rolling", "Rolling: start a runner on the target, switch once it is healthy"),
        ("recreate", "Recreate: switch now; the next request cold-starts the target"),
    ]
    strategy = forms.ChoiceField(choices=STRATEGIES, initial="rolling", widget=forms.RadioSelect)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "strategy": self.cleaned_data["strategy"]}


class RolloutForm(ExpectingForm):
    MODES = [
        ("graceful", "Graceful: start replacements, let in-flight requests finish"),
        ("force", "Force: kill every runner now; in-flight requests are dropped"),
    ]
    mode = forms.ChoiceField(choices=MODES, initial="graceful", widget=forms.RadioSelect)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "force": self.cleaned_data["mode"] == "force"}


class RunnerStopForm(ActionForm):
    replace = forms.BooleanField(required=False, label="Start a replacement first", initial=False)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "replace": self.cleaned_data["replace"]}


class RetentionForm(ActionForm):
    """How many revisions retention keeps, and whether it runs (retention.py's rule)."""

    keep = forms.IntegerField(
        min_value=KEEP_MIN,
        max_value=KEEP_MAX,
        label="Keep the newest",
        help_text=f"revisions ({KEEP_MIN}–{KEEP_MAX}); older ones are deleted unless protected",
    )
    enabled = forms.BooleanField(required=False, label="Delete older revisions automatically")

    def __init__(self, *args, current: dict[str, Any], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["keep"].initial = current["keep"]
        self.fields["enabled"].initial = current["enabled"]

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "keep": self.cleaned_data["keep"],
            "enabled": self.cleaned_data["enabled"],
        }


class ScaleForm(ActionForm):
    """One field per parameter, showing the alias's current value and the allowed range.

    Only the values the user edited are sent. Each field carries the value the dialog
    showed (Django's hidden initial), so a value someone else changed while the dialog was
    open is not put back to what the dialog showed.
    """

    def __init__(self, *args, current: dict[str, Any], **kwargs):
        super().__init__(*args, **kwargs)
        self.current = current
        for name, param in PARAMETERS.items():
            if name == "machine_type":
                field: forms.Field = forms.ChoiceField(
                    choices=[(t, t) for t in parameters.machine_types()]
                )
            else:
                field = forms.IntegerField(min_value=param.minimum, max_value=param.maximum)
            field.initial = current[name]
            field.show_hidden_initial = True
            field.label = name
            field.help_text = f"{param.help}; allowed {parameters.allowed(param)}" + (
                f" {param.unit}" if param.unit else ""
            )
            field.kind = param.kind
            self.fields[name] = field
        # The reason comes last, after the values it explains.
        self.order_fields([*PARAMETERS, "reason"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        values = {**self.current, **self.edited()}  # What would be in effect afterwards.
        try:
            parameters.check_consistent(parameters.validate(values))
        except ParameterError as exc:
            for name, message in exc.errors.items():
                self.add_error(name if name in self.fields else None, message)
            return cleaned
        if not self.changes():
            raise forms.ValidationError("Nothing to change: every value is already in effect.")
        return cleaned

    def edited(self) -> dict[str, Any]:
        """The values the user changed in the dialog (all of them for a post that does not
        say what the dialog showed)."""
        return {
            name: self.cleaned_data[name]
            for name in self.changed_data
            if name in PARAMETERS and name in self.cleaned_data
        }

    def changes(self) -> dict[str, Any]:
        return {name: value for name, value in self.edited().items() if value != self.current[name]}

    def params(self) -> dict[str, Any]:
        return {**super().params(), "values": self.changes()}
