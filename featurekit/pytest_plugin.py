"""featurekit's pytest plugin: the conformance kit as a fixture.

Installed with featurekit and loaded by pytest through the ``pytest11`` entry
point, so a plugin author's tests need no ``conftest.py``::

    from my_plugin import MyMethod

    def test_my_method_conforms(featurekit_check):
        featurekit_check(MyMethod())

The fixture runs every applicable check of :mod:`featurekit.testing` and, if
any fails, fails the test once with a table of all the failures and what to
fix, rather than stopping at the first. For one test per check, use
:func:`featurekit.testing.parametrize_method_checks`.

Importing this module costs nothing: torch and featurekit's checks load only
when a test asks for the fixture, so other projects' test runs are not slowed.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest


def format_failures(estimator: Any, results: list) -> str:
    """A readable report of the failed checks in ``results`` (empty if none failed)."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return ""
    width = max(len(r.name) for r in failed)
    lines = [f"{type(estimator).__name__} fails {len(failed)} of {len(results)} featurekit "
             "conformance checks:"]
    for r in failed:
        message = " ".join(r.message.split())
        lines.append(f"  {r.name:<{width}}  {message}")
    lines.append("Each message says what to fix; run one check alone with "
                 "featurekit.testing.<check>(estimator) to see its traceback.")
    return "\n".join(lines)


@pytest.fixture
def featurekit_check() -> Callable[[Any], list]:
    """Run featurekit's conformance kit on an (unfitted) method estimator.

    Returns the list of :class:`featurekit.testing.CheckResult`; fails the
    test, listing every failed check, if any did not pass.
    """
    from featurekit.testing import check_method

    def check(estimator: Any) -> list:
        results = check_method(estimator, raise_on_failure=False)
        report = format_failures(estimator, results)
        if report:
            pytest.fail(report, pytrace=False)
        return results

    return check


@pytest.fixture
def featurekit_tiny_data() -> Callable[[str], tuple]:
    """The kit's small real data: ``featurekit_tiny_data("image" | "tabular") -> (X, y)``."""
    from featurekit.testing import tiny_data

    return tiny_data
