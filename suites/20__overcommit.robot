*** Settings ***
Documentation     Over-commit: pods asking for more memory, cores or GPUs than a GPU or node has left stay Pending
...               with HAMi's exact reason, and start once the blocking pod is deleted.

Resource          ../resources/scheduling.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    feature:scheduling    needs-idle-gpus


*** Test Cases ***
Pod Asking For More Memory Than Any GPU Has Stays Pending
    [Documentation]    101 % of a whole card's memory fits on no GPU: FilteringFailed with CardInsufficientMemory.
    [Tags]    HAMI-E2E-200    smoke
    ${beyond_one_card} =    Get GPU Memory For Percentage    101    ${GPU_MEMORY_MIB}
    Create GPU Pod    greedy    gpumem=${beyond_one_card}
    Pod Should Stay Pending Because Of    greedy    CardInsufficientMemory

Pod Asking For More Cores Than Are Left Stays Pending
    [Documentation]    A GPU with 80 % of its cores taken cannot take a pod asking for 30 %: CardInsufficientCore.
    [Tags]    HAMI-E2E-201    regression
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start GPU Pod    busy    gpumem=1000    gpucores=80    use_gpu_uuid=${uuid}
    Create GPU Pod    late    gpumem=1000    gpucores=30    use_gpu_uuid=${uuid}
    Pod Should Stay Pending Because Of    late    CardInsufficientCore

Pod Asking For More Memory Than Is Left On A GPU Stays Pending
    [Documentation]    A GPU with 99 % of its memory taken cannot take another 2000 MiB: CardInsufficientMemory.
    [Tags]    HAMI-E2E-202    regression
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    ${almost_all} =    Get GPU Memory For Percentage    99    ${GPU_MEMORY_MIB}
    Start GPU Pod    filler    gpumem=${almost_all}    gpucores=10    use_gpu_uuid=${uuid}
    Create GPU Pod    late    gpumem=2000    gpucores=10    use_gpu_uuid=${uuid}
    Pod Should Stay Pending Because Of    late    CardInsufficientMemory

Pod Asking For More GPUs Than A Node Has Stays Pending
    [Documentation]    Asking for one GPU more than a node physically has fails even though the node shows ten times
    ...    as many vGPU slots: NodeInsufficientDevice.
    [Tags]    HAMI-E2E-203    smoke
    ${too_many} =    Get GPU Count Above Node Capacity    ${GPUS_PER_NODE}
    Create GPU Pod    many    gpus=${too_many}    gpumem=1000
    Pod Should Stay Pending With Scheduler Reason    many    NodeInsufficientDevice

Exclusive Pod Cannot Join A Used GPU
    [Documentation]    A pod asking for 100 % of the cores cannot share a GPU another pod already uses:
    ...    ExclusiveDeviceAllocateConflict.
    [Tags]    HAMI-E2E-204    regression
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start GPU Pod    tenant    gpumem=1000    use_gpu_uuid=${uuid}
    Create GPU Pod    exclusive    gpumem=1000    gpucores=100    use_gpu_uuid=${uuid}
    Pod Should Stay Pending Because Of    exclusive    ExclusiveDeviceAllocateConflict

Pending Pod Starts Once The Blocking Pod Is Deleted
    [Documentation]    Deleting the pod that holds all cores of a GPU releases them: the waiting pod is then
    ...    scheduled onto that GPU and runs. HAMi finding (2.10.0): kube-scheduler retries the waiting pod the
    ...    moment it sees the deletion, and HAMi's filter may answer before its own informer has dropped the deleted
    ...    pod (seen: retry at +0 ms refused with CardInsufficientCore, "Pod deleted, cleaning up cache" at +33 ms);
    ...    the pod then waits for kube-scheduler's periodic retry (4.5 min). The report warns when that happened.
    [Tags]    HAMI-E2E-205    smoke
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start GPU Pod    holder    gpumem=1000    gpucores=100    use_gpu_uuid=${uuid}
    Create GPU Pod    waiter    gpumem=1000    gpucores=50    use_gpu_uuid=${uuid}
    Pod Should Stay Pending Because Of    waiter    CardInsufficientCore
    Delete Pod    holder    timeout=${POD_DELETE_TIMEOUT}
    Wait Until Refused Pod Is Running    waiter
    Pod Should Run On GPU    waiter    ${uuid}

Split Count Limits The Pods On One GPU
    [Documentation]    A GPU takes at most DEVICE_SPLIT_COUNT pods; the next one waits with CardTimeSlicingExhausted.
    [Tags]    HAMI-E2E-206    regression    slow
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Fill GPU With Small Pods    ${uuid}    ${DEVICE_SPLIT_COUNT}
    Create GPU Pod    one-too-many    gpumem=100    gpucores=1    use_gpu_uuid=${uuid}
    Pod Should Stay Pending Because Of    one-too-many    CardTimeSlicingExhausted
