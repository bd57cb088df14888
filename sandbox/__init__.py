"""The offline sandbox: a real Kubernetes control plane with kwok-simulated GPU nodes, all on loopback.

Entry point: ``python -m sandbox up | down | status | env | build`` (see README.md beside this file).
"""
