"""Errors of the Keras front end: ValueErrors, as Keras raises, that are also digitnet errors
(so the CLI and the server report them on one line)."""

from digitnet.errors import ConfigError, ModelFileError


class KerasValueError(ConfigError, ValueError):
    """A bad or unsupported argument, layer or data shape."""


class KerasFileError(ModelFileError, ValueError):
    """A Keras file that is corrupt, hostile, or describes a model digitnet cannot run."""
