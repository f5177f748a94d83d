"""--threads: a count or auto; auto measures 1 vs all cores and restores the thread count it found."""

from __future__ import annotations

import os

import pytest
import torch

from pruneguard.cli.app import main
from pruneguard.errors import ConfigError
from pruneguard.utils.device import parse_threads, probe_threads, retune_threads


def test_parse_threads_counts_and_rejects_bad_values() -> None:
    assert parse_threads("2") == 2 and parse_threads(1) == 1
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ConfigError, match=r"--threads=.*accepted: an integer >= 1, or auto"):
            parse_threads(bad)


def test_probe_threads_picks_a_candidate_and_restores_the_count() -> None:
    before = torch.get_num_threads()
    assert probe_threads((1,), rounds=1) == 1
    cores = os.cpu_count() or 1
    assert parse_threads("auto") in {1, cores}
    assert torch.get_num_threads() == before
    parse_threads("1")  # auto mode off again


def test_cli_bad_threads_is_a_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    code = main(["demo", "--threads", "many", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--threads='many'" in err
    assert not (tmp_path / "d").exists()


def test_retune_threads_measures_again_only_in_auto_mode() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(parse_threads("1"))
        assert retune_threads("stage") == 1  # a fixed count is left alone
        parse_threads("auto")
        assert retune_threads("stage") in {1, os.cpu_count() or 1}
    finally:
        parse_threads("1")  # leave auto mode off for the rest of the session
        torch.set_num_threads(before)
