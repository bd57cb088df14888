*** Settings ***
Documentation     Installation: the pinned HAMi chart is installed (or, with HAMI_INSTALL false, the installed
...               release has the pinned version), its components become ready, the webhook is registered and every
...               GPU node is registered with the right GPUs. The release stays installed for the later suites.

Resource          ../resources/hami_install.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         smoke    feature:install    nvidia


*** Test Cases ***
Pinned HAMi Chart Is Installed
    [Documentation]    The HAMi release runs chart version HAMI_CHART_VERSION and helm reports it deployed. With
    ...    HAMI_INSTALL true the suite installs it here (repo, OCI or local chart, values from the variable file).
    [Tags]    HAMI-E2E-010    needs-hami
    Install Or Verify Pinned HAMi Release
    Record HAMi Versions In Metadata

HAMi Scheduler And Device Plugin Become Ready
    [Documentation]    The scheduler Deployment and the device-plugin DaemonSet are fully rolled out and the
    ...    scheduler Service has a ready endpoint, so the webhook can answer.
    [Tags]    HAMI-E2E-011    needs-hami
    Wait Until HAMi Is Ready For GPU Pods

HAMi Webhook Is Registered For Pod Creation
    [Documentation]    A MutatingWebhookConfiguration carries webhook vgpu.hami.io for pod CREATE.
    [Tags]    HAMI-E2E-012    needs-hami
    HAMi Webhook Should Be Registered

Every GPU Node Is Registered With Its GPUs
    [Documentation]    Each GPU node's hami.io/node-nvidia-register lists GPUS_PER_NODE healthy GPUs of GPU_MODEL
    ...    with GPU_MEMORY_MIB each, split DEVICE_SPLIT_COUNT ways.
    [Tags]    HAMI-E2E-013    needs-hami
    Wait Until Every GPU Node Is Registered

GPU Nodes Advertise Split vGPU Capacity
    [Documentation]    Each GPU node's allocatable nvidia.com/gpu is GPUS_PER_NODE x DEVICE_SPLIT_COUNT: HAMi's
    ...    device plugin advertises every physical GPU as that many vGPU slots.
    [Tags]    HAMI-E2E-014
    FOR    ${node}    IN    @{GPU_NODES}
        Node Should Advertise Split GPU Slots    ${node}    ${GPUS_PER_NODE}    ${DEVICE_SPLIT_COUNT}
    END

Scheduler Hands Out Node Handshakes
    [Documentation]    HAMi's scheduler stamps hami.io/node-handshake with Requesting_<time> on every GPU node
    ...    (its health check of the registration).
    [Tags]    HAMI-E2E-015    needs-hami
    FOR    ${node}    IN    @{GPU_NODES}
        Wait Until Node Handshake Is Requesting    ${node}    timeout=${NODE_REGISTRATION_TIMEOUT}
    END

First GPU Pod After Install Is Scheduled By HAMi
    [Documentation]    A GPU pod created right after the install is mutated by the webhook, bound by HAMi and
    ...    runs: the most reported HAMi problem is pods silently bypassing the webhook.
    [Tags]    HAMI-E2E-016    needs-hami
    Start GPU Pod    first    gpumem=1000    gpucores=10
    GPU Pod Should Be Placed By HAMi    first
