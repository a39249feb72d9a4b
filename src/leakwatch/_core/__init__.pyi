from collections.abc import Sequence
from typing import Any

from leakwatch._core.types import PatternError as PatternError
from leakwatch._core.types import ScanError as ScanError
from leakwatch._core.types import ScanResult as ScanResult

class Scanner:
    block_size: int
    max_mem: int
    patterns: list[bytes]
    oom_splits: int
    n_rules: int
    n_shards: int
    def __init__(self, patterns: Sequence[str | bytes], *, block_size: int = ..., max_mem: int = ...) -> None: ...
    def scan(self, buf: Any) -> ScanResult: ...

class ReferenceScanner:
    patterns: list[bytes]
    n_rules: int
    def __init__(self, patterns: Sequence[str | bytes], **_: Any) -> None: ...
    def scan(self, buf: Any) -> ScanResult: ...

def check_pattern(pattern: str | bytes, max_mem: int = ...) -> int: ...
