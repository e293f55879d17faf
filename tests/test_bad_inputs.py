"""Every bad input gets one clear error (type or exit status 2, the problem, the fix, the file)
and changes no file. The table lives in ``tests/bad_inputs.py`` (shared with
``benchmarks/reliability.py``)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bad_inputs import all_cases, build_template, run_case  # noqa: E402

CASES = all_cases()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_template(tmp_path_factory.mktemp("bad_inputs") / "template")


def test_the_table_is_large_and_covers_every_verb():
    assert len(CASES) >= 150
    verbs = {c.verb.split()[0] for c in CASES}
    assert {"sample", "train", "forecast", "schedule", "rollout", "plan", "demo", "dforce", "bench", "api"} <= verbs
    assert len({c.id for c in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input(case, template):
    outcome = run_case(case, template)
    assert outcome.status == "clear_error", f"{outcome.status}: {outcome.detail}\n{outcome.message}\nchanged: {outcome.changed}"
    assert not outcome.changed
