import torch
from torch.utils.data import DataLoader, Dataset

from util.errors import ImageReadError, user_message


class _Broken(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> None:
        raise ImageReadError("cannot read image /data/x.png: truncated")


def test_user_message_strips_worker_traceback() -> None:
    loader = DataLoader(_Broken(), num_workers=1)
    try:
        next(iter(loader))
    except ImageReadError as error:
        assert "Traceback" in str(error)
        assert user_message(error) == "cannot read image /data/x.png: truncated"
    else:  # pragma: no cover - the loader must raise
        raise AssertionError("the worker error was not re-raised")


def test_user_message_keeps_plain_message() -> None:
    assert user_message(ImageReadError("plain")) == "plain"
    assert torch is not None
