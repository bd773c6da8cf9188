"""nn.Parameter: a tensor that a Module registers as one of its weights."""
import numpy as np

from .._core import core
from ..tensor import Tensor, _deepcopy_leaf, _to_array


class Parameter(Tensor):
    """A leaf tensor that requires grad and that Modules collect.

    Assigning a Parameter to a Module attribute registers it, so it shows up
    in `parameters()`, `named_parameters()` and `state_dict()`.  Made from a
    tensor it shares that tensor's values (as in PyTorch); made from an array,
    number or list it copies them, like `fg.tensor`.
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            values = np.empty((0,), dtype=_to_array(0.0).dtype)
        elif isinstance(data, core.TensorBase):
            values = data.numpy()
        else:
            values = _to_array(data)
        if requires_grad and values.dtype.kind != "f":
            raise TypeError("Parameter: only floating point values can require grad, got dtype %s"
                            % values.dtype)
        self._init_leaf(values, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    # Pickling and copy.copy are Tensor's (the class is kept, so a Parameter
    # comes back as a Parameter).  deepcopy leaves .grad behind, as
    # torch.nn.Parameter's does: a deep-copied model starts without gradients.
    def __deepcopy__(self, memo):
        return _deepcopy_leaf(self, memo, keep_grad=False)
