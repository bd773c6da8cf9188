"""Type aliases for fastgrad's annotations (the stubs beside each module use them).

A tensor argument also takes what `fg.tensor` would turn into a tensor: an
ndarray or a Python number.  Strings are not among them, so a type checker
flags `fg.exp("1.0")`.
"""
from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any, Protocol, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from ._device import device
    from .tensor import Tensor

__all__ = ["TensorLike", "Dim", "ShapeLike", "DTypeLike", "DeviceLike", "PathOrFile", "DatasetLike"]

TensorLike = Union["Tensor", "np.ndarray[Any, Any]", np.generic, float, int, bool]
# one axis or several; None means every axis
Dim = Union[int, Sequence[int], None]
ShapeLike = Union[int, Sequence[int]]
DTypeLike = Union[type, np.dtype, str, None]
DeviceLike = Union[str, "device", None]
PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]


class DatasetLike(Protocol):
    """What DataLoader and the samplers take: anything with a length that can
    be indexed by position (a Dataset, a list, an array)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Any: ...
