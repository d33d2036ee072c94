"""The documentation runs: every tutorial in docs/tutorials/ executes as a script (headless, as CI runs it),
and every Python and TOML code block of docs/usage.md works as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import microcircuit as mc

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("[0-9][0-9]_*.py"))


def code_blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M)


def test_the_three_tutorials_are_there() -> None:
    assert [p.name for p in TUTORIALS] == ["01_self_prediction.py", "02_custom_experiment.py", "03_run_folders.py"]
    for p in TUTORIALS:  # jupytext percent format: a header, markdown and code cells
        text = p.read_text(encoding="utf-8")
        assert "format_name: percent" in text and "# %% [markdown]" in text and "\n# %%\n" in text


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path: Path, tmp_path: Path) -> None:
    """Each tutorial as a script in a fresh interpreter, in an empty folder, with no display."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "error::DeprecationWarning", "TMPDIR": str(tmp)}
    r = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not list(cwd.iterdir()), "a tutorial must write only into its own temporary folder"
    assert not list(tmp.iterdir()), "a tutorial must remove its temporary folder"


def test_usage_python_blocks_run(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = code_blocks(ROOT / "docs" / "usage.md", "python")
    assert blocks
    for code in blocks:
        exec(compile(code, "docs/usage.md", "exec"), {})
    assert "(50, 1, 20)" in capsys.readouterr().out


def test_usage_toml_blocks_load(tmp_path: Path) -> None:
    blocks = code_blocks(ROOT / "docs" / "usage.md", "toml")
    assert blocks
    for i, text in enumerate(blocks):
        path = tmp_path / f"block{i}.toml"
        path.write_text(text, encoding="utf-8")
        cfg = mc.load_toml(path)
        assert isinstance(cfg, mc.Config)
