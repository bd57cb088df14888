*** Settings ***
Documentation     Metrics: the scheduler's Prometheus endpoint (SCHEDULER_METRICS_URL) exposes every registered GPU
...               and every GPU pod's allocation with the right labels, and forgets a pod after it is deleted. The
...               vGPU monitor (MONITOR_METRICS_URL) reports per-container limits. The endpoints are read with
...               RequestsLibrary sessions (resources/metrics.resource), the values with the library's parser.

Resource          ../resources/gpu_pods.resource
Resource          ../resources/metrics.resource

Suite Setup       Prepare Metrics Suite
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
        Wait Until Scheduler Metrics Show GPU Limits Of Node    ${node}
    END

Scheduler Reports The Allocation Of A Running Pod
    [Documentation]    hami_vgpu_memory_allocated_bytes and hami_vgpu_core_allocated_ratio for the pod carry its
    ...    namespace, pod name, node and GPU, and equal its 3000 MiB and 30 cores.
    [Tags]    HAMI-E2E-501    smoke
    Start GPU Pod    measured    gpumem=3000    gpucores=30
    Wait Until Scheduler Metrics Show Pod Allocation    measured    gpumem=3000    gpucores=30

Scheduler Forgets A Deleted Pod
    [Documentation]    After the pod is deleted its per-container series disappear.
    [Tags]    HAMI-E2E-502    regression
    Start GPU Pod    gone    gpumem=3000    gpucores=30
    Wait Until Scheduler Metrics Show Pod Allocation    gone    gpumem=3000    gpucores=30
    Delete Pod    gone    timeout=${POD_DELETE_TIMEOUT}
    Wait Until Metric Is Absent    scheduler    hami_vgpu_memory_allocated_bytes    pod=gone

Scheduler Reports The Installed HAMi Version
    [Documentation]    hami_build_info carries the image version under test (HAMI_IMAGE_TAG), read once: the
    ...    endpoint answers with HTTP 200 and the series is there from the scheduler's start.
    [Tags]    HAMI-E2E-503    regression
    ${response} =    GET On Session    scheduler    /metrics
    Status Should Be    200    ${response}
    ${value} =    Get Metric Value    ${response}    hami_build_info    version=${HAMI_IMAGE_TAG}
    Should Be Equal As Numbers    ${value}    1    msg=hami_build_info should be 1, is ${value}

Monitor Reports The Memory Limit Of A Container
    [Documentation]    After a CUDA/NVML call in the container (nvidia-smi), the vGPU monitor exposes
    ...    hami_vgpu_memory_limit_bytes for that container. Skipped when MONITOR_METRICS_URL is empty.
    [Tags]    HAMI-E2E-504    regression
    Skip If    not $MONITOR_METRICS_URL    MONITOR_METRICS_URL is empty: no vGPU monitor endpoint configured
    Start GPU Pod    watched    gpumem=${LIMIT_MIB}    gpucores=30
    Exec In Pod    watched    nvidia-smi
    ${bytes} =    Wait Until Metric Is Present    monitor    hami_vgpu_memory_limit_bytes    pod=watched
    ...    container=cuda
    Should Be Equal As Numbers    ${bytes}    ${{ $LIMIT_MIB * 1048576 }}
    ...    msg=The monitor reports a limit of ${bytes} bytes for container cuda, expected ${LIMIT_MIB} MiB


*** Keywords ***
Prepare Metrics Suite
    [Documentation]    The cluster suite setup, then one RequestsLibrary session per HAMi metrics endpoint.
    Prepare Suite
    Open HAMi Metrics Sessions
