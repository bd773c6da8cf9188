# Type stub of fastgrad.nn.attention (the runtime module has the same names).
from typing import Any

from fastgrad._typing import DTypeLike, TensorLike

import fastgrad.nn.module
from fastgrad.nn.module import Module
from fastgrad.nn.parameter import Parameter

from ..tensor import get_default_dtype as get_default_dtype
from . import init as init
from .layers import Linear as Linear
from .module import Module as Module
from .parameter import Parameter as Parameter



class MultiheadAttention(fastgrad.nn.module.Module):
    embed_dim: Any
    num_heads: Any
    kdim: Any
    vdim: Any
    head_dim: Any
    dropout: Any
    batch_first: Any
    in_proj_bias: Any
    out_proj: Any
    in_proj_weight: Any
    q_proj_weight: Any
    k_proj_weight: Any
    v_proj_weight: Any
    def __init__(self, embed_dim: int, num_heads: int, dropout: float = ..., bias: bool = ..., add_bias_kv: bool = ..., add_zero_attn: bool = ..., kdim: Any = ..., vdim: Any = ..., batch_first: bool = ..., *, dtype: DTypeLike | None = ...) -> None: ...
    def forward(self, query: TensorLike, key: TensorLike, value: TensorLike, key_padding_mask: TensorLike | None = ..., need_weights: bool = ..., attn_mask: TensorLike | None = ..., average_attn_weights: bool = ..., is_causal: bool = ...) -> Any: ...
    def extra_repr(self) -> str: ...

