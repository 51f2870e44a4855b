"""The Add webhook form. Each field is checked by endpoints.py's rules, the ones the API
applies, so a URL the API refuses the page refuses in the same words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms

from dashboard.controlplane.errors import ControlError
from dashboard.controlplane.models import App
from dashboard.webhooks import endpoints
from dashboard.webhooks.models import EventType, PayloadFormat


def _checked(check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ControlError as exc:
        raise forms.ValidationError(exc.message) from None


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="URL",
        max_length=endpoints.MAX_URL,
        widget=forms.TextInput(attrs={"placeholder": "https://example.com/hooks/switchboard"}),
    )
    app = forms.ChoiceField(label="App", required=False)
    events = forms.MultipleChoiceField(
        label="Events",
        required=False,
        choices=[(e, EventType(e).label) for e in endpoints.SUBSCRIBABLE],
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event.",
    )
    format = forms.ChoiceField(
        label="Format", choices=PayloadFormat.choices, initial=PayloadFormat.JSON, required=False
    )
    description = forms.CharField(
        label="Description", required=False, max_length=endpoints.MAX_DESCRIPTION
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = App.objects.order_by("name").values_list("name", flat=True)
        self.fields["app"].choices = [("", "All apps"), *((n, n) for n in names)]

    def clean_url(self) -> str:
        return _checked(endpoints.check_url, self.cleaned_data["url"])

    def clean_events(self) -> list[str]:
        return _checked(endpoints.check_events, self.cleaned_data["events"])
