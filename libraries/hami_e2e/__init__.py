"""hami-e2e's keyword library as a package; Robot Framework imports the facades ``HamiLibrary`` and ``HostLibrary``.

* ``core`` — what every keyword component shares: the context (connection, defaults, cleanups), the component base
  with its waits, the failure types, the listener;
* ``keywords`` — the keyword components of ``HamiLibrary``, one module per area;
* ``host`` — the GPU host tier (``HostLibrary``): HAMi-core's ``libvgpu.so`` on a GPU host without Kubernetes;
* ``parsers`` — plain parsers (nvidia-smi, HAMi's annotations, Prometheus text, Kubernetes events), no Robot
  Framework and no cluster.
"""

__version__ = "0.2.0"
