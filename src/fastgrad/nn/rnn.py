"""Recurrent layers: RNN, LSTM, GRU and their single-step cells, as torch.nn.

Parameters carry PyTorch's names and layouts (weight_ih_l0 of shape
(gates * hidden_size, input_size), gates stacked in PyTorch's order: LSTM
i, f, g, o; GRU r, z, n), so a PyTorch state_dict loads as it is.

The graph is kept small: a layer's input projections for every time step
are one matrix product up front (x @ W_ih^T + b_ih over the whole sequence).
An LSTM layer's whole recurrence over those projections is then one node
(`_LSTMSequence`, its forward and backward in the fused kernels of the core:
fused_reference.lstm_forward / lstm_backward); RNN and GRU run step by step,
each step adding one product with W_hh and taking the gates as views (slices)
of that sum.  The cells run step by step as well.
"""
import math
import warnings

import numpy as np

from .._core import core, fused
from ..autograd import _ArrayFunction as Function
from ..tensor import get_default_dtype, stack, cat
from . import init
from .functional import dropout, _check_probability
from .functional_seq import _linear
from .layers import _count
from .module import Module
from .parameter import Parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _shape(t):
    return tuple(t.shape)


def _float_dtype(name, dtype):
    dtype = np.dtype(get_default_dtype() if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError("%s: dtype must be float32 or float64, got %s" % (name, dtype))
    return dtype


def _positive(name, what, value):
    value = _count(name, what, value)
    if value == 0:
        raise ValueError("%s: %s must be positive, got 0" % (name, what))
    return value


# ---------------------------------------------------------------------------
# one time step of each kind; gi is the input projection (with b_ih), h (and c)
# the previous state
# ---------------------------------------------------------------------------
def _rnn_tanh_step(gi, h, w_hh, b_hh, H):
    return core.tanh(gi + core.linear(h, w_hh, b_hh))


def _rnn_relu_step(gi, h, w_hh, b_hh, H):
    return core.relu(gi + core.linear(h, w_hh, b_hh))


def _lstm_step(gi, state, w_hh, b_hh, H):
    h, c = state
    g = gi + core.linear(h, w_hh, b_hh)
    # one sigmoid over all four gates (the g slice is unused) costs less than three nodes
    s = core.sigmoid(g)
    i, f, o = s[..., :H], s[..., H:2 * H], s[..., 3 * H:]
    c = f * c + i * core.tanh(g[..., 2 * H:3 * H])
    return o * core.tanh(c), c


def _gru_step(gi, h, w_hh, b_hh, H):
    gh = core.linear(h, w_hh, b_hh)
    rz = core.sigmoid(gi[..., :2 * H] + gh[..., :2 * H])
    r, z = rz[..., :H], rz[..., H:]
    # PyTorch's GRU: the reset gate multiplies W_hn h + b_hn (b_hn inside the product)
    n = core.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
    return n + z * (h - n)


_STEPS = {"RNN_TANH": _rnn_tanh_step, "RNN_RELU": _rnn_relu_step, "GRU": _gru_step}


class _LSTMSequence(Function):
    """One LSTM layer in one direction over the whole sequence, as one node.

    Inputs: xproj (T, N, 4H), h0 and c0 (N, H), W_hh and (with bias) b_hh.
    Output (2, T, N, H): the hidden states h_t in [0], the cell states c_t in [1].
    """

    @staticmethod
    def forward(ctx, xproj, h0, c0, w_hh, *b_hh):
        out, acts, tc = fused.lstm_forward(xproj, h0, c0, w_hh, b_hh[0] if b_hh else None)
        # the backward reads the states: it keeps its own copy, so changing the
        # returned tensor in place cannot change the gradients
        ctx.save_for_backward(out, acts, tc, h0, c0, w_hh)
        ctx.with_bias = bool(b_hh)
        return out.copy()

    @staticmethod
    def backward(ctx, grad):
        out, acts, tc, h0, c0, w_hh = ctx.saved_tensors
        d_x, d_h0, d_c0, d_w, d_b = fused.lstm_backward(grad, out, acts, tc, h0, c0, w_hh,
                                                         ctx.with_bias)
        return (d_x, d_h0, d_c0, d_w) + ((d_b,) if ctx.with_bias else ())


def _lstm_direction(xproj, state, w_hh, b_hh, reverse):
    """An LSTM layer in one direction: (outputs (T, N, H), (h_n, c_n))."""
    if reverse:
        xproj = xproj.flip(0)
    bias = () if b_hh is None else (b_hh,)
    states = _LSTMSequence.apply(xproj, state[0], state[1], w_hh, *bias)
    last = xproj.shape[0] - 1
    outputs = states[0].flip(0) if reverse else states[0]
    return outputs, (states[0, last], states[1, last])


def _run_direction(mode, xproj, state, w_hh, b_hh, H, reverse):
    """Run one layer in one direction over xproj (T, ..., gates*H); returns (outputs, state)."""
    step = _STEPS[mode]
    T = xproj.shape[0]
    outs = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        state = step(xproj[t], state, w_hh, b_hh, H)
        outs[t] = state
    return outs, state


class RNNBase(Module):
    """What RNN, LSTM and GRU share: the parameters, the checks, the layer loop."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, *, dtype=None):
        super().__init__()
        name = self._name = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
        self.mode = mode
        self.input_size = _count(name, "input_size", input_size)
        self.hidden_size = _positive(name, "hidden_size", hidden_size)
        self.num_layers = _positive(name, "num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = _check_probability(name, dropout)
        self.bidirectional = bool(bidirectional)
        if self.dropout and self.num_layers == 1:
            warnings.warn("%s: dropout is applied between stacked layers only, so dropout=%r "
                          "does nothing with num_layers=1" % (name, self.dropout), UserWarning,
                          stacklevel=3)
        if proj_size:
            raise NotImplementedError("%s: proj_size is not supported (got %r)"
                                      % (name, proj_size))
        self.proj_size = 0
        dtype = _float_dtype(name, dtype)
        gates = _GATES[mode] * self.hidden_size
        directions = 2 if self.bidirectional else 1
        self._flat_names = []
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * directions
            for d in range(directions):
                suffix = "_l%d%s" % (layer, "_reverse" if d else "")
                shapes = [("weight_ih", (gates, layer_input)),
                          ("weight_hh", (gates, self.hidden_size))]
                if self.bias:
                    shapes += [("bias_ih", (gates,)), ("bias_hh", (gates,))]
                for base, shape in shapes:
                    setattr(self, base + suffix, Parameter(np.empty(shape, dtype=dtype)))
                    self._flat_names.append(base + suffix)
        self.reset_parameters()

    def reset_parameters(self):
        # PyTorch's rule: every weight and bias U(-1/sqrt(hidden), 1/sqrt(hidden))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_names:
            init.uniform_(getattr(self, name), -bound, bound)

    def _layer_params(self, layer, d):
        suffix = "_l%d%s" % (layer, "_reverse" if d else "")
        if self.bias:
            return tuple(getattr(self, base + suffix)
                         for base in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        return getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix), None, None

    def _check_input(self, input):
        name = self._name
        if not isinstance(input, core.TensorBase):
            raise TypeError("%s: input must be a tensor, got %s" % (name, type(input).__name__))
        if input.ndim not in (2, 3):
            raise ValueError("%s: expected input of 2 (unbatched) or 3 dimensions, got shape %s"
                             % (name, _shape(input)))
        if input.shape[-1] != self.input_size:
            raise ValueError("%s: input.size(-1) must be equal to input_size. Expected %d, got "
                             "%d (input of shape %s)"
                             % (name, self.input_size, input.shape[-1], _shape(input)))
        return input.ndim == 2

    def _check_state(self, what, h, unbatched, batch):
        name = self._name
        layers = self.num_layers * (2 if self.bidirectional else 1)
        expected = (layers, self.hidden_size) if unbatched else (layers, batch, self.hidden_size)
        if not isinstance(h, core.TensorBase):
            raise TypeError("%s: %s must be a tensor, got %s" % (name, what, type(h).__name__))
        if _shape(h) != expected:
            raise ValueError("%s: expected %s of shape %s, got %s"
                             % (name, what, expected, _shape(h)))
        return h if not unbatched else h.unsqueeze(1)

    def _zeros(self, batch, dtype):
        layers = self.num_layers * (2 if self.bidirectional else 1)
        return core.from_array(np.zeros((layers, batch, self.hidden_size), dtype=dtype))

    def forward(self, input, hx=None):
        unbatched = self._check_input(input)
        if input.shape[0 if unbatched or not self.batch_first else 1] == 0:
            raise ValueError("%s: the input sequence is empty (input of shape %s)"
                             % (self._name, _shape(input)))
        lstm = self.mode == "LSTM"
        if lstm and hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("LSTM: hx must be a tuple (h_0, c_0), got %s" % type(hx).__name__)
        if not lstm and isinstance(hx, (tuple, list)):
            raise TypeError("%s: hx must be a tensor h_0, not a %s"
                            % (self._name, type(hx).__name__))
        # time-major inside: x (T, N, features); a batch-first input is projected in its
        # own (contiguous) layout and only the projection is viewed time-major
        x = input.unsqueeze(1) if unbatched else input
        batch_major = self.batch_first and not unbatched
        batch = x.shape[0] if batch_major else x.shape[1]
        if hx is None:
            h0 = self._zeros(batch, x.dtype)
            c0 = self._zeros(batch, x.dtype) if lstm else None
        elif lstm:
            h0 = self._check_state("h_0", hx[0], unbatched, batch)
            c0 = self._check_state("c_0", hx[1], unbatched, batch)
        else:
            h0 = self._check_state("h_0", hx, unbatched, batch)
            c0 = None
        H = self.hidden_size
        directions = 2 if self.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer and self.dropout and self.training:
                # (only from the second layer on, where x is time-major)
                x = dropout(x, self.dropout, True)
            outputs = []
            for d in range(directions):
                w_ih, w_hh, b_ih, b_hh = self._layer_params(layer, d)
                k = layer * directions + d
                state = (h0[k], c0[k]) if lstm else h0[k]
                xproj = _linear(x, w_ih, b_ih)
                if batch_major:
                    xproj = xproj.transpose(0, 1)
                if lstm:
                    out, state = _lstm_direction(xproj, state, w_hh, b_hh, d == 1)
                else:
                    outs, state = _run_direction(self.mode, xproj, state, w_hh, b_hh, H, d == 1)
                    # one cat of the (N, H) steps and a view: stack would add an unsqueeze
                    # per step
                    out = cat(outs, 0).reshape(len(outs), *outs[0].shape)
                outputs.append(out)
                if lstm:
                    h_n.append(state[0])
                    c_n.append(state[1])
                else:
                    h_n.append(state)
            x = outputs[0] if directions == 1 else cat(outputs, -1)
            batch_major = False
        output = x.squeeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)
        h_n = stack(h_n, 0)
        if unbatched:
            h_n = h_n.squeeze(1)
        if not lstm:
            return output, h_n
        c_n = stack(c_n, 0)
        return output, (h_n, c_n.squeeze(1) if unbatched else c_n)

    def extra_repr(self):
        s = "%d, %d" % (self.input_size, self.hidden_size)
        if self.num_layers != 1:
            s += ", num_layers=%d" % self.num_layers
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += ", dropout=%r" % self.dropout
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError("RNN: nonlinearity must be 'tanh' or 'relu', got %r"
                             % (nonlinearity,))
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype)


class LSTM(RNNBase):
    """Long short-term memory; forward returns (output, (h_n, c_n))."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, dtype=dtype)


class GRU(RNNBase):
    """Gated recurrent unit, PyTorch's formula (the reset gate applied after W_hn h + b_hn)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype=dtype)


# ---------------------------------------------------------------------------
# cells: one time step
# ---------------------------------------------------------------------------
class RNNCellBase(Module):
    def __init__(self, mode, input_size, hidden_size, bias, dtype):
        super().__init__()
        name = self._name = {"RNN_TANH": "RNNCell", "RNN_RELU": "RNNCell"}.get(mode, mode + "Cell")
        self.mode = mode
        self.input_size = _count(name, "input_size", input_size)
        self.hidden_size = _positive(name, "hidden_size", hidden_size)
        self.bias = bool(bias)
        dtype = _float_dtype(name, dtype)
        gates = _GATES[mode] * self.hidden_size
        self.weight_ih = Parameter(np.empty((gates, self.input_size), dtype=dtype))
        self.weight_hh = Parameter(np.empty((gates, self.hidden_size), dtype=dtype))
        if self.bias:
            self.bias_ih = Parameter(np.empty((gates,), dtype=dtype))
            self.bias_hh = Parameter(np.empty((gates,), dtype=dtype))
        else:
            self.bias_ih = self.bias_hh = None
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _check(self, input, hx):
        name = self._name
        if not isinstance(input, core.TensorBase):
            raise TypeError("%s: input must be a tensor, got %s" % (name, type(input).__name__))
        if input.ndim not in (1, 2):
            raise ValueError("%s: expected input of 1 (unbatched) or 2 dimensions, got shape %s"
                             % (name, _shape(input)))
        if input.shape[-1] != self.input_size:
            raise ValueError("%s: input has inconsistent input_size: got %d, expected %d "
                             "(input of shape %s)"
                             % (name, input.shape[-1], self.input_size, _shape(input)))
        unbatched = input.ndim == 1
        expected = (self.hidden_size,) if unbatched else (input.shape[0], self.hidden_size)
        states = hx if isinstance(hx, (tuple, list)) else (hx,)
        for s in states:
            if s is None:
                continue
            if not isinstance(s, core.TensorBase):
                raise TypeError("%s: the hidden state must be a tensor, got %s"
                                % (name, type(s).__name__))
            if _shape(s) != expected:
                raise ValueError("%s: expected a hidden state of shape %s, got %s"
                                 % (name, expected, _shape(s)))
        return expected

    def _zero(self, shape, dtype):
        return core.from_array(np.zeros(shape, dtype=dtype))

    def extra_repr(self):
        s = "%d, %d" % (self.input_size, self.hidden_size)
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s


class RNNCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError("RNNCell: nonlinearity must be 'tanh' or 'relu', got %r"
                             % (nonlinearity,))
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, bias, dtype)

    def forward(self, input, hx=None):
        shape = self._check(input, hx)
        h = self._zero(shape, input.dtype) if hx is None else hx
        gi = core.linear(input, self.weight_ih, self.bias_ih)
        return _STEPS[self.mode](gi, h, self.weight_hh, self.bias_hh, self.hidden_size)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, *, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, dtype)

    def forward(self, input, hx=None):
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("LSTMCell: hx must be a tuple (h, c), got %s" % type(hx).__name__)
        shape = self._check(input, hx)
        if hx is None:
            hx = (self._zero(shape, input.dtype), self._zero(shape, input.dtype))
        gi = core.linear(input, self.weight_ih, self.bias_ih)
        return _lstm_step(gi, tuple(hx), self.weight_hh, self.bias_hh, self.hidden_size)


class GRUCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, *, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, dtype)

    def forward(self, input, hx=None):
        shape = self._check(input, hx)
        h = self._zero(shape, input.dtype) if hx is None else hx
        gi = core.linear(input, self.weight_ih, self.bias_ih)
        return _gru_step(gi, h, self.weight_hh, self.bias_hh, self.hidden_size)
