*** Settings ***
Documentation    A container that was given some GPUs, imitated on the host without a container runtime: each
...              process runs in a private mount namespace whose /dev holds only the given GPUs' device nodes
...              (tools/workloads/gpu_container.py), so CUDA and NVML see just those GPUs, numbered from 0, as in a
...              pod. HAMi's device plugin names the limits by the container's own index (CUDA_DEVICE_MEMORY_LIMIT_0 is
...              the first GPU given), and so do these tests. Needs root; skipped on a host with fewer than two GPUs.

Resource         ../../resources/host.resource

Suite Setup      Require GPU Count    2

Test Tags        needs-real-gpu    feature:memory-isolation    multi-gpu


*** Test Cases ***
A Container Given GPU 1 Sees Only That GPU With Its Limit
    [Documentation]    nvidia-smi lists only host GPU 1 (by UUID) with the limit as its total; CUDA sees one device
    ...    with the limit and the CUDA context counted as used; an allocation that fits only without the context
    ...    is refused, a smaller one succeeds.
    [Tags]    HOST-044
    Set Up Container Given GPUs    pod    1    CUDA_DEVICE_MEMORY_LIMIT_0=${GPU0_LIMIT}
    ${output}=    Run Nvidia Smi Under HAMi-Core    csv
    Nvidia Smi Should List Host GPUs    ${output}    1
    GPU Memory Total Should Be    ${output}    ${GPU0_LIMIT_MIB}
    ...    expected_from=CUDA_DEVICE_MEMORY_LIMIT_0=${GPU0_LIMIT}
    ${info}=    CUDA Should Report The Limit As Total Memory    ${GPU0_LIMIT_MIB}
    CUDA Device Count Should Be    ${info}    1
    CUDA Used Memory Should Be At Least    ${info}    ${CONTEXT_MIN_MIB}
    Allocation Should Be Refused By HAMi-Core    ${ALLOCATION_BETWEEN_GPU_LIMITS_MIB}    ${GPU0_LIMIT_MIB}
    Allocation Should Succeed Under HAMi-Core    ${ALLOCATION_UNDER_GPU0_LIMIT_MIB}

Two Containers On Different GPUs Keep Their Own Limits
    [Documentation]    While a container given GPU 0 holds memory under its limit, a container given GPU 1 with a
    ...    larger limit allocates up to its own limit and is refused above it, naming its own limit; each sees its
    ...    own limit in nvidia-smi, and only the first sees the held memory.
    [Tags]    HOST-045
    Set Up Container Given GPUs    first    0    CUDA_DEVICE_MEMORY_LIMIT_0=${GPU0_LIMIT}
    Start Workload Holding GPU Memory    ${HOLDER_MIB}
    Set Up Container Given GPUs    second    1    CUDA_DEVICE_MEMORY_LIMIT_0=${GPU1_LIMIT}
    Allocation Should Succeed Under HAMi-Core    ${ALLOCATION_BETWEEN_GPU_LIMITS_MIB}
    Allocation Should Be Refused By HAMi-Core    ${ALLOCATION_OVER_GPU1_LIMIT_MIB}    ${GPU1_LIMIT_MIB}
    Nvidia Smi Should Report The Limit As Memory Total    csv    ${GPU1_LIMIT_MIB}    the second container's limit
    Use Container    first
    ${output}=    Run Nvidia Smi Under HAMi-Core    csv
    GPU Memory Total Should Be    ${output}    ${GPU0_LIMIT_MIB}    expected_from=the first container's limit
    GPU Memory Used Should Be At Least    ${output}    ${HOLDER_MIB}

A Container Given Two GPUs Gets A Limit Per GPU
    [Documentation]    A container given GPUs 0 and 1 with CUDA_DEVICE_MEMORY_LIMIT_0 and _1 sees exactly those two,
    ...    each with its own limit in nvidia-smi and CUDA; on its device 1 an allocation within that limit
    ...    succeeds and one above it is refused with "Device 1 OOM".
    [Tags]    HOST-046
    Set Up Container Given GPUs    pod    0,1
    ...    CUDA_DEVICE_MEMORY_LIMIT_0=${GPU0_LIMIT}    CUDA_DEVICE_MEMORY_LIMIT_1=${GPU1_LIMIT}
    ${output}=    Run Nvidia Smi Under HAMi-Core    csv
    Nvidia Smi Should List Host GPUs    ${output}    0,1
    GPU Memory Total Should Be    ${output}    ${GPU0_LIMIT_MIB}    gpu=0
    GPU Memory Total Should Be    ${output}    ${GPU1_LIMIT_MIB}    gpu=1
    ${info}=    CUDA Should Report The Limit As Total Memory    ${GPU1_LIMIT_MIB}    device=1
    CUDA Device Count Should Be    ${info}    2
    Allocation Should Succeed Under HAMi-Core    ${ALLOCATION_BETWEEN_GPU_LIMITS_MIB}    device=1
    Allocation Should Be Refused By HAMi-Core    ${ALLOCATION_OVER_GPU1_LIMIT_MIB}    ${GPU1_LIMIT_MIB}    device=1
