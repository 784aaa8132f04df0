"""Kernel-launching operations per beam search, by batch size: the cost model of a GPU
step, which is bound by kernel launches and host syncs, counted on any machine.

    python bench/search_ops.py                    # the search in this tree
    python bench/search_ops.py --rev 6645098      # captioner/search.py of a commit

Counts every ATen operation the search dispatches (a TorchDispatchMode), leaving out
views (no kernel) and host-side checks. Features: the bundled sample photos through
the bundled model's encoder, cycled to the batch size; default search settings.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from captioner.api import Captioner  # noqa: E402
from captioner.sample_photos import sample_images  # noqa: E402

VIEWS = {"view", "slice", "select", "squeeze", "unsqueeze", "expand", "detach", "alias",
         "as_strided", "t", "transpose", "_unsafe_view", "unfold", "split", "permute"}  # fmt: skip
HOST_CHECKS = {"aten.any.default", "aten.is_nonzero.default", "aten._local_scalar_dense.default"}


class CountKernels(TorchDispatchMode):  # type: ignore[no-untyped-call]
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.kernels = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.__name__.split(".")[0] not in VIEWS and str(func) not in HOST_CHECKS:
            self.kernels += 1
        return func(*args, **(kwargs or {}))


def search_module(rev: str | None) -> ModuleType:
    if rev is None:
        from captioner.search import search

        return search
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:captioner/search/search.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "search_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("search_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_at_rev"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default=None, help="count captioner/search.py of this commit")
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()
    module = search_module(args.rev)
    cap = Captioner.load(device="cpu")
    photos = sample_images()
    stored = cap.search_config
    known = module.SearchConfig.__dataclass_fields__
    dropped = [f for f in stored.__dataclass_fields__ if f not in known and getattr(stored, f)]
    if dropped:  # an older search without a setting the model now stores
        print(f"(the search at {args.rev} has no {', '.join(dropped)}: counted without)")
    config = module.SearchConfig(
        **{f: getattr(stored, f) for f in stored.__dataclass_fields__ if f in known}
    )
    for batch in (int(b) for b in args.batches.split(",")):
        features = cap.encode([photos[i % len(photos)] for i in range(batch)])
        with torch.inference_mode(), CountKernels() as count:
            module.beam_search(cap.decoder, features, cap.vocab, config)
        print(f"batch {batch}: {count.kernels} kernel-launching operations")


if __name__ == "__main__":
    main()
