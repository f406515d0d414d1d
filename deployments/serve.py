"""Serve BOLT's flows as Prefect deployments, so rounds can be triggered from the Prefect UI.

    prefect server start --host 127.0.0.1          # in one terminal
    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py

The UI then shows `bolt-round/bolt-round` with the RoundConfig form (every field's help text
comes from bolt_tasks/config.py). Runs execute in this serving process.
"""

from bolt_tasks.runtime import configure_environment

configure_environment()

from prefect import serve  # noqa: E402

from flows.bootstrap import bootstrap_reference  # noqa: E402
from flows.round import bolt_round  # noqa: E402

if __name__ == "__main__":
    serve(
        bolt_round.to_deployment(
            name="bolt-round",
            description="One BOLT round: sample, score, weight (SQL), weighted SFT, evaluate.",
            tags=["bolt"],
        ),
        bootstrap_reference.to_deployment(
            name="bolt-bootstrap",
            description="Build the embedded reference policy (cached per recipe).",
            tags=["bolt"],
        ),
    )
