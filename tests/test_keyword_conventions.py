"""The keyword conventions of docs/keyword-conventions.md hold for both libraries, and no keyword is unused.

* A keyword that waits says so: its name starts with ``Wait Until``, or it takes ``timeout`` and its documentation
  starts with "Waits up to".
* Every keyword that can fail on an expectation (``… Should …``, ``Wait Until …``) takes ``message``.
* The pod argument is ``pod``; suites and resources never pass ``${None}``.
* Every library keyword is used by a suite or a resource, or is allow-listed below with the reason it is kept.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from robot.libdoc import LibraryDocumentation

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = [LibraryDocumentation(str(REPO / "libraries" / name)) for name in ("HamiLibrary.py", "HostLibrary.py")]
KEYWORDS = {kw.name: kw for library in LIBRARIES for kw in library.keywords}
ROBOT_FILES = sorted([*(REPO / "suites").rglob("*.robot"), *(REPO / "resources").glob("*.resource")])

#: Library keywords no suite or resource calls, kept because testers need them; each with the reason.
KEPT_UNUSED: dict[str, str] = {}

#: Arguments called ``name`` that do not name a pod.
NAME_ARGUMENTS = {
    "Add Helm Repository": "the chart repository's name",
    "Add Container To Pod Spec": "the new container's name",
    "Set Up Container Given GPUs": "the imitated container's name",
    "Use Container": "the imitated container's name",
}


def _normalized(name: str) -> str:
    return re.sub(r"[\s_]", "", name).lower()


def _calls() -> set[str]:
    """Every cell of every suite and resource line, normalized as Robot Framework matches keyword names (a
    ``Library.`` prefix removed), minus the names the resources define."""
    cells: set[str] = set()
    defined: set[str] = set()
    for path in ROBOT_FILES:
        section = ""
        for line in path.read_text().splitlines():
            if line.startswith("***"):
                section = line.strip("* ").lower()
                continue
            if section == "keywords" and line and not line[0].isspace():
                defined.add(_normalized(line))
                continue
            for cell in re.split(r"\s{2,}|\t", line.strip()):
                cells.add(_normalized(cell.split(".", 1)[-1]) if "." in cell and " " not in cell else _normalized(cell))
                cells.add(_normalized(cell))
    return cells


CALLS = _calls()


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_a_keyword_that_waits_says_so(name):
    keyword = KEYWORDS[name]
    arguments = {a.name for a in keyword.args}
    doc = keyword.doc.strip()
    if name.startswith("Wait Until"):
        assert "timeout" in arguments, f"{name} waits but takes no timeout"
        assert doc.startswith("Waits up to"), f"{name}: the documentation should start with 'Waits up to'"
    elif "timeout" in arguments:
        assert doc.startswith("Waits up to ``timeout``"), (
            f"{name} takes a timeout: name it 'Wait Until …' or start its documentation with 'Waits up to ``timeout``'"
        )


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_a_keyword_that_can_fail_on_an_expectation_takes_message(name):
    if " Should " in f" {name} " or name.startswith("Wait Until"):
        assert "message" in {a.name for a in KEYWORDS[name].args}, f"{name} takes no message= argument"


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_the_pod_argument_is_called_pod(name):
    arguments = {a.name for a in KEYWORDS[name].args}
    assert "pod_name" not in arguments
    if "name" in arguments:
        assert name in NAME_ARGUMENTS, f"{name} has an argument 'name': a pod is 'pod'; anything else needs a reason"


def test_suites_and_resources_pass_no_none_placeholders():
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in ROBOT_FILES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "=${None}" in line.replace(" ", "") and "[Arguments]" not in line  # a default is no placeholder
    ]
    assert not offenders, f"say what is meant with a keyword instead of passing ${{None}}: {offenders}"


def test_every_library_keyword_is_used_or_kept_with_a_reason():
    unused = sorted(name for name in KEYWORDS if _normalized(name) not in CALLS and name not in KEPT_UNUSED)
    assert not unused, (
        f"no suite or resource uses {unused}: delete them, or use them (suites/80__examples.robot shows the "
        "building blocks), or add them to KEPT_UNUSED with the reason a tester needs them"
    )


def test_the_kept_list_holds_only_unused_existing_keywords():
    stale = sorted(name for name in KEPT_UNUSED if name not in KEYWORDS or _normalized(name) in CALLS)
    assert not stale, f"remove from KEPT_UNUSED (used now, or gone): {stale}"
