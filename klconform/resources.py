"""Where the spec, the cases and the suites live, and what runs keep for later runs.

In a wheel they are bundled under klconform/_bundle; in a source checkout (editable install
or plain PYTHONPATH) they are the top-level folders of the repository.
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def bundle_root() -> Path:
    bundled = PACKAGE_DIR / "_bundle"
    if (bundled / "spec").is_dir():
        return bundled
    checkout = PACKAGE_DIR.parent
    if (checkout / "spec").is_dir() and (checkout / "cases").is_dir():
        return checkout
    raise FileNotFoundError(
        f"klconform data not found: neither {bundled} nor {checkout} holds spec/ and cases/"
    )


def spec_dir() -> Path:
    return bundle_root() / "spec"


def cases_dir() -> Path:
    return bundle_root() / "cases"


def suites_dir() -> Path:
    return bundle_root() / "suites"


def user_cache(*parts) -> str:
    """A folder of what runs keep for later runs, under the user's cache folder
    ($XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "klconform", *parts)
