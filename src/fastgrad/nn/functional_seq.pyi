# Type stub of fastgrad.nn.functional_seq (the runtime module has the same names).
from typing import Any

from fastgrad._typing import ShapeLike, TensorLike

from fastgrad.tensor import Tensor

from .functional import dropout as dropout

__all__ = ['embedding', 'layer_norm', 'scaled_dot_product_attention']
def embedding(input: TensorLike, weight: TensorLike | None, padding_idx: int | None = ...) -> Tensor: ...
def layer_norm(input: TensorLike, normalized_shape: ShapeLike, weight: TensorLike | None = ..., bias: bool | None = ..., eps: float = ...) -> Tensor: ...
def scaled_dot_product_attention(query: TensorLike, key: Any, value: Any, attn_mask: TensorLike | None = ..., dropout_p: float = ..., is_causal: bool = ..., scale: float | None = ...) -> Tensor: ...
