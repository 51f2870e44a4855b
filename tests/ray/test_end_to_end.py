"""The backend-independent end-to-end tests (tests/cli/test_end_to_end.py), run against the
Ray backend: the same CLI commands, the same answers, with each revision a Ray Serve
application on the two-node cluster of tests/ray/conftest.py."""

from __future__ import annotations

import pytest

from tests.cli.test_end_to_end import (  # noqa: F401 - collected here, on the Ray system.
    test_a_failed_deploy_exits_non_zero_with_the_reason_and_leaves_the_alias,
    test_delete_rev_of_the_current_revision_is_refused_with_one_line_and_changes_nothing,
    test_delete_rev_removes_an_old_revision,
    test_deploy_shows_timestamped_progress_and_ends_deployed_and_current,
    test_list_rev_shows_each_revision_with_status_current_marker_and_settings,
    test_rollout_restarts_the_runners_gracefully_or_by_force,
    test_set_rev_moves_the_alias_with_each_strategy_and_the_gateway_follows,
    test_suspend_makes_the_gateway_refuse_and_stops_the_runners_resume_serves_again,
)

pytestmark = [pytest.mark.system, pytest.mark.django_db(transaction=True)]
