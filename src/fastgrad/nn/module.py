"""nn.Module, the base of every layer and model, and the containers.

A Module keeps its Parameters and sub-Modules in two ordered dicts,
filled by attribute assignment (`self.fc = nn.Linear(2, 3)`); the values
also stay ordinary attributes, so `self.fc` in `forward` costs one dict
lookup.  Everything that walks a model (parameters, state_dict, train/eval)
goes through `named_parameters` / `named_modules`, which list a module's own
parameters first and then its children in registration order, with PyTorch's
dotted names ('0.weight', 'encoder.fc.bias').
"""
from collections import OrderedDict, namedtuple

import numpy as np

from .._core import core
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models: subclass it, set attributes, define forward."""

    training = True

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "training", True)

    # -- registration by attribute assignment -------------------------------
    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None and isinstance(value, (Parameter, Module)):
            raise AttributeError("cannot assign %s %r before Module.__init__() is called; call "
                                 "super().__init__() first in %s.__init__"
                                 % (type(value).__name__, name, type(self).__name__))
        buffers = self.__dict__.get("_buffers")
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._drop_buffer(name)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            self._drop_buffer(name)
            self._modules[name] = value
        elif buffers is not None and name in buffers:
            # as torch: a buffer's name takes a tensor or None and stays a buffer
            if value is not None and not isinstance(value, core.TensorBase):
                raise TypeError("cannot assign %s as buffer %r of %s (a tensor or None is "
                                "expected)" % (type(value).__name__, name, type(self).__name__))
            buffers[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError("cannot assign %s to parameter %r of %s (an nn.Parameter or None "
                                "is expected); to change its values use %s.data"
                                % (type(value).__name__, name, type(self).__name__, name))
            params[name] = None
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError("cannot assign %s to sub-module %r of %s (an nn.Module or None "
                                "is expected)" % (type(value).__name__, name, type(self).__name__))
            self._modules[name] = None
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self.__dict__.get("_parameters", {}).pop(name, None)
        self.__dict__.get("_modules", {}).pop(name, None)
        self._drop_buffer(name)
        object.__delattr__(self, name)

    def _drop_buffer(self, name):
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            del buffers[name]
            self._non_persistent_buffers_set.discard(name)

    def register_buffer(self, name, tensor, persistent=True):
        """Keep `tensor` as state that is not a parameter (running statistics, counters).

        Buffers are attributes, move with `to` / `float` / `double`, are listed by
        `buffers()` / `named_buffers()` and, when persistent, are saved in
        `state_dict` after the module's own parameters, as in torch.
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot register buffer %r before Module.__init__() is called; "
                                 "call super().__init__() first in %s.__init__"
                                 % (name, type(self).__name__))
        if not isinstance(name, str):
            raise TypeError("register_buffer: the buffer name must be a str, got %s"
                            % type(name).__name__)
        if "." in name or not name:
            raise KeyError("register_buffer: invalid buffer name %r (it must be non-empty and "
                           "contain no '.')" % (name,))
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError("register_buffer: attribute %r already exists in %s"
                           % (name, type(self).__name__))
        if tensor is not None and not isinstance(tensor, core.TensorBase):
            raise TypeError("register_buffer: buffer %r must be a tensor or None, got %s"
                            % (name, type(tensor).__name__))
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)
        object.__setattr__(self, name, tensor)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError("register_parameter: %r must be an nn.Parameter or None, got %s"
                            % (name, type(param).__name__))
        if "." in name or not name:
            raise KeyError("register_parameter: invalid name %r" % (name,))
        self._drop_buffer(name)
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError("add_module: %r must be an nn.Module or None, got %s"
                            % (name, type(module).__name__))
        if "." in name or not name:
            raise KeyError("add_module: invalid name %r" % (name,))
        self._modules[name] = module
        object.__setattr__(self, name, module)

    register_module = add_module

    # -- calling -------------------------------------------------------------
    def forward(self, *inputs):
        raise NotImplementedError("%s must define forward()" % type(self).__name__)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- walking the tree ---------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(name, module) for this module and every descendant, each once
        (every occurrence with remove_duplicate=False)."""
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + "." + name if prefix else name,
                                                remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, parameter): own parameters first, then sub-modules in order.

        A parameter shared by two modules is listed once, under its first name.
        """
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (module_prefix + "." + name if module_prefix else name), param

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, buffer) in the order of named_parameters; None buffers are skipped."""
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, buf in module._buffers.items():
                if buf is None or (remove_duplicate and id(buf) in seen):
                    continue
                seen.add(id(buf))
                yield (module_prefix + "." + name if module_prefix else name), buf

    def buffers(self, recurse=True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def get_submodule(self, target):
        """The sub-module at dotted path `target` ('' is self), as torch."""
        module = self
        if target == "":
            return module
        for item in target.split("."):
            child = module._modules.get(item)
            if child is None:
                raise AttributeError("get_submodule: %s has no sub-module %r (in %r)"
                                     % (type(module).__name__, item, target))
            module = child
        return module

    def zero_grad(self, set_to_none=True):
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.numpy()[...] = 0

    def apply(self, fn):
        """Call fn(module) on every sub-module and then on self (as PyTorch)."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- modes ----------------------------------------------------------------
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("train: mode must be True or False, got %r" % (mode,))
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    # -- dtype ----------------------------------------------------------------
    def to(self, dtype):
        """Convert every parameter (and its gradient) and every floating point buffer to
        `dtype` in place; integer buffers (counters) keep their dtype, as in torch.
        Returns self."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError("Module.to: parameters must stay floating point, got %s" % dtype)
        for param in self.parameters():
            if param.dtype != dtype:
                param.data = param.numpy().astype(dtype)
                if param.grad is not None:
                    param.grad = core.from_array(param.grad.numpy().astype(dtype))
        for buf in self.buffers():
            if buf.dtype.kind == "f" and buf.dtype != dtype:
                buf.data = buf.numpy().astype(dtype)
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # -- state -----------------------------------------------------------------
    def _state_items(self):
        """(dotted name, tensor) of the saved state: per module (in named_modules order) its
        parameters, then its persistent buffers, as torch orders its state_dict."""
        seen = set()
        for module_prefix, module in self.named_modules():
            dot = module_prefix + "." if module_prefix else ""
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield dot + name, param
            for name, buf in module._buffers.items():
                if buf is None or name in module._non_persistent_buffers_set:
                    continue
                yield dot + name, buf

    def state_dict(self):
        """An ordered dict of dotted name -> a copy of its values (ndarray): parameters and
        persistent buffers."""
        return OrderedDict((name, t.numpy().copy()) for name, t in self._state_items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy the values of `state_dict` (arrays or tensors) into the parameters.

        Everything is checked before anything is copied: missing and unexpected
        keys (when strict) and every shape mismatch (always) are reported
        together in one RuntimeError, and the model is left as it was.
        Returns (missing_keys, unexpected_keys).
        """
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError("load_state_dict: expected a dict of name -> array, got %s"
                            % type(state_dict).__name__)
        own = OrderedDict(self._state_items())
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        problems, values = [], {}
        for name, param in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.numpy() if isinstance(value, core.TensorBase) else value
            try:
                value = np.asarray(value)
            except Exception as exc:          # e.g. a ragged list
                problems.append("%r: cannot be read as an array (%s)" % (name, exc))
                continue
            if value.dtype.kind not in "fiub":
                problems.append("%r: expected numbers, got dtype %s" % (name, value.dtype))
            elif param.dtype.kind in "iub" and value.dtype.kind == "f":
                problems.append("%r: the model holds integers (dtype %s), the checkpoint has "
                                "dtype %s" % (name, param.dtype, value.dtype))
            elif value.shape != param.shape:
                problems.append("size mismatch for %r: the checkpoint has shape %s, the model "
                                "has shape %s" % (name, tuple(value.shape), tuple(param.shape)))
            else:
                values[name] = value
        if strict:
            if missing:
                problems.append("missing key(s): " + ", ".join(repr(k) for k in missing))
            if unexpected:
                problems.append("unexpected key(s): " + ", ".join(repr(k) for k in unexpected))
        if problems:
            raise RuntimeError("Error(s) in loading state_dict for %s (nothing was loaded):\n\t%s"
                               % (type(self).__name__, "\n\t".join(problems)))
        for name, value in values.items():
            param = own[name]
            param.numpy()[...] = value
            param._bump_version()
        return IncompatibleKeys(missing, unexpected)

    # -- printing ---------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, module in self._modules.items():
            body = repr(module).replace("\n", "\n  ")
            lines.append("(%s): %s" % (name, body))
        extra = self.extra_repr()
        if not lines:
            return "%s(%s)" % (type(self).__name__, extra)
        head = [extra] if extra else []
        return "%s(\n  %s\n)" % (type(self).__name__, "\n  ".join(head + lines))

    def __dir__(self):
        return sorted(set(super().__dir__()))


class Sequential(Module):
    """Modules applied one after the other; `Sequential(a, b)(x)` is `b(a(x))`."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, _checked(module, name))
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), _checked(module, i))
        self._refresh()

    def _refresh(self):
        # the call sequence, kept as a tuple so forward is one plain loop
        object.__setattr__(self, "_sequence",
                           tuple(m for m in self._modules.values() if m is not None))

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if isinstance(value, Module) or name in self.__dict__.get("_modules", ()):
            self._refresh()

    def forward(self, x):
        for module in self._sequence:
            x = module(x)
        return x

    def append(self, module):
        self.add_module(str(len(self._modules)), _checked(module, len(self._modules)))
        self._refresh()
        return self

    def add_module(self, name, module):
        super().add_module(name, module)
        if "_sequence" in self.__dict__:
            self._refresh()

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        try:
            return items[index][1]
        except IndexError:
            raise IndexError("Sequential: index %d is out of range for %d modules"
                             % (index, len(items))) from None


class ModuleList(Module):
    """A list of modules, registered as '0', '1', ... (no forward of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        self.add_module(str(len(self._modules)), _checked(module, len(self._modules)))
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        values = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(values[index])
        return values[index]


def _checked(module, where):
    if not isinstance(module, Module):
        raise TypeError("expected an nn.Module at position %s, got %s"
                        % (where, type(module).__name__))
    return module


class ModuleDict(Module):
    """An ordered dict of modules, registered under their keys (no forward of its own)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        try:
            return self._modules[key]
        except KeyError:
            raise KeyError("ModuleDict: no module named %r (keys: %s)"
                           % (key, ", ".join(map(repr, self._modules)) or "none")) from None

    def __setitem__(self, key, module):
        if not isinstance(key, str):
            raise TypeError("ModuleDict: keys must be str, got %s" % type(key).__name__)
        self.add_module(key, _checked(module, repr(key)))

    def __delitem__(self, key):
        self[key]
        del self._modules[key]
        object.__delattr__(self, key)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()

    def pop(self, key):
        module = self[key]
        del self[key]
        return module

    def clear(self):
        for key in list(self._modules):
            del self[key]

    def update(self, modules):
        """Add (key, module) pairs from a mapping or an iterable of pairs, all checked first."""
        items = list(modules.items()) if hasattr(modules, "items") else list(modules)
        for i, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError("ModuleDict.update: element %d should be a (key, module) pair, "
                                "got %r" % (i, item))
            if not isinstance(item[0], str):
                raise TypeError("ModuleDict: keys must be str, got %s" % type(item[0]).__name__)
            _checked(item[1], repr(item[0]))
        for key, module in items:
            self[key] = module


def _as_parameter(owner, value):
    # as torch: a plain tensor put into a parameter container becomes a Parameter
    if isinstance(value, Parameter) or value is None:
        return value
    if isinstance(value, core.TensorBase):
        return Parameter(value, requires_grad=value.requires_grad or value.dtype.kind == "f")
    raise TypeError("%s: expected an nn.Parameter or a tensor, got %s"
                    % (owner, type(value).__name__))


class ParameterList(Module):
    """A list of parameters, registered as '0', '1', ..."""

    def __init__(self, values=None):
        super().__init__()
        if values is not None:
            self.extend(values)

    def append(self, value):
        self.register_parameter(str(len(self._parameters)), _as_parameter("ParameterList", value))
        return self

    def extend(self, values):
        values = [_as_parameter("ParameterList", v) for v in values]
        for value in values:
            self.append(value)
        return self

    def _index(self, index):
        n = len(self._parameters)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not -n <= index < n:
            raise IndexError("ParameterList: index %r is out of range for %d parameters"
                             % (index, n))
        return str(int(index) % n)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ParameterList(list(self._parameters.values())[index])
        return self._parameters[self._index(index)]

    def __setitem__(self, index, value):
        self.register_parameter(self._index(index), _as_parameter("ParameterList", value))

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters.values())

    def extra_repr(self):
        return "\n".join("(%s): Parameter containing: [%s of size %s]"
                         % (k, p.dtype, "x".join(map(str, p.shape)))
                         for k, p in self._parameters.items() if p is not None)


class ParameterDict(Module):
    """An ordered dict of parameters, registered under their keys."""

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key):
        try:
            return self._parameters[key]
        except KeyError:
            raise KeyError("ParameterDict: no parameter named %r" % (key,)) from None

    def __setitem__(self, key, value):
        if not isinstance(key, str):
            raise TypeError("ParameterDict: keys must be str, got %s" % type(key).__name__)
        self.register_parameter(key, _as_parameter("ParameterDict", value))

    def __delitem__(self, key):
        self[key]
        del self._parameters[key]
        object.__delattr__(self, key)

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters)

    def __contains__(self, key):
        return key in self._parameters

    def keys(self):
        return self._parameters.keys()

    def items(self):
        return self._parameters.items()

    def values(self):
        return self._parameters.values()

    def pop(self, key):
        value = self[key]
        del self[key]
        return value

    def update(self, parameters):
        items = list(parameters.items()) if hasattr(parameters, "items") else list(parameters)
        checked = []
        for key, value in items:
            if not isinstance(key, str):
                raise TypeError("ParameterDict: keys must be str, got %s" % type(key).__name__)
            checked.append((key, _as_parameter("ParameterDict", value)))
        for key, value in checked:
            self[key] = value
