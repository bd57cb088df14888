*** Settings ***
Documentation     Faults: a GPU that fails while HAMi runs and then heals, and the API server restarted while GPU
...               pods are created. What HAMi 2.10.0 does, read in its code: its device plugin takes a GPU out of
...               service on a critical Xid event (pkg/device-plugin/nvidiadevice/nvinternal/rm/health.go), the node
...               loses that GPU's slots, the registration says health false, the scheduler refuses new pods on it
...               (CardNotHealth) and pods already on it keep running. The health checker only ever marks devices
...               unhealthy, so a healed GPU comes back when the device plugin restarts. Only the sandbox can inject
...               these faults (its GPUs are NVIDIA's mock NVML); on a cluster the suite skips.

Resource          ../resources/faults.resource
Resource          ../resources/hami_install.resource
Resource          ../resources/scheduling.resource

Suite Setup       Prepare Fault Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    disruptive    regression    feature:resilience    feature:gpu-faults


*** Test Cases ***
A GPU That Fails Takes No New Pods
    [Documentation]    An uncorrectable ECC error (Xid 48) on the GPU a pod uses: HAMi's device plugin reports the
    ...    GPU unhealthy, the node loses its slots, new pods pinned to it stay Pending with CardNotHealth, and the
    ...    pod already on it keeps running with its allocation. The scheduler learns the health from its node cache,
    ...    refreshed on its 15 s register loop: in that window HAMi still binds pods to the failed GPU (seen on the
    ...    twin: bound, allocated and started there right after the registration said health false), so refusal
    ...    is expected within NODE_REFRESH_TIMEOUT. The GPU is healed after the test.
    [Tags]    HAMI-E2E-650
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start GPU Pod    resident    gpumem=1000    gpucores=10    use_gpu_uuid=${uuid}
    Make GPU Fail    ${GPU_NODES}[0]    ${uuid}    mode=ecc_uncorrectable    xid=48
    GPU Should Be Taken Out Of Service    ${GPU_NODES}[0]    ${uuid}
    Wait Until HAMi Refuses Pods On GPU    ${uuid}    CardNotHealth
    Running Pod Should Be Untouched    resident    gpumem=1000    gpucores=10

A Healed GPU Takes Pods Again Once The Device Plugin Restarts
    [Documentation]    After the GPU heals, HAMi's device plugin keeps it out of service (its health checker has no
    ...    way back); once the device-plugin pod on that node is replaced, the GPU is registered healthy, the node
    ...    advertises all its slots and, once HAMi's scheduler refreshed its node cache (its 15 s register loop), a
    ...    pod pinned to the GPU runs.
    [Tags]    HAMI-E2E-651    slow
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Make GPU Fail    ${GPU_NODES}[0]    ${uuid}    mode=ecc_uncorrectable    xid=48
    GPU Should Be Taken Out Of Service    ${GPU_NODES}[0]    ${uuid}
    Heal GPU    ${GPU_NODES}[0]    ${uuid}
    Restart HAMi Device Plugin    ${GPU_NODES}[0]    timeout=${COMPONENT_READY_TIMEOUT}
    GPU Should Be Back In Service    ${GPU_NODES}[0]    ${uuid}
    ${pod} =    Wait Until HAMi Places Pods On GPU    ${uuid}
    GPU Pod Should Be Placed By HAMi    ${pod}

GPU Pods Are Scheduled After The API Server Restarts Under Load
    [Documentation]    The API server is restarted while GPU pods are being created: the running pod keeps its
    ...    allocation, the pods created around the restart are scheduled by HAMi once it is back (HAMi's
    ...    informers reconnect), and a pod created afterwards is placed by HAMi.
    [Tags]    HAMI-E2E-652
    Start GPU Pod    before    gpumem=1000    gpucores=10
    Create GPU Pod    around-1    gpumem=1000    gpucores=10
    Create GPU Pod    around-2    gpumem=1000    gpucores=10
    Restart Control Plane Component    kube-apiserver
    Wait Until Pod Is Running    around-1    timeout=${POD_START_TIMEOUT}
    Wait Until Pod Is Running    around-2    timeout=${POD_START_TIMEOUT}
    Running Pod Should Be Untouched    before    gpumem=1000    gpucores=10
    Start GPU Pod    after    gpumem=1000    gpucores=10
    GPU Pod Should Be Placed By HAMi    after

A GPU Pod Being Scheduled When HAMi's Extender Crashes Is Placed Once It Is Back
    [Documentation]    HAMi's scheduler extender process is killed right after a GPU pod is created: the container
    ...    is restarted (as a kubelet does), kube-scheduler retries the pod, and HAMi places it exactly once (one
    ...    allocation, bind-phase success); the next GPU pod is placed by HAMi too.
    [Tags]    HAMI-E2E-653
    Create GPU Pod    racing    gpumem=1000    gpucores=10
    Kill HAMi Container Process    hami-scheduler    vgpu-scheduler-extender
    Wait Until Pod Is Running    racing    timeout=${POD_START_TIMEOUT}
    GPU Pod Should Be Placed By HAMi    racing
    Wait Until HAMi Is Ready For GPU Pods
    Start GPU Pod    next    gpumem=1000    gpucores=10
    GPU Pod Should Be Placed By HAMi    next


*** Keywords ***
Prepare Fault Suite
    [Documentation]    The common suite preparation, then skip unless the target is the sandbox.
    Prepare Suite
    Skip Unless Faults Can Be Injected
