"""PyTorch's `torch.utils` counterpart: `fastgrad.utils.data` (datasets, samplers, DataLoader)."""
from . import data

__all__ = ["data"]
