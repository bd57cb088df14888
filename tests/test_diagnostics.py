"""Diagnostics, secret scrubbing, the HAMi log scan and the listener (mocked kube client, no cluster)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from kubernetes.client.exceptions import ApiException

import kube_fakes
from hami_e2e.keywords import diagnostics as diagnostics_module
from hami_e2e.keywords.diagnostics import DiagnosticsKeywords, scan_for_errors, scrub_object, scrub_text
from hami_e2e.core.errors import HamiE2EFailure
from hami_e2e.core.listener import HamiListener


class Recorder:
    """Stands in for robot.api.logger: keeps what would go to log.html."""

    def __init__(self):
        self.messages: list[tuple[str, str]] = []

    def info(self, message, html=False):
        self.messages.append(("INFO", message))

    def warn(self, message, html=False):
        self.messages.append(("WARN", message))

    def debug(self, message, html=False):
        self.messages.append(("DEBUG", message))

    def text(self, level=None):
        return "\n".join(m for lvl, m in self.messages if level in (None, lvl))


@pytest.fixture
def log(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(diagnostics_module, "logger", recorder)
    monkeypatch.setattr("hami_e2e.core.listener.logger", recorder)
    monkeypatch.setattr("hami_e2e.keywords.run_control.logger", recorder)
    monkeypatch.setattr("hami_e2e.core.context.logger", recorder)
    return recorder


# ------------------------------------------------------------------------------------------ scrubbing


@pytest.mark.parametrize(
    "text, secret",
    [
        ("token: eyJhbGciOiJSUzI1NiIs.abc", "eyJhbGciOiJSUzI1NiIs.abc"),
        ("    client-key-data: LS0tLS1CRUdJTi==", "LS0tLS1CRUdJTi=="),
        ('{"password": "hunter2", "user": "admin"}', "hunter2"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("--set global.registryPassword=s3cr3t", "s3cr3t"),
        ("client-certificate-data: MIIC", "MIIC"),
    ],
)
def test_secret_values_are_masked_in_text(text, secret):
    scrubbed = scrub_text(text)
    assert secret not in scrubbed and "<redacted>" in scrubbed


def test_ordinary_text_is_left_alone():
    text = "hami.io/vgpu-devices-allocated: GPU-1,NVIDIA,3000,30:;\nmountPath: /var/run/secrets/kubernetes.io"
    assert scrub_text(text) == text


def test_objects_mask_secret_fields_and_secret_env_values_only():
    pod = {
        "spec": {
            "containers": [
                {"env": [{"name": "HF_TOKEN", "value": "hf_abc"}, {"name": "MODE", "value": "x"}]},
            ],
            "volumes": [{"projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
        },
        "data": {"password": "p", "nested": {"apiKey": "k"}},
    }
    scrubbed = scrub_object(pod)
    env = scrubbed["spec"]["containers"][0]["env"]
    assert env == [{"name": "HF_TOKEN", "value": "<redacted>"}, {"name": "MODE", "value": "x"}]
    assert scrubbed["data"] == {"password": "<redacted>", "nested": {"apiKey": "<redacted>"}}
    assert scrubbed["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"] == {"path": "token"}
    assert pod["data"]["password"] == "p"  # the original is untouched


# ------------------------------------------------------------------------------------------ log scan


def test_scan_finds_panics_and_klog_errors_and_strips_cri_prefixes():
    text = "\n".join(
        [
            "I0824 12:00:00.000000 1 scheduler.go:1] ok",
            "2026-11-24T02:00:00.1Z stderr F E0824 12:00:01.000000 1 score.go:9] calcScore failed",
            "panic: runtime error: invalid memory address",
            "W0824 12:00:02.000000 1 x.go:1] Failed to something",
            "goroutine 1 [running]: no panics here? yes panic word",
        ]
    )
    assert scan_for_errors(text) == [
        "E0824 12:00:01.000000 1 score.go:9] calcScore failed",
        "panic: runtime error: invalid memory address",
        "goroutine 1 [running]: no panics here? yes panic word",
    ]
    assert scan_for_errors(text, [r"Failed to"]) == ["W0824 12:00:02.000000 1 x.go:1] Failed to something"]


def hami_pod(name, component, node="gpu-node-0"):
    return kube_fakes.pod(
        name=name,
        node=node,
        labels={"app.kubernetes.io/component": component},
        containers=[{"name": "vgpu-scheduler-extender", "image": "projecthami/hami:v2.10.0"}],
    )


@pytest.fixture
def ctx():
    ctx = kube_fakes.context()
    ctx.hami.namespace = "hami-system"
    return ctx


def test_scan_warns_per_hit_since_the_suite_started(ctx, log, tmp_path):
    local = tmp_path / "hami-scheduler.log"
    local.write_text("E0101 00:00:00.000000 1 a.go:1] local boom\n")
    seen = {}
    ctx.core.list_namespaced_pod = lambda namespace, label_selector: kube_fakes.listing(
        [hami_pod("hami-scheduler-1", "hami-scheduler")]
    )

    def logs(name, namespace, **kwargs):
        seen.update(kwargs)
        return "I0101 ok\npanic: boom\n"

    ctx.core.read_namespaced_pod_log = logs
    ctx.suite_started["Suites.Unit"] = datetime.now(timezone.utc) - timedelta(seconds=30)
    hits = DiagnosticsKeywords(ctx).scan_hami_component_logs_for_errors(local_files=[str(local)])
    assert hits == [
        "hami-scheduler-1/vgpu-scheduler-extender: panic: boom",
        f"{local}: E0101 00:00:00.000000 1 a.go:1] local boom",
    ]
    assert 30 <= seen["since_seconds"] <= 35
    assert log.text("WARN").count("HAMi log:") == 2


def test_scan_can_fail_and_survives_an_unreachable_cluster(ctx, log):
    ctx.core.list_namespaced_pod = lambda namespace, label_selector: kube_fakes.listing(
        [hami_pod("hami-device-plugin-x", "hami-device-plugin")]
    )
    ctx.core.read_namespaced_pod_log = lambda name, namespace, **kwargs: "panic: boom"
    with pytest.raises(HamiE2EFailure, match="1 error line.s. in HAMi logs"):
        DiagnosticsKeywords(ctx).scan_hami_component_logs_for_errors(severity="fail")

    def unreachable(namespace, label_selector):
        raise ApiException(status=0, reason="connection refused")

    ctx.core.list_namespaced_pod = unreachable
    assert DiagnosticsKeywords(ctx).scan_hami_component_logs_for_errors() == []
    assert "cannot list HAMi pods" in log.text("WARN")


# ------------------------------------------------------------------------------------------ collect


def test_collect_diagnostics_logs_every_part_and_keeps_going_after_errors(ctx, log, tmp_path):
    ctx.namespace = "ns"
    ctx.hami.local_log_files = [str(tmp_path / "missing.log")]
    ctx.helm_binary = "helm"
    ctx.runner = kube_fakes.FakeRunner()
    ctx.runner.add(["status"], stdout="NAME: hami\nSTATUS: deployed")
    workload = kube_fakes.pod(name="small", node="gpu-node-0")
    workload.spec.containers[0].env = [{"name": "API_TOKEN", "value": "abc123"}]
    ctx.core.list_namespaced_event = lambda namespace: kube_fakes.listing(
        [kube_fakes.event("FilteringFailed", "no available node, 2 nodes do not meet", "small")]
    )
    ctx.core.list_namespaced_pod = lambda namespace, **kwargs: kube_fakes.listing(
        [workload] if namespace == "ns" else [hami_pod("hami-scheduler-1", "hami-scheduler"),
                                               hami_pod("hami-device-plugin-far", "hami-device-plugin", "other")]
    )

    def logs(name, namespace, **kwargs):
        if name == "small":
            raise ApiException(status=400, reason="Bad Request")
        return f"log of {name}"

    ctx.core.read_namespaced_pod_log = logs
    ctx.core.read_node = lambda name: kube_fakes.node(
        name, annotations={"hami.io/node-nvidia-register": "[]", "hami.io/mutex.lock": "2026-11-24T02:00:00Z,ns,small"}
    )
    DiagnosticsKeywords(ctx).collect_diagnostics()
    text = log.text()
    assert "===== Events in namespace ns =====\n2026-11-24T02:40:00Z Warning FilteringFailed Pod/small" in text
    assert "===== Pod ns/small =====" in text and "abc123" not in text and "<redacted>" in text
    assert "===== Log of ns/small/cuda (last 200 lines) =====\n(could not read: HTTP 400 Bad Request" in text
    assert "log of hami-scheduler-1" in text
    assert "hami-device-plugin-far" not in text  # only the device plugin of the pod's node
    assert "could not read" in text.split("missing.log")[1]
    assert "gpu-node-0:\n  hami.io/mutex.lock: 2026-11-24T02:00:00Z,ns,small" in text
    assert "===== helm status =====\nNAME: hami\nSTATUS: deployed" in text
    assert ctx.diagnostics_collected


# ------------------------------------------------------------------------------------------ listener


def test_listener_collects_once_cleans_up_and_scopes_suites(ctx, log, monkeypatch):
    collected = []
    listener = HamiListener(ctx, lambda: collected.append(ctx.namespace))
    root = SimpleNamespace(full_name="Suites", parent=None)
    child = SimpleNamespace(full_name="Suites.Scheduling", parent=root)
    undone = []
    listener.start_suite(root, None)
    ctx.track("release", lambda: undone.append("release"), scope="run")
    listener.start_suite(child, None)
    ctx.track("suite thing", lambda: undone.append("suite thing"), scope="suite")
    listener.start_test(SimpleNamespace(name="T", tags=["needs-hami"]), None)
    assert ctx.test_tags == ["needs-hami"]
    ctx.namespace = "ns"
    ctx.track("namespace ns", lambda: undone.append("ns"), keepable=True)
    listener.end_test(None, SimpleNamespace(status="FAIL"))
    assert collected == ["ns"] and undone == ["ns"]
    listener.start_test(SimpleNamespace(name="U", tags=[]), None)
    ctx.namespace = "ns2"
    ctx.diagnostics_collected = True  # the teardown did it already
    listener.end_test(None, SimpleNamespace(status="FAIL"))
    assert collected == ["ns"]
    listener.end_suite(child, None)
    assert undone == ["ns", "suite thing"] and ctx.suite_name == "Suites"
    listener.end_suite(root, None)
    assert undone == ["ns", "suite thing", "release"] and ctx.suite_name is None


def test_cleanup_errors_become_warnings_and_do_not_stop_other_cleanups(ctx, log):
    undone = []

    def broken():
        raise RuntimeError("API down")

    ctx.track("first", lambda: undone.append("first"))
    ctx.track("second", broken)
    listener = HamiListener(ctx, DiagnosticsKeywords(ctx))
    listener.end_test(None, SimpleNamespace(status="PASS"))
    assert undone == ["first"] and "Cleanup failed: second: API down" in log.text("WARN")
