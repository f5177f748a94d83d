"""Datasets (uint8 images in memory, float [0, 1] per batch), splits and downloads."""

from pruneguard.data.datasets import (
    DATASETS,
    DatasetInfo,
    dataset_info,
    list_datasets,
    load_dataset,
    search_dirs,
)
from pruneguard.data.splits import clean_split, holdout_split, indices_hash, stratified_sample
from pruneguard.data.tensors import ArrayData, iterate_batches, to_float

__all__ = [
    "DATASETS",
    "ArrayData",
    "DatasetInfo",
    "clean_split",
    "dataset_info",
    "holdout_split",
    "indices_hash",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
    "search_dirs",
    "stratified_sample",
    "to_float",
]
