"""A run's id, its lock (held while it runs, free however it ended), the node changes it records, and a cleanup
that a stop signal interrupts (no cluster)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pytest

import kube_fakes
from hami_e2e.core import ownership
from hami_e2e.core.node_changes import change_node, undo_node_change, undo_run_change
from hami_e2e.core.ownership import NODE_CHANGES_ANNOTATION, RunLock, read_node_changes, run_is_alive


@pytest.fixture(autouse=True)
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(ownership.RUNS_DIR_ENV, str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_a_run_id_is_a_label_value_naming_start_host_and_process():
    run = ownership.new_run_id(datetime(2026, 11, 27, 4, 32, tzinfo=timezone.utc), pid=12345)
    assert run == f"20261127T043200Z-{ownership.host_name()}-12345"
    assert len(run) <= 63 and all(c.isalnum() or c in "-." for c in run)
    assert ownership.ownership_labels(run) == {"app.kubernetes.io/managed-by": "hami-e2e", "hami-e2e/run": run}


def test_a_run_is_alive_while_it_holds_its_lock_and_ended_after():
    run = ownership.new_run_id()
    assert not run_is_alive(run)  # never started
    lock = RunLock(run)
    lock.acquire()
    assert run_is_alive(run)
    lock.release()
    assert not run_is_alive(run)


def test_the_lock_of_a_killed_run_is_free_and_its_file_is_forgotten(runs_dir):
    run = ownership.new_run_id(pid=99999)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from hami_e2e.core.ownership import RunLock; "
        f"RunLock({run!r}).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_is_alive(run)
    finally:
        holder.kill()  # SIGKILL: nothing of the holder runs, the kernel drops its lock
        holder.wait()
    assert (runs_dir / f"{run}.lock").exists() and not run_is_alive(run)
    live = RunLock(ownership.new_run_id())
    live.acquire()
    assert ownership.forget_ended_runs() == [run]
    assert not (runs_dir / f"{run}.lock").exists() and live.path.exists()
    live.release()


def test_runs_of_another_machine_or_an_older_suite_version_count_as_ended():
    assert not run_is_alive("20261127T043200Z-another-machine-1")
    assert not run_is_alive("")
    assert not run_is_alive(None)


def test_a_node_change_is_recorded_with_the_first_value_and_undone():
    ctx = kube_fakes.context()
    nodes = kube_fakes.FakeNodes(n1={"cordon": "old", "foreign": "theirs"}).install(ctx)
    change_node(ctx.core, "run-a", "n1", "annotation", "cordon", "x")
    change_node(ctx.core, "run-a", "n1", "annotation", "cordon", "y")
    change_node(ctx.core, "run-a", "n1", "label", "gpu", None)  # a removal of an absent label is recorded too
    (cordon, gpu) = read_node_changes(nodes.nodes["n1"]["annotations"])
    assert (cordon.kind, cordon.key, cordon.before, cordon.value) == ("annotation", "cordon", "old", "y")
    assert (gpu.kind, gpu.key, gpu.before, gpu.value) == ("label", "gpu", None, None)
    assert undo_run_change(ctx.core, "run-a", "n1", "annotation", "cordon")
    assert undo_run_change(ctx.core, "run-a", "n1", "label", "gpu")
    assert nodes.nodes["n1"]["annotations"] == {"cordon": "old", "foreign": "theirs"}


def test_a_value_someone_else_changed_since_is_left_and_only_the_record_goes():
    ctx = kube_fakes.context()
    nodes = kube_fakes.FakeNodes(n1={}).install(ctx)
    change_node(ctx.core, "run-a", "n1", "annotation", "cordon", "x")
    nodes.nodes["n1"]["annotations"]["cordon"] = "set-by-an-operator"
    (change,) = read_node_changes(nodes.nodes["n1"]["annotations"])
    assert not undo_node_change(ctx.core, "n1", change)
    assert nodes.nodes["n1"]["annotations"] == {"cordon": "set-by-an-operator"}


def test_a_node_that_changed_between_read_and_patch_is_read_again():
    ctx = kube_fakes.context()
    nodes = kube_fakes.FakeNodes(n1={}).install(ctx)
    nodes.conflicts = 2  # HAMi rewrote its annotations twice in between
    change_node(ctx.core, "run-a", "n1", "label", "gpu", "off")
    assert nodes.nodes["n1"]["labels"] == {"gpu": "off"} and NODE_CHANGES_ANNOTATION in nodes.nodes["n1"]["annotations"]


class ExecutionFailed(Exception):
    """Stands in for robot.errors.ExecutionFailed, as Robot Framework's first stop signal raises it."""

    exit = True


def test_a_cleanup_interrupted_by_the_first_stop_signal_is_finished():
    ctx = kube_fakes.context()
    calls = []

    def undo():
        calls.append("undo")
        if len(calls) == 1:
            raise ExecutionFailed("Execution terminated by signal")

    ctx.track("namespace ns-1", undo)
    assert ctx.run_cleanups("test") == []
    assert calls == ["undo", "undo"] and ctx.cleanups == []


def test_a_cleanup_cut_short_by_the_second_signal_stays_tracked_for_the_exit_hook():
    ctx = kube_fakes.context()
    done = []
    ctx.track("namespace ns-1", lambda: done.append("ns-1"), scope="run")
    ctx.track("helm release hami", lambda: done.append("hami"), scope="suite")

    def interrupted():
        raise SystemExit  # what Robot Framework raises on the second SIGINT/SIGTERM

    ctx.track("annotation a on node n1", interrupted)
    with pytest.raises(SystemExit):
        ctx.run_cleanups("test")
    ctx.cleanups[-1].undo = lambda: done.append("a")  # the API answers again
    assert ctx.run_all_cleanups() == []
    assert done == ["a", "hami", "ns-1"] and ctx.cleanups == []
