"""The mutants: small, exact edits of HAMi 2.10.0 (and HAMi-core 8f3a89c), each breaking one thing the suite claims
to check.

An edit names a file of the source tree, a text that must occur there exactly once and its replacement; when the
upstream text moved the harness stops before running anything (``trees.MutationError``). ``select`` are the robot tag
patterns of the tests run against the mutant (besides preflight and install, which every run needs), ``claims`` the
test IDs the suite's documentation says should catch it (HAMI-E2E-7xx: the guards of suites/70__mutant_guards.robot,
added because nothing else caught the mutant). A mutant is "killed" by a selected test that passes on the unmutated
source and fails on the mutant.
"""

from __future__ import annotations

from dataclasses import dataclass

HAMI = "hami"
HAMI_CORE = "hami-core"


@dataclass(frozen=True)
class Edit:
    """Replace ``find`` (exactly one occurrence) in ``path`` (relative to the source root) with ``replace``."""

    path: str
    find: str
    replace: str


@dataclass(frozen=True)
class Mutant:
    name: str
    component: str          # HAMI or HAMI_CORE: which source tree the edits apply to
    area: str               # webhook, chart, filter, scoring, scheduler, node-lock, device-plugin, hami-core
    breaks: str             # one sentence: what the edit breaks, as a user would notice it
    edits: tuple[Edit, ...]
    select: tuple[str, ...]  # robot --include patterns of the tests to run against it
    claims: tuple[str, ...]  # test IDs that are meant to catch it

    @property
    def tags(self) -> set[str]:
        """What ``--include`` matches: the mutant's area and component."""
        return {self.area, self.component}


WEBHOOK = "pkg/scheduler/webhook.go"
NVIDIA = "pkg/device/nvidia/device.go"
PLUGIN = "pkg/device-plugin/nvidiadevice/nvinternal/plugin/"
ADMISSION = ("feature:admission",)

MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------------------------------- webhook
    Mutant(
        "webhook-admits-privileged", HAMI, "webhook",
        "The webhook admits a GPU pod with a privileged container (the v2.10 refusal is skipped).",
        (Edit(WEBHOOK, "if hasPrivileged && hasResource {", "if false && hasPrivileged && hasResource {"),),
        ADMISSION, ("HAMI-E2E-300",),
    ),
    Mutant(
        "webhook-percentage-up-to-200", HAMI, "webhook",
        "gpumem-percentage values 101-200 are admitted (the 0-100 range check is widened).",
        (Edit(NVIDIA, "if pct < 0 || pct > 100 {", "if pct < 0 || pct > 200 {"),),
        ADMISSION, ("HAMI-E2E-302",),
    ),
    Mutant(
        "webhook-keeps-scheduler-name", HAMI, "webhook",
        "GPU pods keep the default scheduler: the webhook no longer sends them to HAMi's extender.",
        (Edit(WEBHOOK, "pod.Spec.SchedulerName = config.SchedulerName",
              'klog.V(5).Infof("schedulerName %s not set", config.SchedulerName)'),),
        ADMISSION, ("HAMI-E2E-016", "HAMI-E2E-100"),
    ),
    Mutant(
        "chart-ignore-label-dropped", HAMI, "chart",
        "The chart's webhook objectSelector no longer exempts pods labelled hami.io/webhook=ignore.",
        (Edit("charts/hami/templates/scheduler/webhook.yaml",
              "      - key: hami.io/webhook\n        operator: NotIn\n        values:\n        - ignore\n"
              "      {{- if .Values.scheduler.admissionWebhook.objectSelector.matchExpressions }}",
              "      - key: hami.io/webhook-unused\n        operator: NotIn\n        values:\n        - ignore\n"
              "      {{- if .Values.scheduler.admissionWebhook.objectSelector.matchExpressions }}"),),
        ADMISSION, ("HAMI-E2E-306",),
    ),
    # ------------------------------------------------------------------------------------------- filter (Fit)
    Mutant(
        "fit-ignores-used-memory", HAMI, "filter",
        "The filter compares a request with the card's total memory, not what is left: GPUs are over-committed.",
        (Edit(NVIDIA, "if dev.Totalmem-dev.Usedmem < memreq {", "if dev.Totalmem < memreq {"),),
        ("feature:scheduling",), ("HAMI-E2E-202",),
    ),
    Mutant(
        "fit-ignores-used-cores", HAMI, "filter",
        "The filter compares a request with the card's total cores, not what is left: cores are over-committed.",
        (Edit(NVIDIA, "if dev.Totalcore-dev.Usedcores < k.Coresreq {", "if dev.Totalcore < k.Coresreq {"),),
        ("feature:scheduling",), ("HAMI-E2E-201", "HAMI-E2E-205"),
    ),
    Mutant(
        "fit-split-count-plus-one", HAMI, "filter",
        "A GPU takes one pod more than its split count (off by one in the time-slicing check).",
        (Edit(NVIDIA, "if dev.Count <= dev.Used {", "if dev.Count < dev.Used {"),),
        ("feature:scheduling",), ("HAMI-E2E-206",),
    ),
    Mutant(
        "fit-percentage-of-free-memory", HAMI, "filter",
        "gpumem-percentage is taken of the memory left on the card instead of its total, so a pod on a used card "
        "gets less than it asked for.",
        (Edit(NVIDIA, "memreq = dev.Totalmem * k.MemPercentagereq / 100",
              "memreq = (dev.Totalmem - dev.Usedmem) * k.MemPercentagereq / 100"),),
        ("feature:vgpu-pods", "feature:isolation"), ("HAMI-E2E-700",),
    ),
    Mutant(
        "fit-ignores-gpu-type", HAMI, "filter",
        "nvidia.com/use-gputype and nouse-gputype are ignored: every GPU type fits.",
        (Edit(NVIDIA, "typeCheck := checkGPUtype(annos, d.Type)", "typeCheck := checkGPUtype(annos, d.Type) || true"),),
        ("feature:device-selection",), ("HAMI-E2E-211", "HAMI-E2E-212"),
    ),
    Mutant(
        "fit-ignores-gpu-uuid", HAMI, "filter",
        "nvidia.com/use-gpuuuid and nouse-gpuuuid are ignored: a pod may land on any GPU.",
        (Edit(NVIDIA, "if !device.CheckUUID(pod.GetAnnotations(), dev.ID, GPUUseUUID, GPUNoUseUUID, nv.CommonWord()) {",
              "if false && !device.CheckUUID(pod.GetAnnotations(), dev.ID, GPUUseUUID, GPUNoUseUUID, "
              "nv.CommonWord()) {"),),
        ("feature:device-selection",), ("HAMI-E2E-213", "HAMI-E2E-214", "HAMI-E2E-215"),
    ),
    # ------------------------------------------------------------------------------------------- scoring / policy
    Mutant(
        "gpu-binpack-spreads", HAMI, "scoring",
        "GPU policy binpack orders the GPUs like spread: pods asking for binpack land on different GPUs.",
        (Edit("pkg/scheduler/policy/gpu_policy.go", "if si != sj {\n\t\t\treturn si < sj",
              "if si != sj {\n\t\t\treturn si > sj"),),
        ("feature:scheduling-policy",), ("HAMI-E2E-222",),
    ),
    Mutant(
        "node-spread-packs", HAMI, "scoring",
        "Node policy spread orders the nodes like binpack: pods asking for spread land on the same node.",
        (Edit("pkg/scheduler/policy/node_policy.go", "return l.NodeList[i].Score > l.NodeList[j].Score",
              "return l.NodeList[i].Score < l.NodeList[j].Score"),),
        ("feature:scheduling-policy",), ("HAMI-E2E-221",),
    ),
    Mutant(
        "scheduler-keeps-deleted-pod", HAMI, "scheduler",
        "The scheduler does not forget a deleted pod: its GPU share stays booked and its metrics stay.",
        (Edit("pkg/scheduler/scheduler.go",
              "\tif pi, ok := s.podManager.TakeAndDeletePod(pod); ok {\n\t\ts.quotaManager.RmUsage(pod, pi.Devices)\n"
              "\t}\n}\n\n// onDelNode",
              "\tif pi, ok := s.podManager.GetPod(pod); ok && false {\n\t\ts.quotaManager.RmUsage(pod, pi.Devices)\n"
              "\t}\n}\n\n// onDelNode"),),
        ("feature:scheduling", "feature:metrics"), ("HAMI-E2E-205", "HAMI-E2E-502"),
    ),
    # ------------------------------------------------------------------------------------------- bind / node lock
    Mutant(
        "nodelock-never-released", HAMI, "node-lock",
        "A node lock (hami.io/mutex.lock) is never released: after the first GPU pod a node binds no other.",
        (Edit("pkg/util/nodelock/nodelock.go", "\tlockStr, ok := node.Annotations[NodeLockKey]\n\tif !ok {\n",
              '\tlockStr, ok := node.Annotations[NodeLockKey]\n\tif !ok || lockStr != "" {\n'),),
        ("feature:vgpu-pods",), ("HAMI-E2E-106", "HAMI-E2E-107"),
    ),
    Mutant(
        "nodelock-ignores-other-pod", HAMI, "node-lock",
        "Bind treats a node lock held by another live pod as acquired: two pods can be allocating on one node at "
        "once, and the device plugin serves the lock owner's devices to both.",
        (Edit("pkg/util/nodelock/nodelock.go",
              'return fmt.Errorf("node %s has been locked within %v: %w", nodeName, NodeLockTimeout, '
              'ErrNodeLockContention)',
              "return nil"),),
        ("feature:vgpu-pods",), ("HAMI-E2E-106", "HAMI-E2E-109"),
    ),
    # ------------------------------------------------------------------------------------------- device plugin
    Mutant(
        "plugin-registers-decimal-mib", HAMI, "device-plugin",
        "The device plugin registers each GPU's memory in decimal megabytes (85522 instead of 81559 MiB).",
        (Edit(PLUGIN + "register.go", "registeredmem := int32(memoryTotal / 1024 / 1024)",
              "registeredmem := int32(memoryTotal / 1000 / 1000)"),),
        ("feature:metrics",), ("HAMI-E2E-013", "HAMI-E2E-500"),
    ),
    Mutant(
        "plugin-registers-split-plus-one", HAMI, "device-plugin",
        "The device plugin registers each GPU with one vGPU slot more than deviceSplitCount.",
        (Edit(PLUGIN + "register.go", "Count:   int32(*plugin.schedulerConfig.DeviceSplitCount),",
              "Count:   int32(*plugin.schedulerConfig.DeviceSplitCount) + 1,"),),
        ("feature:scheduling",), ("HAMI-E2E-013", "HAMI-E2E-206"),
    ),
    Mutant(
        "plugin-doubles-memory-limit", HAMI, "device-plugin",
        "Allocate hands the container twice its gpumem as CUDA_DEVICE_MEMORY_LIMIT_<i>.",
        (Edit(PLUGIN + "server.go", 'response.Envs[limitKey] = fmt.Sprintf("%vm", dev.Usedmem)',
              'response.Envs[limitKey] = fmt.Sprintf("%vm", 2*dev.Usedmem)'),),
        ("feature:isolation", "HAMI-E2E-108"), ("HAMI-E2E-403", "HAMI-E2E-401", "HAMI-E2E-108"),
    ),
    Mutant(
        "plugin-full-sm-limit", HAMI, "device-plugin",
        "Allocate hands every container CUDA_DEVICE_SM_LIMIT=100 whatever gpucores it asked for.",
        (Edit(PLUGIN + "server.go", 'response.Envs["CUDA_DEVICE_SM_LIMIT"] = fmt.Sprint(devreq[0].Usedcores)',
              'response.Envs["CUDA_DEVICE_SM_LIMIT"] = fmt.Sprint(100)'),),
        ("feature:isolation",), ("HAMI-E2E-403",),
    ),
    # ------------------------------------------------------------------------------------------- HAMi-core
    Mutant(
        "core-oom-at-twice-the-limit", HAMI_CORE, "hami-core",
        "HAMi-core lets a process allocate up to twice its memory limit before it reports OOM.",
        (Edit("src/allocator/allocator.c", "if (new_allocated > limit) {", "if (new_allocated > 2 * limit) {"),),
        ("feature:isolation",), ("HAMI-E2E-401", "HAMI-E2E-404"),
    ),
    Mutant(
        "core-nvml-shows-card-memory", HAMI_CORE, "hami-core",
        "HAMi-core's NVML hook no longer replaces memory.total with the limit: nvidia-smi shows the whole card.",
        (Edit("src/nvml/hook.c", "((nvmlMemory_t*)memory)->total = limit;", "/* total left as the card's */"),
         Edit("src/nvml/hook.c", "((nvmlMemory_v2_t *)memory)->total = limit;", "/* total left as the card's */")),
        ("feature:isolation", "HAMI-E2E-108", "HAMI-E2E-109"), ("HAMI-E2E-108", "HAMI-E2E-109", "HAMI-E2E-402"),
    ),
    Mutant(
        "core-cuda-shows-card-memory", HAMI_CORE, "hami-core",
        "HAMi-core's cuMemGetInfo hook no longer caps the total at the limit: CUDA programs (PyTorch's "
        "mem_get_info) see the whole card as total memory.",
        (Edit("src/cuda/memory.c", "*total = actual_limit;", "(void)actual_limit;"),),
        ("feature:isolation",), ("HAMI-E2E-701",),
    ),
)


def by_name() -> dict[str, Mutant]:
    return {mutant.name: mutant for mutant in MUTANTS}
