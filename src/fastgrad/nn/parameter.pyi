# Type stub of fastgrad.nn.parameter (the runtime module has the same names).
from typing import Any

from typing_extensions import Self

import fastgrad.tensor
from fastgrad.tensor import Tensor

from ..tensor import Tensor as Tensor



class Parameter(fastgrad.tensor.Tensor):
    def __init__(self, data: Any = ..., requires_grad: bool = ...) -> None: ...
    def __repr__(self) -> str: ...
    def __deepcopy__(self, memo: Any) -> Self: ...

