"""Parameters to one flat vector and back, as torch.nn.utils."""
from ..._core import core
from ...autograd import no_grad
from ...tensor import cat


def _tensors(name, parameters):
    if isinstance(parameters, core.TensorBase):
        raise TypeError("%s: expected an iterable of tensors, got a single tensor; wrap it in a "
                        "list" % name)
    params = list(parameters)
    for p in params:
        if not isinstance(p, core.TensorBase):
            raise TypeError("%s: expected tensors, got an element of type %s"
                            % (name, type(p).__name__))
    return params


def parameters_to_vector(parameters):
    """Every parameter flattened and joined into one 1-d tensor (differentiable)."""
    params = _tensors("parameters_to_vector", parameters)
    if not params:
        raise ValueError("parameters_to_vector: no parameters given")
    return cat([p.reshape(-1) for p in params], axis=0)


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the 1-d `vec` into the parameters (checked first)."""
    name = "vector_to_parameters"
    if not isinstance(vec, core.TensorBase):
        raise TypeError("%s: expected a tensor as vec, got %s" % (name, type(vec).__name__))
    if vec.ndim != 1:
        raise ValueError("%s: vec must be 1-d, got shape %s" % (name, tuple(vec.shape)))
    params = _tensors(name, parameters)
    total = sum(int(p.numel()) for p in params)
    if total != vec.shape[0]:
        raise ValueError("%s: vec has %d elements but the parameters hold %d"
                         % (name, vec.shape[0], total))
    values = vec.numpy()
    start = 0
    with no_grad():
        for p in params:
            n = int(p.numel())
            p.copy_(values[start:start + n].reshape(p.shape))
            start += n
