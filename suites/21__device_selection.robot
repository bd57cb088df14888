*** Settings ***
Documentation     Device selection: pods choose or avoid GPUs by type (nvidia.com/use-gputype, nouse-gputype) and
...               by UUID (use-gpuuuid, nouse-gpuuuid), and a cordoned GPU (hami.io/device-cordon) takes no new pod.

Resource          ../resources/scheduling.resource
Resource          ../resources/hami_install.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    feature:device-selection    needs-idle-gpus


*** Test Cases ***
Pod Asking For The Installed GPU Type Runs
    [Documentation]    use-gputype with a part of the installed model's name (GPU_TYPE_MATCH) lets the pod run.
    [Tags]    HAMI-E2E-210    smoke
    Start GPU Pod    typed    gpumem=1000    use_gpu_type=${GPU_TYPE_MATCH}
    GPU Pod Should Be Placed By HAMi    typed

Pod Asking For An Absent GPU Type Stays Pending
    [Documentation]    use-gputype naming a type no GPU has leaves the pod Pending with CardTypeMismatch.
    [Tags]    HAMI-E2E-211    regression
    Create GPU Pod    absent    gpumem=1000    use_gpu_type=${ABSENT_GPU_TYPE}
    Pod Should Stay Pending Because Of    absent    CardTypeMismatch

Pod Excluding The Installed GPU Type Stays Pending
    [Documentation]    nouse-gputype naming the installed type (every GPU of the target has it) leaves the pod
    ...    Pending with CardTypeMismatch.
    [Tags]    HAMI-E2E-212    regression
    Create GPU Pod    picky    gpumem=1000    nouse_gpu_type=${GPU_TYPE_MATCH}
    Pod Should Stay Pending Because Of    picky    CardTypeMismatch

Pod Pinned To A GPU UUID Runs On That GPU
    [Documentation]    use-gpuuuid with the last GPU of the last GPU node puts the pod on exactly that GPU and node.
    [Tags]    HAMI-E2E-213    smoke
    @{uuids} =    Get GPU UUIDs Of Node    ${GPU_NODES}[-1]
    Start GPU Pod    pinned    gpumem=1000    use_gpu_uuid=${uuids}[-1]
    Pod Should Run On GPU    pinned    ${uuids}[-1]
    Pod Should Be Allocated On Its Node    pinned

Pod Excluding Every Other GPU Gets The Remaining One
    [Documentation]    nouse-gpuuuid listing every GPU but one leaves the pod exactly that one.
    [Tags]    HAMI-E2E-214    regression
    ${kept} =    First GPU Of Node    ${GPU_NODES}[0]
    @{others} =    Every GPU Except    ${kept}
    Start GPU Pod    leftover    gpumem=1000    nouse_gpu_uuid=${others}
    Pod Should Run On GPU    leftover    ${kept}

Pod Pinned To An Unknown UUID Stays Pending
    [Documentation]    use-gpuuuid naming a UUID no GPU has leaves the pod Pending with CardUuidMismatch (sic).
    [Tags]    HAMI-E2E-215    regression
    Create GPU Pod    lost    gpumem=1000    use_gpu_uuid=${UNKNOWN_GPU_UUID}
    Pod Should Stay Pending Because Of    lost    CardUuidMismatch

Cordoned GPU Takes No New Pod
    [Documentation]    A GPU listed in the node annotation hami.io/device-cordon takes no new pod: one pinned to it
    ...    stays Pending with CardCordoned. Known bug (HAMi 2.10.0): HAMi's code says the cordon "takes effect
    ...    immediately" (pkg/device/nvidia/device.go, DeviceCordonAnnotation), but the scheduler reads it from its
    ...    node cache, which it refreshes only when its register loop sees the node's allocatable count or the
    ...    registration annotation change (pkg/scheduler/scheduler.go register; pkg/device/nvidia/device.go
    ...    CheckHealth): a cordon, and its removal, take effect seconds to minutes later. Seen on the twin: a pod
    ...    created right after cordoning was bound to the cordoned GPU; in a matrix run the cordon still refused pods
    ...    3 minutes after it was removed. The teardown restarts HAMi's scheduler so that later tests meet a fresh
    ...    node cache.
    [Tags]    HAMI-E2E-216    regression    disruptive    known-bug:hami-device-cordon-stale-cache
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Set Node Annotation    ${GPU_NODES}[0]    hami.io/device-cordon    ${uuid}
    Create GPU Pod    cordoned    gpumem=1000    use_gpu_uuid=${uuid}
    Pod Should Stay Pending Because Of    cordoned    CardCordoned
    [Teardown]    Lift The Cordon And Refresh HAMi's Node Cache


*** Keywords ***
Lift The Cordon And Refresh HAMi's Node Cache
    [Documentation]    Test Teardown of the cordon test: the usual cleanup (the annotation goes), then HAMi's
    ...    scheduler is replaced, since its node cache may keep the cordon for minutes.
    End Test And Clean Up
    Restart HAMi Scheduler    timeout=${COMPONENT_READY_TIMEOUT}
    Wait Until HAMi Is Ready For GPU Pods
