"""A zoo split's default-recipe reports copied from the cache into a folder to commit beside its results file.

``zoo.py --join-reports DIR`` (and ``detector_figures.py``, ``recut.py``) read a joined model's report there as
``DIR/FOLDER.json``, the name of its purify folder in the cache. The copy leaves out what is large and not read by
any table: the pruning curve and the neuron masks (``curve``, ``masks``) and the repair's pictures
(``repair.figures_png``); everything else is as the run wrote it.

    python benchmarks/pack_reports.py --split eval7 --out benchmarks/results/eval7_zoo_reports
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pruneguard.utils.io import atomic_write_text

LEFT_OUT = ("curve", "masks")
LEFT_OUT_OF_REPAIR = ("figures_png",)


def lean(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` without its curve, masks and pictures (a new dict; the report is not modified)."""
    out = {k: v for k, v in report.items() if k not in LEFT_OUT}
    if isinstance(out.get("repair"), dict):
        out["repair"] = {k: v for k, v in out["repair"].items() if k not in LEFT_OUT_OF_REPAIR}
    return out


def pack(cache: Path, split: str, out: Path, fraction: str = "0.01") -> list[str]:
    """Write the lean report of every default-recipe run of ``split`` at ``fraction`` kept in ``cache`` into ``out``
    (made if missing; a file of the same name is replaced); the folder names written, sorted."""
    names = []
    out.mkdir(parents=True, exist_ok=True)
    for report in sorted((cache / "defended").glob(f"{split}-*-default-{fraction}/report.json")):
        name = report.parent.name  # the glob's "SPLIT-" keeps eval70's runs out of eval7's
        atomic_write_text(out / f"{name}.json", json.dumps(lean(json.loads(report.read_text())), indent=2) + "\n")
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", required=True)
    p.add_argument("--out", type=Path, required=True, help="the folder to write (zoo.py --join-reports reads it)")
    p.add_argument("--cache", type=Path, default=Path("runs/zoo"))
    p.add_argument("--clean-fraction", default="0.01", help="as in the cache's folder names (0.01, 0.001)")
    args = p.parse_args(argv)
    if not (args.cache / "defended").is_dir():
        p.error(f"--cache={args.cache} is not accepted; accepted: a zoo cache folder (with defended/)")
    names = pack(args.cache, args.split, args.out, args.clean_fraction)
    print(f"{len(names)} reports -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
