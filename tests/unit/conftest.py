"""Unit-test session: under ``make test`` (CI) a skipped test is a failure.

Tests that need a binary (PostgreSQL, Redis, the exporters, pgBackRest,
promtool) skip when it is missing, which suits a developer's
partial machine; on CI they would pass silently untested, so ``make test``
sets HASTACK_FORBID_SKIPS=1 and ``make unit`` installs what they need.
"""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("HASTACK_FORBID_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under HASTACK_FORBID_SKIPS=1 (make test installs what unit tests need): {reason}"
