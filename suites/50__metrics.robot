*** Settings ***
Documentation     Metrics: the scheduler's Prometheus endpoint (SCHEDULER_METRICS_URL) exposes every registered GPU
...               and every GPU pod's allocation with the right labels, and forgets a pod after it is deleted. The
...               vGPU monitor (MONITOR_METRICS_URL) reports per-container limits on real GPUs.

Resource          ../resources/gpu_pods.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    feature:metrics


*** Test Cases ***
Scheduler Reports The Limits Of Every Registered GPU
    [Documentation]    hami_gpu_memory_limit_bytes and hami_gpu_core_limit_ratio exist for every GPU of every GPU node
    ...    and equal the registered memory and cores.
    [Tags]    HAMI-E2E-500    smoke
    FOR    ${node}    IN    @{GPU_NODES}
        Wait Until Scheduler Metrics Show GPU Limits Of Node    ${SCHEDULER_METRICS_URL}    ${node}
        ...    timeout=${METRICS_TIMEOUT}
    END

Scheduler Reports The Allocation Of A Running Pod
    [Documentation]    hami_vgpu_memory_allocated_bytes and hami_vgpu_core_allocated_ratio for the pod carry its
    ...    namespace, pod name, node and GPU, and equal its 3000 MiB and 30 cores.
    [Tags]    HAMI-E2E-501    smoke
    Start GPU Pod    measured    gpumem=3000    gpucores=30
    Wait Until Scheduler Metrics Show Pod Allocation    ${SCHEDULER_METRICS_URL}    measured    gpumem=3000
    ...    gpucores=30    timeout=${METRICS_TIMEOUT}

Scheduler Forgets A Deleted Pod
    [Documentation]    After the pod is deleted its per-container series disappear.
    [Tags]    HAMI-E2E-502    regression
    Start GPU Pod    gone    gpumem=3000    gpucores=30
    Wait Until Scheduler Metrics Show Pod Allocation    ${SCHEDULER_METRICS_URL}    gone    gpumem=3000
    ...    gpucores=30    timeout=${METRICS_TIMEOUT}
    Delete Pod    gone    timeout=${POD_DELETE_TIMEOUT}
    Wait Until Metric Is Absent    ${SCHEDULER_METRICS_URL}    hami_vgpu_memory_allocated_bytes    pod=gone
    ...    timeout=${METRICS_TIMEOUT}

Scheduler Reports The Installed HAMi Version
    [Documentation]    hami_build_info carries the image version under test (HAMI_IMAGE_TAG).
    [Tags]    HAMI-E2E-503    regression
    Wait Until Metric Is Present    ${SCHEDULER_METRICS_URL}    hami_build_info    version=${HAMI_IMAGE_TAG}
    ...    timeout=${METRICS_TIMEOUT}

Monitor Reports The Memory Limit Of A Container
    [Documentation]    After a CUDA/NVML call in the container (nvidia-smi), the vGPU monitor exposes
    ...    hami_vgpu_memory_limit_bytes for that container. Skipped when MONITOR_METRICS_URL is empty.
    [Tags]    HAMI-E2E-504    regression
    Skip If    not $MONITOR_METRICS_URL    MONITOR_METRICS_URL is empty: no vGPU monitor endpoint configured
    Start GPU Pod    watched    gpumem=${LIMIT_MIB}    gpucores=30
    Exec In Pod    watched    nvidia-smi
    Wait Until Metric Is Present    ${MONITOR_METRICS_URL}    hami_vgpu_memory_limit_bytes    pod=watched
    ...    container=cuda    timeout=${METRICS_TIMEOUT}
