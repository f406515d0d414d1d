"""The Prefect form's help texts keep every character: each field's description is rendered as
the form renders it (Markdown to HTML, shown as text) and compared with the description as
written in the configuration."""

import html
import re

import markdown
import pytest
from prefect.utilities.callables import parameter_schema

from deployments.form_help import markdown_literal
from deployments.serve import build_deployments
from flows.experiments import (
    experiment_frontier,
    experiment_refresh,
    experiment_saturation,
    experiment_target_match,
)
from flows.frontier import bolt_frontier
from flows.refresh import bolt_refresh
from flows.round import bolt_round

FLOWS = [bolt_round, bolt_refresh, bolt_frontier, experiment_target_match, experiment_saturation,
         experiment_refresh, experiment_frontier]


def as_the_form_shows(description: str) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", "", markdown.markdown(description)))
    return " ".join(text.split())


def descriptions(schema) -> list[str]:
    if isinstance(schema, dict):
        return [found for key, value in schema.items()
                for found in ([value] if key == "description" and isinstance(value, str) else descriptions(value))]
    if isinstance(schema, list):
        return [found for item in schema for found in descriptions(item)]
    return []


def written(flow) -> list[str]:
    return descriptions(parameter_schema(flow).model_dump())


@pytest.mark.parametrize("flow", FLOWS, ids=lambda flow: flow.name)
def test_every_help_text_renders_as_written(flow):
    lost = [d for d in written(flow) if as_the_form_shows(markdown_literal(d)) != " ".join(d.split())]
    assert not lost, lost[:3]


def test_unescaped_the_help_texts_lose_characters():
    """What the escaping is for, so that the test above can fail: as Prefect gets them from the
    flow, these render without `<pipeline>`, `*` or `_`."""
    lost = [d for d in written(bolt_round) + written(bolt_refresh) if as_the_form_shows(d) != " ".join(d.split())]
    assert any("<pipeline>" in d for d in lost) and any("*" in d for d in lost) and any("_" in d for d in lost)


def test_the_deployments_serve_the_literal_help_texts(tmp_path):
    served = {d.name: descriptions(d._parameter_openapi_schema.model_dump())
              for d in build_deployments(str(tmp_path), keep_schedule_state=False)}
    assert served["bolt-round"] == [markdown_literal(d) for d in written(bolt_round)]
    assert served["bolt-refresh"] == [markdown_literal(d) for d in written(bolt_refresh)]
