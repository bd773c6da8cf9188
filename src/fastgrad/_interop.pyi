# Type stub of fastgrad._interop (the runtime module has the same names).
from typing import Any

from fastgrad._typing import TensorLike

from fastgrad.tensor import Tensor


__all__ = ['array_ufunc', 'from_dlpack']
def array_ufunc(ufunc: Any, method: Any, inputs: Any, kwargs: Any) -> Tensor: ...
def from_dlpack(x: TensorLike) -> Tensor: ...
