"""The front door as a newcomer uses it: the README's Python example run as written, and the
shipped refresh recipe run by `bolt refresh --config`. Both use one working directory, so the
embedded reference is bootstrapped once and pi_ref's held-out evaluation is reused by content."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import bolt, own_server_env

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_example() -> str:
    section = README.read_text().split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("newcomer")


def test_the_example_is_the_api_as_documented():
    code = readme_python_example()
    assert "from bolt import" in code and "run_round(" in code
    assert len(code.strip().splitlines()) <= 10


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(home):
    """In a process of its own with no Prefect server given: it starts its temporary one."""
    result = subprocess.run([sys.executable, "-c", readme_python_example()], cwd=home,
                            env=own_server_env(), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    gain = re.search(r"accuracy (0\.\d+) -> (0\.\d+), gain ([+-]\d+\.\d) points \(SE (\d+\.\d+)\)",
                     result.stdout)
    assert gain, result.stdout[-3000:]
    before, after, points, _ = (float(g) for g in gain.groups())
    assert points == pytest.approx(100 * (after - before), abs=0.11)
    assert (home / "runs" / "quickstart" / "round-0" / "summary.json").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_the_refresh_recipe_runs(home):
    result = bolt("refresh", "--config", "refresh-nightly", "--runs-dir", str(home / "runs"),
                  cwd=home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (home / "runs" / "nightly-refresh" / "round-0" / "summary.json").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("shared_prefect_server")
def test_the_default_recipe_is_the_round_the_example_ran(home):
    """`bolt run --config recipes/default.json` under the example's pipeline name: the same
    configuration, so every stage of the example's round is reused and its summary printed."""
    import json

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "default.json"
    before = json.loads((home / "runs" / "quickstart" / "round-0" / "summary.json").read_text())
    result = bolt("run", "--config", str(recipe), "--pipeline", "quickstart",
                  "--runs-dir", str(home / "runs"), cwd=home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = json.loads((home / "runs" / "quickstart" / "round-0" / "summary.json").read_text())
    assert after == before
    assert f"gain {100 * before['accuracy_gain']:+.1f} points" in result.stdout
