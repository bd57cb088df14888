*** Settings ***
Documentation    HAMi-core's log level (LIBCUDA_LOG_LEVEL): which of its lines appear, that OOM errors appear at
...              every level, and that nvidia-smi output mixed with its lines is still read correctly.

Resource         ../../resources/host.resource

Test Tags        needs-real-gpu    feature:logging


*** Test Cases ***
Default Log Level Prints HAMi-Core Messages
    [Documentation]    With LIBCUDA_LOG_LEVEL unset (HAMi-core's default, 2) nvidia-smi's output carries HAMi-core
    ...    "Msg" lines, and the table is still read as the limit.
    [Tags]    HOST-030
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT=${MEMORY_LIMIT}
    ${output}=    Run Nvidia Smi Under HAMi-Core    table
    HAMi-Core Log Lines Should Be    ${output}    Msg    minimum=1
    GPU Memory Total Should Be    ${output}    ${MEMORY_LIMIT_MIB}

Log Level 1 Hides Messages From Nvidia Smi
    [Documentation]    LIBCUDA_LOG_LEVEL=1, the HAMi chart's default, leaves no HAMi-core line in nvidia-smi's
    ...    default table.
    [Tags]    HOST-031
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT=${MEMORY_LIMIT}    LIBCUDA_LOG_LEVEL=1
    ${output}=    Run Nvidia Smi Under HAMi-Core    table
    HAMi-Core Log Lines Should Be    ${output}    any    expected_count=0
    GPU Memory Total Should Be    ${output}    ${MEMORY_LIMIT_MIB}

Log Level 1 Still Reports Out Of Memory
    [Documentation]    At LIBCUDA_LOG_LEVEL=1 an allocation over the limit still prints HAMi-core's OOM error line,
    ...    and no "Msg" line.
    [Tags]    HOST-032
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT=${MEMORY_LIMIT}    LIBCUDA_LOG_LEVEL=1
    ${result}=    Allocation Should Be Refused By HAMi-Core    ${ALLOCATION_OVER_LIMIT_MIB}    ${MEMORY_LIMIT_MIB}
    HAMi-Core Log Lines Should Be    ${result}[output]    Msg    expected_count=0

Debug Log Level Output Is Still Read Correctly
    [Documentation]    LIBCUDA_LOG_LEVEL=4 puts hundreds of HAMi-core debug lines around and inside nvidia-smi's
    ...    table and CSV; both still read as the limit.
    [Tags]    HOST-033
    Set HAMi-Core Environment    CUDA_DEVICE_MEMORY_LIMIT=${MEMORY_LIMIT}    LIBCUDA_LOG_LEVEL=4
    ${table}=    Run Nvidia Smi Under HAMi-Core    table
    HAMi-Core Log Lines Should Be    ${table}    Debug    minimum=1
    GPU Memory Total Should Be    ${table}    ${MEMORY_LIMIT_MIB}
    ${csv}=    Run Nvidia Smi Under HAMi-Core    csv
    GPU Memory Total Should Be    ${csv}    ${MEMORY_LIMIT_MIB}
