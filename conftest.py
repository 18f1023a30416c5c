"""Root conftest: what klconform's own tests need beyond the installed plugin.

The klconform plugin itself is loaded through its pytest11 entry point (pyproject.toml),
never from here, so the suites behave the same inside and outside this repository.
"""

pytest_plugins = ["pytester"]
