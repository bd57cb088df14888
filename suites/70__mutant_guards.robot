*** Settings ***
Documentation     Mutant guards: checks added because a deliberately broken HAMi or HAMi-core (a mutant of
...               tools/mutants) survived every other test. Each test names the break it catches.

Resource          ../resources/gpu_pods.resource

Suite Setup       Prepare Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    regression


*** Test Cases ***
Memory Percentage Is A Share Of The Whole Card Even On A Used GPU
    [Documentation]    A pod asking for gpumem-percentage 25 on a GPU where another pod already holds 20000 MiB gets
    ...    25 % of the card's total memory, not 25 % of what is left (mutant fit-percentage-of-free-memory:
    ...    HAMI-E2E-101 only ever asks on an empty GPU, where both give the same number).
    [Tags]    HAMI-E2E-700    feature:vgpu-pods
    ${uuid} =    First GPU Of Node    ${GPU_NODES}[0]
    Start GPU Pod    tenant    gpumem=20000    gpucores=10    use_gpu_uuid=${uuid}
    Start GPU Pod    quarter    gpumem_percentage=25    gpucores=10    use_gpu_uuid=${uuid}
    ${mib} =    Get GPU Memory For Percentage    25    ${GPU_MEMORY_MIB}
    Pod Allocation Should Be    quarter    gpumem=${mib}    gpucores=10    gpus=1

CUDA In The Pod Reports The Memory Limit As Total Memory
    [Documentation]    A CUDA program in a pod with gpumem LIMIT_MIB sees LIMIT_MIB as the device's total memory
    ...    (cuMemGetInfo, what PyTorch's mem_get_info reads), not the card's: HAMi-core caps it at the limit
    ...    (mutant core-cuda-shows-card-memory; nvidia-smi goes through NVML and does not notice).
    [Tags]    HAMI-E2E-701    feature:isolation
    Start GPU Pod    cuda    gpumem=${LIMIT_MIB}    gpucores=30    image=${PYTORCH_IMAGE}
    IF    $ALLOCATION_PROBE == 'gpu-workload'
        ${result} =    Exec In Pod    cuda    gpu-workload meminfo
        Should Contain    ${result.stdout}    total_mib=${LIMIT_MIB}${SPACE}
    ELSE
        ${result} =    Exec In Pod    cuda
        ...    python3 -c 'import torch; print(torch.cuda.mem_get_info()[1] // 1048576)'
        Should Be Equal As Integers    ${result.stdout.strip()}    ${LIMIT_MIB}
    END
