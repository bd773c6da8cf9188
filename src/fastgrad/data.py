"""`fastgrad.data` is `fastgrad.utils.data` under its older name: the same module object.

Replacing our own entry in sys.modules makes `fastgrad.data is
fastgrad.utils.data`, so `isinstance` checks, monkeypatching and pickles see
one set of classes whichever name a script imports.
"""
import sys

from .utils import data as _data

sys.modules[__name__] = _data
