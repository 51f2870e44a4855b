"""Properties of the refusal rules (controlplane/refusals.py) over every revision state.

The pages ask each rule without a query per row (thorough=False) to disable a button and
say why; the dialogs and the API ask thoroughly. For any state a revision can be in, the
two must agree on whether to refuse and with which code, so a button the page offers is
never refused by the server for the revision's state, and a disabled one never would
have been accepted.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.controlplane import refusals
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    Revision,
    RevisionStatus,
)

KINDS = [
    OperationKind.SET_REV,
    OperationKind.DELETE_REV,
    OperationKind.SUSPEND,
    OperationKind.RESUME,
    OperationKind.PIN,
    OperationKind.UNPIN,
]


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(list(RevisionStatus)),
    st.booleans(),
    st.booleans(),
    st.sampled_from(KINDS),
)
def test_the_pages_answer_and_the_servers_agree_for_every_revision_state(
    status, is_current, pinned, kind
):
    with transaction.atomic():
        app = App.objects.create(name="demo")
        revision = Revision.objects.create(
            id=uuid.uuid4(),
            app=app,
            status=status,
            entrypoint="app.py::Demo",
            bundle_sha256="0" * 64,
            bundle_size=1,
            pinned=pinned,
            pinned_at=timezone.now() if pinned else None,
        )
        if is_current:
            app.current_revision = revision
            app.save()
        if status == RevisionStatus.DEPLOYING:
            # A Deploying revision is the target of its deploy until that ends.
            Operation.objects.create(app=app, kind=OperationKind.DEPLOY, revision=revision)
        cheap = refusals.of_revision(kind, app, revision, thorough=False)
        thorough = refusals.of_revision(kind, app, revision)
        transaction.set_rollback(True)

    assert (cheap is None) == (thorough is None), (cheap, thorough)
    if cheap is not None:
        assert (cheap.status, cheap.code) == (thorough.status, thorough.code)
        assert cheap.message.startswith(f"revision {revision.short_id} ")


@pytest.mark.django_db
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(RevisionStatus)), st.booleans())
def test_only_a_deployed_revision_other_than_current_can_become_current(status, is_current):
    with transaction.atomic():
        app = App.objects.create(name="demo")
        revision = Revision.objects.create(
            app=app, status=status, entrypoint="app.py::Demo", bundle_sha256="0" * 64, bundle_size=1
        )
        if is_current:
            app.current_revision = revision
            app.save()
        refusal = refusals.set_rev(app, revision)
        transaction.set_rollback(True)

    allowed = status == RevisionStatus.DEPLOYED and not is_current
    assert (refusal is None) == allowed
    if refusal is not None:
        assert refusal.status == 409
