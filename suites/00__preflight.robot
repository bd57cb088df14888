*** Settings ***
Documentation     Preflight: is the target what the variable file says it is? The run's preflight verdict (given
...               before any test, by the root suite's setup or, when one suite file runs, by its setup) checks the
...               variables, the kubeconfig, the API server, helm, the chart, the GPU nodes and HAMi's registration,
...               and removes what earlier runs left behind. When it fails, the first test fails with its one cause
...               and every later test of the run skips with it, so a wrong input gives one clear failure instead of
...               hundreds. The tests here then record versions in the report and check that pods run.

Resource          ../resources/hami_install.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         smoke    feature:preflight    nvidia


*** Test Cases ***
Target Passes Preflight
    [Documentation]    The run's preflight verdict passed; the log lists what it checked and which leftovers of
    ...    earlier runs it removed. When it failed, this test fails with the cause (file or variable named) and
    ...    every later test of the run skips with the same reason.
    [Tags]    HAMI-E2E-000
    [Setup]    NONE
    Preflight Should Have Passed

Kubernetes API Server Answers
    [Documentation]    The cluster of KUBECONFIG answers; its version goes into the report's metadata.
    [Tags]    HAMI-E2E-001
    ${version} =    Cluster Should Be Reachable
    Set Suite Metadata    Kubernetes    ${version}    top=True

Helm Client Is Available
    [Documentation]    The helm client the suite installs HAMi with runs; its version goes into the metadata.
    [Tags]    HAMI-E2E-002
    ${version} =    Get Helm Version
    Set Suite Metadata    Helm    ${version}    top=True

GPU Nodes Are Present And Ready
    [Documentation]    Exactly the nodes listed in GPU_NODES carry the GPU node label (GPU_NODE_LABEL, which HAMi's
    ...    device plugin needs) and all of them are Ready.
    [Tags]    HAMI-E2E-003
    GPU Nodes Should Be    ${GPU_NODES}    label_selector=${GPU_NODE_LABEL}

A Plain Pod Runs In The Test Namespace
    [Documentation]    A pod without GPU resources starts on a GPU node and can be deleted: namespaces, pods and
    ...    the watch-based waits work before anything GPU-related is tested.
    [Tags]    HAMI-E2E-004
    Create Pod Without GPU    plain
    Wait Until Pod Is Running    plain    timeout=${POD_START_TIMEOUT}
    Delete Pod    plain    timeout=${POD_DELETE_TIMEOUT}

Installed HAMi Registers Every GPU Node
    [Documentation]    When HAMi is already installed (HAMI_INSTALL false), every GPU node's registration lists
    ...    the expected GPUs with the expected model, memory and split count. When the run installs HAMi itself,
    ...    suite 01 checks this after the install.
    [Tags]    HAMI-E2E-005    needs-hami
    Skip If Suite Installs HAMi
    Wait Until Every GPU Node Is Registered
    Record HAMi Versions In Metadata
