*** Settings ***
Documentation     Scheduling policies: binpack and spread, chosen per pod with hami.io/node-scheduler-policy (which
...               node) and hami.io/gpu-scheduler-policy (which GPU on the node), put pods where the policy says.

Resource          ../resources/scheduling.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    regression    feature:scheduling-policy    needs-idle-gpus


*** Test Cases ***
Node Binpack Puts Two Pods On The Same Node
    [Documentation]    With node policy binpack the second pod goes to the node the first one already uses.
    [Tags]    HAMI-E2E-220    multi-node
    Start GPU Pod    packed-1    gpumem=1000    gpucores=10    node_policy=binpack
    Start GPU Pod    packed-2    gpumem=1000    gpucores=10    node_policy=binpack
    Pods Should Run On The Same Node    packed-1    packed-2

Node Spread Puts Two Pods On Different Nodes
    [Documentation]    With node policy spread the second pod goes to another node than the first.
    [Tags]    HAMI-E2E-221    multi-node
    Start GPU Pod    spread-1    gpumem=1000    gpucores=10    node_policy=spread
    Start GPU Pod    spread-2    gpumem=1000    gpucores=10    node_policy=spread
    Pods Should Run On Different Nodes    spread-1    spread-2

GPU Binpack Puts Two Pods On The Same GPU
    [Documentation]    Two pods limited to the GPUs of one node with GPU policy binpack share one GPU.
    [Tags]    HAMI-E2E-222    multi-gpu
    @{node_gpus} =    Get GPU UUIDs Of Node    ${GPU_NODES}[0]
    Start GPU Pod    gpu-packed-1    gpumem=1000    gpucores=10    use_gpu_uuid=${node_gpus}    gpu_policy=binpack
    Start GPU Pod    gpu-packed-2    gpumem=1000    gpucores=10    use_gpu_uuid=${node_gpus}    gpu_policy=binpack
    Pods Should Share One GPU    gpu-packed-1    gpu-packed-2

GPU Spread Puts Two Pods On Different GPUs
    [Documentation]    Two pods limited to the GPUs of one node with GPU policy spread get different GPUs.
    [Tags]    HAMI-E2E-223    multi-gpu
    @{node_gpus} =    Get GPU UUIDs Of Node    ${GPU_NODES}[0]
    Start GPU Pod    gpu-spread-1    gpumem=1000    gpucores=10    use_gpu_uuid=${node_gpus}    gpu_policy=spread
    Start GPU Pod    gpu-spread-2    gpumem=1000    gpucores=10    use_gpu_uuid=${node_gpus}    gpu_policy=spread
    Pods Should Use Different GPUs    gpu-spread-1    gpu-spread-2
