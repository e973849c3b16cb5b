"""hasherd: the HASHER trainer and the daemon that runs it on retired mining hardware."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hasherd")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
