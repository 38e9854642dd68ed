"""Where a process's samples were spent, by library: self time per top-level package in a
py-spy flame graph (``--profile DIR`` writes them), a frame's width less its children's.

Inclusive shares answer "what did this call cost with everything under it"; self time per
package answers "whose code ran", which is what a floor is made of (docs/benchmarks/runs/
2026-12-07-small-cuts: the WebSocket server's own share of a gateway).

Usage (from the repository root):

  .venv/bin/python -m bench.load.flame_self PROFILE.svg [--top 25]
"""
from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

# py-spy's frames: <title>function (path/to/file.py:line) (N samples, P%)</title><rect x=".." y=".." width="..">
FRAME = re.compile(r'<title>(.*?) \([\d,]+ samples?, [\d.]+%\)</title>'
                   r'<rect x="([\d.]+)%" y="([\d.]+)" width="([\d.]+)%"')
# py-spy writes x and width rounded to 4 decimals: a child may poke out of its parent by that.
ROUNDING = 2e-3
LOCATION = re.compile(r"\(([^()]*?)(?::\d+)?\)$")


def self_time_by_package(svg: str) -> Counter[str]:
    """Percent of all samples whose innermost frame is in each package (or top-level module)."""
    frames = [(name, float(x), float(y), float(w)) for name, x, y, w in FRAME.findall(svg)]
    by_depth: dict[float, list[tuple[float, float]]] = defaultdict(list)
    for _, x, y, w in frames:
        by_depth[y].append((x, w))
    depths = sorted(by_depth)
    step = depths[1] - depths[0] if len(depths) > 1 else 0.0
    shares: Counter[str] = Counter()
    for name, x, y, w in frames:
        children = sum(cw for cx, cw in by_depth.get(y + step, ()) if cx >= x - ROUNDING and cx + cw <= x + w + ROUNDING)
        found = LOCATION.search(name)
        path = found.group(1) if found else name
        shares[path.split("/")[0]] += max(w - children, 0.0)
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("svg")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.svg, encoding="utf-8") as handle:
        shares = self_time_by_package(handle.read())
    print("| package | self time |\n|---|---:|")
    for package, share in shares.most_common(args.top):
        print(f"| {package} | {share:.1f} % |")


if __name__ == "__main__":
    main()
