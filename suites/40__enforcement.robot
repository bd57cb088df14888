*** Settings ***
Documentation     Enforcement: inside a HAMi pod, HAMi-core (libvgpu.so) makes the memory limit real: nvidia-smi
...               reports it, allocations below it work, allocations above it fail with HAMi-core's OOM. On a
...               cluster the allocations use PyTorch (PYTORCH_IMAGE, ALLOCATION_PROBE pytorch); on the sandbox the
...               twin's gpu-workload (CUDA driver API) with the real HAMi-core. The CUDA context alone takes about
...               518 MiB on an H100, so LIMIT_MIB must be at least about 1 GiB.

Resource          ../resources/gpu_pods.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    feature:isolation


*** Test Cases ***
Allocation Below The Memory Limit Succeeds
    [Documentation]    Allocating UNDER_LIMIT_MIB in a pod limited to LIMIT_MIB works.
    [Tags]    HAMI-E2E-400    smoke
    Start GPU Pod    probe    gpumem=${LIMIT_MIB}    gpucores=50    image=${PYTORCH_IMAGE}
    GPU Memory Allocation Should Succeed    probe    ${UNDER_LIMIT_MIB}

Allocation Above The Memory Limit Fails With HAMi OOM
    [Documentation]    Allocating OVER_LIMIT_MIB in a pod limited to LIMIT_MIB fails, and HAMi-core's
    ...    "Device 0 OOM <requested> / <limit>" line names exactly the pod's limit.
    [Tags]    HAMI-E2E-401    smoke
    Start GPU Pod    probe    gpumem=${LIMIT_MIB}    gpucores=50    image=${PYTORCH_IMAGE}
    GPU Memory Allocation Should Fail With HAMi-Core OOM    probe    ${OVER_LIMIT_MIB}    limit_mib=${LIMIT_MIB}

Memory Percentage Is Enforced As Its Share Of The Card
    [Documentation]    A pod with gpumem-percentage 10 sees 10 % of the card as memory.total in nvidia-smi.
    [Tags]    HAMI-E2E-402    regression
    Start GPU Pod    tenth    gpumem_percentage=10    gpucores=10
    ${result} =    Exec In Pod    tenth    ${NVIDIA_SMI_QUERY}
    GPU Memory Total Should Match Percentage    ${result.stdout}    10    ${GPU_MEMORY_MIB}

Container Gets HAMi-Core Limits From The Device Plugin
    [Documentation]    The device plugin hands the container its limits: CUDA_DEVICE_MEMORY_LIMIT_0=<MiB>m,
    ...    CUDA_DEVICE_SM_LIMIT=<cores> and NVIDIA_VISIBLE_DEVICES=<the allocated UUID>.
    [Tags]    HAMI-E2E-403    regression
    Start GPU Pod    limited    gpumem=${LIMIT_MIB}    gpucores=30
    @{uuids} =    Get Allocated GPU UUIDs    limited
    ${result} =    Exec In Pod    limited    env
    Should Contain    ${result.stdout}    CUDA_DEVICE_MEMORY_LIMIT_0=${LIMIT_MIB}m
    Should Contain    ${result.stdout}    CUDA_DEVICE_SM_LIMIT=30
    Should Contain    ${result.stdout}    NVIDIA_VISIBLE_DEVICES=${uuids}[0]

Each Pod Sharing A GPU Is Held To Its Own Limit
    [Documentation]    Two pods on one GPU with different limits: the OOM line in each pod names that pod's own
    ...    limit, so HAMi-core enforces per pod, not per card.
    [Tags]    HAMI-E2E-404    regression
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start GPU Pod    big    gpumem=${LIMIT_MIB}    gpucores=20    use_gpu_uuid=${uuid}    image=${PYTORCH_IMAGE}
    Start GPU Pod
    ...    small
    ...    gpumem=${UNDER_LIMIT_MIB}
    ...    gpucores=20
    ...    use_gpu_uuid=${uuid}
    ...    image=${PYTORCH_IMAGE}
    GPU Memory Allocation Should Fail With HAMi-Core OOM    big    ${OVER_LIMIT_MIB}    limit_mib=${LIMIT_MIB}
    GPU Memory Allocation Should Fail With HAMi-Core OOM    small    ${LIMIT_MIB}    limit_mib=${UNDER_LIMIT_MIB}
