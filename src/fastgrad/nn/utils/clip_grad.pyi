# Type stub of fastgrad.nn.utils.clip_grad (the runtime module has the same names).
from typing import Any, Iterable

from ...autograd import no_grad as no_grad

def clip_grad_norm_(parameters: Iterable[Any], max_norm: float, norm_type: float = ..., error_if_nonfinite: bool = ..., foreach: bool | None = ...) -> Any: ...
def clip_grad_value_(parameters: Iterable[Any], clip_value: float, foreach: bool | None = ...) -> None: ...
