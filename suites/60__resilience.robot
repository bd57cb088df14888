*** Settings ***
Documentation     Resilience: restarting HAMi's scheduler or device plugin, upgrading or rolling back the release
...               keeps running GPU pods running (no restart, same allocation), and new GPU pods are still scheduled
...               by HAMi afterwards. Disruptive: run these tests serially, never beside other GPU work.

Resource          ../resources/hami_install.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    disruptive    slow    feature:resilience


*** Test Cases ***
Running GPU Pod Survives A Scheduler Restart
    [Documentation]    The HAMi scheduler pod is deleted and replaced while a GPU pod runs: the pod keeps running
    ...    without a restart, and a new GPU pod is scheduled by HAMi afterwards.
    [Tags]    HAMI-E2E-600
    Start GPU Pod    steady    gpumem=2000    gpucores=20
    Restart HAMi Scheduler    timeout=${COMPONENT_READY_TIMEOUT}
    Wait Until HAMi Is Ready For GPU Pods
    Running Pod Should Be Untouched    steady    gpumem=2000    gpucores=20
    Start GPU Pod    after    gpumem=1000    gpucores=10
    GPU Pod Should Be Placed By HAMi    after

Running GPU Pod Survives A Device Plugin Restart
    [Documentation]    The device-plugin pod on the GPU pod's node is replaced: the pod keeps running, the node
    ...    registers its GPUs again and a new pod on that node is allocated.
    [Tags]    HAMI-E2E-601
    ${node} =    Start GPU Pod    steady    gpumem=2000    gpucores=20
    Restart HAMi Device Plugin    ${node}    timeout=${COMPONENT_READY_TIMEOUT}
    Running Pod Should Be Untouched    steady    gpumem=2000    gpucores=20
    Wait Until Every GPU Node Is Registered
    ${uuid} =    First GPU Of Node    ${node}
    Start GPU Pod    after    gpumem=1000    gpucores=10    use_gpu_uuid=${uuid}
    GPU Pod Should Be Placed By HAMi    after

Scheduler Restart Does Not Double Book A GPU
    [Documentation]    After a scheduler restart HAMi rebuilds its accounting from the pods: a GPU with 60 % of its
    ...    cores taken still refuses another 60 % (CardInsufficientCore).
    [Tags]    HAMI-E2E-602
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start GPU Pod    first    gpumem=1000    gpucores=60    use_gpu_uuid=${uuid}
    Restart HAMi Scheduler    timeout=${COMPONENT_READY_TIMEOUT}
    Wait Until HAMi Is Ready For GPU Pods
    Create GPU Pod    second    gpumem=1000    gpucores=60    use_gpu_uuid=${uuid}
    Wait Until Pod Is Pending With Reason    second    FilteringFailed    CardInsufficientCore
    ...    timeout=${SCHEDULING_TIMEOUT}

Helm Upgrade Keeps Running GPU Pods
    [Documentation]    helm upgrade of the release (same pinned chart, reused values; the hook Jobs renew the webhook
    ...    certificate) leaves a running GPU pod untouched, and new GPU pods are still mutated and scheduled.
    [Tags]    HAMI-E2E-603    feature:upgrade
    Start GPU Pod    steady    gpumem=2000    gpucores=20
    Upgrade HAMi To The Pinned Chart
    Running Pod Should Be Untouched    steady    gpumem=2000    gpucores=20
    Start GPU Pod    after    gpumem=1000    gpucores=10
    GPU Pod Should Be Placed By HAMi    after

Helm Rollback Keeps Running GPU Pods
    [Documentation]    Rolling the release back to its previous revision leaves a running GPU pod untouched, and new
    ...    GPU pods are still scheduled by HAMi.
    [Tags]    HAMI-E2E-604    feature:upgrade
    Start GPU Pod    steady    gpumem=2000    gpucores=20
    Rollback HAMi Release    timeout=${HELM_TIMEOUT}
    Wait Until HAMi Is Ready For GPU Pods
    HAMi Release Status Should Be    deployed
    Running Pod Should Be Untouched    steady    gpumem=2000    gpucores=20
    Start GPU Pod    after    gpumem=1000    gpucores=10
    GPU Pod Should Be Placed By HAMi    after

Upgrade From The Previous Release Keeps Its Workloads
    [Documentation]    HAMi is moved to the previous release (HAMI_PREVIOUS_CHART_VERSION), a GPU pod starts under it,
    ...    then the release is upgraded to HAMI_CHART_VERSION: the pod keeps running with its allocation, the nodes
    ...    register again and new GPU pods are scheduled by the new release.
    [Tags]    HAMI-E2E-605    feature:upgrade
    Skip Unless A Previous Chart Version Is Given
    Move HAMi To Chart Version    ${HAMI_PREVIOUS_CHART_VERSION}
    Start GPU Pod    legacy    gpumem=2000    gpucores=20
    Move HAMi To Chart Version    ${HAMI_CHART_VERSION}
    HAMi Release Chart Version Should Be    ${HAMI_CHART_VERSION}
    Running Pod Should Be Untouched    legacy    gpumem=2000    gpucores=20
    Wait Until Every GPU Node Is Registered
    Start GPU Pod    fresh    gpumem=1000    gpucores=10
    GPU Pod Should Be Placed By HAMi    fresh
    [Teardown]    Put The Pinned Release Back And Clean Up


*** Keywords ***
Put The Pinned Release Back And Clean Up
    [Documentation]    Test Teardown of the upgrade test: when it failed half way, HAMi may still run the previous
    ...    release; move it to HAMI_CHART_VERSION again so later suites test the release under test.
    IF    $TEST_STATUS == 'FAIL'
        Run Keyword And Warn On Failure    Move HAMi To Chart Version    ${HAMI_CHART_VERSION}
    END
    End Test And Clean Up
