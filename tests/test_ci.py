"""CI runs the README's two set-up and test commands as a user would: in a fresh virtual environment."""

from __future__ import annotations

import re

from helpers import REPO


def test_ci_runs_exactly_the_readme_commands_in_a_fresh_venv():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Set up and test.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README: no set-up block"
    setup, test = block.group(1).strip().splitlines()
    assert setup.startswith("python -m venv .venv && . .venv/bin/activate && pip install ") and test == "python -m pytest"
    ci = [line.removesuffix(" || exit 1") for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert ci.index(test) == ci.index(setup) + 1
