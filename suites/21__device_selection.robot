*** Settings ***
Documentation     Device selection: pods choose or avoid GPUs by type (nvidia.com/use-gputype, nouse-gputype) and
...               by UUID (use-gpuuuid, nouse-gpuuuid), and a cordoned GPU (hami.io/device-cordon) takes no new pod.

Resource          ../resources/scheduling.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    feature:device-selection


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
    [Documentation]    A GPU listed in the node annotation hami.io/device-cordon is skipped: a pod pinned to it stays
    ...    Pending with CardCordoned. HAMi reads the annotation from its node cache, refreshed by its register loop
    ...    every 15 s (pkg/scheduler/scheduler.go RegisterFromNodeAnnotations), so pods created in the first
    ...    seconds may still be bound there; the cordon must hold within NODE_REFRESH_TIMEOUT. The annotation is
    ...    removed again after the test.
    [Tags]    HAMI-E2E-216    regression
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Set Node Annotation    ${GPU_NODES}[0]    hami.io/device-cordon    ${uuid}
    Wait Until HAMi Refuses Pods On GPU    ${uuid}    CardCordoned
