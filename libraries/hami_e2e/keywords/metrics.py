"""Keywords on HAMi's Prometheus metrics (scheduler and vGPU monitor endpoints).

The endpoints are read with RequestsLibrary (``GET On Session``, ``Status Should Be``; ``resources/metrics.resource``
opens the sessions and polls); these keywords parse what it got and check the values. They do no HTTP themselves.
"""

from __future__ import annotations

from robot.api import logger
from robot.api.deco import keyword

from ..core.component import LibraryComponent
from ..core.errors import HamiE2EFailure
from ..parsers.prometheus import Sample, find_samples, parse_prometheus_text
from .allocation import read_allocated_uuids
from .nodes import read_node_registration


class MetricsKeywords(LibraryComponent):
    """Values and checks on a Prometheus text exposition: RequestsLibrary's response, or its text."""

    @keyword(tags=("Metrics", "HAMi"))
    def get_metric_value(self, metrics: object, metric: str, **labels: str) -> float:
        """Returns the value of the one series ``metric`` that carries every ``labels`` item.

        | =Argument= | =Description= |
        | ``metrics`` | What RequestsLibrary's `GET On Session` returned from a ``/metrics`` endpoint, or its text. |
        | ``metric`` | The series name, e.g. ``hami_vgpu_memory_allocated_bytes``. |
        | ``labels`` | ``name=value`` pairs the series must carry (other labels may be there too). |

        Fails, listing what is there, when no series matches or when several do (name more labels).

        Example:
        | ${response} =    GET On Session    scheduler    /metrics
        | Status Should Be    200    ${response}
        | ${bytes} =    `Get Metric Value`    ${response}    hami_vgpu_memory_allocated_bytes    pod=small
        """
        samples = _samples(metrics)
        found = find_samples(samples, metric, labels)
        if not found:
            raise HamiE2EFailure(f"No series {metric}{_labels(labels)}. {_near_misses(samples, metric)}")
        if len(found) > 1:
            raise HamiE2EFailure(
                f"{len(found)} series match {metric}{_labels(labels)}; name more labels to pick one: "
                + "; ".join(str(s) for s in found[:5])
                + ("; …" if len(found) > 5 else "")
            )
        logger.info(str(found[0]))
        return found[0].value

    @keyword(tags=("Metrics", "HAMi"))
    def get_metric_label_values(self, metrics: object, metric: str, label: str, **labels: str) -> list[str]:
        """Returns the distinct values of ``label`` over the series ``metric`` that carry every ``labels`` item,
        sorted; an empty list when there is no such series.

        Example:
        | @{nodes} =    `Get Metric Label Values`    ${response}    hami_gpu_memory_limit_bytes    node
        """
        found = find_samples(_samples(metrics), metric, labels)
        values = sorted({s.labels[label] for s in found if label in s.labels})
        logger.info(f"{label} of {metric}{_labels(labels)}: {', '.join(values) or 'none'} ({len(found)} series)")
        return values

    @keyword(tags=("Metrics", "HAMi", "Assertion"))
    def metric_should_be_absent(self, metrics: object, metric: str, message: str | None = None, **labels: str) -> None:
        """Fails when ``metrics`` holds a series ``metric`` carrying every ``labels`` item (e.g. after a delete).

        Example:
        | `Metric Should Be Absent`    ${response}    hami_vgpu_memory_allocated_bytes    pod=gone
        """
        found = find_samples(_samples(metrics), metric, labels)
        if found:
            raise self.fail(
                f"Series {metric}{_labels(labels)} should be absent; still present: "
                + "; ".join(str(s) for s in found[:5])
                + ".",
                message,
            )

    @keyword("Scheduler Metrics Should Show Pod Allocation", tags=("Metrics", "HAMi", "Assertion"))
    def scheduler_metrics_should_show_pod_allocation(
        self,
        metrics: object,
        pod: str | None = None,
        gpumem: int | None = None,
        gpucores: int | None = None,
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        """Checks the scheduler's per-container series of the pod against its allocation (reads the pod once).

        ``hami_vgpu_memory_allocated_bytes`` must sum to ``gpumem`` × 1048576 and ``hami_vgpu_core_allocated_ratio``
        to ``gpucores`` over the pod's series (labels ``namespace``, ``pod``, plus ``node``, ``container_index``,
        ``device_uuid``); the node label must be the pod's node and the UUIDs its allocated GPUs.

        Example:
        | `Scheduler Metrics Should Show Pod Allocation`    ${response}    small    gpumem=3000    gpucores=30
        """
        pod_name, ns = self.pod_name(pod), self.namespace(namespace)
        node = self.read_pod(pod_name, ns).spec.node_name
        uuids = set(read_allocated_uuids(self, pod_name, ns))
        samples = _samples(metrics)
        labels = {"namespace": ns, "pod": pod_name}
        problems = []
        for name, expected in (
            ("hami_vgpu_memory_allocated_bytes", gpumem * 1048576 if gpumem is not None else None),
            ("hami_vgpu_core_allocated_ratio", gpucores),
        ):
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
        if problems:
            raise self.fail(f"Scheduler metrics for pod {ns}/{pod_name}: {'; '.join(problems)}.", message)

    @keyword("Scheduler Metrics Should Show GPU Limits Of Node", tags=("Metrics", "HAMi", "Assertion"))
    def scheduler_metrics_should_show_gpu_limits_of_node(
        self, metrics: object, node: str, message: str | None = None
    ) -> None:
        """Checks that every GPU registered on ``node`` (read once) has ``hami_gpu_memory_limit_bytes`` = devmem ×
        1048576 and ``hami_gpu_core_limit_ratio`` = devcore in ``metrics``, with labels ``node`` and
        ``device_uuid``.

        Example:
        | `Scheduler Metrics Should Show GPU Limits Of Node`    ${response}    gpu-node-0
        """
        devices = read_node_registration(self, node)
        if not devices:
            raise self.fail(f"Node {node} has no registered GPU to compare the metrics with.", message)
        samples = _samples(metrics)
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
        if problems:
            raise self.fail(f"GPU limit metrics of node {node}: {'; '.join(problems)}.", message)


def _samples(metrics: object) -> list[Sample]:
    """The samples of a RequestsLibrary response (anything with ``text``) or of the exposition text itself."""
    text = getattr(metrics, "text", metrics)
    if not isinstance(text, str):
        raise HamiE2EFailure(
            f"Expected the answer of GET On Session (or its text), got {type(metrics).__name__}: {metrics!r:.200}"
        )
    try:
        return parse_prometheus_text(text)
    except ValueError as error:
        raise HamiE2EFailure(f"Not Prometheus text: {error}") from None


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""


def _near_misses(samples: list[Sample], name: str) -> str:
    same = [s for s in samples if s.name == name]
    if not same:
        return f"No series named {name} at all ({len(samples)} samples read)."
    return f"Series named {name}: " + "; ".join(str(s) for s in same[:5]) + ("; …" if len(same) > 5 else "") + "."
