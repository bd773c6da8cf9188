# Type stub of fastgrad.nn.utils.convert_parameters (the runtime module has the same names).
from typing import Any, Iterable

from fastgrad._typing import TensorLike

from ...autograd import no_grad as no_grad
from ...tensor import cat as cat

def parameters_to_vector(parameters: Iterable[Any]) -> Any: ...
def vector_to_parameters(vec: TensorLike, parameters: Iterable[Any]) -> None: ...
