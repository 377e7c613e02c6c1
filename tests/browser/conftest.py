"""Browser-tier fixtures: a real JupyterLab server and headless Chromium (see lab.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.lab import (
    CHROMIUM,
    MISSING_CHROMIUM,
    Lab,
    LabStartError,
    chromium_context,
    running_lab,
)
from tests.browser.offline_page import offline_browser


@pytest.fixture(scope="session")
def jupyter_lab() -> Iterator[Lab]:
    """JupyterLab from this venv on a temp copy of notebooks/, with isolated Jupyter dirs.

    Started once per session and stopped (with its kernels) at the end. Fails with the
    server's log tail if it does not come up.
    """
    try:
        with running_lab() as lab:
            yield lab
    except LabStartError as exc:  # raised only while starting
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A Playwright Chromium context (sync API) on a fresh profile, one per test module.

    Module scope on purpose: Playwright's sync API allows one running instance per thread, and
    the offline-page tests start their own; a session-scoped instance would make them error.

    Fails, never skips, when /usr/bin/chromium is missing: the browser tier must run.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(MISSING_CHROMIUM, pytrace=False)
    with chromium_context() as context:
        yield context


@pytest.fixture(scope="module")
def open_page() -> Iterator[Any]:
    """``open(widget, name, dark=False)``: the widget's offline snapshot in headless Chromium
    with the network cut (offline_page.py); one browser per test module."""
    with offline_browser() as opener:
        yield opener
