"""Every keyword of HamiLibrary is documented, tagged and has an example; importing the library needs no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from robot.libdoc import LibraryDocumentation

from HamiLibrary import HamiLibrary

LIBRARY = Path(__file__).resolve().parents[1] / "libraries" / "HamiLibrary.py"
DOC = LibraryDocumentation(str(LIBRARY))
KEYWORDS = {kw.name: kw for kw in DOC.keywords}


def test_the_library_has_its_keywords_and_an_introduction():
    assert len(KEYWORDS) > 60
    assert "= Namespaces and cleanup =" in DOC.doc and DOC.inits[0].doc


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_keyword_has_summary_example_and_tags(name):
    keyword = KEYWORDS[name]
    summary = " ".join(keyword.doc.strip().split("\n\n")[0].split()) if keyword.doc.strip() else ""
    assert summary, f"{name} has no documentation"
    assert summary.endswith("."), f"{name}: the first paragraph should be a summary sentence: {summary!r}"
    assert "Example" in keyword.doc, f"{name} has no example"
    assert keyword.tags, f"{name} has no tags"


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_every_argument_is_typed(name):
    untyped = [a.name for a in KEYWORDS[name].args if a.kind not in ("VAR_NAMED", "VAR_POSITIONAL") and not a.type]
    assert not untyped, f"{name}: untyped arguments {untyped}"


def test_import_does_not_touch_the_cluster(tmp_path):
    library = HamiLibrary(kubeconfig=str(tmp_path / "no-such-kubeconfig"), kube_context="nowhere")
    assert library.get_keyword_names()
    assert "api_client" not in library.ctx.__dict__ and "core" not in library.ctx.__dict__


def test_the_facade_is_a_global_listener():
    library = HamiLibrary()
    assert library.ROBOT_LIBRARY_SCOPE == "GLOBAL"
    assert [listener.ROBOT_LISTENER_API_VERSION for listener in library.ROBOT_LIBRARY_LISTENER] == [3, 3]
