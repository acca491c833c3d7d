"""scripts/download_ctc.py against a local HTTP server: never the internet."""

from __future__ import annotations

import io
import logging
import re
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import tifffile

from scripts import download_ctc
from scripts.download_ctc import KNOWN_DATASETS, canonical_name, extract_archive, main, safe_member_path
from util.errors import DatasetError

pytestmark = pytest.mark.network

NAME = "Fluo-N2DL-HeLa"


class ArchiveHandler(BaseHTTPRequestHandler):
    """Serves ``server.files`` by path, honouring ``Range: bytes=N-`` unless ``server.ignore_range``."""

    server: ArchiveServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        total = len(body)
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not self.server.ignore_range:
            start = int(match[1])
            if start >= total:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.server.cut_after
        self.wfile.write(body if cut is None else body[:cut])

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class ArchiveServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ArchiveHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ignore_range = False
        self.cut_after: int | None = None  # send only this many body bytes, then hang up

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib would send even 127.0.0.1 through a proxy named in the environment."""
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def server() -> Iterator[ArchiveServer]:
    server = ArchiveServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def tif_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array)
    return buffer.getvalue()


FRAME = np.random.default_rng(0).integers(0, 4096, size=(32, 32), dtype=np.uint16)
MASK = (FRAME > 2048).astype(np.uint16)


def ctc_zip(extra: dict[str, bytes] | None = None) -> bytes:
    """A tiny archive laid out like a Cell Tracking Challenge training set (stored, uncompressed)."""
    members = {
        f"{NAME}/01/t000.tif": tif_bytes(FRAME),
        f"{NAME}/01_GT/SEG/man_seg000.tif": tif_bytes(MASK),
        f"{NAME}/02/t000.tif": tif_bytes(FRAME[::-1]),
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return buffer.getvalue()


def serve(server: ArchiveServer, data: bytes) -> bytes:
    server.files[f"/{NAME}.zip"] = data
    return data


def run(server: ArchiveServer, output: Path, *extra: str) -> int:
    return main([NAME, "--output", str(output), "--base_url", server.base_url, "--timeout", "5", *extra])


def test_download_checks_and_unpacks_then_skips_work_done(server: ArchiveServer, tmp_path: Path) -> None:
    data = serve(server, ctc_zip())
    output = tmp_path / "ctc"
    assert run(server, output) == 0
    assert server.requests == [(f"/{NAME}.zip", None)]
    assert (output / f"{NAME}.zip").read_bytes() == data
    assert not (output / f"{NAME}.zip.part").exists()
    np.testing.assert_array_equal(tifffile.imread(output / NAME / "01" / "t000.tif"), FRAME)
    np.testing.assert_array_equal(tifffile.imread(output / NAME / "01_GT" / "SEG" / "man_seg000.tif"), MASK)
    assert sorted(path.name for path in output.iterdir()) == [NAME, f"{NAME}.zip"]

    assert run(server, output) == 0  # already unpacked
    (output / NAME / "01" / "t000.tif").unlink()
    assert run(server, output) == 0  # 01/ is there: left alone
    assert not (output / NAME / "01" / "t000.tif").exists()
    shutil.rmtree(output / NAME)
    assert run(server, output) == 0  # intact zip: unpacked again without downloading
    assert (output / NAME / "01" / "t000.tif").is_file()
    assert len(server.requests) == 1


def test_resume_asks_for_the_missing_bytes(
    server: ArchiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = serve(server, ctc_zip())
    half = len(data) // 2
    (tmp_path / f"{NAME}.zip.part").write_bytes(data[:half])
    assert run(server, tmp_path, "--no_extract") == 0
    assert server.requests == [(f"/{NAME}.zip", f"bytes={half}-")]
    assert (tmp_path / f"{NAME}.zip").read_bytes() == data
    assert not (tmp_path / f"{NAME}.zip.part").exists() and not (tmp_path / NAME).exists()
    assert "resuming" in caplog.text


def test_server_without_resume_support_starts_again(
    server: ArchiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    data = serve(server, ctc_zip())
    server.ignore_range = True
    (tmp_path / f"{NAME}.zip.part").write_bytes(b"x" * (len(data) // 2))  # would spoil the zip if appended to
    assert run(server, tmp_path) == 0
    assert server.requests[0][1] == f"bytes={len(data) // 2}-"
    assert (tmp_path / f"{NAME}.zip").read_bytes() == data
    assert "does not support resuming" in caplog.text
    assert (tmp_path / NAME / "01" / "t000.tif").is_file()


def test_complete_part_file_is_finished_without_a_body(server: ArchiveServer, tmp_path: Path) -> None:
    data = serve(server, ctc_zip())
    (tmp_path / f"{NAME}.zip.part").write_bytes(data)  # the server answers 416: nothing left to send
    assert run(server, tmp_path, "--no_extract") == 0
    assert (tmp_path / f"{NAME}.zip").read_bytes() == data
    assert len(server.requests) == 1


def test_broken_off_download_is_kept_and_resumed(
    server: ArchiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = serve(server, ctc_zip())
    server.cut_after = len(data) // 3
    assert run(server, tmp_path) == 1
    assert not (tmp_path / f"{NAME}.zip").exists()
    assert "run the command again to resume" in caplog.text
    assert (tmp_path / f"{NAME}.zip.part").read_bytes() == data[: len(data) // 3]
    server.cut_after = None
    assert run(server, tmp_path) == 0
    assert server.requests[-1][1] == f"bytes={len(data) // 3}-"
    assert (tmp_path / f"{NAME}.zip").read_bytes() == data


def corrupt_crc(data: bytes) -> bytes:
    """Flip one byte inside the stored image, so the zip opens but a member fails its CRC."""
    position = data.find(tif_bytes(FRAME)) + 200
    return data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]


@pytest.mark.parametrize(
    "spoil, reason",
    [(lambda data: bytes(len(data)), "not a valid zip archive"), (corrupt_crc, "fails its CRC check")],
    ids=["garbage", "crc"],
)
def test_corrupt_archive_is_refused_and_removed(
    server: ArchiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil, reason: str
) -> None:
    serve(server, spoil(ctc_zip()))
    assert run(server, tmp_path) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{NAME}.zip.part" in errors[0] and reason in errors[0] and "removed" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_corrupt_existing_zip_is_downloaded_again(server: ArchiveServer, tmp_path: Path) -> None:
    data = serve(server, ctc_zip())
    (tmp_path / f"{NAME}.zip").write_bytes(corrupt_crc(data))
    assert run(server, tmp_path, "--no_extract") == 0
    assert (tmp_path / f"{NAME}.zip").read_bytes() == data
    assert len(server.requests) == 1


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_fails_fast_with_a_by_hand_hint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/"
    start = time.perf_counter()
    assert main([NAME, "--output", str(tmp_path), "--base_url", base_url]) == 1
    assert time.perf_counter() - start < 5
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{base_url}{NAME}.zip" in errors[0]
    assert "by hand" in errors[0] and "python scripts/prepare_ctc.py" in errors[0]
    assert not (tmp_path / f"{NAME}.zip").exists()


def test_http_error_is_reported_with_its_status(
    server: ArchiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert run(server, tmp_path) == 1  # nothing served: 404
    assert "HTTP 404" in caplog.text and "by hand" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_lists_the_valid_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(DatasetError, match="unknown Cell Tracking Challenge dataset 'Fluo-N2DL-Hela2'") as raised:
        canonical_name("Fluo-N2DL-Hela2")
    assert all(name in str(raised.value) for name in KNOWN_DATASETS)
    assert canonical_name("fluo-n2dl-hela") == NAME
    assert main(["Nope-2D", "--output", str(tmp_path)]) == 1
    assert "Nope-2D" in caplog.text and "PhC-C2DL-PSC" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_list_prints_the_known_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    assert capsys.readouterr().out.split() == list(KNOWN_DATASETS)
    assert {"Fluo-N2DL-HeLa", "Fluo-N2DH-GOWT1"} <= set(download_ctc.KNOWN_DATASETS)


@pytest.mark.parametrize(
    "member", ["../evil.txt", f"{NAME}/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt", "..\\evil"]
)
def test_member_paths_leaving_the_folder_are_refused(member: str) -> None:
    with pytest.raises(DatasetError, match="outside the output folder"):
        safe_member_path(member)
    assert safe_member_path(f"{NAME}/01/t000.tif").parts == (NAME, "01", "t000.tif")


def test_zip_slip_archive_is_not_unpacked(
    server: ArchiveServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serve(server, ctc_zip({"../evil.txt": b"escaped"}))
    output = tmp_path / "ctc"
    assert run(server, output) == 1
    assert "refusing to unpack" in caplog.text and "'../evil.txt'" in caplog.text
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(path.name for path in output.iterdir()) == [f"{NAME}.zip"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ctc"]


def test_interrupted_extraction_leaves_nothing_half_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / f"{NAME}.zip"
    archive.write_bytes(ctc_zip())
    calls = []

    def copy_then_fail(*args: object) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(download_ctc.shutil, "copyfileobj", copy_then_fail)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, tmp_path, NAME)
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{NAME}.zip"]
