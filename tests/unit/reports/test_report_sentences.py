"""The first sentence of the attack and train reports (percentages, singular and plural, tabular data, the
gradient-masking checks) and the pages they open: verdict first, pictures only for images, strings escaped."""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pytest

from pruneguard.reports.attack_html import attack_sentence, render_attack_html
from pruneguard.reports.plots import adversarial_png
from pruneguard.reports.train_html import render_train_html, train_sentence

_TINY_PNG = adversarial_png(np.zeros((1, 1, 4, 4)), np.full((1, 1, 4, 4), 0.1), [("clean", "attacked")], title="t")


def _attack(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": "pruneguard.attack/1",
        "model": "runs/m/model.safetensors",
        "model_sha256": "ab" * 32,
        "dataset": "fashion_mnist",
        "attack": {
            "name": "pgd",
            "params": {"eps": 0.1, "step_size": 0.00625, "steps": 40, "norm": "linf", "restarts": 1},
            "source": None,
        },
        "threat_model": {"space": "inputs in [0, 1]", "eps": 0.1, "norm": "linf"},
        "n_samples": 1000,
        "clean_accuracy": 0.91,
        "robust_accuracy": 0.123,
        "attack_success_rate": 0.8648,
        "mean_perturbation": 0.0987,
        "attack_seconds": 12.5,
        "checks": ["zero_gradients", "nondeterministic"],
        "flags": [],
        "data_kind": "image",
        "examples": {
            "rows": [{"index": 0, "label": 3, "clean_prediction": 3, "adversarial_prediction": 8}],
            "figure_png": _TINY_PNG,
        },
        "seconds": 14.0,
        "config": {"attack": "pgd", "eps": 0.1},
        "seed": 0,
        "versions": {"python": "3.11"},
        "git_commit": None,
        "device": "cpu",
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:00:14+00:00",
    }
    base.update(kw)
    return base


def _tabular(**kw: Any) -> dict[str, Any]:
    tm = {"space": "standardised features", "eps": 0.5, "eps_units": "standard deviations of each feature"}
    return _attack(
        attack={"name": "square", "params": {"eps": 0.03, "norm": "linf", "n_queries": 1, "restarts": 2}},
        threat_model={**tm, "norm": "linf"},
        data_kind="tabular",
        examples=None,
        n_samples=1,
        **kw,
    )


def _first_paragraph(page: str) -> str:
    match = re.match(r"\s*<p class='verdict[^']*' id='verdict'><strong>(.*?)</strong></p>", page.split("</h1>", 1)[1])
    assert match, "the page does not open with the verdict paragraph"
    return html.unescape(match.group(1))


def test_the_attack_sentence_gives_attack_budget_and_accuracies_as_percentages() -> None:
    assert attack_sentence(_attack()) == (
        "PGD (L∞, ε = 0.1, 40 steps, 1 restart) takes robust accuracy to 12.3% from a clean 91.0% on 1,000 test "
        "images; none of the 2 gradient-masking checks raised a flag."
    )


def test_the_attack_sentence_counts_in_the_singular_and_the_plural() -> None:
    one = _attack(n_samples=1, checks=["zero_gradients"])
    one["attack"]["params"].update(steps=1, restarts=3)
    assert "(L∞, ε = 0.1, 1 step, 3 restarts)" in attack_sentence(one)
    assert "on 1 test image; the gradient-masking check raised no flag." in attack_sentence(one)
    fgsm = _attack(attack={"name": "fgsm", "params": {"eps": 0.1}, "source": None})
    assert attack_sentence(fgsm).startswith("FGSM (L∞, ε = 0.1, one step) takes robust accuracy to 12.3%")


def test_tabular_attacks_count_rows_and_standard_deviations() -> None:
    sentence = attack_sentence(_tabular())
    assert sentence.startswith("Square (L∞, ε = 0.5 standard deviations, 1 query, 2 restarts) takes")
    assert "on 1 test row;" in sentence and "image" not in sentence
    old = _tabular()
    del old["data_kind"]  # a result written before data_kind was recorded: told by the eps units
    assert attack_sentence(old) == sentence


def test_a_raised_flag_is_named_in_the_sentence_and_colours_the_verdict() -> None:
    flag = {"check": "zero_gradients", "message": "3 of 40 examples have an input gradient of exactly zero"}
    result = _attack(flags=[{**flag, "values": {"share": 0.075}}])
    sentence = attack_sentence(result)
    assert sentence.endswith(
        "; 1 of 2 gradient-masking checks raised a flag (zero gradients), so this robust accuracy may overstate "
        "the model's robustness."
    )
    page = render_attack_html(result)
    assert "<p class='verdict fail' id='verdict'>" in page and "3 of 40 examples" in page
    assert "<p class='verdict' id='verdict'>" in render_attack_html(_attack())  # no flag: no judgement colour
    unlisted = _attack(checks=None)  # a result that does not list its checks says nothing about them
    assert attack_sentence(unlisted).endswith("on 1,000 test images.")


def test_a_transfer_attack_names_its_inner_attack_and_surrogate_file() -> None:
    params = {"attack": "pgd", "eps": 0.1, "steps": 10, "restarts": 1, "norm": "l2"}
    result = _attack(
        attack={"name": "transfer", "params": params, "source": "/runs/surrogate/model.safetensors"},
        threat_model={"space": "inputs in [0, 1]", "eps": 1.0, "norm": "l2"},
    )
    assert attack_sentence(result).startswith("PGD transferred from model.safetensors (L2, ε = 1, 10 steps, 1 restart)")


def test_the_attack_page_opens_with_the_sentence_then_figures_and_pictures_only_images() -> None:
    result = _attack()
    page = render_attack_html(result)
    assert _first_paragraph(page) == attack_sentence(result)
    assert page.index("key figure") < page.index("Adversarial examples") < page.index("Config and versions")
    assert "<td>12.3%</td>" in page and "<td>91.0%</td>" in page and "<td>98.7%</td>" in page  # 0.0987 / 0.1
    assert page.count("<img") == 1 and "src='data:image/png;base64,iVBOR" in page
    tabular = render_attack_html(_tabular())
    assert "<img" not in tabular and "Adversarial examples" not in tabular


def test_user_strings_are_escaped() -> None:
    evil = "<script>alert(1)</script>"
    page = render_attack_html(_attack(model=evil, dataset=evil, config={"out": evil}))
    assert "<script>" not in page and "&lt;script&gt;" in page
    train = _train(arch=evil)
    assert "<script>" not in render_train_html(train) and "&lt;script&gt;" in render_train_html(train)


def _train(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": "pruneguard.train/1",
        "model": "runs/m/model.safetensors",
        "model_sha256": "cd" * 32,
        "dataset": "fashion_mnist",
        "arch": "small_cnn",
        "attack": {
            "name": "badnets",
            "params": {"target_label": 0, "patch_size": 3},
            "rate": 0.05,
            "poisoned": 2700,
        },
        "test": {"accuracy": 0.91, "asr": 0.9994},
        "history": [
            {"epoch": 1, "loss": 0.6, "train_accuracy": 0.8},
            {"epoch": 2, "loss": 0.4, "train_accuracy": 0.87},
        ],
        "holdout_samples": 6000,
        "holdout_hash": "ef" * 32,
        "seconds": 60.0,
        "config": {"epochs": 2},
        "seed": 0,
        "versions": {"python": "3.11"},
        "git_commit": None,
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:01:00+00:00",
    }
    base.update(kw)
    return base


def test_the_train_sentence_names_model_data_accuracy_and_the_backdoor() -> None:
    assert train_sentence(_train()) == (
        "Trained small_cnn on fashion_mnist: test accuracy 91.0%; BadNets backdoor to class 0, ASR 99.9%."
    )
    clean = _train(attack=None, test={"accuracy": 0.9567, "asr": None})
    assert train_sentence(clean) == "Trained small_cnn on fashion_mnist without a backdoor: test accuracy 95.7%."
    unknown = _train(attack={"name": "my_trigger", "params": {}, "rate": 0.1, "poisoned": 1})
    assert train_sentence(unknown).endswith("; my_trigger backdoor, ASR 99.9%.")


def test_the_train_page_opens_with_the_sentence_and_shows_the_training_curve() -> None:
    result = _train()
    page = render_train_html(result)
    assert _first_paragraph(page) == train_sentence(result)
    assert "<td>2,700 samples (poison rate 5.0%)</td>" in page and "<td>87.0%</td>" in page
    assert page.count("<img") == 1 and page.index("key figure") < page.index("Training curve")
    assert "<img" not in render_train_html(_train(history=[]))


@pytest.mark.parametrize("n_shown", [1, 3])
def test_adversarial_png_is_a_picture_of_every_example(n_shown: int) -> None:
    import base64
    import io

    from matplotlib.image import imread

    rng = np.random.default_rng(0)
    x = rng.random((n_shown, 3, 8, 8))
    b64 = adversarial_png(x, np.clip(x + 0.05, 0, 1), [("a", "b")] * n_shown, title="t")
    picture = imread(io.BytesIO(base64.b64decode(b64)))
    assert picture.ndim == 3 and picture.shape[0] > 3 * 50 and picture.shape[1] > 3 * 50


def test_the_purify_page_gives_a_reversed_warp_its_size_in_pixels() -> None:
    from pruneguard.reports.html import _repair_note

    rep = {
        "method": "unlearn",
        "rounds": 1,
        "epochs": 5,
        "triggers": [
            {"round": 1, "kind": "patch", "target": 3, "mask_share": 0.0123, "success_rate": 0.99},
            {"round": 1, "kind": "warp", "target": 3, "mask_share": 0.215, "success_rate": 0.993},
        ],
    }
    note = _repair_note(rep)
    assert note is not None
    assert "patch → 3: mask 0.0123" in note and "warp → 3: mean displacement 0.215 px" in note
