"""Test-wide settings: one torch thread (small models run fastest that way on a loaded 2-core machine)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
