"""The reference tie-break of `purify --anp-target vote` on the ANP table's models, figure by figure.

    python benchmarks/reference_tiebreak.py --cache runs/anp_table_seeded --attack label_consistent --candidates 0,4,8

For the model of ``--attack`` in the table's cache (trained if missing, as `benchmarks/anp_table.py` does) and
its 1% clean split (seed 0): a reference model of the same architecture trained on that split alone
(`pruneguard.scan.reference`, seed ``--seed``), then for each candidate class and trigger kind the reversed
trigger's size on the suspect and on the reference (the reversal scan's settings), their ratio, and the share
of the clean split's other images that the *suspect's* trigger sends to the class on the reference (a natural
feature transfers; an implanted trigger does not). Prints one JSON object; the class
`pruneguard.scan.suspect.reference_suspect` chooses is ``chosen``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import anp_table  # noqa: E402

from pruneguard.attacks.backdoor.triggers import stamp
from pruneguard.data.tensors import to_float
from pruneguard.evaluation import evaluate_accuracy
from pruneguard.scan.reference import reference_trigger_sizes, train_reference
from pruneguard.scan.reversal import TRIGGER_KINDS, reverse_trigger, scan_config
from pruneguard.scan.suspect import reference_suspect
from pruneguard.workflows.common import draw_clean_split, load_for_defense


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attack", required=True)
    p.add_argument("--candidates", required=True, help="comma-separated classes, e.g. the voices' classes")
    p.add_argument("--cache", default="runs/anp_table", help="the ANP table's cache")
    p.add_argument("--attack-params", default='{"sig": {"delta": 0.157}}', help="as the table was run")
    p.add_argument("--seed", type=int, default=0, help="the clean split's and the reference's seed (purify --seed)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    candidates = [int(c) for c in args.candidates.split(",") if c]
    table_args = anp_table.build_parser().parse_args(["--cache", args.cache, "--attack-params", args.attack_params])
    model_path = anp_table.trained_model(args.attack, 0, table_args)
    loaded = load_for_defense(model_path)
    clean, _ = draw_clean_split(loaded, clean_fraction=0.01, clean_samples=None, seed=args.seed)
    cfg = scan_config()  # purify's reversal scan
    t0 = time.perf_counter()
    reference = train_reference(lambda: loaded.meta.build(seed=args.seed), clean, seed=args.seed)
    trained = time.perf_counter() - t0
    ref = reference_trigger_sizes(reference, clean, candidates, cfg, seed=args.seed)
    x, suspect_sizes, transfer = to_float(clean.x), {}, {}
    for kind in TRIGGER_KINDS:
        suspect_sizes[kind], transfer[kind] = [float("inf")] * clean.num_classes, {}
        for c in candidates:
            t = reverse_trigger(
                loaded.model, clean, c, cfg, generator=torch.Generator().manual_seed(args.seed), kind=kind
            )
            suspect_sizes[kind][c] = t.mask_l1
            with torch.no_grad():
                hits = reference(stamp(x[clean.y != c], t.mask, t.pattern)).argmax(1) == c
            transfer[kind][c] = float(hits.float().mean())
    chosen, ratios = reference_suspect(candidates, suspect_sizes, ref["sizes"])
    out = {
        "attack": args.attack,
        "model": model_path.parent.name,
        "candidates": candidates,
        "chosen": chosen,
        "reference_test_accuracy": evaluate_accuracy(reference, loaded.test),
        "reference_seconds": trained + ref["seconds"],
        "per_kind": {
            kind: {
                str(c): {
                    "suspect_l1": suspect_sizes[kind][c],
                    "reference_l1": ref["sizes"][kind][c],
                    "ratio": ratios[kind][c],
                    "transfer_to_reference": transfer[kind][c],
                }
                for c in candidates
            }
            for kind in TRIGGER_KINDS
        },
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
