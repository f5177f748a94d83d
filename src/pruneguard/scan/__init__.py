"""Model intake diagnostics: the neuron-sensitivity scan (ANP's observation, no retraining, no trigger)."""

from pruneguard.scan.sensitivity import DEFAULT_EPS, ScanConfig, ScanResult, flip_rate, scan_model, scan_score, verdict

__all__ = ["DEFAULT_EPS", "ScanConfig", "ScanResult", "flip_rate", "scan_model", "scan_score", "verdict"]
