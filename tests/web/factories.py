"""Rows for the web tests, created directly (the control API is not needed to read them)."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

from django.contrib.auth.models import User
from django.utils import timezone

from dashboard.controlplane import parameters
from dashboard.controlplane.models import (
    App,
    Operation,
    OperationKind,
    OperationState,
    OperationStep,
    Profile,
    Revision,
    RevisionStatus,
    Role,
)

_serial = count(1)


def make_user(role: Role | str, username: str | None = None) -> User:
    user = User.objects.create_user(username or f"{role}-{next(_serial)}", password="pw-secret-1")
    Profile.objects.create(user=user, role=role)
    return user


def make_app(name: str = "demo", **kwargs) -> App:
    return App.objects.create(name=name, settings=parameters.defaults(), **kwargs)


def make_revision(
    app: App,
    status: str = RevisionStatus.DEPLOYED,
    *,
    message: str = "a change",
    age: timedelta = timedelta(0),
    current: bool = False,
    deployed_by: User | None = None,
    **kwargs,
) -> Revision:
    revision = Revision.objects.create(
        app=app,
        status=status,
        entrypoint="app.py::Demo",
        bundle_sha256="0" * 64,
        bundle_size=100,
        code_settings=kwargs.pop("code_settings", parameters.defaults()),
        settings=kwargs.pop("settings", parameters.defaults()),
        message=message,
        deployed_by=deployed_by,
        created_at=timezone.now() - age,
        **kwargs,
    )
    if current:
        app.current_revision = revision
        app.save()
    return revision


def make_operation(
    app: App,
    kind: str = OperationKind.DEPLOY,
    *,
    revision: Revision | None = None,
    state: str = OperationState.SUCCEEDED,
    steps: tuple[str, ...] = (),
    **kwargs,
) -> Operation:
    finished = state in (OperationState.SUCCEEDED, OperationState.FAILED)
    now = timezone.now()
    op = Operation.objects.create(
        app=app,
        kind=kind,
        revision=revision,
        state=state,
        started_at=now,
        finished_at=now if finished else None,
        **kwargs,
    )
    for message in steps:
        OperationStep.objects.create(operation=op, message=message)
    return op


def make_history(app: App, revisions: int, user: User | None = None) -> list[Revision]:
    """`revisions` revisions, newest first: a Deploying one on top, a Failed one, the rest
    Deployed, the second newest Current. Each has a deploy operation with steps."""
    rows = []
    for i in range(revisions):
        status = RevisionStatus.DEPLOYED
        if i == 0:
            status = RevisionStatus.DEPLOYING
        elif i == 2:
            status = RevisionStatus.FAILED
        rows.append(
            Revision(
                app=app,
                status=status,
                entrypoint="app.py::Demo",
                bundle_sha256="0" * 64,
                bundle_size=100,
                code_settings=parameters.defaults(),
                settings=parameters.defaults(),
                message=f"change number {revisions - i}",
                annotations={"commit": f"c{revisions - i:05d}"},
                deployed_by=user,
                created_at=timezone.now() - timedelta(minutes=i),
                error="ImportError: boom" if status == RevisionStatus.FAILED else "",
            )
        )
    Revision.objects.bulk_create(rows, batch_size=1000)
    if revisions > 1:
        app.current_revision = rows[1]
        app.save()
    for rev in rows[:3]:
        op = Operation.objects.create(
            app=app,
            kind=OperationKind.DEPLOY,
            revision=rev,
            state=OperationState.RUNNING
            if rev.status == RevisionStatus.DEPLOYING
            else OperationState.SUCCEEDED,
            finished_at=None if rev.status == RevisionStatus.DEPLOYING else timezone.now(),
        )
        OperationStep.objects.create(operation=op, message="bundle received")
    return rows
