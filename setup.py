"""Build the native scanning core against the system RE2.

Compiler and linker flags come from ``pkg-config re2`` (Debian: ``libre2-dev``) so that the
extension links the same RE2 the distribution ships; the fallback flags cover a plain
``-lre2`` install when pkg-config is missing.
"""
import shlex
import subprocess

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args, "re2"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return shlex.split(out)


cflags = pkg_config("--cflags")
libs = pkg_config("--libs") or ["-lre2"]

extensions = [
    Extension(
        "leakwatch._core.scanner",
        sources=["src/leakwatch/_core/scanner.pyx"],
        language="c++",
        include_dirs=[numpy.get_include()],
        extra_compile_args=["-O3", "-std=c++17", *cflags],
        extra_link_args=libs,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
    Extension(
        "leakwatch._core.rows",
        sources=["src/leakwatch/_core/rows.pyx"],
        language="c",
        extra_compile_args=["-O2"],
    ),
    Extension(
        "leakwatch._core.fastval",
        sources=["src/leakwatch/_core/fastval.pyx"],
        language="c",
        extra_compile_args=["-O3"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )
)
