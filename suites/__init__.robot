*** Settings ***
Documentation    hami-e2e: end-to-end tests of HAMi (GPU sharing on Kubernetes).
...
...              Without options the run targets the offline sandbox (variables/sandbox.yaml): a GPU twin that runs
...              HAMi's real components, where only the tests that need real GPUs are skipped, with the reason. For a
...              real cluster: robot --variablefile variables/cluster.yaml suites/
...
...              Tags: smoke, regression, disruptive, needs-idle-gpus, slow, needs-hami, needs-real-gpu, multi-gpu,
...              multi-node, nvidia, feature:<area>, and a stable ID per test (HAMI-E2E-nnn).

Resource         ../resources/target.resource

Suite Setup      Prepare Target And Record Metadata
Test Timeout     ${TEST_TIMEOUT}

Name             HAMi E2E
