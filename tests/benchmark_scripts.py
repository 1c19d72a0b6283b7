"""Load a script of tests/benchmarks/ as a module, for the tests that check its pieces (the scripts are not a
package: they run as ``python tests/benchmarks/NAME.py``)."""

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).parent / "benchmarks"


@functools.cache
def load(name: str) -> ModuleType:
    """tests/benchmarks/``name``.py, executed once per test session and registered under ``name`` (dataclasses
    and pickling look their module up in sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
