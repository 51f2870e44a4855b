"""The Compare page (/apps/APP/compare/?a=..&b=..), the Versions page's revision URLs and
compare links, and the Rollback dialog's link to the diff."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from dashboard.controlplane.models import App, Revision
from tests.web.factories import make_app, make_revision

pytestmark = pytest.mark.django_db


def write(revision: Revision, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = revision.bundle_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def bundles(demo):
    app, old, current, failed = demo
    write(old, {"app.py": "VERSION = 'old'\n", "extra.txt": "x\n"})
    Revision.objects.filter(pk=old.pk).update(settings={**old.settings, "machine_type": "S"})
    write(current, {"app.py": "VERSION = 'current'\n", "new.txt": "<b>hi</b>\n"})
    return demo


def test_it_compares_two_revisions_with_fields_settings_and_files(viewer, bundles):
    app, old, current, _ = bundles
    response = viewer.get(f"/apps/demo/compare/?a={old.short_id}&b={current.short_id}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "old but good" in html and "the current one" in html
    assert 'data-testid="compare-counts">1 added · 1 removed · 1 changed · 0 unchanged' in html
    assert 'data-path="app.py" data-change="changed" open' in html
    assert "-VERSION = &#x27;old&#x27;" in html and "+VERSION = &#x27;current&#x27;" in html
    # File contents are user-written: escaped, never markup.
    assert "&lt;b&gt;hi&lt;/b&gt;" in html and "<b>hi</b>" not in html
    assert "code-specific" in html and "runtime-tunable" in html
    assert 'data-testid="changed-setting"' in html  # machine_type: S, then XS


def test_without_revisions_it_shows_the_form_only(viewer, demo):
    response = viewer.get("/apps/demo/compare/")
    assert response.status_code == 200
    assert 'data-testid="compare-form"' in response.content.decode()
    assert 'data-testid="compare-files"' not in response.content.decode()


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [
        ("a=abc&b=abcdef12", 400, "revision prefix &#x27;abc&#x27; is too short"),
        ("a=0123456789&b=0123456788", 404, "app &#x27;demo&#x27; has no revision"),
        ("a=0123456789", 400, "b is missing"),
        ("a=1&b=2&c=3", 400, "Unknown parameter &#x27;c&#x27;"),
    ],
)
def test_bad_references_are_refused_precisely(viewer, demo, query, status, says):
    response = viewer.get(f"/apps/demo/compare/?{query}")
    assert response.status_code == status
    assert says in response.content.decode()


def test_another_apps_revision_is_refused(viewer, demo):
    other = make_revision(make_app("other"))
    _, old, _, _ = demo
    response = viewer.get(f"/apps/demo/compare/?a={old.short_id}&b={other.short_id}")
    assert response.status_code == 404
    assert "belongs to app &#x27;other&#x27;" in response.content.decode()


def test_an_unknown_app_is_404_and_anonymous_visitors_go_to_sign_in(viewer, demo):
    assert viewer.get("/apps/nope/compare/?a=12345678&b=12345678").status_code == 404
    anonymous = Client().get("/apps/demo/compare/")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_the_versions_page_shows_each_deployed_revisions_url_and_a_compare_link(viewer, demo):
    app, old, current, failed = demo
    html = viewer.get("/apps/demo/versions").content.decode()
    for revision in (old, current):
        url = f"{settings.GATEWAY_URL}/demo@{revision.short_id}/"
        assert f'<code data-testid="revision-url">{url}</code>' in html
        assert f'data-copy="{url}"' in html
    assert f"/demo@{failed.short_id}/" not in html  # A Failed revision never serves.
    assert f'href="/apps/demo/compare/?a={current.short_id}&amp;b={old.short_id}"' in html
    assert html.count('data-testid="compare-link"') == 2  # Every row but Current's.


def test_the_rollback_dialog_links_to_the_diff_of_current_against_the_target(deployer, demo):
    app, old, current, _ = demo
    html = deployer.get(f"/apps/demo/confirm/rollback?rev={old.short_id}").content.decode()
    assert f'href="/apps/demo/compare/?a={current.short_id}&amp;b={old.short_id}"' in html
    assert App.objects.get(name="demo").current_revision_id == current.id
