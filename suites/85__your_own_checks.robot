*** Settings ***
Documentation     Your own checks: tests written the way a tester adds one (suites/README.md, "Writing a test"),
...               with KubeLibrary (resources/kube.resource), RequestsLibrary (resources/metrics.resource) and the
...               suite's own keywords side by side. Each is a real check of HAMi in the default run; copy one to
...               start yours. The suite runs before 90__uninstall, while HAMi is still installed.

Library           String
Resource          ../resources/gpu_pods.resource
Resource          ../resources/kube.resource
Resource          ../resources/metrics.resource

Suite Setup       Prepare Own Checks
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    regression


*** Test Cases ***
HAMi Components Run In Their Namespace
    [Documentation]    KubeLibrary lists the pods of the HAMi release in HAMI_NAMESPACE: there is a scheduler and a
    ...    device plugin, and every one of them is Running.
    [Tags]    HAMI-E2E-850    feature:install
    @{names} =    Get Pod Names    ${HAMI_RELEASE}-    ${HAMI_NAMESPACE}
    Should Contain Match    ${names}    ${HAMI_RELEASE}-scheduler-*    msg=No scheduler pod among ${names}
    Should Contain Match    ${names}    ${HAMI_RELEASE}-device-plugin-*    msg=No device plugin pod among ${names}
    @{running} =    Get Pod Names    ${HAMI_RELEASE}-    ${HAMI_NAMESPACE}    phase=Running
    Lists Should Be Equal
    ...    ${running}
    ...    ${names}
    ...    msg=Not every HAMi pod is Running: ${names} exist, ${running} run

A vGPU Pod Runs On A Node Labelled For GPUs
    [Documentation]    A pod asking for 2000 MiB runs (the suite's keyword), then KubeLibrary reads where it runs: the
    ...    node carries the GPU node label (GPU_NODE_LABEL) and the GPU HAMi gave the pod is one of that node's.
    [Tags]    HAMI-E2E-851    feature:scheduling
    Start GPU Pod    mine    gpumem=2000    gpucores=20
    ${ns} =    Get Test Namespace
    @{pods} =    List Namespaced Pod By Pattern    ^mine$    ${ns}
    VAR    ${node} =    ${pods[0].spec.node_name}
    &{labels} =    Get Node Labels    ${node}
    ${key}    ${value} =    Split String    ${GPU_NODE_LABEL}    =    max_split=1
    Should Be Equal    ${labels}[${key}]    ${value}    msg=Node ${node} of pod mine lacks ${GPU_NODE_LABEL}
    @{node_gpus} =    Get GPU UUIDs Of Node    ${node}
    @{pod_gpus} =    Get Allocated GPU UUIDs    mine
    List Should Contain Sub List    ${node_gpus}    ${pod_gpus}    msg=Pod mine got ${pod_gpus}, not GPUs of ${node}

The Scheduler's Metrics Name Every Labelled GPU Node
    [Documentation]    The nodes that KubeLibrary finds with the GPU node label are exactly the nodes of the
    ...    scheduler's hami_gpu_memory_limit_bytes series (read with RequestsLibrary, polled for the 15 s
    ...    register loop after restarts).
    [Tags]    HAMI-E2E-852    feature:metrics
    @{labelled} =    Get GPU Node Names
    Wait Until Keyword Succeeds    ${METRICS_TIMEOUT}    2s
    ...    Scheduler Metrics Should Name Nodes    @{labelled}


*** Keywords ***
Prepare Own Checks
    [Documentation]    The cluster suite setup, then KubeLibrary on the target and the metrics sessions.
    Prepare Suite
    Use KubeLibrary On Target
    Open HAMi Metrics Sessions

Scheduler Metrics Should Name Nodes
    [Documentation]    One read of the scheduler's metrics: the node labels of hami_gpu_memory_limit_bytes are
    ...    exactly @{nodes}.
    [Arguments]    @{nodes}
    ${response} =    GET On Session    scheduler    /metrics
    Status Should Be    200    ${response}
    @{reported} =    Get Metric Label Values    ${response}    hami_gpu_memory_limit_bytes    node
    Lists Should Be Equal
    ...    ${reported}
    ...    ${nodes}
    ...    msg=The scheduler reports GPUs of ${reported}, expected ${nodes}
