from collections.abc import Iterable, Sequence
from typing import Any

from leakwatch._core.types import PatternError as PatternError
from leakwatch._core.types import ScanError as ScanError
from leakwatch._core.types import ScanResult as ScanResult

class Scanner:
    block_size: int
    max_mem: int
    patterns: list[bytes]
    record_only: frozenset[int]
    oom_splits: int
    n_rules: int
    n_shards: int
    def __init__(self, patterns: Sequence[str | bytes], *, record_only: Iterable[int] = ..., block_size: int = ...,
                 max_mem: int = ...) -> None: ...
    def scan(self, buf: Any) -> ScanResult: ...

class ReferenceScanner:
    patterns: list[bytes]
    n_rules: int
    record_only: frozenset[int]
    def __init__(self, patterns: Sequence[str | bytes], *, record_only: Iterable[int] = ..., **_: Any) -> None: ...
    def scan(self, buf: Any) -> ScanResult: ...

def check_pattern(pattern: str | bytes, max_mem: int = ...) -> int: ...
