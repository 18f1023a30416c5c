"""Root conftest: what klconform's own tests need beyond the installed plugin.

The klconform plugin itself is loaded through its pytest11 entry point (pyproject.toml),
never from here, so the suites behave the same inside and outside this repository.
"""

# In-process pytester runs restore sys.modules afterwards, dropping modules first imported
# during the run. Extension modules with native state (hypothesis' compiled core, torch)
# cannot be imported a second time after that, so they are imported here, once, up front.
import hypothesis  # noqa: F401
import hypothesis.strategies  # noqa: F401
import torch  # noqa: F401
import torch.nn.functional  # noqa: F401
import yaml  # noqa: F401

pytest_plugins = ["pytester"]
