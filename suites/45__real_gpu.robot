*** Settings ***
Documentation     Real silicon: what only a real GPU and a real CUDA runtime can show, through all of HAMi (webhook,
...               extender, device plugin on the real NVML, HAMi-core). They run on a GPU cluster, or on the
...               sandbox's GPU-node mode on a lent GPU machine (tools/gpu-twin/run-on-device.sh: one node that is
...               the machine, each GPU pod's processes given only their allocated GPUs). The simulated twin skips
...               them (REAL_GPU_AVAILABLE false): its CUDA driver allocates nothing and PyTorch cannot run on it.
...               Each check fails without HAMi-core (the fault run: HAMI_E2E_HAMI_CORE=off, or a cluster whose
...               pods do not preload libvgpu.so): the allocation then succeeds and the card's full memory shows.
...               Not here: SM throttling (gpucores). The GPU host tier's HOST-020 found a PyTorch matmul not held
...               to 30 % on an H200; a pod-level check needs a timing design that is stable on shared machines.

Library           String
Resource          ../resources/gpu_pods.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    needs-real-gpu    nvidia    feature:isolation

Name              Real GPU


*** Variables ***
# PyTorch's view of every visible device: "<total MiB> <free MiB>" per line, from torch.cuda.mem_get_info.
${MEM_GET_INFO}    python3 -c 'import torch; [print(*[v >> 20 for v in reversed(torch.cuda.mem_get_info(i))])
...                for i in range(torch.cuda.device_count())]'


*** Test Cases ***
PyTorch Allocation Over The Limit Fails With HAMi-Core OOM
    [Documentation]    A real CUDA runtime is stopped at the pod's limit: PyTorch asking for OVER_LIMIT_MIB in a pod
    ...    limited to LIMIT_MIB raises torch.OutOfMemoryError, and HAMi-core's "Device 0 OOM <requested> /
    ...    <limit>" line names exactly the pod's limit. Without HAMi-core the allocation succeeds on the card.
    [Tags]    HAMI-E2E-450    smoke
    Start GPU Pod    torch    gpumem=${LIMIT_MIB}    gpucores=50    image=${PYTORCH_IMAGE}
    ${result} =    Allocate GPU Memory In Pod    torch    ${OVER_LIMIT_MIB}
    Should Not Be Equal As Integers    ${result.rc}    0
    ...    msg=PyTorch allocated ${OVER_LIMIT_MIB} MiB in a pod limited to ${LIMIT_MIB} MiB
    Should Contain    ${result.stderr}    OutOfMemoryError
    HAMi-Core OOM Should Be Reported    ${result.stderr}\n${result.stdout}    limit_mib=${LIMIT_MIB}

PyTorch Sees The Limit As The Card And Pays For Its Context
    [Documentation]    torch.cuda.mem_get_info in a pod limited to LIMIT_MIB reports a total of exactly LIMIT_MIB,
    ...    and less than that free: the CUDA context (about 500 MiB on Hopper) is charged to the pod's limit, as in
    ...    a real container (the host tier found it escapes when CUDA_VISIBLE_DEVICES stands in for a container).
    [Tags]    HAMI-E2E-451    regression
    Start GPU Pod    torch    gpumem=${LIMIT_MIB}    gpucores=50    image=${PYTORCH_IMAGE}
    ${result} =    Exec In Pod    torch    ${MEM_GET_INFO}
    @{fields} =    Split String    ${result.stdout}
    Length Should Be    ${fields}    2    msg=expected one device "<total> <free>", got: ${result.stdout}
    Should Be Equal As Integers    ${fields}[0]    ${LIMIT_MIB}    msg=PyTorch's total is not the pod's limit
    Should Be True    ${fields}[1] < ${LIMIT_MIB}
    ...    msg=PyTorch sees ${fields}[1] MiB free of ${LIMIT_MIB}: the CUDA context escaped the limit

Nvidia Smi In The Pod Lists Only Its GPU With The Limit
    [Documentation]    On a machine with more GPUs than the pod got, the container sees only its allocated GPU
    ...    (nvidia-smi -L names exactly the UUID of HAMi's allocation) and its memory.total is the pod's limit.
    [Tags]    HAMI-E2E-452    smoke
    Start GPU Pod    smi    gpumem=${LIMIT_MIB}    gpucores=30
    Pod Should See Only Its Allocated GPUs    smi
    Pod Should See GPU Memory Limit    smi    ${LIMIT_MIB}

CUDA C Workload Is Stopped At The Limit
    [Documentation]    The CUDA runtime called from C (gpu-workload, the GPU host tier's program) is refused an
    ...    allocation over the limit with HAMi-core's OOM line, like PyTorch.
    [Tags]    HAMI-E2E-453    regression
    Start GPU Pod    cuda    gpumem=${LIMIT_MIB}    gpucores=50
    ${result} =    Exec In Pod    cuda    gpu-workload alloc 0 ${OVER_LIMIT_MIB} 2>&1    expected_rc=any
    Should Not Be Equal As Integers    ${result.rc}    0
    ...    msg=gpu-workload allocated ${OVER_LIMIT_MIB} MiB in a pod limited to ${LIMIT_MIB} MiB: ${result.stdout}
    HAMi-Core OOM Should Be Reported    ${result.stdout}    limit_mib=${LIMIT_MIB}

Two-GPU Pod Sees Both GPUs Each At Its Limit
    [Documentation]    A pod given two GPUs with gpumem 2000 sees exactly two CUDA devices in PyTorch, each with a
    ...    total of 2000 MiB: HAMi-core maps the per-device limits onto the container's own numbering.
    [Tags]    HAMI-E2E-454    regression    multi-gpu
    Start GPU Pod    pair    gpus=2    gpumem=2000    gpucores=20    image=${PYTORCH_IMAGE}
    ${result} =    Exec In Pod    pair    ${MEM_GET_INFO}
    @{lines} =    Split To Lines    ${result.stdout}
    Length Should Be    ${lines}    2    msg=expected two CUDA devices, PyTorch printed: ${result.stdout}
    FOR    ${line}    IN    @{lines}
        @{fields} =    Split String    ${line}
        Should Be Equal As Integers    ${fields}[0]    2000    msg=a device's total is not the limit: ${line}
    END
