"""keras reads KERAS_BACKEND once, at its first import: a process tests one backend."""

import importlib.util
import os
import sys

import pytest


def import_keras(backend):
    """keras on `backend`, or a skip when this process is (or will be) on another one."""
    wanted = os.environ.get("KERAS_BACKEND", backend)
    if wanted != backend:
        pytest.skip(f"KERAS_BACKEND={wanted}; the keras-{backend} record needs {backend}")
    pytest.importorskip(backend)
    # Found, not imported: the record's setup must come before keras's import.
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != backend:
        pytest.skip(f"keras is already imported on {sys.modules['keras'].backend.backend()}")
    # Through the record's own setup, so jax's 64-bit mode precedes keras's import.
    from klconform.adapters import load_adapter

    load_adapter(f"keras-{backend}")
    return pytest.importorskip("keras")
