"""simdr from Python: a client for `simdr serve` and a local read-only reader.

    from simdr import Client, Reader

Client speaks to `simdr FILE serve` over HTTP (standard library only);
Reader opens a store file directly, read-only, with zero-copy values.
"""

from .xxh3 import xxh3_64
from .reader import Reader, CorruptError, key_hash
from .client import Client, SimdrError, NotFound, Unauthorized, OutcomeUnknown

__all__ = ["Client", "Reader", "SimdrError", "NotFound", "Unauthorized", "OutcomeUnknown",
           "CorruptError", "key_hash", "xxh3_64"]
