"""The first line of a benchmark's report: the model and the machine it ran on."""

from __future__ import annotations

import os
import platform
from typing import Any


def host_line() -> str:
    """The machine a benchmark with no model ran on, for its first line."""
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def bench_context(cap: Any) -> str:
    """The model and machine a benchmark ran on, for its first line."""
    import torch

    where = (
        torch.cuda.get_device_name(cap.device)
        if cap.device.type == "cuda"
        else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    search = cap.search_config
    hold = "off" if search.hold_margin is None else f"{search.hold_margin:g}"
    choice = f"consensus k={search.consensus_k}, hold {hold}"
    return f"model {cap.model_id} ({choice}), {where}, torch {torch.__version__}"
