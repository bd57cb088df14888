*** Settings ***
Documentation     Uninstall: removing the release the run installed removes every HAMi component and the webhook,
...               leaves no HAMi registration, handshake or lock annotation on the nodes, and GPU pods are no longer
...               sent to HAMi. Runs only when the run installed HAMi (HAMI_INSTALL true); comes last.

Resource          ../resources/hami_install.resource

Suite Setup       Prepare Uninstall Suite
Suite Teardown    Finish Suite
Test Setup        Start Test In Own Namespace
Test Teardown     End Test And Clean Up

Test Tags         needs-hami    nvidia    disruptive    feature:install


*** Test Cases ***
Uninstall Removes Every HAMi Component And The Webhook
    [Documentation]    helm uninstall removes the scheduler and device-plugin pods and the vgpu.hami.io webhook.
    [Tags]    HAMI-E2E-900
    Uninstall HAMi Release    timeout=${HELM_TIMEOUT}
    HAMi Webhook Should Not Be Registered

Uninstall Leaves No HAMi Annotations On The Nodes
    [Documentation]    No GPU node keeps hami.io/node-nvidia-register, hami.io/node-handshake or hami.io/mutex.lock.
    ...    HAMi's own CI strips these by hand after uninstalling, so a failure here reports real leftovers; the
    ...    teardown strips them so the next install starts clean.
    [Tags]    HAMI-E2E-901
    Nodes Should Have No HAMi Leftovers    ${GPU_NODES}    timeout=${UNINSTALL_TIMEOUT}
    [Teardown]    Strip HAMi Annotations And Clean Up

GPU Pods Are No Longer Sent To HAMi After Uninstall
    [Documentation]    With the webhook gone a GPU pod keeps the default scheduler.
    [Tags]    HAMI-E2E-902
    Create GPU Pod    orphan    gpumem=1000
    Pod Should Not Be Mutated By HAMi Webhook    orphan
