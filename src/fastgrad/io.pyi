# Type stub of fastgrad.io (the runtime module has the same names).
from typing import Any, Mapping

from fastgrad._typing import PathOrFile



__all__ = ['save', 'load']
MAGIC: bytes
ALIGN: int
def save(obj: Any, f: PathOrFile, *, format: str | None = ..., metadata: Mapping[str, str] | None = ...) -> None: ...
def load(f: PathOrFile, *, format: str | None = ...) -> Any: ...
