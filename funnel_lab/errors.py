"""The exception tree of funnel_lab.

::

    FunnelLabError                      base of every error the library raises on purpose
    ├── DataError (ValueError)          the CRM data is wrong: file, line, column, deal
    │   ├── MissingFileError            a required file is absent
    │   ├── FunnelDefinitionError       funnel.toml is malformed or does not fit the data
    │   └── PosteriorMismatchError      a saved posterior was fitted on other data / as_of
    ├── ParameterError (ValueError)     an argument or notebook parameter is wrong
    ├── ModelError (RuntimeError)       a model could not be fitted or evaluated
    └── ReportError (RuntimeError)      a notebook failed while rendering

Warnings (statistical caveats, never errors): ``FunnelLabWarning`` and its subclasses
``DataWarning``, ``SparseDataWarning`` and ``SamplingWarning``.

Every error keeps its context as attributes (``path``, ``line``, ``column``, ``deal_id``), so
callers can act on it; the message already names them for people.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "DataWarning",
    "FunnelDefinitionError",
    "FunnelLabError",
    "FunnelLabWarning",
    "MissingFileError",
    "ModelError",
    "ParameterError",
    "PosteriorMismatchError",
    "ReportError",
    "SamplingWarning",
    "SparseDataWarning",
]


class FunnelLabError(Exception):
    """Base class of every error funnel_lab raises on purpose."""


class DataError(FunnelLabError, ValueError):
    """The CRM data is wrong; the message says where (file, line, column, deal).

    Parameters
    ----------
    message : str
        What is wrong and what was expected.
    path, line, column, deal_id : optional
        Where it is. ``line`` is the 1-based line in the file, header being line 1.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: str | None = None,
        deal_id: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.deal_id = deal_id
        self.detail = message
        super().__init__(self._compose(message))

    def _compose(self, message: str) -> str:
        where = []
        if self.path is not None:
            where.append(self.path if self.line is None else f"{self.path}, line {self.line}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.deal_id is not None:
            where.append(f"deal '{self.deal_id}'")
        return f"{': '.join([', '.join(where)])}: {message}" if where else message


class MissingFileError(DataError, FileNotFoundError):
    """A file the CRM folder must contain is absent."""


class FunnelDefinitionError(DataError):
    """``funnel.toml`` is malformed, or the funnel it defines does not fit the data."""


class PosteriorMismatchError(DataError):
    """A saved posterior is used with other data, another ``as_of`` or other settings."""


class ParameterError(FunnelLabError, ValueError):
    """An argument (API, CLI or notebook parameter) has a wrong name, type or value."""


class ModelError(FunnelLabError, RuntimeError):
    """A model could not be fitted or evaluated."""


class ReportError(FunnelLabError, RuntimeError):
    """A notebook failed while rendering; names the notebook and the cell.

    Attributes
    ----------
    notebook : str
        The notebook's name.
    cell : int or None
        The index of the failing cell, when known.
    output_path : str or None
        Where the partially executed notebook was saved.
    """

    def __init__(
        self,
        message: str,
        *,
        notebook: str | None = None,
        cell: int | None = None,
        output_path: str | None = None,
    ) -> None:
        self.notebook = notebook
        self.cell = cell
        self.output_path = output_path
        super().__init__(message)


class FunnelLabWarning(UserWarning):
    """Base class of funnel_lab's warnings (statistical caveats)."""


class DataWarning(FunnelLabWarning):
    """The data needed an assumption or a repair."""


class SparseDataWarning(FunnelLabWarning):
    """Too few transitions or too little exposure to say much."""


class SamplingWarning(FunnelLabWarning):
    """MCMC diagnostics (R-hat, ESS, divergences) say the sampler did not do its job."""
