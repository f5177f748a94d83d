"""``pruneguard purify``: Adversarial Neuron Pruning of a possibly backdoored model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pruneguard.cli.common import (
    THREADS_HELP,
    check_data_dir,
    configure_runtime,
    emit_json,
    output_folder,
    parse_json_option,
    progress_enabled,
)
from pruneguard.config import PurifyConfig, validate_config
from pruneguard.policy import evaluate_policy, load_policy, policy_exit_code, policy_record
from pruneguard.utils.seed import seed_everything
from pruneguard.workflows.purify import purify as purify_job
from pruneguard.workflows.purify import write_purify_outputs


def summary_lines(report: dict) -> list[str]:
    b, a = report["before"], report["after"]
    f = lambda v: "  n/a " if v is None else f"{v:6.4f}"  # noqa: E731
    mid = report.get("after_pruning")
    return [
        f"{'':8}{'accuracy':>10}{'ASR':>10}",
        f"{'before':8}{f(b['accuracy']):>10}{f(b['asr']):>10}",
        *([f"{'pruned':8}{f(mid['accuracy']):>10}{f(mid['asr']):>10}"] if mid else []),
        f"{'after':8}{f(a['accuracy']):>10}{f(a['asr']):>10}",
        f"pruned {report['pruned_neurons']}/{report['total_neurons']} neurons ({report['pruning_rule']}), "
        f"{report['clean_samples']} clean samples, {report['seconds']:.0f} s",
    ]


def purify(
    model: Path = typer.Option(..., "--model", help="Model file (.safetensors from pruneguard, or a state dict)."),
    out: Path = typer.Option(..., "--out", help="Output folder: purified.safetensors, report.json, report.html."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the one named in the model file)."),  # noqa: UP045
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the dataset files."),  # noqa: UP045
    clean_fraction: float = typer.Option(0.01, help="Clean split size as a fraction of the training split."),
    clean_samples: int | None = typer.Option(None, help="Clean split size as a count (wins over the fraction)."),  # noqa: UP045
    eps: float = typer.Option(0.4, "--anp-eps", help="Neuron perturbation budget."),
    anp_steps: int = typer.Option(1, "--anp-steps", help="Ascent steps per perturbation."),
    alpha: float = typer.Option(0.2, "--anp-alpha", help="Weight of the natural loss."),
    iterations: int = typer.Option(2000, help="Mask optimisation iterations."),
    batch_size: int = typer.Option(128),
    mask_lr: float = typer.Option(0.2, help="SGD learning rate of the masks."),
    clip_noise: bool = typer.Option(False, help="Project the perturbation to the eps-ball (the reference does not)."),
    anp_fast: bool = typer.Option(
        False, help="First ascent step from the natural pass's gradient: 2 passes per iteration, not 3."
    ),
    augment: bool = typer.Option(True, help="Crop/flip the clean batches as the reference does."),
    anp_target: str = typer.Option(
        "none",
        help="Targeted ANP: perturb towards this class, 'auto' (the neuron-sensitivity scan's suspect), "
        "'reversal' (Neural Cleanse style: the class a reversed patch or blend trigger reaches most easily), "
        "'combined' (both scans; the one stronger relative to its own cut decides), 'vote' (both scans; a class "
        "named by two of the sensitivity scan, the patch and the blend reversal, else the reversal) or 'none'.",
    ),
    vote_tiebreak: str = typer.Option(
        "reference",
        help="For --anp-target vote, when no class has a majority: 'reference' (a model trained on the clean split "
        "alone has triggers reversed to each named class; the class whose suspect-model trigger is smallest "
        "relative to the reference's wins) or 'strongest' (the reversal kind with the largest anomaly index).",
    ),
    threshold: str = typer.Option("0.2", help="Prune masks <= this value, or 'auto'."),
    prune_count: Optional[int] = typer.Option(None, help="Prune the N smallest masks instead."),  # noqa: UP045
    prune_fraction: Optional[float] = typer.Option(None, help="Prune this share of neurons instead."),  # noqa: UP045
    max_acc_drop: float = typer.Option(0.02, help="For --threshold auto: allowed clean-split accuracy drop."),
    cap_acc_drop: Optional[float] = typer.Option(  # noqa: UP045
        None, help="Never prune past a clean-split accuracy drop this large, whatever the rule."
    ),
    finetune_epochs: int = typer.Option(0, help="Fine-tune on the clean split after pruning (0: off)."),
    finetune_lr: float = typer.Option(0.01),
    unlearn: bool = typer.Option(
        False, help="After pruning: reverse a trigger to the suspected class (Neural Cleanse) and unlearn it."
    ),
    unlearn_steps: int = typer.Option(400, help="Optimisation steps of the trigger reversal."),
    unlearn_epochs: int = typer.Option(5, help="Unlearning epochs on the clean split plus stamped copies."),
    unlearn_lr: float = typer.Option(0.01, help="Learning rate of the unlearning fine-tune."),
    unlearn_rounds: int = typer.Option(
        1, help="Reverse-then-unlearn rounds; each later round reverses on the unlearned model and unlearns all."
    ),
    unlearn_trigger: str = typer.Option(
        "patch", help="Trigger shape to reverse: patch (Neural Cleanse), blend (one weight for all pixels), both."
    ),
    unlearn_distill: float = typer.Option(
        0.0, help="Weight of distilling the pruned model (before unlearning) on clean images while unlearning (0: off)."
    ),
    unlearn_teacher: str = typer.Option(
        "pruned",
        help="The model --unlearn-distill distills: 'pruned' (as pruned) or 'recalibrated' (the pruned model with "
        "its BatchNorm statistics recomputed on the clean split: more accurate on clean images).",
    ),
    unlearn_distill_suppress: float = typer.Option(
        0.0,
        help="Share of the teacher's probability of the suspected class taken out (the rest renormalised) on clean "
        "images of other classes while distilling: the channel through which a backdoored teacher teaches its "
        "target back (0: off, 1: all of it).",
    ),
    unlearn_distill_augment: bool = typer.Option(
        False,
        help="Distil on randomly cropped and flipped copies of the clean images (images only): the student "
        "matches the teacher on more than the few hundred clean images themselves.",
    ),
    unlearn_adv_eps: float = typer.Option(
        0.0,
        help="While unlearning, also add targeted L-inf PGD copies (this budget, images in [0, 1]) of each batch "
        "towards the suspected class, with true labels: per-image triggers (IAB, WaNet) that no reversed stamp "
        "fits (0: off).",
    ),
    eval_attack: Optional[str] = typer.Option(None, help="Trigger to measure ASR with (benchmarking only)."),  # noqa: UP045
    target_label: Optional[int] = typer.Option(None, help="Target label of --eval-attack."),  # noqa: UP045
    seed: int = typer.Option(0),
    threads: str = typer.Option("1", help=THREADS_HELP),
    checkpoint_every: int = typer.Option(100, help="Save the ANP state every N iterations."),
    resume: bool = typer.Option(False, help="Continue an interrupted run in --out."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out folder."),
    trust_pickle: bool = typer.Option(False, help="Allow pickled model files (runs their code!)."),
    arch: Optional[str] = typer.Option(None, help="Architecture of a file without metadata: zoo name or pkg.mod:fn."),  # noqa: UP045
    arch_kwargs: str = typer.Option("{}", help="JSON keyword arguments for --arch, e.g. '{\"width\": 0.5}'."),
    policy: Optional[Path] = typer.Option(None, help="YAML policy (e.g. max_accuracy_drop); exit 3 if it fails."),  # noqa: UP045
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Purify a model with Adversarial Neuron Pruning on a small clean split."""
    cfg = validate_config(
        PurifyConfig,
        dict(
            model=model,
            out=out,
            dataset=dataset,
            data_dir=data_dir,
            clean_fraction=clean_fraction,
            clean_samples=clean_samples,
            seed=seed,
            eps=eps,
            anp_steps=anp_steps,
            alpha=alpha,
            iterations=iterations,
            batch_size=batch_size,
            mask_lr=mask_lr,
            clip_noise=clip_noise,
            anp_fast=anp_fast,
            augment=augment,
            anp_target=anp_target,
            vote_tiebreak=vote_tiebreak,
            threshold=threshold,
            prune_count=prune_count,
            prune_fraction=prune_fraction,
            max_acc_drop=max_acc_drop,
            cap_acc_drop=cap_acc_drop,
            finetune_epochs=finetune_epochs,
            finetune_lr=finetune_lr,
            unlearn=unlearn,
            unlearn_steps=unlearn_steps,
            unlearn_epochs=unlearn_epochs,
            unlearn_lr=unlearn_lr,
            unlearn_rounds=unlearn_rounds,
            unlearn_trigger=unlearn_trigger,
            unlearn_distill=unlearn_distill,
            unlearn_teacher=unlearn_teacher,
            unlearn_distill_suppress=unlearn_distill_suppress,
            unlearn_distill_augment=unlearn_distill_augment,
            unlearn_adv_eps=unlearn_adv_eps,
            eval_attack=eval_attack,
            target_label=target_label,
            checkpoint_every=checkpoint_every,
            resume=resume,
            trust_pickle=trust_pickle,
            arch=arch,
            arch_kwargs=parse_json_option("--arch-kwargs", arch_kwargs),
            policy=policy,
        ),
    )
    rules = load_policy(policy) if policy is not None else None  # a bad policy fails before any work
    check_data_dir(data_dir)
    configure_runtime(threads)
    inputs = tuple(p for p in (model, policy, data_dir) if p is not None)
    with output_folder(out, overwrite=overwrite, resume=resume, inputs=inputs):
        seed_everything(seed)
        report, purified, meta = purify_job(cfg, progress=progress_enabled())
        code = 0
        if rules is not None:
            measured = {"accuracy_drop": report["accuracy_drop"], "asr": report["after"]["asr"]}
            results = evaluate_policy(rules, measured)
            report["policy"] = policy_record(results, policy)
            code = policy_exit_code(results)
        write_purify_outputs(cfg, report, purified, meta)
    if json_out:
        emit_json(report)
    else:
        typer.echo("\n".join(summary_lines(report)))
        typer.echo(f"report: {out / 'report.html'}")
        if report.get("policy"):
            failed = [r["rule"] for r in report["policy"]["rules"] if not r["passed"]]
            typer.echo("policy: passed" if not failed else f"policy: FAILED ({', '.join(failed)})")
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("purify")(purify)
