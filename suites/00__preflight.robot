*** Settings ***
Documentation     Preflight: is the target what the variable file says it is? Checks the API server, helm and the
...               GPU nodes, and records versions in the report. When any preflight test fails, every later suite
...               of this run is skipped with the preflight's message, so a wrong target gives one clear failure
...               instead of hundreds.

Resource          ../resources/hami_install.resource

Suite Setup       Prepare Suite
Suite Teardown    Record Preflight Result    ${SUITE STATUS}    ${SUITE MESSAGE}
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         smoke    feature:preflight    nvidia


*** Test Cases ***
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
