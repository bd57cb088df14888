*** Settings ***
Documentation    GPU host tier: HAMi-core's libvgpu.so on a real GPU, without Kubernetes.
...
...              Run it with the path to libvgpu.so:
...              robot --variable LIBVGPU:/usr/local/vgpu/libvgpu.so --outputdir results/host suites/host/
...
...              Every test starts processes (nvidia-smi, a small PyTorch, CuPy or CUDA C workload) with libvgpu.so
...              preloaded and HAMi-core's variables set, and checks what they see: on the host, or as a container
...              that was given some GPUs (a private mount namespace showing only those GPUs; needs root). The run is
...              skipped, not failed, when there is no GPU or no libvgpu.so. Variables: variables/gpu_host.yaml.

Resource         ../../resources/host.resource

Suite Setup      Prepare The GPU Host And Record It
Test Teardown    Clean Up HAMi-Core Processes
Test Timeout     ${HOST_TEST_TIMEOUT}


*** Keywords ***
Prepare The GPU Host And Record It
    [Documentation]    Checks for a GPU and libvgpu.so (skipping the run if either is missing), picks the workload
    ...    and records what was tested in the report's metadata.
    ${host}=    Prepare GPU Host    ${LIBVGPU}    workload=${WORKLOAD_KIND}    workload_python=${WORKLOAD_PYTHON}
    ...    preload=${PRELOAD_HAMI_CORE}    hami_core_commit=${HAMI_CORE_COMMIT}
    ...    command_timeout=${COMMAND_TIMEOUT}    ready_timeout=${HOLDER_READY_TIMEOUT}
    Record The GPU Host In The Metadata    ${host}

Record The GPU Host In The Metadata
    [Documentation]    Puts the GPUs, driver, CUDA and HAMi-core facts of ${host} (from `Prepare GPU Host`) into
    ...    the report's metadata.
    [Arguments]    ${host}
    Set Suite Metadata    Target    ${host}[target]
    Set Suite Metadata    GPU Model    ${host}[gpu_model] × ${host}[gpu_count] (${host}[card_mib] MiB each)
    Set Suite Metadata    Driver Version    ${host}[driver_version]
    Set Suite Metadata    CUDA Version    ${host}[cuda_version]
    Set Suite Metadata    GPU UUIDs    ${host}[gpu_uuids]
    Set Suite Metadata    HAMi-core Commit    ${host}[hami_core_commit]
    Set Suite Metadata    libvgpu.so    ${host}[libvgpu] (SHA-256 ${host}[libvgpu_sha256])
    Set Suite Metadata    Workload    ${host}[workload]
    Set Suite Metadata    HAMi-core Preloaded    ${host}[preload]
    Set Suite Metadata    Container Isolation    ${host}[isolation]
