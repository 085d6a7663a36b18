"""The exceptions featurekit raises.

Each subclass also inherits the builtin a caller would naturally catch, so
``except ValueError`` and ``except featurekit.exceptions.InputError`` both work.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SkNotFittedError


class FeaturekitError(Exception):
    """Base class of every error featurekit raises on purpose."""


class InputError(FeaturekitError, ValueError):
    """The data given to ``fit``/``transform`` cannot be used as it is."""


class ParameterError(FeaturekitError, ValueError):
    """A constructor parameter has an invalid value (checked in ``fit``)."""


class UnknownNameError(FeaturekitError, KeyError):
    """A method or backbone name that no installed plugin provides."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class PluginError(FeaturekitError, ImportError):
    """A plugin failed to load or registered something invalid."""


class DuplicateNameError(PluginError):
    """Two plugins registered the same method or backbone name."""


class TrainingError(FeaturekitError, RuntimeError):
    """Training cannot go on (a non-finite loss, an unusable checkpoint)."""


class NotFittedError(FeaturekitError, _SkNotFittedError):
    """``transform`` (or another verb) was called before ``fit``."""


class StoreError(FeaturekitError, OSError):
    """A feature store or index cannot be written (a full disk, a read-only target).

    ``errno`` is that of the operating system's error. What was committed
    before the error (parts of an extraction, an existing store) is kept.
    """
