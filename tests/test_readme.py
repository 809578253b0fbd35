"""The README's Python examples run, so the docs cannot rot."""
import re

import pytest
from tests import REPO

README = REPO / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert python_blocks()


@pytest.mark.parametrize("i", range(len(python_blocks())))
def test_readme_python_example_runs(i, tmp_path, monkeypatch, ray_session):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[i], f"README.md[python block {i}]", "exec"), {"__name__": "readme"})
    assert (tmp_path / "outputs").is_dir()


def test_readme_commands_match_ci():
    ci = (REPO / ".ci" / "run").read_text()
    assert 'python -m pip install -e ".[test]" && python -m pytest -q' in README.read_text()
    assert 'pip install --quiet -e ".[test]"' in ci and "python -m pytest -q" in ci
