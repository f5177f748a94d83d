"""Acceptance policies: a YAML file of limits a model must meet, checked against a job's measurements.

A policy file sets any of these keys (at least one)::

    max_accuracy_drop: 0.02          # purify/harden: test accuracy lost by the defence
    max_scan_score: 0.1              # scan: neuron-sensitivity score
    no_backdoor_evidence: true       # scan: no detector of the scan flags the model
    max_asr: 0.05                    # benchmark only: attack success rate of a known trigger
    min_robust_accuracy: {pgd: 0.3}  # harden: accuracy under each named evasion attack
    required_attacks: [pgd, fgsm]    # harden: attacks that must have been evaluated

The API is three functions (the CLI maps a failed rule to exit code 3, after writing the report)::

    policy = load_policy(path)                                      # ConfigError naming the bad key
    results = evaluate_policy(policy, {"scan_score": 0.04})         # one RuleResult per rule
    code = policy_exit_code(results)                                # 0 all passed, 3 one failed
    report["policy"] = policy_record(results, path)                 # JSON section; HTML: policy_table_html

Measurements are a plain dict: ``accuracy_drop``, ``scan_score``, ``asr`` (floats), ``flagged_by`` (the
names of the detectors that flag the model; empty: none does), ``robust_accuracy``
(``{attack: accuracy}``) and optionally ``attacks`` (names evaluated; defaults to the keys of
``robust_accuracy``). A rule whose measurement is missing (absent or ``None``) fails, with a note saying so:
a policy never passes by default.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pruneguard.attacks import ATTACKS
from pruneguard.errors import ConfigError

__all__ = [
    "Policy",
    "RuleResult",
    "load_policy",
    "evaluate_policy",
    "policy_exit_code",
    "policy_table_html",
    "policy_record",
    "POLICY_FAILED_EXIT_CODE",
]

POLICY_FAILED_EXIT_CODE = 3
_MAX_POLICY_BYTES = 64 * 1024  # a policy is a handful of lines


def _evasion_names() -> list[str]:
    return [n for n in ATTACKS.names() if ATTACKS.meta(n).get("kind") != "backdoor"]


def _known_attack(name: str) -> bool:
    """An attack name a run can measure: a registered evasion attack, ``bpda_<attack>`` (quantized models) or
    ``transfer_<attack>_from_<source>``."""
    names = _evasion_names()
    if name in names:
        return True
    bpda = re.fullmatch(r"bpda_(\w+)", name)
    transfer = re.fullmatch(r"transfer_([a-z0-9]+)_from_\w+", name)
    return any(m is not None and m.group(1) in names for m in (bpda, transfer))


def _check_attack_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if not _known_attack(n)]
    if unknown:
        raise ValueError(
            f"unknown attack {unknown[0]!r}; accepted: {', '.join(_evasion_names())}, bpda_<attack>, "
            "transfer_<attack>_from_<source>"
        )


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: a policy never needs them, and nested aliases ("billion laughs")
    expand a 1 kB file into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise ConfigError("YAML aliases (*name) are not accepted in a policy")
        return super().compose_node(parent, index)


class Policy(BaseModel):
    """Limits a model must meet; an unset limit is no rule. Rates are fractions in [0, 1]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_accuracy_drop: float | None = Field(None, ge=0.0, le=1.0)
    max_scan_score: float | None = Field(None, ge=0.0)
    max_asr: float | None = Field(None, ge=0.0, le=1.0)
    min_robust_accuracy: dict[str, float] | None = None
    required_attacks: list[str] | None = None
    no_backdoor_evidence: bool | None = None

    @field_validator("no_backdoor_evidence", mode="before")
    @classmethod
    def _flag(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, bool):
            raise ValueError("accepted: true or false")
        return v

    @field_validator("max_accuracy_drop", "max_scan_score", "max_asr", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, bool) or (v is not None and not isinstance(v, int | float)):
            raise ValueError("accepted: a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("accepted: a finite number")
        return None if v is None else float(v)

    @field_validator("min_robust_accuracy", mode="before")
    @classmethod
    def _robust(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, dict):
            raise ValueError("accepted: a mapping {attack_name: accuracy in [0, 1]}")
        for name, acc in v.items():
            ok = isinstance(acc, int | float) and not isinstance(acc, bool) and 0.0 <= acc <= 1.0
            if not isinstance(name, str) or not name or not ok:
                raise ValueError(f"entry {name!r}: {acc!r} is not accepted; accepted: attack_name: accuracy in [0, 1]")
        _check_attack_names(list(v))
        return {k: float(a) for k, a in v.items()}

    @field_validator("required_attacks", mode="before")
    @classmethod
    def _attacks(cls, v: Any) -> Any:
        if v is not None and (not isinstance(v, list) or not all(isinstance(n, str) and n for n in v)):
            raise ValueError("accepted: a list of attack names")
        if v is not None:
            _check_attack_names(v)
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> Policy:
        if all(getattr(self, k) is None or getattr(self, k) is False for k in type(self).model_fields):
            raise ValueError("the policy sets no rule; accepted keys: " + ", ".join(type(self).model_fields))
        return self


@dataclass(frozen=True)
class RuleResult:
    """One checked rule: e.g. ``rule="max_scan_score"``, ``measured=0.21``, ``limit=0.1``, ``passed=False``."""

    rule: str
    measured: Any
    limit: Any
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a YAML policy file; every problem is a one-line ``ConfigError`` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--policy={path} does not exist or is not a file")
    if path.stat().st_size > _MAX_POLICY_BYTES:
        raise ConfigError(f"--policy={path} is larger than {_MAX_POLICY_BYTES // 1024} kB; a policy is a few lines")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as exc:
        raise ConfigError(f"--policy={path}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--policy={path} is not valid YAML: {first}") from None
    if raw is None:
        raise ConfigError(f"--policy={path} is empty; accepted keys: {', '.join(Policy.model_fields)}")
    if not isinstance(raw, dict):
        raise ConfigError(f"--policy={path} must be a mapping of rules, not a {type(raw).__name__}")
    for key in raw:
        if key not in Policy.model_fields:
            raise ConfigError(
                f"--policy={path}: key {key!r} is not accepted; accepted keys: {', '.join(Policy.model_fields)}"
            )
    try:
        return Policy(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:
            raise ConfigError(f"--policy={path}: {msg}") from None
        key = ".".join(str(p) for p in err["loc"])
        shown = repr(err.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ConfigError(f"--policy={path}: key {key!r}={shown}: {msg}") from None


def _number(measurements: Mapping[str, Any], key: str) -> float | None:
    v = measurements.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _bound(rule: str, measured: float | None, limit: float, upper: bool) -> RuleResult:
    if measured is None:
        return RuleResult(rule, None, limit, False, "not measured by this run")
    passed = measured <= limit if upper else measured >= limit
    return RuleResult(rule, measured, limit, passed, "" if passed else ("above" if upper else "below") + " the limit")


def evaluate_policy(policy: Policy, measurements: Mapping[str, Any]) -> list[RuleResult]:
    """Check every rule the policy sets against ``measurements`` (see the module docstring for the keys)."""
    out: list[RuleResult] = []
    if policy.max_accuracy_drop is not None:
        out.append(_bound("max_accuracy_drop", _number(measurements, "accuracy_drop"), policy.max_accuracy_drop, True))
    if policy.max_scan_score is not None:
        out.append(_bound("max_scan_score", _number(measurements, "scan_score"), policy.max_scan_score, True))
    if policy.max_asr is not None:
        out.append(_bound("max_asr", _number(measurements, "asr"), policy.max_asr, True))
    if policy.no_backdoor_evidence:
        flagged = measurements.get("flagged_by")
        if flagged is None:
            out.append(RuleResult("no_backdoor_evidence", None, True, False, "not measured by this run"))
        else:
            note = f"flagged by {', '.join(flagged)}" if flagged else ""
            out.append(RuleResult("no_backdoor_evidence", list(flagged), [], not flagged, note))
    robust = measurements.get("robust_accuracy") or {}
    for name, limit in (policy.min_robust_accuracy or {}).items():
        out.append(_bound(f"min_robust_accuracy[{name}]", _number(robust, name), limit, False))
    if policy.required_attacks is not None:
        done = set(measurements.get("attacks") or robust)
        missing = [n for n in policy.required_attacks if n not in done]
        note = f"not evaluated: {', '.join(missing)}" if missing else ""
        out.append(RuleResult("required_attacks", sorted(done), list(policy.required_attacks), not missing, note))
    return out


def policy_exit_code(results: Sequence[RuleResult]) -> int:
    """0 when every rule passed, 3 (``POLICY_FAILED_EXIT_CODE``) when one failed."""
    return 0 if all(r.passed for r in results) else POLICY_FAILED_EXIT_CODE


def policy_record(results: Sequence[RuleResult], source: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The JSON-ready ``policy`` section of a report: ``{"file", "passed", "rules": [RuleResult dicts]}``."""
    return {
        "file": None if source is None else str(source),
        "passed": all(r.passed for r in results),
        "rules": [r.to_dict() for r in results],
    }


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v) or "–"
    return str(v)


def policy_table_html(results: Sequence[RuleResult | Mapping[str, Any]]) -> str:
    """An HTML table of checked rules (``RuleResult`` objects or their dicts), pass/fail coloured."""
    rows = []
    for r in results:
        d = r.to_dict() if isinstance(r, RuleResult) else dict(r)
        status = "<span class='pass'>pass</span>" if d["passed"] else "<span class='fail'>FAIL</span>"
        cells = [html.escape(_cell(d[k])) for k in ("rule", "measured", "limit")]
        rows.append(
            f"<tr><td>{cells[0]}</td><td>{cells[1]}</td><td>{cells[2]}</td><td>{status}</td>"
            f"<td>{html.escape(d.get('note') or '')}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("rule", "measured", "limit", "result", "note"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"
