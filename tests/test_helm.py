"""The Helm and component keywords against a fake helm runner and mocked kube API (no helm, no cluster)."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

import kube_fakes
from hami_e2e.core.errors import HamiE2EFailure, HelmFailure
from kubernetes.client.exceptions import ApiException
from hami_e2e.keywords.components import _daemonset_ready, _deployment_ready

DEPLOYED = json.dumps(
    [{"name": "hami", "namespace": "hami-system", "revision": "3", "status": "deployed", "chart": "hami-2.10.0",
      "app_version": "2.10.0"}]
)


@pytest.fixture
def runner():
    fake = kube_fakes.FakeRunner()
    fake.add(["list"], stdout="[]")
    return fake


@pytest.fixture
def ctx(runner):
    ctx = kube_fakes.context(runner=runner, kubeconfig="/tmp/kc", kube_context="lab", helm_binary="/opt/helm")
    ctx.run_id = "20261127T000000Z-host-1"
    ctx.core.created = ["hami-system"]  # HAMi's namespace exists; a test clears this to see it created

    def read_namespace(name):
        if name not in ctx.core.created:
            raise ApiException(status=404, reason="Not Found")

    ctx.core.read_namespace = read_namespace
    ctx.core.create_namespace = lambda body: ctx.core.created.append(body["metadata"]["name"]) or body
    return ctx


@pytest.fixture
def helm(ctx):
    return kube_fakes.Keywords(ctx)


def helm_calls(runner, verb):
    return [c for c in runner.commands if c[1] == verb]


def test_install_from_a_repo_pins_the_version_and_passes_values(helm, runner, ctx):
    ctx.core.created.clear()
    helm.install_hami_chart(
        "hami-charts/hami",
        version="2.10.0",
        values_files=["lab.yaml"],
        set_values={"scheduler.leaderElect": "false"},
        wait_ready=False,
    )
    (install,) = helm_calls(runner, "install")
    assert install == [
        "/opt/helm", "install", "hami", "hami-charts/hami", "-n", "hami-system",
        "--labels", "app.kubernetes.io/managed-by=hami-e2e,hami-e2e/run=20261127T000000Z-host-1",
        "--version", "2.10.0", "-f", "lab.yaml", "--set", "scheduler.leaderElect=false", "--timeout", "2s",
        "--kubeconfig", "/tmp/kc", "--kube-context", "lab",
    ]
    assert ctx.core.created == ["hami-system"]  # labelled as the run's, and deleted after the release
    assert [c.description for c in ctx.cleanups] == ["namespace hami-system", "helm release hami in hami-system"]
    assert ctx.cleanups[1].scope == "suite:Suites.Unit" and ctx.cleanups[1].keepable


def test_an_existing_namespace_is_neither_created_nor_deleted(helm, ctx):
    helm.install_hami_chart("hami-charts/hami", wait_ready=False)
    assert ctx.core.created == ["hami-system"]
    assert [c.description for c in ctx.cleanups] == ["helm release hami in hami-system"]


def test_a_release_whose_install_failed_or_was_stopped_is_still_uninstalled(helm, runner, ctx):
    runner.add(["install"], rc=1, stderr="Error: INSTALLATION FAILED: context deadline exceeded")
    with pytest.raises(HelmFailure):
        helm.install_hami_chart("hami-charts/hami", wait_ready=False)
    runner.add(["uninstall"], rc=1, stderr="Error: uninstall: Release not loaded: hami: release: not found")
    assert ctx.run_cleanups("suite") == []  # "not found": nothing left to remove, which is no error
    assert [c[1] for c in runner.commands if c[1] == "uninstall"] == ["uninstall"]


def test_install_from_an_oci_reference_also_pins_the_version(helm, runner):
    helm.install_hami_chart("oci://registry.example/charts/hami", version="2.10.0", wait_ready=False)
    (install,) = helm_calls(runner, "install")
    assert install[install.index("--version") + 1] == "2.10.0"


def test_local_chart_gets_no_version_flag_but_the_deployed_version_is_checked(helm, runner, tmp_path):
    chart = tmp_path / "hami"
    chart.mkdir()
    listings = iter(["[]", DEPLOYED.replace("2.10.0", "2.9.0")])  # before and after the install

    def run(command, timeout):
        runner.commands.append(command)
        stdout = next(listings) if command[1] == "list" else ""
        return kube_fakes.CommandResult(command, 0, stdout, "")

    helm.ctx.runner = run
    with pytest.raises(HamiE2EFailure, match="runs chart hami-2.9.0, expected version 2.10.0"):
        helm.install_hami_chart(str(chart), version="2.10.0", wait_ready=False)
    (install,) = helm_calls(runner, "install")
    assert "--version" not in install


def test_install_refuses_an_existing_release(helm, runner):
    runner.add(["list"], stdout=DEPLOYED)
    with pytest.raises(HamiE2EFailure, match="release hami already exists in hami-system .chart hami-2.10.0"):
        helm.install_hami_chart("hami-charts/hami", version="2.10.0")
    assert helm_calls(runner, "install") == []


def test_failed_install_carries_helm_stderr_and_helm_status(helm, runner):
    runner.add(["install"], rc=1, stderr="Error: INSTALLATION FAILED: context deadline exceeded")
    runner.add(["status"], rc=0, stdout="NAME: hami\nSTATUS: failed")
    with pytest.raises(HelmFailure) as failure:
        helm.install_hami_chart("hami-charts/hami", version="2.10.0", wait_ready=False)
    text = str(failure.value)
    assert "`helm install hami` failed (rc=1)" in text
    assert "helm stderr: Error: INSTALLATION FAILED: context deadline exceeded" in text
    assert "helm status: NAME: hami\nSTATUS: failed" in text


def test_never_uninstall_and_run_scope(helm, ctx):
    helm.install_hami_chart("hami-charts/hami", uninstall_after="never", wait_ready=False)
    assert ctx.cleanups == []
    helm.installed.clear()
    helm.install_hami_chart("hami-charts/hami", release="other", uninstall_after="run", wait_ready=False)
    assert [c.scope for c in ctx.cleanups] == ["run"]


def test_tracked_uninstall_runs_helm_uninstall(helm, runner, ctx):
    helm.install_hami_chart("hami-charts/hami", wait_ready=False)
    assert ctx.run_cleanups("suite") == []
    (uninstall,) = helm_calls(runner, "uninstall")
    assert uninstall[:5] == ["/opt/helm", "uninstall", "hami", "-n", "hami-system"]


def test_upgrade_reuses_the_installed_chart_and_values_and_returns_the_revision(helm, runner):
    helm.install_hami_chart("hami-charts/hami", version="2.10.0", wait_ready=False)
    runner.add(["list"], stdout=DEPLOYED)
    assert helm.upgrade_hami_release(set_values={"devicePlugin.deviceSplitCount": "5"}, wait_ready=False) == 3
    (upgrade,) = helm_calls(runner, "upgrade")
    assert upgrade[:6] == ["/opt/helm", "upgrade", "hami", "hami-charts/hami", "-n", "hami-system"]
    assert "--reuse-values" in upgrade and upgrade[upgrade.index("--version") + 1] == "2.10.0"
    assert "devicePlugin.deviceSplitCount=5" in upgrade


def test_upgrade_without_a_known_chart_says_what_to_pass(helm):
    with pytest.raises(HamiE2EFailure, match="pass chart="):
        helm.upgrade_hami_release(wait_ready=False)


def test_rollback_to_previous_or_given_revision(helm, runner):
    runner.add(["list"], stdout=DEPLOYED)
    helm.rollback_hami_release(wait_ready=False)
    helm.rollback_hami_release(revision=1, wait_ready=False)
    first, second = helm_calls(runner, "rollback")
    assert first[2:5] == ["hami", "-n", "hami-system"] and second[2:4] == ["hami", "1"]


def test_uninstall_forgets_the_cleanup_and_waits_for_the_pods(helm, runner, ctx, monkeypatch):
    helm.install_hami_chart("hami-charts/hami", wait_ready=False)
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[]])
    helm.uninstall_hami_release()
    assert ctx.cleanups == [] and helm.installed == {}
    assert ctx.core.list_namespaced_pod.calls[0]["label_selector"] == "app.kubernetes.io/instance=hami"


def test_status_assertions(helm, runner):
    runner.add(["list"], stdout=DEPLOYED)
    assert helm.get_hami_release_status()["chart"] == "hami-2.10.0"
    helm.hami_release_status_should_be("deployed")
    helm.hami_release_chart_version_should_be("2.10.0")
    with pytest.raises(HelmFailure, match="Release hami is deployed, expected failed"):
        helm.hami_release_status_should_be("failed")
    runner.add(["list"], stdout="[]")
    with pytest.raises(HamiE2EFailure, match="does not exist in namespace hami-system"):
        helm.get_hami_release_status()


def test_missing_helm_binary_is_explained(helm, ctx):
    ctx.runner = kube_fakes.context().runner  # the real runner
    ctx.helm_binary = "/nonexistent/helm"
    with pytest.raises(HamiE2EFailure, match="helm is not usable as '/nonexistent/helm' .rc=127."):
        helm.get_helm_version()


def workload(kind, generation=2, **status):
    return SimpleNamespace(
        metadata=SimpleNamespace(generation=generation, name=f"hami-{kind}"),
        spec=SimpleNamespace(replicas=1, template=SimpleNamespace(spec=SimpleNamespace(node_selector={"gpu": "on"}))),
        status=SimpleNamespace(conditions=[], **status),
    )


def test_deployment_readiness_needs_the_new_generation_fully_available():
    ready = dict(observed_generation=2, updated_replicas=1, ready_replicas=1, available_replicas=1, replicas=1)
    assert _deployment_ready(workload("scheduler", **ready))
    assert not _deployment_ready(workload("scheduler", **{**ready, "observed_generation": 1}))
    assert not _deployment_ready(workload("scheduler", **{**ready, "replicas": 2}))  # old pod still there


def test_daemonset_readiness_needs_at_least_one_node():
    ready = dict(observed_generation=2, desired_number_scheduled=2, updated_number_scheduled=2, number_ready=2)
    assert _daemonset_ready(workload("device-plugin", **ready))
    assert not _daemonset_ready(workload("device-plugin", **{**ready, "number_ready": 1}))
    assert not _daemonset_ready(
        workload("device-plugin", **{**ready, "desired_number_scheduled": 0, "updated_number_scheduled": 0,
                                     "number_ready": 0})
    )


def test_readiness_wait_explains_a_daemonset_without_gpu_nodes(helm, ctx, monkeypatch):
    monkeypatch.setattr("kubernetes.watch.Watch", kube_fakes.FakeWatchFactory([]))
    ready = dict(observed_generation=2, updated_replicas=1, ready_replicas=1, available_replicas=1, replicas=1)
    ctx.apps.list_namespaced_deployment = kube_fakes.FakeList([[workload("scheduler", **ready)]])
    empty = workload("device-plugin", observed_generation=2, desired_number_scheduled=0, updated_number_scheduled=0,
                     number_ready=0)
    ctx.apps.list_namespaced_daemon_set = kube_fakes.FakeList([[empty]])
    with pytest.raises(HamiE2EFailure, match=r"No node matches its nodeSelector \{'gpu': 'on'\}"):
        helm.wait_until_hami_components_are_ready(timeout=timedelta(milliseconds=100))
    assert ctx.apps.list_namespaced_daemon_set.calls[0]["field_selector"] == "metadata.name=hami-device-plugin"


def test_restart_waits_for_fresh_ready_pods(helm, ctx, monkeypatch):
    old = kube_fakes.pod(name="hami-scheduler-abc")
    new = kube_fakes.pod(name="hami-scheduler-def")
    deleted = []
    ctx.core.list_namespaced_pod = kube_fakes.FakeList([[old], [old]])
    ctx.core.delete_namespaced_pod = lambda name, namespace: deleted.append(name)
    monkeypatch.setattr(
        "kubernetes.watch.Watch", kube_fakes.FakeWatchFactory([[("DELETED", old), ("ADDED", new)]])
    )
    assert helm.restart_hami_scheduler() == ["hami-scheduler-def"]
    assert deleted == ["hami-scheduler-abc"]
    assert ctx.core.list_namespaced_pod.calls[0]["label_selector"] == (
        "app.kubernetes.io/component=hami-scheduler,app.kubernetes.io/instance=hami"
    )
