"""Sweeps: many independent units (models, defences, settings) run locally or on Ray, results cached by config."""

from pruneguard.sweeps.executor import EXECUTORS, SweepError, SweepStats, Unit, config_hash, result_path, run_units

__all__ = ["EXECUTORS", "SweepError", "SweepStats", "Unit", "config_hash", "result_path", "run_units"]
