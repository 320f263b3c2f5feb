"""The one base class of the errors a user can fix: a bad argument, file, recipe or data folder.

`adbench.cli.main` prints a `UserError` as one line and exits 2; any other exception is
a bug and keeps its traceback. Every user-facing error class of adbench derives from it
(RegistryError, DataError, StoreError, RunError, RecipeError, TrainingError, ...).
`UserError` subclasses `ValueError`, so callers that catch `ValueError` keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix; its message names the argument, file or key and says what is expected."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the user named (`-M weights=PATH`, a config file) does not exist; still a FileNotFoundError."""


class MissingDependencyError(UserError, ImportError):
    """An optional extra is not installed; the message says what to `pip install`. Still an ImportError."""


class ExistingPathError(UserError, FileExistsError):
    """adbench would overwrite a file or folder it did not write; still a FileExistsError."""
