"""Policies: loading (bad files name the key), rule evaluation, missing measurements, exit codes, HTML."""

from __future__ import annotations

from pathlib import Path

import pytest

from pruneguard.errors import ConfigError
from pruneguard.policy import (
    Policy,
    RuleResult,
    evaluate_policy,
    load_policy,
    policy_exit_code,
    policy_record,
    policy_table_html,
)

FULL = """\
max_accuracy_drop: 0.02
max_scan_score: 0.1
max_asr: 0.05
min_robust_accuracy:
  pgd: 0.3
  fgsm: 0.4
required_attacks: [pgd, fgsm]
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_full_policy(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, FULL))
    assert policy.max_accuracy_drop == 0.02 and policy.max_scan_score == 0.1 and policy.max_asr == 0.05
    assert policy.min_robust_accuracy == {"pgd": 0.3, "fgsm": 0.4}
    assert policy.required_attacks == ["pgd", "fgsm"]
    assert load_policy(write(tmp_path, "max_scan_score: 1\n")).max_scan_score == 1.0


def test_all_rules_pass() -> None:
    policy = Policy(**{"max_accuracy_drop": 0.02, "max_scan_score": 0.1, "max_asr": 0.05})
    m = {"accuracy_drop": 0.01, "scan_score": 0.1, "asr": 0.0}
    results = evaluate_policy(policy, m)
    assert [r.rule for r in results] == ["max_accuracy_drop", "max_scan_score", "max_asr"]
    assert all(r.passed for r in results) and policy_exit_code(results) == 0
    assert results[1].measured == 0.1 and results[1].limit == 0.1  # the limit itself passes


def test_failing_and_missing_rules(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, FULL))
    m = {"accuracy_drop": 0.05, "scan_score": 0.01, "robust_accuracy": {"pgd": 0.2}, "attacks": ["pgd"]}
    by_rule = {r.rule: r for r in evaluate_policy(policy, m)}
    assert not by_rule["max_accuracy_drop"].passed and "above" in by_rule["max_accuracy_drop"].note
    assert by_rule["max_scan_score"].passed
    assert not by_rule["max_asr"].passed and by_rule["max_asr"].measured is None
    assert "not measured" in by_rule["max_asr"].note
    assert not by_rule["min_robust_accuracy[pgd]"].passed and "below" in by_rule["min_robust_accuracy[pgd]"].note
    assert (
        not by_rule["min_robust_accuracy[fgsm]"].passed and "not measured" in by_rule["min_robust_accuracy[fgsm]"].note
    )
    assert not by_rule["required_attacks"].passed and "fgsm" in by_rule["required_attacks"].note
    assert policy_exit_code(list(by_rule.values())) == 3


def test_missing_none_and_nan_measurements_fail() -> None:
    policy = Policy(max_scan_score=0.1)
    for m in ({}, {"scan_score": None}, {"scan_score": float("nan")}, {"scan_score": "0.01"}):
        (r,) = evaluate_policy(policy, m)
        assert not r.passed and "not measured" in r.note
        assert policy_exit_code([r]) == 3


def test_required_attacks_default_to_robust_accuracy_keys() -> None:
    policy = Policy(required_attacks=["pgd"], min_robust_accuracy={"pgd": 0.5})
    results = evaluate_policy(policy, {"robust_accuracy": {"pgd": 0.6}})
    assert all(r.passed for r in results) and policy_exit_code(results) == 0


def test_exit_code_of_no_results_is_zero() -> None:
    assert policy_exit_code([]) == 0
    assert policy_exit_code([RuleResult("x", 1.0, 0.5, False)]) == 3


@pytest.mark.parametrize(
    "text,needle",
    [
        ("max_scan_scor: 0.1\n", "'max_scan_scor'"),
        ("max_scan_score: 0.1\nextra: 1\n", "'extra'"),
        ("max_scan_score: high\n", "'max_scan_score'"),
        ("max_scan_score: true\n", "'max_scan_score'"),
        ("max_scan_score: -1\n", "'max_scan_score'"),
        ("max_scan_score: .nan\n", "'max_scan_score'"),
        ("max_accuracy_drop: 2\n", "'max_accuracy_drop'"),
        ("max_asr: [0.1]\n", "'max_asr'"),
        ("min_robust_accuracy: 0.3\n", "'min_robust_accuracy'"),
        ("min_robust_accuracy: {pgd: 1.5}\n", "'min_robust_accuracy'"),
        ("min_robust_accuracy: {pgd: x}\n", "'min_robust_accuracy'"),
        ("required_attacks: pgd\n", "'required_attacks'"),
        ("required_attacks: [1, 2]\n", "'required_attacks'"),
        ("max_scan_score: [unclosed\n", "not valid YAML"),
        ("- max_scan_score\n", "mapping"),
        ("just a string\n", "mapping"),
        ("", "empty"),
        ("max_scan_score: null\n", "no rule"),
        ("no_backdoor_evidence: yes please\n", "'no_backdoor_evidence'"),
        ("no_backdoor_evidence: 1\n", "'no_backdoor_evidence'"),
        ("no_backdoor_evidence: false\n", "no rule"),
    ],
)
def test_bad_policy_files_raise_one_line_config_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(write(tmp_path, text))
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and "--policy=" in msg


def test_missing_and_binary_policy_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81max")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(binary)


def test_record_and_html() -> None:
    results = evaluate_policy(Policy(max_scan_score=0.1, max_asr=0.05), {"scan_score": 0.3})
    rec = policy_record(results, "p.yaml")
    assert rec["file"] == "p.yaml" and rec["passed"] is False and len(rec["rules"]) == 2
    assert rec["rules"][0] == {
        "rule": "max_scan_score",
        "measured": 0.3,
        "limit": 0.1,
        "passed": False,
        "note": "above the limit",
    }
    html = policy_table_html(results)
    assert html == policy_table_html(rec["rules"])  # objects or their dicts
    assert "class='fail'" in html and "max_scan_score" in html and "not measured" in html
    ok = policy_table_html(evaluate_policy(Policy(max_scan_score=0.5), {"scan_score": 0.3}))
    assert "class='pass'" in ok and "class='fail'" not in ok
    assert "&lt;b&gt;" in policy_table_html([RuleResult("<b>", None, None, True)])


def test_yaml_alias_bomb_is_refused_fast_with_a_short_message(tmp_path: Path) -> None:
    import time

    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 12):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    lines.append("max_scan_score: *l")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 2000
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases") as info:
        load_policy(path)
    assert time.perf_counter() - t0 < 1.0
    assert len(str(info.value)) < 300 and "\n" not in str(info.value)


def test_large_policy_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("max_scan_score: 0.1\n" + "# padding\n" * 10000)
    with pytest.raises(ConfigError, match="larger than"):
        load_policy(path)


@pytest.mark.parametrize(
    "text",
    [
        "min_robust_accuracy: {pgdd: 0.3}\n",
        "required_attacks: [pgd, no_such_attack]\n",
        "required_attacks: [badnets]\n",
    ],
)
def test_rules_naming_an_unknown_attack_are_refused_up_front(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="unknown attack"):
        load_policy(path)


def test_measured_attack_names_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("required_attacks: [fgsm, pgd, square, bpda_pgd, transfer_pgd_from_float]\n")
    assert load_policy(path).required_attacks == ["fgsm", "pgd", "square", "bpda_pgd", "transfer_pgd_from_float"]


def test_no_backdoor_evidence_fails_when_a_detector_flags_or_nothing_was_measured(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "no_backdoor_evidence: true\n"))
    (ok,) = evaluate_policy(policy, {"flagged_by": []})
    assert ok.passed and ok.rule == "no_backdoor_evidence"
    (bad,) = evaluate_policy(policy, {"flagged_by": ["neuron sensitivity", "reference model"]})
    assert not bad.passed and bad.note == "flagged by neuron sensitivity, reference model"
    (unmeasured,) = evaluate_policy(policy, {"scan_score": 0.1})
    assert not unmeasured.passed and "not measured" in unmeasured.note
    assert policy_exit_code([ok]) == 0 and policy_exit_code([ok, bad]) == 3
