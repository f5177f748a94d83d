"""The relative rule's cut chosen for what a flag leads to: a repair aimed at the flagged class.

A flag helps where the class the rule names is the target of a backdoor that took (its repair removes it), and
harms where the model is clean or the class is another (the repair unlearns a class that carries no backdoor, at a
point or more of accuracy, and removes nothing). A poisoned model whose attack did not take (no-defence ASR under
``--took``) is left out of the choice: it has no working backdoor to remove, and purifying it costs what purifying
a clean model does. The cut is chosen by :func:`evidence_rules.choose_cut` (the best balanced accuracy, then the
midpoint of the widest gap) on every model given; the counts at ``--compare`` cuts (e.g. the shipped one) are
printed beside it, with the models between the cuts.

``--band``: the band above the cut where the sensitivity scan corroborates (``suspect.corroborated_cut``): among the
models above the cut whose scan is "suspicious" and names the measure's class, the band's edge is chosen the same
way between the flags that would help and those that would harm; the counts with the band follow.

    python benchmarks/evidence_cut.py \
        --rows benchmarks/results/evidence_rows_{dev2,dev3,eval3_26,eval4}.json \
        --reports benchmarks/results/eval5_zoo_reports:benchmarks/results/eval5_zoo.json \
        --reports benchmarks/results/eval6_zoo_reports:benchmarks/results/eval6_zoo.json \
        --attacks benchmarks/results/zoo_none_{dev2,eval3,eval4}.json --compare 0.436 \
        --out-json benchmarks/results/evidence_cut_v7.json
    python benchmarks/evidence_cut.py ... \
        --reports benchmarks/results/eval7_zoo_reports:benchmarks/results/eval7_zoo.json \
        --band --out-json benchmarks/results/evidence_band_v8.json

Only development data may be given: a split whose reporting run has not happened must not be read here.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from evidence_learned import add_input_options, load
from evidence_rules import choose_cut

from pruneguard.scan.sensitivity import ScanConfig
from pruneguard.utils.io import atomic_write_json

SCAN_CUT = ScanConfig().threshold  # the sensitivity scan's verdict: "suspicious" above it


def outcome(model: dict[str, Any]) -> str:
    """What a flag of ``model`` leads to: ``helps`` (the target of a backdoor that took), ``harms`` (a clean model,
    or another class than the target), ``neutral`` (the target of an attack that did not take)."""
    spec = model["spec"]
    if not spec["backdoored"] or model["class"] != spec["target_label"]:
        return "harms"
    return "helps" if model["took"] else "neutral"


def measure(model: dict[str, Any]) -> float:
    """The relative rule's measure: the smallest class's ratio over the median class's (flag: at most the cut)."""
    return math.exp(-model["features"]["relative"])


def corroborates(model: dict[str, Any]) -> bool:
    """Whether the sensitivity scan is "suspicious" and names the class the relative measure names."""
    return model["features"]["sensitivity"] > SCAN_CUT and model["features"]["agree"] == 1.0


def flagged(model: dict[str, Any], cut: float, band: float | None = None) -> bool:
    """The finder's evidence: the measure at most ``cut``, or at most ``band`` where the scan corroborates."""
    return measure(model) <= cut or (band is not None and measure(model) <= band and corroborates(model))


def choose_band(models: list[dict[str, Any]], cut: float) -> float | None:
    """The corroborated band's edge (:func:`evidence_rules.choose_cut` between the flags it would add that help
    and those that harm), None when the models above ``cut`` that the scan corroborates lack either."""
    above = [m for m in models if measure(m) > cut and corroborates(m)]
    helps = [-measure(m) for m in above if outcome(m) == "helps"]
    harms = [-measure(m) for m in above if outcome(m) == "harms"]
    if not helps or not harms:
        return None
    return round(-choose_cut(helps, harms), 3)


def counts(models: list[dict[str, Any]], cut: float, band: float | None = None) -> dict[str, Any]:
    """At ``cut`` (and ``band``): flagged models by outcome, and the clean models among the harmful flags."""
    flagged_ = [m for m in models if flagged(m, cut, band)]
    out = {k: sum(outcome(m) == k for m in flagged_) for k in ("helps", "harms", "neutral")}
    out["clean_flagged"] = sum(not m["spec"]["backdoored"] for m in flagged_)
    out["of"] = {k: sum(outcome(m) == k for m in models) for k in ("helps", "harms", "neutral")}
    out["clean"] = sum(not m["spec"]["backdoored"] for m in models)
    return out


def brief(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each model's id, measure, class and outcome, by measure."""
    rows = [
        {"id": m["spec"]["id"], "measure": round(measure(m), 3), "class": m["class"], "outcome": outcome(m)}
        for m in models
    ]
    return sorted(rows, key=lambda r: r["measure"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_input_options(p)
    p.add_argument("--compare", type=float, action="append", default=[], help="another cut to count at")
    p.add_argument("--band", action="store_true", help="choose the band above the cut where the scan corroborates")
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args(argv)
    models = load(args)
    if not models:
        p.error("--rows/--reports: no model with the finder's records; accepted: evidence rows or purify reports")
    helps = [-measure(m) for m in models if outcome(m) == "helps"]
    harms = [-measure(m) for m in models if outcome(m) == "harms"]
    if not helps or not harms:
        p.error("the models given need both a flag that helps and one that harms to place a cut")
    cut = round(-choose_cut(helps, harms), 3)
    lo, hi = min([cut, *args.compare]), max([cut, *args.compare])
    between = brief([m for m in models if lo < measure(m) <= hi])
    result = {
        "cut": cut,
        "models": len(models),
        "splits": sorted({m["split"] for m in models}),
        "took": args.took,
        "at": {str(c): counts(models, c) for c in [cut, *args.compare]},
        "between": between,
    }
    if args.band:
        band = choose_band(models, cut)
        result["band"] = band
        result["at_band"] = counts(models, cut, band) if band is not None else None
        result["corroborated_above_cut"] = brief([m for m in models if measure(m) > cut and corroborates(m)])
    if args.out_json:
        atomic_write_json(args.out_json, result)
    print(f"cut {cut} on {len(models)} models ({', '.join(result['splits'])})")
    for c, n in result["at"].items():
        print(
            f"at {c}: helps {n['helps']}/{n['of']['helps']}, harms {n['harms']}/{n['of']['harms']} "
            f"(clean {n['clean_flagged']}/{n['clean']}), neutral {n['neutral']}/{n['of']['neutral']}"
        )
    for r in between:
        print(f"  between: {r['id']} {r['measure']} class {r['class']} {r['outcome']}")
    if args.band:
        n = result["at_band"]
        print(f"band {result['band']} (the scan corroborating above the cut {cut})")
        if n is not None:
            print(
                f"at {cut} with the band: helps {n['helps']}/{n['of']['helps']}, harms {n['harms']}/"
                f"{n['of']['harms']} (clean {n['clean_flagged']}/{n['clean']}), neutral {n['neutral']}/"
                f"{n['of']['neutral']}"
            )
        for r in result["corroborated_above_cut"]:
            print(f"  corroborated: {r['id']} {r['measure']} class {r['class']} {r['outcome']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
