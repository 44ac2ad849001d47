"""Errors a user can act on. Each carries a one-line message that says what happened and what to do.

The CLI turns any NlpPipelineError into that one line on stderr and its `exit_code` (2 usage, 1 data),
never a traceback. Subclasses inherit the builtin they resemble, so `except FileNotFoundError` still works.
"""


class NlpPipelineError(Exception):
    """Base of every error the package raises on purpose."""

    exit_code = 1


class ConfigError(NlpPipelineError, ValueError):
    """A config key, value, stage name or option does not fit (a usage error)."""

    exit_code = 2


class CannotApply(ConfigError):
    """A setting that this config makes meaningless (a method not trained, a stage not run): never silently
    ignored. `field` is its dotted name ("linear.chars"); the message says why and what to do."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field} cannot apply: {reason}")
        self.field = field


class DataError(NlpPipelineError, ValueError):
    """The corpus or another input file cannot be used as it is."""

    exit_code = 1


class MissingInputError(NlpPipelineError, FileNotFoundError):
    """A path, an artifact or a bundle that should exist does not."""

    exit_code = 1


class CacheError(NlpPipelineError, OSError):
    """The artifact store cannot be read or written (permissions, disk, corruption that cannot be repaired)."""

    exit_code = 1


class OutputError(NlpPipelineError, OSError):
    """A folder the command writes (a run folder, --runs-dir) cannot be written: permissions, a read-only or full
    disk, a file in the way."""

    exit_code = 1
