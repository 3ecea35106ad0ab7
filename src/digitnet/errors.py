"""Errors a user can cause and fix. The CLI prints them on one line and exits with 2."""


class DigitnetError(Exception):
    """Bad input or usage: a message for the user, never a traceback."""

    def __str__(self) -> str:
        # Messages quote what they refuse (option names, file contents): keep them one line.
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class DataError(DigitnetError):
    """A data file or dataset is missing, corrupt or inconsistent."""


class ModelFileError(DigitnetError):
    """A model file or run directory is missing, corrupt or not ours."""


class ConfigError(DigitnetError):
    """An option or configuration value is invalid."""


class StorageError(DigitnetError, OSError):
    """A file could not be written (disk full, no permission, …); the previous file is kept.
    Also an OSError, for callers that catch those."""


class TrainingDiverged(DigitnetError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
