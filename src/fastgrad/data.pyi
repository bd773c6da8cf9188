# Type stub of fastgrad.data: at run time it is the module fastgrad.utils.data itself.
from fastgrad.utils.data import *
from fastgrad.utils.data import __all__ as __all__
