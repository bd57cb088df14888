*** Settings ***
Documentation     vGPU pods: what a pod asks for with nvidia.com/gpu, gpumem, gpumem-percentage and gpucores is
...               exactly what HAMi allocates (hami.io/vgpu-devices-allocated) and, on real GPUs, what the container
...               sees in nvidia-smi. Covers several containers, several GPUs and pods sharing one GPU.

Resource          ../resources/gpu_pods.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    feature:vgpu-pods

Name              vGPU Pods


*** Test Cases ***
Pod With GPU Memory And Cores Gets Exactly That Share
    [Documentation]    A pod asking for 3000 MiB and 30 % of one GPU is placed by HAMi and gets one GPU with
    ...    exactly 3000 MiB and 30 cores in its allocation.
    [Tags]    HAMI-E2E-100    smoke
    Start GPU Pod    small    gpumem=3000    gpucores=30
    GPU Pod Should Be Placed By HAMi    small
    Pod Allocation Should Be    small    gpumem=3000    gpucores=30    gpus=1

Pod With GPU Memory Percentage Gets That Share Of The Card
    [Documentation]    gpumem-percentage 25 is resolved to 25 % of the card's memory, rounded down as HAMi does.
    [Tags]    HAMI-E2E-101    regression
    Start GPU Pod    quarter    gpumem_percentage=25    gpucores=25
    ${mib} =    Get GPU Memory For Percentage    25    ${GPU_MEMORY_MIB}
    Pod Allocation Should Be    quarter    gpumem=${mib}    gpucores=25    gpus=1

Pod Asking Only For A GPU Gets The Whole Card
    [Documentation]    nvidia.com/gpu: 1 alone is not a share: the webhook adds gpucores 100 and HAMi allocates
    ...    the card's full memory (exclusive use).
    [Tags]    HAMI-E2E-102    regression
    Start GPU Pod    whole    gpus=1
    Pod Resource Limit Should Be    whole    cores    100
    Pod Allocation Should Be    whole    gpumem=${GPU_MEMORY_MIB}    gpucores=100    gpus=1

Pod With Only GPU Memory Gets One GPU From The Webhook
    [Documentation]    A container asking for gpumem without nvidia.com/gpu gets nvidia.com/gpu: 1 added by the
    ...    webhook and one GPU allocated.
    [Tags]    HAMI-E2E-103    regression
    Create GPU Pod Without GPU Count    memonly    gpumem=2000
    Wait Until Pod Is Running    memonly    timeout=${POD_START_TIMEOUT}
    Pod Resource Limit Should Be    memonly    gpu    1
    Pod Allocation Should Be    memonly    gpumem=2000    gpus=1

Two Containers Each Get Their Own vGPU Share
    [Documentation]    Both containers of one pod get their own allocation of 2000 MiB and 20 cores.
    [Tags]    HAMI-E2E-104    regression
    Start GPU Pod    pair    gpumem=2000    gpucores=20    containers=2
    Pod Allocation Should Be    pair    gpumem=2000    gpucores=20    gpus=1    container=cuda
    Pod Allocation Should Be    pair    gpumem=2000    gpucores=20    gpus=1    container=cuda-1

Pod With Two GPUs Gets Two Different Cards
    [Documentation]    A container asking for two GPUs gets two distinct GPUs of the node it runs on, each with the
    ...    requested memory.
    [Tags]    HAMI-E2E-105    regression    multi-gpu
    Start GPU Pod    double    gpus=2    gpumem=4000    gpucores=20
    Pod Allocation Should Be    double    gpumem=4000    gpucores=20    gpus=2
    Pod Should Be Allocated On Its Node    double

Pods Sharing One GPU Each Get Their Own Limit
    [Documentation]    Three pods pinned to one GPU with 1000, 2000 and 3000 MiB all run on it, and each holds
    ...    exactly its own memory.
    [Tags]    HAMI-E2E-106    smoke
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start Pods Sharing One GPU    ${uuid}    1000    2000    3000
    Sharing Pods Should Each Have Their Own Allocation    ${uuid}    1000    2000    3000

Deleting One Sharing Pod Leaves The Others Running
    [Documentation]    Deleting one of three pods sharing a GPU does not restart or disturb the other two.
    [Tags]    HAMI-E2E-107    regression
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start Pods Sharing One GPU    ${uuid}    1000    2000    3000
    Delete Pod    share-2    timeout=${POD_DELETE_TIMEOUT}
    Pod Phase Should Be    share-1    Running
    Pod Phase Should Be    share-3    Running
    Pod Restart Count Should Be    share-1    0
    Pod Restart Count Should Be    share-3    0

Pod Sees Its GPU Memory Limit In Nvidia Smi
    [Documentation]    Inside a pod with gpumem 3000, nvidia-smi reports memory.total 3000 MiB (HAMi-core shows the
    ...    limit, not the card) and lists only the GPU HAMi allocated.
    [Tags]    HAMI-E2E-108    smoke
    Start GPU Pod    seen    gpumem=${LIMIT_MIB}    gpucores=30
    Pod Should See GPU Memory Limit    seen    ${LIMIT_MIB}
    Pod Should See Only Its Allocated GPUs    seen

Sharing Pods Each See Their Own Limit In Nvidia Smi
    [Documentation]    Three pods sharing one GPU each see their own memory limit, not the card and not each other's.
    [Tags]    HAMI-E2E-109    regression
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start Pods Sharing One GPU    ${uuid}    1000    2000    3000
    Pod Should See GPU Memory Limit    share-1    1000
    Pod Should See GPU Memory Limit    share-2    2000
    Pod Should See GPU Memory Limit    share-3    3000
