"""The static files' storage: WhiteNoise's compressed, hashed-name storage.

collectstatic writes every file under a name carrying its content's hash (css/
switchboard.3f2a9c1e.css), a gzip and a Brotli copy beside it, and a manifest; WhiteNoise
then serves those names with a one-year, immutable cache lifetime and the compressed copy
to browsers that accept it. `manage.py up` runs collectstatic before starting.

A checkout that never ran collectstatic has no manifest: the test suite (which serves
static files from the source folders through Django's finders) and `manage.py runserver`.
There every {% static %} would raise "Missing staticfiles manifest entry", so without a
manifest this storage gives the plain name instead. Once a manifest exists it is strict,
as Django's: a file missing from it is an error, never a silently stale name.
"""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    def stored_name(self, name: str) -> str:
        if not self.hashed_files:  # No manifest: collectstatic never ran here.
            return name
        return super().stored_name(name)
