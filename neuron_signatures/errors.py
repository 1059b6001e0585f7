"""Domain exceptions: each message says what is wrong and how to fix it.

The CLI prints ``str(error)`` on one line and exits with code 2; library callers can catch
:class:`NeuronSignaturesError` to handle every expected failure at once.
"""

from __future__ import annotations


class NeuronSignaturesError(Exception):
    """Base class for every expected, user-fixable failure."""

    exit_code = 2


class BadPromptsError(NeuronSignaturesError):
    """The prompt input cannot be used (unreadable, malformed, duplicate ids, too long...)."""


class BadArgumentError(NeuronSignaturesError):
    """A command-line or function argument is invalid or inconsistent with the run."""


class ModelLoadError(NeuronSignaturesError):
    """The model could not be resolved or loaded (unknown name, gated, offline, bad file)."""


class HookContractError(NeuronSignaturesError):
    """The model does not expose ``blocks.{l}.mlp.hook_post`` as the down-projection input."""


class RunFormatError(NeuronSignaturesError):
    """A run folder is missing, unreadable or of an unknown format version."""


class IncompleteRunError(RunFormatError):
    """A run folder was not finished (the dump was interrupted)."""


class RunExistsError(NeuronSignaturesError):
    """The output folder already holds data and neither resume nor overwrite was asked for."""


class OutputNotWritableError(NeuronSignaturesError):
    """The output folder cannot be created or written (a path under a file, a read-only disk)."""


class RunLockedError(NeuronSignaturesError):
    """Another process holds the run folder's lock."""


class DiskSpaceError(NeuronSignaturesError):
    """The run would not fit in the free space of the output folder's disk."""


class NonFiniteActivationError(NeuronSignaturesError):
    """A captured activation is NaN or infinite (reported with ``--check_finite``)."""
