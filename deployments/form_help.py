"""Help texts as the Prefect UI's "Custom run" form shows them.

The form renders each parameter's description (the configuration's field descriptions, through
the flow's parameter schema) as Markdown, which eats what BOLT's help texts are full of:
`runs/<pipeline>/round-<k>/` loses `<pipeline>` and `<k>` as HTML tags, and `eta*r*` or
`train_without_information` lose `*` and `_` to emphasis. Every description is therefore made
literal here: the Markdown punctuation that CommonMark (which the UI's renderer follows) and
Python-Markdown both take back from a backslash behind one, and `&`, `<`, `|` and `~` (HTML,
tables and strikethrough) as character references.
"""

from __future__ import annotations

BACKSLASHED = frozenset("\\`*_{}[]()#+-.!>")
REFERENCES = {"&": "&amp;", "<": "&lt;", "|": "&#124;", "~": "&#126;"}


def markdown_literal(text: str) -> str:
    """`text` as Markdown that renders to exactly `text`."""
    return "".join(REFERENCES.get(c) or ("\\" + c if c in BACKSLASHED else c) for c in text)


def literal_descriptions(schema):
    """A JSON schema (dicts and lists) with every `description` made literal."""
    if isinstance(schema, dict):
        return {key: markdown_literal(value) if key == "description" and isinstance(value, str)
                else literal_descriptions(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [literal_descriptions(item) for item in schema]
    return schema


def with_literal_help(deployment):
    """The deployment with its parameter form's help texts made literal. Prefect builds the
    schema from the flow's signature and offers no option for this, so it is rewritten on the
    deployment before it is served."""
    schema = deployment._parameter_openapi_schema
    schema.properties = literal_descriptions(schema.properties)
    schema.definitions = literal_descriptions(schema.definitions)
    return deployment
