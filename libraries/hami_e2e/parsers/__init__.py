"""Plain parsers of what HAMi, nvidia-smi, Prometheus and Kubernetes print: no Robot Framework, no cluster."""
