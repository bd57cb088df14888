"""tools/reliability.py's figures: flaky means passed and failed, a failure the stop caused is no verdict, a SIGKILL
run's objects must be gone after the next run, and the baseline comparison ignores what changes by itself."""

from __future__ import annotations

from types import SimpleNamespace

import reliability
from reliability import Run, summarize


def test_flaky_is_a_test_that_passed_in_one_run_and_failed_in_another():
    runs = [Run(1, tests={"S.A": "PASS", "S.B": "PASS"}), Run(2, tests={"S.A": "FAIL", "S.B": "STOPPED"},
                                                               messages={"S.A": "Pod x did not run"})]
    summary = summarize(runs)
    assert summary["flaky"] == ["S.A"]
    assert summary["failures_by_test"] == {"S.A": ["run 2: Pod x did not run"]}


def test_leftovers_of_a_killed_run_count_only_when_the_next_run_keeps_them():
    killed = Run(1, signal="KILL", stopped_at=5.0, leftovers=["namespace n (run r, Active)"])
    cleaned = Run(2)
    assert summarize([killed, cleaned])["runs_with_leftovers"] == 0
    assert summarize([killed, cleaned])["kill_leftovers_kept_by_the_next_run"] == []
    kept = Run(2, leftovers=["namespace n (run r, Active)"])
    summary = summarize([killed, kept])
    assert summary["runs_with_leftovers"] == 1 and summary["kill_leftovers_kept_by_the_next_run"] == [
        "namespace n (run r, Active)"]
    graceful = Run(3, signal="INT", stopped_at=5.0, leftovers=["namespace m (run q, Active)"])
    assert summarize([graceful])["runs_with_leftovers"] == 1
    assert summarize([graceful])["aborted_by"] == {"INT": 1}


def test_node_metadata_that_changes_by_itself_is_not_compared():
    node = SimpleNamespace(metadata=SimpleNamespace(
        name="gpu-node-0", labels={"gpu": "on"},
        annotations={"hami.io/node-handshake": "Requesting_2026", "hami.io/node-nvidia-register": "[]",
                     "hami.io/device-cordon": "GPU-a", "node.alpha.kubernetes.io/ttl": "0"}))
    core = SimpleNamespace(
        list_node=lambda: SimpleNamespace(items=[node]),
        list_namespace=lambda **kwargs: SimpleNamespace(items=[]),
        list_secret_for_all_namespaces=lambda **kwargs: SimpleNamespace(items=[]),
    )
    assert reliability.snapshot(core)["nodes"] == {
        "gpu-node-0": {"label gpu": "on", "annotation hami.io/device-cordon": "GPU-a"}}
