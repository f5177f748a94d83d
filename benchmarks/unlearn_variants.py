"""The recipe's unlearning step, varied over the ANP table's pruned models (the study behind `anp_unlearn`).

    python benchmarks/unlearn_variants.py --attacks badnets,input_aware --variants A,H3,K
    python benchmarks/unlearn_variants.py --attacks sig --variants K --cap 0.03

Needs the ANP table's cache (`benchmarks/anp_table.py` run with its defaults): each attack's model and the
targeted-ANP state of its `anp_unlearn` row. The pruned model is made once per attack (ANP resumed from that
state, threshold 0.2, `--cap` if given; target class 0, the class `--anp-target combined` names on every
model; the reversal scan alone named class 8 on IAB and WaNet) and kept in `--work`; then each variant
unlearns a copy. Variants (two reverse-then-unlearn rounds unless named):
A the old recipe; F lr 0.005; H / H3 distilling the *unpruned* model (weight 1 / 3); K distilling the *pruned*
model (weight 3; K10: weight 10); R no unlearning, BatchNorm statistics recomputed on the clean split; KA03,
KA05, KA10, KA20: K plus targeted PGD copies towards the target in every batch (``adv_eps`` 0.03 to 0.2); KR:
K with the teacher's BatchNorm statistics recomputed on the clean split (`purify --unlearn-teacher
recalibrated`); KF: K, then the student's recomputed; KS / KRS: K / KR with the teacher's target-class
probability taken out on clean images of other classes (`--unlearn-distill-suppress 1`), KRS25, KRS50, KRS75:
a quarter, half, three quarters of it; HS: H3 with all of it taken out, HS60, HS75, HS90: 60%, 75%, 90% of it;
KRS60A, KRS75A, KRS90A: KRS60 (the recipe's unlearning), KRS75, KRS90 distilling on cropped and flipped
clean images (`purify --unlearn-distill-augment`).
Prints test ACC / ASR / the share of clean non-target test images sent to the target, in %, after the last
round and after each round.
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import anp_table  # noqa: E402

from pruneguard.data.tensors import ArrayData
from pruneguard.defenses.unlearning import (
    TRIGGER_KINDS,
    UnlearnConfig,
    recalibrate_batchnorm_,
    reverse_trigger,
    unlearn_,
)
from pruneguard.evaluation import evaluate_accuracy, evaluate_asr
from pruneguard.workflows.common import draw_clean_split, load_for_defense, make_trigger, trigger_set
from pruneguard.workflows.purify import purify

logger = logging.getLogger("unlearn_variants")
TARGET = 0


def pruned_model(attack: str, model_path: Path, args: argparse.Namespace) -> dict:
    """Targeted ANP resumed from the table's state, pruned; cached in ``--work``."""
    out = Path(args.work) / f"{attack}-cap{args.cap}"
    if (out / "pruned.pt").is_file():
        return torch.load(out / "pruned.pt", weights_only=False)
    out.mkdir(parents=True, exist_ok=True)
    state = Path(args.cache) / "defended" / f"{model_path.parent.name}-anp_unlearn-0.01" / "anp_state.pt"
    # the masks do not depend on the cap: a state this script finished under another cap is as good (ANP checks
    # that config, model and clean data match before it resumes one)
    done = sorted(Path(args.work).glob(f"{attack}-cap*/pruned.pt"))
    shutil.copyfile(done[0].parent / "anp_state.pt" if done else state, out / "anp_state.pt")
    ns = argparse.Namespace(data_dir=None, target_label=TARGET, anp_eps=0.4, anp_augment=True, anp_iterations=2000)
    extra = {"cap_acc_drop": args.cap} if args.cap is not None else {}
    cfg = anp_table._purify_cfg(
        model_path, out, attack, 0, 0.01, ns, resume=True, anp_target=TARGET, augment=False, iterations=1000, **extra
    )
    _, model, _ = purify(cfg)
    saved = {"state": model.state_dict()}
    torch.save(saved, out / "pruned.pt")
    return saved


def rounds(
    model: nn.Module,
    clean: ArrayData,
    measure: Callable[[nn.Module], tuple],
    *,
    n: int = 2,
    cfg: UnlearnConfig = UnlearnConfig(),
    teacher: nn.Module | None = None,
    progressive: bool = False,
) -> list[tuple]:
    trigs, log = [], []
    for r in range(n):
        ucfg = UnlearnConfig(steps=400)
        trigs += [
            reverse_trigger(model, clean, TARGET, ucfg, generator=torch.Generator().manual_seed(r), kind=k)
            for k in TRIGGER_KINDS
        ]
        unlearn_(model, clean, trigs, cfg, seed=r, teacher=teacher)
        log.append(measure(model))
        if progressive:  # the next round distills this round's result, its statistics recomputed
            teacher = recalibrated(model, clean)
    return log


def recalibrated(model: nn.Module, clean: ArrayData) -> nn.Module:
    """A copy of ``model`` with its BatchNorm statistics recomputed on the clean split."""
    return recalibrate_batchnorm_(copy.deepcopy(model), clean)


def recalibrate(model: nn.Module, clean: ArrayData, measure: Callable[[nn.Module], tuple]) -> list[tuple]:
    """No unlearning: BatchNorm running statistics recomputed on the clean split (cumulative average)."""
    recalibrate_batchnorm_(model, clean)
    return [measure(model)]


VARIANTS: dict[str, Callable[..., list[tuple]]] = {
    "A": lambda m, o, c, f: rounds(m, c, f),
    "F": lambda m, o, c, f: rounds(m, c, f, cfg=UnlearnConfig(finetune_lr=0.005)),
    "H": lambda m, o, c, f: rounds(m, c, f, cfg=UnlearnConfig(distill=1.0), teacher=o),
    "H3": lambda m, o, c, f: rounds(m, c, f, cfg=UnlearnConfig(distill=3.0), teacher=o),
    "R": lambda m, o, c, f: recalibrate(m, c, f),
    "K": lambda m, o, c, f: rounds(m, c, f, cfg=UnlearnConfig(distill=3.0), teacher=copy.deepcopy(m)),
    "K10": lambda m, o, c, f: rounds(m, c, f, cfg=UnlearnConfig(distill=10.0), teacher=copy.deepcopy(m)),
    "KR": lambda m, o, c, f: rounds(m, c, f, cfg=UnlearnConfig(distill=3.0), teacher=recalibrated(m, c)),
    "KS": lambda m, o, c, f: rounds(
        m, c, f, cfg=UnlearnConfig(distill=3.0, distill_suppress=1.0), teacher=copy.deepcopy(m)
    ),
    "KRS": lambda m, o, c, f: rounds(
        m, c, f, cfg=UnlearnConfig(distill=3.0, distill_suppress=1.0), teacher=recalibrated(m, c)
    ),
    "HS": lambda m, o, c, f: rounds(m, c, f, cfg=UnlearnConfig(distill=3.0, distill_suppress=1.0), teacher=o),
    **{
        f"HS{round(100 * v):02d}": partial(
            lambda m, o, c, f, v: rounds(m, c, f, cfg=UnlearnConfig(distill=3.0, distill_suppress=v), teacher=o),
            v=v,
        )
        for v in (0.6, 0.75, 0.9)
    },
    **{
        f"KRS{round(100 * v):02d}": partial(
            lambda m, o, c, f, v: rounds(
                m, c, f, cfg=UnlearnConfig(distill=3.0, distill_suppress=v), teacher=recalibrated(m, c)
            ),
            v=v,
        )
        for v in (0.25, 0.5, 0.6, 0.75)
    },
    **{
        f"KRS{round(100 * v):02d}A": partial(
            lambda m, o, c, f, v: rounds(
                m,
                c,
                f,
                cfg=UnlearnConfig(distill=3.0, distill_suppress=v, distill_augment=True),
                teacher=recalibrated(m, c),
            ),
            v=v,
        )
        for v in (0.6, 0.75, 0.9)
    },
    "KRS50P": lambda m, o, c, f: rounds(
        m, c, f, cfg=UnlearnConfig(distill=3.0, distill_suppress=0.5), teacher=recalibrated(m, c), progressive=True
    ),
    "KF": lambda m, o, c, f: (
        rounds(m, c, f, cfg=UnlearnConfig(distill=3.0), teacher=copy.deepcopy(m)) + recalibrate(m, c, f)
    ),
    **{
        f"KA{round(100 * e):02d}": partial(
            lambda m, o, c, f, e: rounds(m, c, f, cfg=UnlearnConfig(distill=3.0, adv_eps=e), teacher=copy.deepcopy(m)),
            e=e,
        )
        for e in (0.03, 0.05, 0.1, 0.2)
    },
}


def _measure(m: nn.Module, *, test: ArrayData, triggered: ArrayData, others: ArrayData) -> tuple:
    """Test accuracy, ASR, and the share of clean non-target test images sent to the target, in %."""
    vals = (evaluate_accuracy(m, test), evaluate_asr(m, triggered, TARGET), evaluate_asr(m, others, TARGET))
    return tuple(round(100 * v, 2) for v in vals)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attacks", default=",".join(anp_table.PAPER_ATTACKS))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--cap", type=float, default=None, help="purify --cap-acc-drop for the pruning")
    p.add_argument("--cache", default="runs/anp_table", help="the ANP table's cache")
    p.add_argument("--work", default="runs/unlearn_variants")
    p.add_argument("--attack-params", default='{"sig": {"delta": 0.157}}', help="as the table was run")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    table_args = anp_table.build_parser().parse_args(
        ["--cache", args.cache, "--attack-params", args.attack_params, "--target-label", str(TARGET)]
    )
    for attack in [a for a in args.attacks.split(",") if a]:
        model_path = anp_table.trained_model(attack, 0, table_args)
        loaded = load_for_defense(model_path)
        clean, _ = draw_clean_split(loaded, clean_fraction=0.01, clean_samples=None, seed=0)
        triggered = trigger_set(make_trigger(attack, loaded.meta, TARGET, model_path), loaded.test)
        others = loaded.test.subset(torch.nonzero(loaded.test.y != TARGET).flatten())

        measure = partial(_measure, test=loaded.test, triggered=triggered, others=others)
        base = copy.deepcopy(loaded.model)
        base.load_state_dict(pruned_model(attack, model_path, args)["state"])
        print(attack, "unpruned", measure(loaded.model), "pruned", measure(base), flush=True)
        for name in [v for v in args.variants.split(",") if v]:
            t0, model = time.perf_counter(), copy.deepcopy(base)
            log = VARIANTS[name](model, loaded.model, clean, measure)
            print(attack, name, log[-1], log, f"{time.perf_counter() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
