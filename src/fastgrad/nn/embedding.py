"""nn.Embedding: a lookup table of learned vectors, indexed by integers."""
import numpy as np

from ..tensor import get_default_dtype
from . import init
from .functional_seq import embedding, _padding_idx
from .layers import _count
from .module import Module
from .parameter import Parameter


class Embedding(Module):
    """weight of shape (num_embeddings, embedding_dim); forward(idx) -> weight[idx].

    Initialised as PyTorch does: N(0, 1), and the `padding_idx` row (if any)
    set to zero; that row never receives a gradient.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, dtype=None,
                 _weight=None):
        super().__init__()
        self.num_embeddings = _count("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = _count("Embedding", "embedding_dim", embedding_dim)
        self.padding_idx = _padding_idx("Embedding", padding_idx, self.num_embeddings)
        dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
        if dtype.kind != "f":
            raise TypeError("Embedding: dtype must be float32 or float64, got %s" % dtype)
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is not None:
            values = np.asarray(getattr(_weight, "data", _weight))
            if values.shape != shape:
                raise ValueError("Embedding: _weight must have shape %s, got %s"
                                 % (shape, values.shape))
            self.weight = Parameter(values.astype(dtype))
        else:
            self.weight = Parameter(np.empty(shape, dtype=dtype))
            self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.numpy()[self.padding_idx] = 0
            self.weight._bump_version()

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        values = np.asarray(getattr(embeddings, "data", embeddings))
        if values.ndim != 2:
            raise ValueError("Embedding.from_pretrained: embeddings must be 2-D, got shape %s"
                             % (values.shape,))
        module = cls(values.shape[0], values.shape[1], padding_idx=padding_idx,
                     dtype=values.dtype if values.dtype.kind == "f" else None, _weight=values)
        module.weight.requires_grad = not freeze
        return module

    def forward(self, input):
        return embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = "%d, %d" % (self.num_embeddings, self.embedding_dim)
        if self.padding_idx is not None:
            s += ", padding_idx=%d" % self.padding_idx
        return s
