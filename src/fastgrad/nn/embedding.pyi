# Type stub of fastgrad.nn.embedding (the runtime module has the same names).
from typing import Any

from fastgrad._typing import DTypeLike, TensorLike

import fastgrad.nn.module
from fastgrad.tensor import Tensor
from fastgrad.nn.module import Module
from fastgrad.nn.parameter import Parameter

from ..tensor import get_default_dtype as get_default_dtype
from . import init as init
from .functional_seq import embedding as embedding
from .module import Module as Module
from .parameter import Parameter as Parameter



class Embedding(fastgrad.nn.module.Module):
    num_embeddings: Any
    embedding_dim: Any
    padding_idx: Any
    weight: Parameter
    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = ..., *, dtype: DTypeLike | None = ..., _weight: Any = ...) -> None: ...
    def reset_parameters(self) -> None: ...
    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = ..., padding_idx: int | None = ...) -> Any: ...
    def forward(self, input: TensorLike) -> Tensor: ...
    def extra_repr(self) -> str: ...

