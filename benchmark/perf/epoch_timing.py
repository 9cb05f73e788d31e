"""One training epoch of a registered algorithm, timed: what the per-family speed scripts
(``neural_speed``, ``variants_speed``) share, with the machine's description."""

from __future__ import annotations

import os
import platform
import time

import torch

from algorithms.base import resolve_device
from benchmark.config import load_preset
from benchmark.registry import get_algorithm
from datasets.sessions import Sessions


def time_one_epoch(label: str, train: Sessions, preset: str | None, device: str, seed: int) -> dict:
    """Fit ``label`` (``name`` or ``name@preset``; ``preset`` applies to a bare name) for one
    epoch; its events/s from the fit's own history, wall and CPU time, load before and after."""
    algorithm, _, own = label.partition("@")
    preset = own or preset
    params = load_preset(algorithm, preset) if preset else {}
    params.update(n_epochs=1, device=device, seed=seed)
    model = get_algorithm(algorithm)(**params)
    load_before = os.getloadavg()
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(train)
    row = model.history_[0]
    return {
        "params": model.get_params(),
        "events": row["events"],
        "events_per_s": row["events_per_s"],
        "fit_seconds": time.perf_counter() - start,
        "fit_cpu_seconds": time.process_time() - cpu_start,
        "loss": row["loss"],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def machine(device_option: str) -> dict:
    """The resolved device and what it is, torch's threads and version, the CPU count."""
    device = str(resolve_device(device_option))
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(device)
        if device.startswith("cuda")
        else platform.processor() or platform.machine(),  # fmt: skip
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
