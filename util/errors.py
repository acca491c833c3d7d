"""The project's own exception types.

Drivers (``train.py``, ``test.py``) catch :class:`CellCycleGANError` and print its message as
one clean line with a non-zero exit status. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CellCycleGANError(Exception):
    """A problem the user can fix: bad input, a missing file, contradictory options."""


class OptionError(CellCycleGANError):
    """An option value that is unknown, out of range or contradicts a checkpoint."""


class DatasetError(CellCycleGANError):
    """A data folder that is missing, empty or laid out differently from what is expected."""


class ImageReadError(DatasetError):
    """An image file that cannot be decoded or has an unsupported pixel layout."""


class ImageTooLargeError(ImageReadError):
    """An image whose header declares more pixels than the reader's limit (a corrupt header, or a real mosaic)."""


class CheckpointError(CellCycleGANError):
    """A checkpoint that is missing, incomplete or made for another architecture."""


class TrainingError(CellCycleGANError):
    """Training that cannot go on, e.g. a loss that became NaN."""


class OutputError(CellCycleGANError):
    """An output that cannot be written: a full disk, a read-only file system, a file where a folder should be."""


class BusyError(CellCycleGANError):
    """A folder another process is working in (an experiment being trained)."""


class EvaluationError(CellCycleGANError):
    """Test results or reference images that cannot be evaluated as asked."""


def user_message(error: BaseException) -> str:
    """The message of ``error`` without the traceback a DataLoader worker wraps around it.

    An exception raised inside a worker process is re-raised in the main process with the
    worker's whole traceback in its message; the last line holds the original message.
    """
    message = str(error).strip()
    if "Original Traceback" in message:
        last_line = message.splitlines()[-1]
        message = last_line.split(": ", 1)[-1]
    return message
