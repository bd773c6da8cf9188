# Type stub of fastgrad.inspect (the runtime module has the same names).
from typing import Any, Callable, Iterable

from fastgrad._typing import PathOrFile, TensorLike

from fastgrad.tensor import Tensor

from .tensor import Tensor as Tensor

__all__ = ['explain', 'sweep', 'draw_graph', 'gradcheck', 'GradcheckError', 'detect_anomaly']

class Step:
    tensor: Any
    op: Any
    inputs: Any
    params: Any
    upstream: Any
    local: Any
    downstream: Any
    def __init__(self, tensor: Any, op: Any, inputs: Any, params: Iterable[Any]) -> None: ...

def sweep(root: Any, gradient: TensorLike | None = ..., tool: str = ...) -> Any: ...
def explain(t: Any, gradient: TensorLike | None = ..., names: Any = ...) -> Any: ...
def draw_graph(t: Any, path: PathOrFile | None = ..., names: Any = ...) -> Any: ...

class GradcheckError(RuntimeError):
    ...

def gradcheck(fn: Callable[..., Any], inputs: Any, eps: float = ..., atol: float = ..., rtol: float = ...) -> Any: ...

class detect_anomaly:
    def __init__(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: Any) -> Any: ...
    def check(self, root: Any, gradient: TensorLike | None = ...) -> None: ...

