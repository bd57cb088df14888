*** Settings ***
Documentation    HAMi-core enforces the memory limit on real allocations: under it they succeed, over it HAMi-core
...              refuses them with "Device <n> OOM <requested bytes> / <limit bytes>" and the workload exits
...              non-zero; processes sharing one limit share its memory.

Resource         ../../resources/host.resource

Test Tags        needs-real-gpu    feature:memory-isolation


*** Test Cases ***
Allocation Under The Limit Succeeds
    [Documentation]    A workload allocating less than the limit (the CUDA context counted in) runs to the end.
    [Tags]    HOST-010
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT=${MEMORY_LIMIT}
    Allocation Should Succeed Under HAMi-Core    ${ALLOCATION_UNDER_LIMIT_MIB}

Allocation Over The Limit Fails With HAMi-Core OOM
    [Documentation]    A workload allocating more than the limit gets out-of-memory, HAMi-core prints its OOM line
    ...    with the limit in bytes, and the workload exits non-zero.
    [Tags]    HOST-011
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT=${MEMORY_LIMIT}
    Allocation Should Be Refused By HAMi-Core    ${ALLOCATION_OVER_LIMIT_MIB}    ${MEMORY_LIMIT_MIB}

Two Processes Under One Limit Share It
    [Documentation]    While one process holds memory, a second one under the same limit (same shared region)
    ...    cannot take as much again; nvidia-smi shows the holder's usage; once the holder stops, the same
    ...    allocation succeeds.
    [Tags]    HOST-012
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT=${MEMORY_LIMIT}
    ${holder}=    Start Workload Holding GPU Memory    ${SHARED_ALLOCATION_MIB}
    Allocation Should Be Refused By HAMi-Core    ${SHARED_ALLOCATION_MIB}    ${MEMORY_LIMIT_MIB}
    ${output}=    Run Nvidia Smi Under HAMi-Core    table
    GPU Memory Used Should Be At Least    ${output}    ${SHARED_ALLOCATION_MIB}
    Stop Workload    ${holder}
    Allocation Should Succeed Under HAMi-Core    ${SHARED_ALLOCATION_MIB}
