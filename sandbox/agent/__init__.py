"""The sandbox's node agent: runs the pods whose images the sandbox builds (HAMi, kube-scheduler, the certificate
generator) as real processes in per-pod network and mount namespaces, and forwards Services on loopback.

Started by ``python -m sandbox up`` as ``python -m sandbox.agent`` (see ``agent.py`` for what it does).
"""
