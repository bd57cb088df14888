"""Which HAMi release a run tests: ``HAMI_CHART_VERSION`` from the variables in effect, as robot would see it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml
from robot.utils import normalize, split_args_from_name_or_path

VARIABLE = "HAMI_CHART_VERSION"
UNKNOWN = "unknown"


def release_name(explicit: str | None, variable_files: list[str], variables: list[str]) -> str:
    """The archive folder name for a run: ``--release``, else ``HAMI_CHART_VERSION``, else ``unknown``.

    Robot's precedence applies: a ``--variable`` beats every variable file, and among variable files the
    one given first wins.
    """
    value = explicit or from_cli_variables(variables) or from_variable_files(variable_files)
    return safe_folder_name(str(value)) if value not in (None, "") else UNKNOWN


def from_cli_variables(variables: list[str]) -> str | None:
    """``HAMI_CHART_VERSION`` from ``--variable NAME:value`` (or RF 7.3 ``NAME: type:value``); the last one wins."""
    found = None
    for item in variables:
        match = re.fullmatch(r"([^:]+): ([^:]+):(.*)", item) or re.fullmatch(r"([^:]+)():(.*)", item)
        if match and _is_release_variable(match.group(1)):
            found = match.group(3)
    return found


def from_variable_files(variable_files: list[str]) -> str | None:
    for spec in variable_files:
        path, args = split_args_from_name_or_path(spec)
        try:
            items = _read_variable_file(Path(path), args)
        except Exception as error:  # noqa: BLE001 - robot itself reports broken variable files
            print(f"[ WARN ] Could not read {VARIABLE} from variable file '{spec}': {error}", file=sys.stderr)
            continue
        for name, value in items:
            if _is_release_variable(name) and value not in (None, ""):
                return str(value)
    return None


def _read_variable_file(path: Path, args: list[str]) -> list[tuple[str, object]]:
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    elif suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
    else:  # a Python variable file (or module name), imported the way robot imports it
        from robot.variables.filesetter import PythonImporter

        return [(name, value) for name, value in PythonImporter().import_variables(str(path), args)]
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping at the top level, got {type(data).__name__}")
    return [(str(name), value) for name, value in data.items()]


def _is_release_variable(name: str) -> bool:
    """Match the name the way robot does: ``HAMI_CHART_VERSION``, ``${hami chart version}``, ``X: str`` ..."""
    name = name.strip()
    if name[:2] in ("${", "@{", "&{", "%{") and name.endswith("}"):
        name = name[2:-1]
    name = name.split(": ", 1)[0]
    return normalize(name, ignore="_") == normalize(VARIABLE, ignore="_")


def safe_folder_name(value: str) -> str:
    """``v2.6.0`` stays as is; anything that is not a safe path segment becomes ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", value.strip()).strip(".")
    return cleaned or UNKNOWN
