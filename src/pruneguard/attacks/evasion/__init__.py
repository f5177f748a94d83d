"""Evasion attacks (test-time perturbations): FGSM, PGD, AutoAttack, Square, transfer, universal patch, BPDA, and
constrained tabular evasion of the positive class."""

from pruneguard.attacks.evasion.autoattack import AutoAttack, autoattack
from pruneguard.attacks.evasion.bpda import BPDAWrapper, bpda
from pruneguard.attacks.evasion.fgsm import FGSM, fgsm
from pruneguard.attacks.evasion.patch import PatchAttack, paste_patch, random_locations, train_universal_patch
from pruneguard.attacks.evasion.pgd import PGD, pgd
from pruneguard.attacks.evasion.projections import l2_norms, project_l2, project_linf
from pruneguard.attacks.evasion.square import Square, square
from pruneguard.attacks.evasion.tabular import PositiveEvasion, positive_evasion
from pruneguard.attacks.evasion.transfer import TransferAttack, transfer_attack

__all__ = [
    "FGSM",
    "PGD",
    "AutoAttack",
    "BPDAWrapper",
    "PatchAttack",
    "PositiveEvasion",
    "Square",
    "TransferAttack",
    "autoattack",
    "bpda",
    "fgsm",
    "l2_norms",
    "paste_patch",
    "pgd",
    "positive_evasion",
    "project_l2",
    "project_linf",
    "random_locations",
    "square",
    "train_universal_patch",
    "transfer_attack",
]
