"""Runners that evaluate models on data and attacks."""

from pruneguard.evaluation.predict import evaluate_accuracy, evaluate_asr, predict

__all__ = ["evaluate_accuracy", "evaluate_asr", "predict"]
