"""Who holds the GIL: a py-spy profile summed per process and thread.

    py-spy record --gil --threads --subprocesses -r 200 -f raw -o gil.txt -- \\
        python -m stream.cli.main bench pipeline ...
    python -m bench.gil_report gil.txt --rate 200

prints, per process and thread, the seconds it held the GIL (samples / rate) and its
top functions. Time spent importing is reported apart. In `bench pipeline`, the
worker's reader and publisher threads share the worker process's GIL with the
model's thread: their seconds per batch are what they can take from a model whose
thread is bound by Python (a GPU model launching kernels).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_PROCESS = re.compile(r'process (\d+):"([^"]*)";?')  # command lines may hold ';'
_THREAD = re.compile(r"^thread \((\w+)\)(?:: (.*))?$")


def _function(frame: str) -> str:
    return frame.split(" (", 1)[0]


def tally(lines: list[str]) -> tuple[Counter[tuple[str, str]], dict[tuple[str, str], Counter[str]]]:
    """Samples per (process, thread), and per (process, thread) per innermost 3 frames."""
    totals: Counter[tuple[str, str]] = Counter()
    leaves: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        processes = _PROCESS.findall(stack)  # the parent's, then the child's
        pid, command = processes[-1] if processes else ("?", "")
        process, thread, frames = f"{pid} {command[-60:]}", "?", []
        for frame in _PROCESS.sub("", stack).split(";"):
            if not frame:
                continue
            if m := _THREAD.match(frame):
                thread = m.group(2) or m.group(1)
            else:
                frames.append(_function(frame))
        if any(f == "_find_and_load" for f in frames):
            thread = f"{thread} (importing)"
        key = (process, thread)
        totals[key] += int(count)
        leaves[key][" < ".join(reversed(frames[-3:])) or "(no Python frame)"] += int(count)
    return totals, leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--rate", type=float, default=200.0, help="py-spy's -r")
    parser.add_argument("--top", type=int, default=5, help="functions shown per thread")
    args = parser.parse_args()
    totals, leaves = tally(args.profile.read_text().splitlines())
    for key, samples in totals.most_common():
        process, thread = key
        print(f"{samples / args.rate:7.2f} s  {thread:28}  process {process}")
        for leaf, n in leaves[key].most_common(args.top):
            print(f"{'':10}{n / args.rate:6.3f} s  {leaf[:140]}")


if __name__ == "__main__":
    main()
