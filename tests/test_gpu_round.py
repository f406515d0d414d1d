"""bench/gpu_round.py runs a whole round on a GPU machine only now and then, so CI runs its
--dry-run (a tiny round on the CPU) as the GPU image would: with the packages that image lacks
unimportable in every process the round starts (torchrun's workers too), through a
sitecustomize module on PYTHONPATH. pydantic and DuckDB stay: they travel to that machine as
wheels (scripts/gpu_wheels.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Installed here, absent from the GPU image (its package list: docs/guide/gpu-node.md).
ABSENT_ON_GPU_IMAGE = ("prefect", "prefect_ray", "mlflow", "vllm", "ray", "datasets",
                       "math_verify", "reasoning_gym", "gguf")
SITECUSTOMIZE = f"""import sys
for name in {ABSENT_ON_GPU_IMAGE!r}:
    sys.modules[name] = None  # import fails as if the package were not installed
"""


@pytest.mark.slow
def test_dry_run_round_without_the_orchestration_packages(tmp_path):
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "gpu_round.json"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'image'}{os.pathsep}{ROOT}",
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_round.py"), "--dry-run",
                           "--out", str(out), "--work-dir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [s["stage"] for s in result["stages"]] == [
        "prompts", "bootstrap reference", "sample rollouts", "score rollouts", "weights (DuckDB)",
        "weighted SFT (in this process)", "weighted SFT (torchrun, 1 process)",
        "evaluate reference", "evaluate policy", "projection-gap log-probs",
        "compare (sql/eval.sql)"]
    assert result["problems"] == []
    assert all(s["models_held_after"] == [] for s in result["stages"])
    assert result["sampler_dtype"] == "float32"  # `auto` on a CPU
    assert result["torchrun_loss_relative_gap"] <= 1e-4
    assert result["weights"]["train_prompts"] == 24
    assert 0 <= result["heldout"]["ref_accuracy"] <= 1
    assert result["provenance"]["command"].startswith("python bench/gpu_round.py --dry-run")


def test_the_sitecustomize_blocks_what_it_names(tmp_path):
    """The stand-in for the GPU image is real: a blocked package cannot be imported."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    done = subprocess.run([sys.executable, "-c", "import prefect"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=60)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


@pytest.mark.slow
def test_the_stage_functions_import_without_prefect():
    """The plain stage functions (bolt's API) never import Prefect or MLflow: their cached Prefect
    tasks live in the *_stage modules."""
    code = SITECUSTOMIZE + "import bolt, bolt_tasks.policy.torchrun, bolt_tasks.stages.comparison\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
