# Type stub of fastgrad.nn.rnn (the runtime module has the same names).
from typing import Any

from fastgrad._typing import DTypeLike, TensorLike

import fastgrad.nn.module
from fastgrad.tensor import Tensor
from fastgrad.nn.module import Module
from fastgrad.nn.parameter import Parameter

from ..tensor import get_default_dtype as get_default_dtype
from ..tensor import stack as stack
from ..tensor import cat as cat
from . import init as init
from .functional import dropout as dropout
from .module import Module as Module
from .parameter import Parameter as Parameter



class RNNBase(fastgrad.nn.module.Module):
    mode: Any
    input_size: Any
    hidden_size: Any
    num_layers: Any
    bias: Any
    batch_first: Any
    dropout: Any
    bidirectional: Any
    proj_size: Any
    def __init__(self, mode: bool, input_size: int, hidden_size: int, num_layers: int = ..., bias: bool = ..., batch_first: bool = ..., dropout: float = ..., bidirectional: bool = ..., proj_size: int = ..., *, dtype: DTypeLike | None = ...) -> None: ...
    def reset_parameters(self) -> None: ...
    def forward(self, input: TensorLike, hx: Any = ...) -> Any: ...
    def extra_repr(self) -> str: ...


class RNN(RNNBase):
    nonlinearity: Any
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = ..., nonlinearity: str = ..., bias: bool = ..., batch_first: bool = ..., dropout: float = ..., bidirectional: bool = ..., *, dtype: DTypeLike | None = ...) -> None: ...


class LSTM(RNNBase):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = ..., bias: bool = ..., batch_first: bool = ..., dropout: float = ..., bidirectional: bool = ..., proj_size: int = ..., *, dtype: DTypeLike | None = ...) -> None: ...


class GRU(RNNBase):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = ..., bias: bool = ..., batch_first: bool = ..., dropout: float = ..., bidirectional: bool = ..., *, dtype: DTypeLike | None = ...) -> None: ...



class RNNCellBase(fastgrad.nn.module.Module):
    mode: Any
    input_size: Any
    hidden_size: Any
    bias: Any
    weight_ih: Any
    weight_hh: Any
    bias_ih: Any
    bias_hh: Any
    def __init__(self, mode: bool, input_size: int, hidden_size: int, bias: bool, dtype: DTypeLike) -> None: ...
    def reset_parameters(self) -> None: ...
    def extra_repr(self) -> str: ...


class RNNCell(RNNCellBase):
    nonlinearity: Any
    def __init__(self, input_size: int, hidden_size: int, bias: bool = ..., nonlinearity: str = ..., *, dtype: DTypeLike | None = ...) -> None: ...
    def forward(self, input: TensorLike, hx: Any = ...) -> Tensor: ...


class LSTMCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = ..., *, dtype: DTypeLike | None = ...) -> None: ...
    def forward(self, input: TensorLike, hx: Any = ...) -> Any: ...


class GRUCell(RNNCellBase):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = ..., *, dtype: DTypeLike | None = ...) -> None: ...
    def forward(self, input: TensorLike, hx: Any = ...) -> Tensor: ...

