"""Build the optional Cython hot loop; everything else is declared in pyproject.toml.

The extension is optional on purpose: when no C compiler is available the package still
installs and `histograms` falls back to its pure-Python twin (and says so).
"""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure means "use the twin"
            print(f"warning: Cython extension not built ({exc}); using the pure-Python twin")

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: could not build {ext.name} ({exc}); using the pure-Python twin")


def extensions() -> list:
    if os.environ.get("TELEMETRY_PURE_WHEEL"):  # the wheel EC2 workers install: any CPU/Python
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    from setuptools import Extension

    # Named explicitly so the modules are always `histograms._fast`, `aggregates._scan` and
    # `mapreduce._jsonscan`, whatever the tree looks like (the aggregates' mapper and
    # mapreduce.lazyjson fall back to orjson without theirs).
    return cythonize(
        [
            Extension("histograms._fast", ["histograms/_fast.pyx"]),
            Extension("aggregates._scan", ["aggregates/_scan.pyx"]),
            Extension("mapreduce._jsonscan", ["mapreduce/_jsonscan.pyx"]),
        ],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
