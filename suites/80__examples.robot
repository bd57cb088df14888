*** Settings ***
Documentation     Examples: library building blocks the other suites do not need, each in a test that checks
...               something real, to copy from. A pod written as a manifest that runs to completion and logs the
...               GPU HAMi gave it (Create Pod From Manifest, Wait Until Pod Has Succeeded, Get Pod Logs), and a
...               pod whose containers differ (Build GPU Pod Spec, Add Container To Pod Spec, Create Pod From Spec).

Resource          ../resources/gpu_pods.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    regression    feature:examples


*** Test Cases ***
A GPU Pod From A Manifest Runs To Completion And Logs Its GPU
    [Documentation]    A pod given as a manifest (JSON is YAML too) asks for 1000 MiB of one GPU and runs
    ...    nvidia-smi -L once: it succeeds, and its log lists exactly the GPU HAMi allocated to it.
    [Tags]    HAMI-E2E-800
    VAR    ${manifest} =
    ...    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "listing"},
    ...    "spec": {"restartPolicy": "Never", "containers": [{"name": "cuda", "image": "${CUDA_IMAGE}",
    ...    "command": ["nvidia-smi", "-L"], "resources": {"limits": {"${VENDOR_NAMES}[gpu]": "1",
    ...    "${VENDOR_NAMES}[memory]": "1000"}}}]}}
    Create Pod From Manifest    ${manifest}
    Wait Until Pod Has Succeeded    listing    timeout=${POD_START_TIMEOUT}
    ${log} =    Get Pod Logs    listing
    @{uuids} =    Get Allocated GPU UUIDs    listing
    GPU UUIDs Should Be    ${log}    @{uuids}

A Sidecar Without GPU Gets No Share Of The Pod's GPU
    [Documentation]    A pod whose first container asks for 2000 MiB and 20 % of a GPU and whose sidecar asks for no
    ...    GPU runs; HAMi allocates the GPU share to the first container only.
    [Tags]    HAMI-E2E-801
    ${spec} =    Build GPU Pod Spec    mixed    gpumem=2000    gpucores=20
    Add Container To Pod Spec    ${spec}    sidecar
    Create Pod From Spec    ${spec}
    Wait Until Pod Is Running    mixed    timeout=${POD_START_TIMEOUT}
    Pod Allocation Should Be    mixed    gpumem=2000    gpucores=20    gpus=1    container=cuda
    Pod Allocation Should Be    mixed    gpus=0    container=sidecar
