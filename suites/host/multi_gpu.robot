*** Settings ***
Documentation    Two-GPU checks: per-device limits differ and each GPU enforces its own; with CUDA_VISIBLE_DEVICES
...              one GPU is visible and gets its limit. Skipped on a host with fewer than two GPUs.

Resource         ../../resources/host.resource

Suite Setup      Require GPU Count    2

Test Tags        needs-real-gpu    feature:memory-isolation    multi-gpu


*** Test Cases ***
Per-Device Limits Are Reported For Each GPU
    [Documentation]    CUDA_DEVICE_MEMORY_LIMIT_0 and CUDA_DEVICE_MEMORY_LIMIT_1 set differently are read back per GPU.
    [Tags]    HOST-040
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT_0=${GPU0_LIMIT}    CUDA_DEVICE_MEMORY_LIMIT_1=${GPU1_LIMIT}
    Nvidia Smi Should Report The Limit As Memory Total    table    ${GPU0_LIMIT_MIB}
    ...    CUDA_DEVICE_MEMORY_LIMIT_0=${GPU0_LIMIT}    gpu=0
    Nvidia Smi Should Report The Limit As Memory Total    table    ${GPU1_LIMIT_MIB}
    ...    CUDA_DEVICE_MEMORY_LIMIT_1=${GPU1_LIMIT}    gpu=1

Each GPU Enforces Its Own Limit
    [Documentation]    The same allocation is refused on GPU 0 (smaller limit) and fits on GPU 1; an allocation over
    ...    GPU 1's limit is refused there, naming device 1.
    [Tags]    HOST-041
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT_0=${GPU0_LIMIT}    CUDA_DEVICE_MEMORY_LIMIT_1=${GPU1_LIMIT}
    Allocation Should Be Refused By HAMi-Core    ${ALLOCATION_BETWEEN_GPU_LIMITS_MIB}    ${GPU0_LIMIT_MIB}    device=0
    Allocation Should Succeed Under HAMi-Core    ${ALLOCATION_BETWEEN_GPU_LIMITS_MIB}    device=1
    Allocation Should Be Refused By HAMi-Core    ${ALLOCATION_OVER_GPU1_LIMIT_MIB}    ${GPU1_LIMIT_MIB}    device=1

A Single Visible GPU Gets Its Limit
    [Documentation]    With CUDA_VISIBLE_DEVICES=1 the workload sees one device, numbered 0, limited by
    ...    CUDA_DEVICE_MEMORY_LIMIT_0, as in a container that was given one GPU.
    [Tags]    HOST-042
    Set HAMi-Core Environment    CUDA_VISIBLE_DEVICES=1    CUDA_DEVICE_MEMORY_LIMIT_0=${GPU0_LIMIT}
    ${info}=    CUDA Should Report The Limit As Total Memory    ${GPU0_LIMIT_MIB}
    CUDA Device Count Should Be    ${info}    1
    Allocation Should Be Refused By HAMi-Core    ${ALLOCATION_BETWEEN_GPU_LIMITS_MIB}    ${GPU0_LIMIT_MIB}
