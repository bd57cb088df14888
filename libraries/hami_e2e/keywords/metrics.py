"""Keywords on HAMi's Prometheus metrics (scheduler and vGPU monitor endpoints)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.errors import HamiE2EFailure
from ..parsers.prometheus import Sample, find_samples, parse_prometheus_text
from .allocation import read_allocated_uuids
from .nodes import read_node_registration


class MetricsKeywords(LibraryComponent):
    """Series of a Prometheus endpoint, polled (an HTTP endpoint cannot be watched)."""

    def _fetch_metrics(self, url: str) -> list[Sample]:
        """To ease unit testing: the only place that does HTTP."""
        import requests

        response = requests.get(url, timeout=10)
        if response.status_code != 200:
            raise HamiE2EFailure(f"GET {url} answered HTTP {response.status_code}: {response.text[:300]}")
        return parse_prometheus_text(response.text)

    @keyword(tags=("Metrics", "HAMi", "Wait"))
    def wait_until_metric_is_present(
        self, url: str, metric: str, timeout: timedelta | None = None, message: str | None = None, **labels: str
    ) -> float:
        """Waits up to ``timeout`` until ``url`` exposes a series ``metric`` carrying every ``labels`` item; returns
        its value.

        Scheduler metrics lag up to 15 s behind (register loop), so give a timeout above that.

        Example:
        | `Wait Until Metric Is Present`    ${SCHEDULER_METRICS_URL}    hami_vgpu_memory_allocated_bytes
        | ...    namespace=${ns}    pod=small    timeout=45s
        """
        last: dict[str, list[Sample]] = {"samples": []}

        def attempt() -> Any:
            last["samples"] = self._fetch_metrics(url)
            found = find_samples(last["samples"], metric, labels)
            return found[0].value if found else None

        value = self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: _near_misses(last["samples"], metric),
            f"Series {metric}{_labels(labels)} at {url}",
            interval=timedelta(seconds=2),
            message=message,
        )
        logger.info(f"{metric}{_labels(labels)} = {value:.15g}")
        return value

    @keyword(tags=("Metrics", "HAMi", "Wait"))
    def wait_until_metric_is_absent(
        self, url: str, metric: str, timeout: timedelta | None = None, message: str | None = None, **labels: str
    ) -> None:
        """Waits up to ``timeout`` until ``url`` exposes no series ``metric`` carrying every ``labels`` item (e.g.
        after a delete).

        Example:
        | `Wait Until Metric Is Absent`    ${SCHEDULER_METRICS_URL}    hami_vgpu_memory_allocated_bytes    pod=small
        """
        last: dict[str, list[Sample]] = {"found": []}

        def attempt() -> Any:
            last["found"] = find_samples(self._fetch_metrics(url), metric, labels)
            return True if not last["found"] else None

        self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: "Still present: " + "; ".join(str(s) for s in last["found"][:5]) + ".",
            f"Disappearance of {metric}{_labels(labels)} at {url}",
            interval=timedelta(seconds=2),
            message=message,
        )

    @keyword("Wait Until Scheduler Metrics Show Pod Allocation", tags=("Metrics", "HAMi", "Wait"))
    def wait_until_scheduler_metrics_show_pod_allocation(
        self,
        url: str,
        pod: str | None = None,
        gpumem: int | None = None,
        gpucores: int | None = None,
        namespace: str | None = None,
        timeout: timedelta | None = None,
        message: str | None = None,
    ) -> None:
        """Waits up to ``timeout`` until the scheduler's per-container series for the pod match its allocation.

        ``hami_vgpu_memory_allocated_bytes`` must sum to ``gpumem`` × 1048576 and ``hami_vgpu_core_allocated_ratio``
        to ``gpucores`` over the pod's series (labels ``namespace``, ``pod``, plus ``node``, ``container_index``,
        ``device_uuid``). The node label must equal the pod's node and the UUIDs its allocated GPUs.

        Example:
        | `Wait Until Scheduler Metrics Show Pod Allocation`    ${SCHEDULER_METRICS_URL}    small    gpumem=3000
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        node = self.read_pod(pod_name, ns).spec.node_name
        uuids = set(read_allocated_uuids(self, pod_name, ns))
        labels = {"namespace": ns, "pod": pod_name}
        wanted = [
            ("hami_vgpu_memory_allocated_bytes", gpumem * 1048576 if gpumem is not None else None),
            ("hami_vgpu_core_allocated_ratio", gpucores),
        ]
        last: dict[str, str] = {"seen": ""}

        def attempt() -> Any:
            samples = self._fetch_metrics(url)
            problems = []
            for name, expected in wanted:
                found = find_samples(samples, name, labels)
                if not found:
                    problems.append(f"no {name}{_labels(labels)}")
                    continue
                total = sum(s.value for s in found)
                if expected is not None and total != float(expected):
                    problems.append(f"{name} sums to {total:.15g}, expected {float(expected):.15g}")
                for sample in found:
                    if sample.labels.get("node") != node or sample.labels.get("device_uuid") not in uuids:
                        problems.append(f"{sample} does not match node {node} / GPUs {', '.join(sorted(uuids))}")
            last["seen"] = "; ".join(problems)
            return True if not problems else None

        self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: f"Last reading: {last['seen']}.",
            f"Scheduler metrics for pod {ns}/{pod_name}",
            interval=timedelta(seconds=2),
            message=message,
        )

    @keyword("Wait Until Scheduler Metrics Show GPU Limits Of Node", tags=("Metrics", "HAMi", "Wait"))
    def wait_until_scheduler_metrics_show_gpu_limits_of_node(
        self, url: str, node: str, timeout: timedelta | None = None, message: str | None = None
    ) -> None:
        """Waits up to ``timeout`` until every GPU registered on ``node`` has ``hami_gpu_memory_limit_bytes`` =
        devmem × 1048576 and ``hami_gpu_core_limit_ratio`` = devcore, with labels ``node`` and ``device_uuid``.

        Example:
        | `Wait Until Scheduler Metrics Show GPU Limits Of Node`    ${SCHEDULER_METRICS_URL}    gpu-node-0
        """
        devices = read_node_registration(self, node)
        if not devices:
            raise self.fail(f"Node {node} has no registered GPU to compare the metrics with.", message)
        last: dict[str, str] = {"seen": ""}

        def attempt() -> Any:
            samples = self._fetch_metrics(url)
            problems = []
            for device in devices:
                labels = {"node": node, "device_uuid": device.id}
                for name, expected in (
                    ("hami_gpu_memory_limit_bytes", device.devmem * 1048576),
                    ("hami_gpu_core_limit_ratio", device.devcore),
                ):
                    found = find_samples(samples, name, labels)
                    if not found:
                        problems.append(f"no {name}{_labels(labels)}")
                    elif found[0].value != float(expected):
                        problems.append(f"{found[0]}, expected {float(expected):.15g}")
            last["seen"] = "; ".join(problems)
            return True if not problems else None

        self.poll(
            attempt,
            self.ctx.timeout(timeout),
            lambda: f"Last reading: {last['seen']}.",
            f"GPU limit metrics of node {node}",
            interval=timedelta(seconds=2),
            message=message,
        )


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def _near_misses(samples: list[Sample], name: str) -> str:
    same = [s for s in samples if s.name == name]
    if not same:
        return f"No series named {name} at all ({len(samples)} samples read)."
    return f"Series named {name}: " + "; ".join(str(s) for s in same[:5]) + ("; …" if len(same) > 5 else "") + "."
