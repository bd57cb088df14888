*** Settings ***
Documentation     Admission: the HAMi webhook (vgpu.hami.io) refuses GPU pods it must not accept, with its exact
...               message, and leaves pods that are not its business unchanged.

Resource          ../resources/gpu_pods.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    feature:admission


*** Variables ***
${DENIED}             admission webhook "vgpu.hami.io" denied the request:
${PERCENTAGE_RULE}    must be an integer between 0 and 100


*** Test Cases ***
Privileged GPU Pod Is Rejected
    [Documentation]    Since v2.10 a GPU pod with a privileged container is denied: "container <name> is privileged".
    [Tags]    HAMI-E2E-300    smoke
    Run Keyword And Expect Error
    ...    GLOB:*${DENIED} container cuda is privileged*
    ...    Create GPU Pod    privileged    gpumem=1000    privileged=${True}

Privileged Pod Without GPU Is Admitted Unchanged
    [Documentation]    The privileged rule applies only to pods asking for HAMi resources.
    [Tags]    HAMI-E2E-301    regression
    Create Pod Without GPU    privileged-cpu    privileged=${True}
    Pod Should Not Be Mutated By HAMi Webhook    privileged-cpu

GPU Memory Percentage Above 100 Is Rejected
    [Documentation]    Since v2.10 gpumem-percentage must be an integer between 0 and 100.
    [Tags]    HAMI-E2E-302    regression
    Run Keyword And Expect Error
    ...    GLOB:*${DENIED} invalid nvidia.com/gpumem-percentage value 150 in container cuda: ${PERCENTAGE_RULE}*
    ...    Create GPU Pod    too-much    gpumem_percentage=150

Negative GPU Memory Percentage Is Rejected
    [Documentation]    A negative gpumem-percentage is refused with the same message.
    [Tags]    HAMI-E2E-303    regression
    Run Keyword And Expect Error
    ...    GLOB:*${DENIED} invalid nvidia.com/gpumem-percentage value -5 in container cuda: ${PERCENTAGE_RULE}*
    ...    Create GPU Pod    negative    gpumem_percentage=-5

GPU Pod With A Node Already Assigned Is Rejected
    [Documentation]    HAMi must choose the GPU, so a GPU pod that names its node in spec.nodeName is denied:
    ...    "pod has node assigned".
    [Tags]    HAMI-E2E-304    regression
    Run Keyword And Expect Error
    ...    GLOB:*${DENIED} pod has node assigned*
    ...    Create GPU Pod    assigned    gpumem=1000    node_name=${GPU_NODES}[0]

Pod Without GPU Resources Is Not Mutated
    [Documentation]    A pod asking for no HAMi resource keeps the default scheduler.
    [Tags]    HAMI-E2E-305    smoke
    Create Pod Without GPU    cpu-only
    Wait Until Pod Is Running    cpu-only    timeout=${POD_START_TIMEOUT}
    Pod Should Not Be Mutated By HAMi Webhook    cpu-only

GPU Pod Labelled To Be Ignored Bypasses The Webhook
    [Documentation]    The label hami.io/webhook=ignore makes the webhook skip a pod even when it asks for a GPU.
    [Tags]    HAMI-E2E-306    regression
    VAR    &{ignore}    hami.io/webhook=ignore
    Create GPU Pod    ignored    gpumem=1000    labels=${ignore}
    Pod Should Not Be Mutated By HAMi Webhook    ignored

GPU Pod Of Another Scheduler Is Left Alone
    [Documentation]    A GPU pod that already names another scheduler is allowed unchanged.
    [Tags]    HAMI-E2E-307    regression
    Create GPU Pod    foreign    gpumem=1000    scheduler_name=other-scheduler
    Pod Should Not Be Mutated By HAMi Webhook    foreign
