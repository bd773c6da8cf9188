"""Devices, as PyTorch names them; fastgrad has exactly one, the CPU.

Scripts written for PyTorch pass `device=` around and call `.to(device)`;
accepting the CPU in every spelling PyTorch allows ('cpu', 'cpu:0',
`fg.device('cpu')`) lets them run unchanged, and refusing every other device
with one clear message tells the user why instead of failing later.
"""

_OTHER_TYPES = ("cuda", "mps", "xpu", "xla", "meta", "hip", "ipu", "mtia", "vulkan", "hpu",
                "privateuseone")


def _unavailable(name, what):
    return RuntimeError("%s: fastgrad runs on the CPU only; device %r is not available "
                        "(use 'cpu' or leave the device out)" % (name, what))


class device:
    """A device, as torch.device: `device('cpu')`, `device('cpu:0')`, `device('cpu', 0)`."""

    __slots__ = ("_type", "_index")

    def __init__(self, type="cpu", index=None):
        if isinstance(type, device):
            if index is not None:
                raise TypeError("device: an index cannot be given with a device (%r)" % (type,))
            self._type, self._index = type._type, type._index
            return
        if isinstance(type, bool) or not isinstance(type, (str, int)):
            raise TypeError("device: expected a string such as 'cpu', got %r (%s)"
                            % (type, builtin_type(type).__name__))
        if isinstance(type, int):         # torch reads a bare integer as a CUDA ordinal
            raise _unavailable("device", type)
        kind, _, rest = type.strip().partition(":")
        if rest:
            if index is not None:
                raise ValueError("device: %r already has an index; do not pass index= too"
                                 % type)
            if not rest.isdigit():
                raise ValueError("device: invalid device string %r (expected e.g. 'cpu' or "
                                 "'cpu:0')" % type)
            index = int(rest)
        if kind != "cpu":
            if kind in _OTHER_TYPES:
                raise _unavailable("device", type)
            raise RuntimeError("device: unknown device type %r in %r (fastgrad runs on the "
                               "CPU: use 'cpu')" % (kind, type))
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ValueError("device: the index must be a non-negative int, got %r"
                                 % (index,))
            if index != 0:
                raise _unavailable("device", "cpu:%d" % index)
        self._type, self._index = kind, index

    @property
    def type(self):
        return self._type

    @property
    def index(self):
        return self._index

    def __str__(self):
        return self._type if self._index is None else "%s:%d" % (self._type, self._index)

    def __repr__(self):
        if self._index is None:
            return "device(type=%r)" % self._type
        return "device(type=%r, index=%d)" % (self._type, self._index)

    def __eq__(self, other):
        # as torch: a device equals a device, never a string
        if not isinstance(other, device):
            return NotImplemented
        return (self._type, self._index) == (other._type, other._index)

    def __hash__(self):
        return hash((self._type, self._index))

    def __reduce__(self):
        return (device, (self._type, self._index))


builtin_type = type

CPU = device("cpu")


def check(name, dev):
    """`dev` (None, a string or a device) when it names the CPU, else a clear error naming `name`."""
    if dev is None or isinstance(dev, device):
        return CPU
    if isinstance(dev, str) or (isinstance(dev, int) and not isinstance(dev, bool)):
        try:
            return device(dev)
        except (RuntimeError, ValueError) as exc:
            message = str(exc)
            if message.startswith("device: "):
                message = message[len("device: "):]
            raise builtin_type(exc)("%s: %s" % (name, message)) from None
    raise TypeError("%s: device must be a string such as 'cpu' or a fg.device, got %r (%s)"
                    % (name, dev, builtin_type(dev).__name__))


class _Cuda:
    """`fg.cuda`: what scripts ask before choosing a device; there is no GPU here."""

    @staticmethod
    def is_available():
        return False

    @staticmethod
    def device_count():
        return 0

    @staticmethod
    def manual_seed(seed):
        """Accepted and ignored, as PyTorch does on a machine without CUDA."""

    manual_seed_all = manual_seed

    def __repr__(self):
        return "fastgrad.cuda (no GPU: fastgrad runs on the CPU)"


cuda = _Cuda()
