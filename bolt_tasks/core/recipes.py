"""Recipes: configurations checked in as JSON files, to copy, diff and version.

A round recipe is a RoundConfig's fields (any subset). A refresh recipe is one object with
`refresh` (a RefreshConfig's fields) and an optional `schedule` (when the served `bolt-refresh`
deployment runs). The recipes that ship with BOLT live in `recipes/` (installed as the package
`bolt_recipes`) and can be named without their folder or suffix: `smollm2`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydantic import Field

from bolt_tasks.core.config import RefreshConfig, RoundConfig, _Frozen, validated
from bolt_tasks.core.errors import BoltInputError

RECIPES_PACKAGE = "bolt_recipes"
DEFAULT_REFRESH_CRON = "0 3 * * *"
DEFAULT_TIMEZONE = "UTC"


class ScheduleConfig(_Frozen):
    """When the served `bolt-refresh` deployment runs (bolt serve)."""

    cron: str = Field(DEFAULT_REFRESH_CRON, description="Cron expression, e.g. '0 3 * * *' (03:00 daily).")
    interval_seconds: float | None = Field(
        None, gt=0, description="Instead of cron: run every this many seconds.")
    timezone: str = Field(DEFAULT_TIMEZONE, description="IANA time zone of the cron expression.")
    active: bool = Field(
        False, description="Whether the schedule is on when the deployment is first created; "
        "afterwards the state set in the Prefect UI is kept.")


class RefreshRecipe(_Frozen):
    """Refreshed rounds and the schedule that adds them."""

    refresh: RefreshConfig = Field(default_factory=RefreshConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)


def shipped_recipes() -> list[str]:
    """Names of the recipes that ship with BOLT."""
    folder = resources.files(RECIPES_PACKAGE)
    return sorted(entry.name.removesuffix(".json") for entry in folder.iterdir()
                  if entry.name.endswith(".json"))


def _locate(name_or_path: str | Path):
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".json" or len(path.parts) > 1:
        return path
    shipped = resources.files(RECIPES_PACKAGE).joinpath(f"{path.name}.json")
    if shipped.is_file():
        return shipped
    raise BoltInputError(f"{name_or_path}: no such file, and no shipped recipe of that name "
                         f"(shipped: {', '.join(shipped_recipes())})")


def read_recipe_file(name_or_path: str | Path) -> dict:
    """The JSON object of a configuration file or shipped recipe, with errors that name it."""
    source = _locate(name_or_path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BoltInputError(f"{source}: not a UTF-8 text file of JSON") from None
    except OSError as error:
        raise BoltInputError(f"{source}: cannot read configuration ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise BoltInputError(f"{source} line {error.lineno}: malformed JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise BoltInputError(f"{source}: a configuration is one JSON object of fields, not a "
                             f"{type(data).__name__}")
    return data


def is_refresh_recipe(data: dict) -> bool:
    return "refresh" in data


def load_recipe(name_or_path: str | Path) -> RoundConfig | RefreshRecipe:
    """A recipe file (or shipped recipe name) validated: a RoundConfig or a RefreshRecipe."""
    data = read_recipe_file(name_or_path)
    if is_refresh_recipe(data):
        return validated(RefreshRecipe, data, f"refresh recipe {name_or_path}")
    return validated(RoundConfig, data, f"configuration {name_or_path}")
