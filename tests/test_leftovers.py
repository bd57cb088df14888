"""Leftovers of earlier runs are found by the run labels, never among objects without them, and never of a run
that still goes on (no cluster; tests/sandbox_e2e/test_aborted_runs.py removes real ones through robot)."""

from __future__ import annotations

import pytest

import kube_fakes
from hami_e2e.core import ownership
from hami_e2e.core.node_changes import change_node
from hami_e2e.keywords.leftovers import find_leftovers, remove_leftovers

ENDED = "20261126T010000Z-ended-run-111"  # another machine's run: counts as ended


@pytest.fixture(autouse=True)
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(ownership.RUNS_DIR_ENV, str(tmp_path / "runs"))


def namespace(name, labels):
    return kube_fakes.model({"metadata": {"name": name, "labels": labels}, "status": {"phase": "Active"}}, "V1Namespace")


def release_secret(release, namespace_name, version, run):
    labels = {"owner": "helm", "name": release, "version": str(version), "status": "deployed",
              "app.kubernetes.io/managed-by": "hami-e2e", "hami-e2e/run": run}
    return kube_fakes.model(
        {"metadata": {"name": f"sh.helm.release.v1.{release}.v{version}", "namespace": namespace_name,
                      "labels": labels}}, "V1Secret")


@pytest.fixture
def cluster():
    """An ended run's namespace, release and node change; a live run's namespace; foreign objects beside them."""
    live = ownership.new_run_id()
    lock = ownership.RunLock(live)
    lock.acquire()
    ctx = kube_fakes.context(helm_binary="helm")
    nodes = kube_fakes.FakeNodes(**{"gpu-node-0": {"team/owner": "them"}}).install(ctx)
    change_node(ctx.core, ENDED, "gpu-node-0", "annotation", "hami.io/device-cordon", "GPU-a")
    namespaces = [
        namespace("hami-e2e-vgpu-pods-abcde", ownership.ownership_labels(ENDED)),
        namespace("hami-e2e-old-version", {"app.kubernetes.io/managed-by": "hami-e2e"}),
        namespace("hami-e2e-live-fghij", ownership.ownership_labels(live)),
    ]
    ctx.core.list_namespace = lambda label_selector: kube_fakes.listing(
        [n for n in namespaces if n.metadata.labels.get("app.kubernetes.io/managed-by") == "hami-e2e"])
    ctx.core.list_secret_for_all_namespaces = lambda label_selector: kube_fakes.listing(
        [release_secret("hami", "hami-system", 1, ENDED), release_secret("hami", "hami-system", 2, ENDED)])
    ctx.core.list_node = lambda: kube_fakes.listing([nodes.read_node("gpu-node-0")])
    yield ctx, nodes, live
    lock.release()


def test_leftovers_are_what_ended_runs_left_and_only_that(cluster):
    ctx, _, live = cluster
    found = [str(item) for item in find_leftovers(kube_fakes.Keywords(ctx), current_run=live)]
    assert found == [
        f"helm release hami in hami-system (run {ENDED})",
        f"namespace hami-e2e-vgpu-pods-abcde (run {ENDED})",
        "namespace hami-e2e-old-version (run unknown)",
        f"annotation hami.io/device-cordon on node gpu-node-0 (run {ENDED})",
    ]


def test_removing_them_says_what_was_done_and_leaves_foreign_metadata_alone(cluster, monkeypatch):
    ctx, nodes, live = cluster
    monkeypatch.setattr("hami_e2e.keywords.leftovers.delete_namespace", lambda component, name, until_gone: None)
    runner = kube_fakes.FakeRunner()
    ctx.runner = runner
    done = remove_leftovers(kube_fakes.Keywords(ctx), current_run=live)
    assert done == [
        f"uninstalled helm release hami in hami-system (left by run {ENDED})",
        f"deleted namespace hami-e2e-vgpu-pods-abcde (left by run {ENDED})",
        "deleted namespace hami-e2e-old-version (left by run of an older suite version)",
        f"restored annotation hami.io/device-cordon on node gpu-node-0 (removed it) (left by run {ENDED})",
    ]
    assert runner.commands[0][:5] == ["helm", "uninstall", "hami", "-n", "hami-system"]
    assert nodes.nodes["gpu-node-0"]["annotations"] == {"team/owner": "them"}


def test_a_namespace_that_is_being_deleted_already_is_waited_for(monkeypatch):
    from kubernetes.client.exceptions import ApiException

    from hami_e2e.keywords.namespaces import delete_namespace

    monkeypatch.setattr("kubernetes.watch.Watch", kube_fakes.FakeWatchFactory([]))
    ctx = kube_fakes.context()
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[]])
    ctx.core.list_namespace = kube_fakes.FakeList([[]])

    def terminating(name, propagation_policy):
        raise ApiException(status=409, reason="Conflict")  # "The system is ensuring all content is removed …"

    ctx.core.delete_namespace = terminating
    delete_namespace(kube_fakes.Keywords(ctx), "hami-e2e-x", until_gone=True)
    assert ctx.core.list_namespace.calls[0]["field_selector"] == "metadata.name=hami-e2e-x"
