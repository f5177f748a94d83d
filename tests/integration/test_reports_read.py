"""Reports people read: the scan's verdict with its evidence (and exit 3 under a failing policy), the first
screen of the scan, harden, attack and train reports, the reversed-trigger and adversarial-example pictures, and a
real headless browser (Debian's ``chromium``; skipped where it is not installed) rendering the reports with every
image loaded and no URL fetched."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pruneguard.cli.app import main
from pruneguard.reports.attack_html import attack_sentence
from pruneguard.reports.plots import data_uri, reversed_trigger_png, trigger_png
from pruneguard.reports.train_html import train_sentence

FAST = ["--clean-samples", "60", "--eps", "0.2,0.4", "--steps", "2", "--restarts", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    args = ["train", "--dataset", "digits", "--attack", "badnets", "--poison-rate", "0.1", "--target-label", "3"]
    assert main(["-q", *args, "--epochs", "2", "--width", "0.25", "--out", str(out)]) == 0
    return out / "model.safetensors"


@pytest.fixture(scope="module")
def train_run(trained: Path) -> Path:
    """The folder ``pruneguard train`` wrote: the model, result.json and report.html."""
    return trained.parent


@pytest.fixture(scope="module")
def attacked(trained: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("attack") / "attack"
    args = ["--attack", "pgd", "--eps", "0.1", "--steps", "3", "--n-samples", "40"]
    assert main(["-q", "attack", "--model", str(trained), "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="module")
def scanned(trained: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scan") / "scan"
    assert (
        main(["-q", "scan", "--model", str(trained), "--out", str(out), *FAST, "--reversal", "--reversal-steps", "5"])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def hardened(trained: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("harden") / "harden"
    args = ["--target-sparsity", "0.2", "--step", "0.2", "--finetune-epochs", "0", "--n-eval", "60"]
    args += ["--clean-samples", "60", "--pgd-steps", "2", "--square-queries", "0", "--onnx"]
    assert main(["-q", "harden", "--model", str(trained), "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="module")
def purified(trained: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("purify") / "purify"
    sets = ["anp.iterations=10", "repair.reversal_steps=20", "repair.epochs=1", "repair.rounds=1"]
    sets += ["suspect.target=0", "eval_attack=badnets"]  # the implanted class: no scan needed here
    sets += ["unguarded_repair=true"]  # 29 validation images cannot hold a 2-point limit; the report is the point
    args = ["--clean-size", "0.1", *[x for s in sets for x in ("--set", s)]]
    assert main(["-q", "purify", "--model", str(trained), "--out", str(out), *args]) == 0
    return out


def test_purify_report_opens_with_the_verdict_and_shows_the_reversed_triggers(purified: Path) -> None:
    report = json.loads((purified / "report.json").read_text())
    page = (purified / "report.html").read_text()
    assert _first_paragraph(page) == report["verdict"]["sentence"]
    assert len(report["repair"]["figures_png"]) == 2  # the patch and the blend trigger of the first round
    assert page.index("Reversed triggers") < page.index("<h2>Details</h2>")


def _first_paragraph(page: str) -> str:
    body = page.split("</h1>", 1)[1]
    match = re.match(r"\s*<p[^>]*>(.*?)</p>", body, re.S)
    assert match, "the report does not open with a paragraph after its title"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def test_scan_gives_evidence_per_detector(scanned: Path) -> None:
    report = json.loads((scanned / "report.json").read_text())
    evidence = report["evidence"]
    names = ["neuron sensitivity", "trigger reversal", "reference model"]
    assert [r["detector"].split(" (")[0] for r in evidence] == names
    for r in evidence:
        flags = r["score"] <= r["cut"] if r["lower_flags"] else r["score"] > r["cut"]
        assert r["flagged"] == flags and r["score_over_cut"] == pytest.approx(r["score"] / r["cut"])
        assert 0 <= r["class"] < 10
    assert [r["lower_flags"] for r in evidence] == [False, False, True]
    finder = report["finder"]
    assert evidence[2]["score"] == finder["ratio"] and evidence[2]["class"] == finder["suspected_target"]
    assert evidence[1]["cut"] == 2.0 and evidence[1]["score"] == report["reversal"]["anomaly_index"]
    # Neural Cleanse's detector is the stamps', though the finder's reversal scan also reversed a warp
    assert sorted(report["reversal"]["kinds"]) == ["blend", "patch"] and report["reversal"]["kind"] != "warp"
    assert "warp" in finder["reference"]["ratios"]
    assert report["verdict"] == ("suspicious" if any(r["flagged"] and r["decides"] for r in evidence) else "clean")
    trig = report["reversal"]["trigger"]
    assert np.asarray(trig["mask"]).shape == (8, 8) and np.asarray(trig["pattern"]).shape == (1, 8, 8)
    sentence = _first_paragraph((scanned / "report.html").read_text())
    assert sentence == report["verdict_sentence"] and sentence.endswith(".") and "%" in sentence


def test_scan_exits_3_under_a_failing_policy_and_names_the_evidence(trained: Path, tmp_path: Path, capsys) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_scan_score: 0.0\n")
    code = main(["scan", "--model", str(trained), "--out", str(tmp_path / "s"), *FAST, "--policy", str(policy)])
    assert code == 3
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(
        ("Suspicious: the neuron sensitivity detector points at class", "No backdoor")
    )
    assert "neuron sensitivity: class" in out and "policy: FAILED (max_scan_score)" in out


def test_harden_report_opens_with_what_happened(hardened: Path) -> None:
    report = json.loads((hardened / "report.json").read_text())
    sentence = _first_paragraph((hardened / "report.html").read_text())
    assert sentence.startswith(("Pruning made", "Pruning did not", "No conclusion"))
    pruned = report["stages"][1]
    assert f"{pruned['pgd']:.1%}" in sentence and f"{pruned['clean']:.1%}" in sentence
    assert "ONNX export" in (hardened / "report.html").read_text()


def test_attack_report_opens_with_the_outcome_and_shows_adversarial_examples(attacked: Path) -> None:
    result = json.loads((attacked / "result.json").read_text())
    page = (attacked / "report.html").read_text()
    sentence = _first_paragraph(page)
    assert sentence == attack_sentence(result)
    assert sentence.startswith("PGD (L∞, ε = 0.1, 3 steps, 1 restart) takes robust accuracy to ")
    assert f"{result['robust_accuracy']:.1%} from a clean {result['clean_accuracy']:.1%} on 40 test images" in sentence
    assert "gradient-masking check" in sentence and result["checks"] == ["zero_gradients", "nondeterministic"]
    rows = result["examples"]["rows"]
    assert 1 <= len(rows) <= 4 and all(0 <= r["index"] < 40 for r in rows)
    fooled = [r["adversarial_prediction"] != r["label"] == r["clean_prediction"] for r in rows]
    assert fooled == sorted(fooled, reverse=True)  # the attack's successes come first
    assert page.count("<img") == 1 and page.index("key figure") < page.index("Adversarial examples")


def test_train_report_opens_with_what_was_trained(train_run: Path) -> None:
    result = json.loads((train_run / "result.json").read_text())
    sentence = _first_paragraph((train_run / "report.html").read_text())
    assert sentence == train_sentence(result)
    assert sentence.startswith("Trained small_cnn on digits: test accuracy ")
    assert sentence.endswith(f"; BadNets backdoor to class 3, ASR {result['test']['asr']:.1%}.")


def test_trigger_png_shows_mask_pattern_and_stamped_images() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 8, 8))
    mask[0, 6:, 6:] = 1.0
    b64 = trigger_png(mask, rng.random((3, 8, 8)), rng.random((3, 3, 8, 8)), title="class 1")
    import base64
    import io

    from matplotlib.image import imread

    picture = imread(io.BytesIO(base64.b64decode(b64)))
    assert picture.ndim == 3 and picture.shape[0] > 100 and picture.shape[1] > 100
    assert data_uri(b64).startswith("data:image/png;base64,iVBOR")


def test_a_reversed_warp_is_drawn_as_its_displacement_and_warped_images() -> None:
    import base64
    import io

    import torch
    from matplotlib.image import imread

    from pruneguard.scan.reversal import ReversedTrigger

    flow = torch.zeros(2, 8, 8)
    flow[0, :, 4:] = 0.5
    trig = ReversedTrigger(1, flow.norm(dim=0, keepdim=True) / 0.5, torch.zeros(1, 8, 8), 1.0, 16.0, 0.0, "warp", flow)
    b64 = reversed_trigger_png(trig, torch.rand(3, 1, 8, 8), title="warp to class 1")
    picture = imread(io.BytesIO(base64.b64decode(b64)))
    assert picture.ndim == 3 and picture.shape[0] > 100 and picture.shape[1] > 100


_PROBE = """<script>window.addEventListener('load', () => {
  const r = {images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
             fetched: performance.getEntriesByType('resource').map(e => e.name),
             first: (document.querySelector('h1 + p') || {}).textContent || ''};
  document.body.setAttribute('data-probe', JSON.stringify(r));
});</script>"""


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _render(browser: str, page: Path, tmp_path: Path) -> dict:
    """Load a copy of ``page`` with a probe script appended in headless Chromium; return what the probe saw."""
    probed = tmp_path / f"probed_{page.parent.name}.html"
    probed.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    cmd += ["--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    done = subprocess.run([*cmd, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert match, f"the browser did not run the probe: {done.stderr[-500:]}"
    return json.loads(html.unescape(match.group(1)))


@pytest.mark.skipif(_browser() is None, reason="no chromium installed (apt-get install -y chromium)")
@pytest.mark.parametrize("which", ["scanned", "hardened", "purified", "attacked", "train_run"])
def test_reports_render_in_a_browser_offline(which: str, request, tmp_path: Path) -> None:
    folder: Path = request.getfixturevalue(which)
    page = folder / "report.html"
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page.read_text())  # nothing external to fetch
    seen = _render(str(_browser()), page, tmp_path)
    # scan: the curve and the trigger; harden: three plots; purify: two triggers, the curve and the histogram;
    # attack: the adversarial examples; train: the training curve
    expected = {"scanned": 2, "hardened": 3, "purified": 4, "attacked": 1, "train_run": 1}[which]
    assert len(seen["images"]) == page.read_text().count("<img") >= expected and all(seen["images"])
    assert seen["fetched"] == []  # every picture is an inline data: URI
    report = json.loads((folder / ("result.json" if which in ("attacked", "train_run") else "report.json")).read_text())
    first = " ".join(seen["first"].split())
    if which == "attacked":
        assert first == attack_sentence(report)
    elif which == "train_run":
        assert first == train_sentence(report)
    elif which == "scanned":
        assert first == report["verdict_sentence"]
    elif which == "purified":
        assert first == report["verdict"]["sentence"]
    else:
        assert first.startswith(("Pruning made", "Pruning did not", "No conclusion"))
