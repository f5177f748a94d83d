"""Attacks: one protocol for evasion and backdoor attacks."""

from pruneguard.attacks import backdoor as _backdoor  # noqa: F401  (registers backdoor attacks)
from pruneguard.attacks import evasion as _evasion  # noqa: F401  (registers evasion attacks)
from pruneguard.attacks.base import ATTACKS, Attack, BackdoorAttack

__all__ = ["ATTACKS", "Attack", "BackdoorAttack"]
