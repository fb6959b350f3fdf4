"""The project's one version string, which every command's ``--version`` prints.

``setup.cfg``'s ``version`` is the source (CHANGELOG.md's latest entry names the same version, a test
holds them together). A source checkout reads it from there, so that a bump is seen at once (an
installed distribution's metadata keeps the version it was installed with until the next install);
an installed copy without the file reads the installed distribution's metadata.
"""

from __future__ import annotations

import configparser
import importlib.metadata
from pathlib import Path

DISTRIBUTION = "odl-loop"
SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def _from_setup_cfg(path: Path) -> str | None:
    """The ``[metadata] version`` of ``path`` when it is this project's setup.cfg, else None."""
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return None
    if parser.get("metadata", "name", fallback=None) != DISTRIBUTION:
        return None
    return parser.get("metadata", "version", fallback=None)


def read_version() -> str:
    """setup.cfg's version beside the packages, else the installed distribution's, else ``0+unknown``."""
    found = _from_setup_cfg(SETUP_CFG)
    if found:
        return found
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = read_version()
