"""Where the spec, the cases and the suites live.

In a wheel they are bundled under klconform/_bundle; in a source checkout (editable install
or plain PYTHONPATH) they are the top-level folders of the repository.
"""

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
