"""Native detection core: RE2::Set prefilter + per-rule RE2 extraction, and its reference twin.

``Scanner`` is the Cython engine; ``ReferenceScanner`` is a slow pure-Python engine with the
same API, used as the oracle in tests.
"""
from leakwatch._core.reference import ReferenceScanner
from leakwatch._core.scanner import Scanner, check_pattern
from leakwatch._core.types import PatternError, ScanError, ScanResult

__all__ = ["Scanner", "check_pattern", "ReferenceScanner", "ScanResult", "PatternError", "ScanError"]
