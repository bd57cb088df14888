"""HamiLibrary: the Robot Framework keyword library of hami-e2e (facade over the components in ``hami_e2e/keywords/``)."""

from __future__ import annotations

from datetime import timedelta

from robotlibcore import DynamicCore

from hami_e2e import __version__
from hami_e2e.core.context import Context, HamiTarget
from hami_e2e.core.listener import HamiListener
from hami_e2e.core.plain_run import PlainRunListener
from hami_e2e.keywords import DiagnosticsKeywords, components


class HamiLibrary(DynamicCore):
    """Keywords for end-to-end tests of [https://github.com/Project-HAMi/HAMi|HAMi] (GPU sharing on Kubernetes).

    %TOC%

    = What the library covers =

    | =Area= | =Keywords (examples)= |
    | Workloads | `Create Test Namespace`, `Build GPU Pod Spec`, `Create Pod From Spec`, `Wait Until Pod Is Running`, `Wait Until Pod Is Pending With Reason`, `Exec In Pod`, `Delete Pod` |
    | HAMi state | `Pod Allocation Should Be`, `Pod Should Be Mutated By HAMi Webhook`, `Wait Until Pod Has Event`, `Wait Until Node Registration Matches`, `Get Metric Value` |
    | Helm | `Install HAMi Chart`, `Upgrade HAMi Release`, `Rollback HAMi Release`, `Uninstall HAMi Release`, `Wait Until HAMi Components Are Ready` |
    | nvidia-smi | `GPU Memory Total Should Be`, `GPU UUIDs Should Be` (they take nvidia-smi output text) |
    | Diagnostics | `Collect Diagnostics On Failure`, `Scan HAMi Component Logs For Errors` |
    | Run control | `Run Preflight`, `Stop Test If Preflight Failed`, `Cluster Should Be Reachable`, `Set Target Capability`, `Skip Test If Target Lacks Capabilities` |

    Keyword tags (``Helm``, ``Pod``, ``Wait``, ``Assertion``, ``HAMi``, ``Node``, ``Metrics``, ``Diagnostics`` …)
    filter this page. ``resources/gpu_pods.resource`` builds the everyday pod keywords on these (``Create GPU Pod``,
    ``Create Pod Without GPU``, ``Start GPU Pod``).

    = Conventions =

    - A keyword that waits says so: its name starts with ``Wait Until``, or it takes ``timeout`` and its
      documentation starts with "Waits up to ``timeout``" (actions that also wait: `Delete Pod`, `Install HAMi
      Chart`, `Restart HAMi Scheduler`, `Exec In Pod`). Every other keyword reads the cluster once.
    - The pod argument is ``pod`` everywhere (default: the last pod the test created); ``namespace`` defaults to
      the test namespace.
    - Every keyword that can fail on an expectation (``… Should …``, ``Wait Until …``) takes ``message``, which
      replaces the generated failure text.

    = Connection =

    The Kubernetes client is created on the first keyword that needs it, from the ``kubeconfig`` and
    ``kube_context`` import arguments. Importing the library (libdoc, ``robot --dryrun``) never touches a cluster.
    ``helm`` runs with the same ``--kubeconfig``/``--kube-context``.

    = Namespaces and cleanup =

    `Create Test Namespace` makes ``hami-e2e-<suite>-<random>`` the default namespace of the test; pod keywords use
    it when no ``namespace`` is given, and the pod name defaults to the last pod the test created. What keywords
    create or change (namespaces, node labels and annotations, Helm releases) is recorded with a scope and undone
    at the end of the test, the suite or the run, even after failures. With ``keep_on_failure`` a failed test's
    namespace stays for debugging; node changes are always restored.

    What a run creates carries its run id (labels ``app.kubernetes.io/managed-by=hami-e2e`` and
    ``hami-e2e/run``; node changes are recorded in the node's ``hami-e2e/changes``). A run stopped with Ctrl-C or
    SIGTERM cleans up as at its end (twice: in an exit hook); what a killed run leaves, the next run's
    `Run Preflight` removes, never touching objects without those labels.

    = Waiting =

    Waits watch the Kubernetes API (no fixed sleeps), resume when a watch expires, and fail after a timeout with the
    last state seen (phase, conditions, container states, recent events). Timeouts accept Robot Framework time
    strings (``90s``, ``2 min``); the default is the ``default_timeout`` import argument. Things that cannot be
    watched (exec) are polled. Metrics endpoints are read with RequestsLibrary (``resources/metrics.resource``
    opens the sessions and polls); the metrics keywords here parse and check what it got.

    = Failures =

    Assertion keywords raise; they never return True/False. Messages name the object, the expected and the actual
    value, e.g. ``Allocation of pod ns/small: container cuda GPU-1 has 4000 MiB, expected 3000``. Text matches
    accept ``GLOB:`` and ``REGEXP:`` prefixes like `Run Keyword And Expect Error`.

    = Diagnostics =

    The library is also a listener: when a test fails and its teardown did not call `Collect Diagnostics On
    Failure`, the listener logs events, pod YAML, pod logs, HAMi component logs, node ``hami.io/*`` annotations and
    ``helm status`` into that test's log. Tokens, passwords and keys are masked.

    = A plain robot run =

    Run without ``--outputdir`` (``robot suites/``), robot's outputs go into the archive,
    ``results/<release>/<UTC timestamp>/``, when it ends, and a failing test tagged ``known-bug:*`` is a SKIP, as
    with ``tools/run-e2e``. ``HAMI_E2E_ARCHIVE=off`` leaves them where robot wrote them.
    """

    ROBOT_LIBRARY_SCOPE = "GLOBAL"
    ROBOT_LIBRARY_VERSION = __version__

    def __init__(
        self,
        kubeconfig: str | None = None,
        kube_context: str | None = None,
        default_timeout: timedelta = timedelta(seconds=60),
        helm_binary: str = "helm",
        keep_on_failure: bool = False,
        hami_namespace: str = "hami-system",
        hami_release: str = "hami",
        hami_scheduler_name: str = "hami-scheduler",
        hami_local_log_files: list[str] | None = None,
        poll_interval: timedelta = timedelta(milliseconds=500),
    ) -> None:
        """Configures the connection and defaults; nothing is contacted until a keyword needs it.

        | =Argument= | =Description= |
        | ``kubeconfig`` | Path of the kubeconfig (``~`` allowed); empty: ``$KUBECONFIG`` or ``~/.kube/config``. |
        | ``kube_context`` | Context in the kubeconfig; empty: its current context. |
        | ``default_timeout`` | Timeout of every wait that is not given one. |
        | ``helm_binary`` | The helm executable (``helm`` on PATH by default). |
        | ``keep_on_failure`` | Keep a failed test's namespace for debugging. |
        | ``hami_namespace``, ``hami_release`` | Where HAMi is (or will be) installed. |
        | ``hami_scheduler_name`` | The ``schedulerName`` the webhook sets (chart value ``schedulerName``). |
        | ``hami_local_log_files`` | HAMi log files on this machine (sandbox) for diagnostics and the log scan. |
        | ``poll_interval`` | Pause between polls of things that cannot be watched. |

        Example:
        | Library    HamiLibrary.py    kubeconfig=${KUBECONFIG}    default_timeout=${DEFAULT_TIMEOUT}
        """
        self.ctx = Context(
            kubeconfig=kubeconfig or None,
            kube_context=kube_context or None,
            default_timeout=default_timeout,
            poll_interval=poll_interval,
            helm_binary=helm_binary or "helm",
            keep_on_failure=keep_on_failure,
            hami=HamiTarget(
                namespace=hami_namespace,
                release=hami_release,
                scheduler_name=hami_scheduler_name,
                local_log_files=list(hami_local_log_files or []),
            ),
        )
        parts = components(self.ctx)
        diagnostics = next(c for c in parts if isinstance(c, DiagnosticsKeywords))
        super().__init__(parts)
        # HamiListener first: its diagnostics see a failed test before a known bug's failure becomes a SKIP.
        self.ROBOT_LIBRARY_LISTENER = [HamiListener(self.ctx, diagnostics.collect_diagnostics), PlainRunListener()]
