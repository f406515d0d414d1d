#!/usr/bin/env bash
# What a user sees, photographed by a real headless browser: a `bolt run` against a Prefect
# server, then the flow run's page and its markdown artifact in the Prefect UI, and the round's
# experiment, the run, its tables, plots and logged model in the MLflow UI, each in a fresh
# browser profile. Writes docs/screenshots/*.png.
# Needs Chromium from Debian's packages: apt-get install chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
work=$(mktemp -d)
mkdir -p "$out"
export PREFECT_HOME=$work/prefect PREFECT_API_URL=http://127.0.0.1:4310/api
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=true
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

wait_for() {  # URL: until it answers (3 minutes at most)
  for _ in $(seq 180); do curl -sf "$1" > /dev/null && return 0; sleep 1; done
  echo "no answer from $1" >&2; return 1
}

.venv/bin/prefect server start --host 127.0.0.1 --port 4310 > "$work/prefect.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:4310/api/health
.venv/bin/bolt run --runs-dir "$work/runs" --pipeline default
.venv/bin/bolt ui --runs-dir "$work/runs" --host 127.0.0.1 --port 5310 > "$work/bolt-ui.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:5310/health

read -r flow_run artifact experiment run model < <(.venv/bin/python - "$work/runs" <<'PY'
import asyncio, sys
from pathlib import Path
import mlflow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

client = mlflow.MlflowClient(f"sqlite:///{Path(sys.argv[1]) / 'mlflow.db'}")
[run] = client.search_runs([client.get_experiment_by_name("bolt-default").experiment_id])

async def artifact_id():
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["bolt-default-round-0"])))
        return found[0].id

[model] = client.search_logged_models(experiment_ids=[run.info.experiment_id])
print(run.data.tags["prefect.flow_run_id"], asyncio.run(artifact_id()), run.info.experiment_id,
      run.info.run_id, model.model_id)
PY
)

shoot() {  # NAME URL [WIDTH,HEIGHT]
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size="${3:-1440,1000}" \
    --run-all-compositor-stages-before-draw \
    --virtual-time-budget=40000 --screenshot="$out/$1.png" "$2" 2> /dev/null
  echo "$out/$1.png <- $2"
}
shoot prefect-flow-run "http://127.0.0.1:4310/runs/flow-run/$flow_run"
shoot prefect-artifact "http://127.0.0.1:4310/artifacts/artifact/$artifact"
# Each shot is a fresh browser profile: what a new user sees on following the link.
ml="http://127.0.0.1:5310/#/experiments/$experiment"
mode="workflowType=machine_learning"
shoot mlflow-experiment "$ml?$mode"
shoot mlflow-run "$ml/runs/$run?$mode" 1440,2900  # tall: its logged model is at the bottom
shoot mlflow-metrics "$ml/runs/$run/model-metrics?$mode"
shoot mlflow-eval-table "$ml/runs/$run/artifacts/tables/eval.json?$mode"
shoot mlflow-weights-plot "$ml/runs/$run/artifacts/weights.png?$mode"
shoot mlflow-model "$ml/models/$model?$mode"
