"""What the mock NVML reports for a GPU model besides its name and memory: architecture, compute capability, power
limits, idle draw and temperature, and the memory the driver reserves at idle.

H100 is the measured card (``fixtures/nvidia-smi/``, 480 MiB reserved, 69 W of 700 W, 32 C); the others take the
values of the NVIDIA mock NVML's own profiles for those cards (``deployments/nvml-mock/helm/nvml-mock/profiles/`` in
k8s-test-infra). A model is found by a key contained in its name, so "NVIDIA A100-SXM4-40GB" and "NVIDIA A100
80GB PCIe" are both A100s; an unknown name gets the H100's values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    architecture: str
    compute_capability: tuple[int, int]
    power_limit_w: int        # default and enforced limit
    power_min_w: int
    power_max_w: int
    idle_w: int
    temperature_c: int
    reserved_mib: int


H100 = Model("hopper", (9, 0), 700, 200, 700, 69, 32, 480)
MODELS = {
    "H100": H100,
    "A100": Model("ampere", (8, 0), 400, 100, 400, 72, 33, 583),
    "L40S": Model("ada_lovelace", (8, 9), 350, 100, 350, 45, 32, 512),
    "T4": Model("turing", (7, 5), 70, 60, 70, 12, 30, 300),
    "B200": Model("blackwell", (10, 0), 1000, 400, 1200, 130, 35, 1024),
}


def model_of(name: str) -> Model:
    """The model whose key the GPU name contains (case-insensitive), else the H100's values."""
    upper = name.upper()
    return next((model for key, model in MODELS.items() if key in upper), H100)
