"""Download and unpack 2D training datasets of the Cell Tracking Challenge by name.

    python scripts/download_ctc.py Fluo-N2DL-HeLa [Fluo-N2DH-GOWT1 ...] [--output datasets/ctc]
        [--no_extract] [--base_url URL] [--timeout 30] [--list]

Each archive ``<base_url>/<name>.zip`` is downloaded into ``<output>/<name>.zip`` with a progress
bar; an interrupted download is kept as ``<name>.zip.part`` and resumed by the next run. The
finished archive is checked (size and CRC of every member) and unpacked into ``<output>/<name>/``
(``01/``, ``01_GT/``, ``01_ST/``, ``02/`` ...). Work already done is skipped: an intact zip is not
downloaded again, an unpacked dataset not unpacked again. Without internet access the command
stops at once and says how to download the zip by hand for ``scripts/prepare_ctc.py``.
"""

from __future__ import annotations

import argparse
import difflib
import http.client
import logging
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm.contrib.logging import logging_redirect_tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project's packages, from any working folder

from util.arg_types import positive_float
from util.cli import HelpFormatter, run_script
from util.errors import DatasetError
from util.log import setup_logging
from util.progress import progress_bar

logger = logging.getLogger("download_ctc")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = PROJECT_ROOT / "datasets" / "ctc"
DEFAULT_BASE_URL = "https://data.celltrackingchallenge.net/training-datasets/"
DEFAULT_TIMEOUT = 30.0
KNOWN_DATASETS = (
    "BF-C2DL-HSC",
    "BF-C2DL-MuSC",
    "DIC-C2DH-HeLa",
    "Fluo-C2DL-Huh7",
    "Fluo-C2DL-MSC",
    "Fluo-N2DH-GOWT1",
    "Fluo-N2DL-HeLa",
    "Fluo-N2DH-SIM+",
    "PhC-C2DH-U373",
    "PhC-C2DL-PSC",
)
CHUNK_BYTES = 1 << 20
USER_AGENT = "cell-cyclegan-download-ctc"
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", re.IGNORECASE)


def canonical_name(name: str) -> str:
    """The dataset name as the challenge spells it (case is forgiven); unknown names are refused."""
    by_lower = {known.lower(): known for known in KNOWN_DATASETS}
    if name.lower() not in by_lower:
        close = difflib.get_close_matches(name.lower(), by_lower, n=1)
        guess = f" (did you mean {by_lower[close[0]]}?)" if close else ""
        raise DatasetError(
            f"unknown Cell Tracking Challenge dataset {name!r}{guess}; "
            f"the 2D training datasets are: {', '.join(KNOWN_DATASETS)}"
        )
    return by_lower[name.lower()]


def dataset_url(name: str, base_url: str = DEFAULT_BASE_URL) -> str:
    return f"{base_url.rstrip('/')}/{name}.zip"


def partial_path(archive: Path) -> Path:
    """Where the download of ``archive`` grows until it is complete and checked."""
    return archive.with_name(archive.name + ".part")


def by_hand_hint(url: str) -> str:
    return (
        f"download {url} by hand (e.g. in a browser) and pass the zip to "
        f"python scripts/prepare_ctc.py {url.rsplit('/', 1)[-1]} --output <dataset folder>"
    )


def check_archive(path: Path) -> None:
    """Raise :class:`DatasetError` unless ``path`` is a readable zip whose members all match their CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DatasetError(f"{path} is not a valid zip archive ({error})") from error
    if broken is not None:
        raise DatasetError(f"{path} is corrupt: member {broken!r} fails its CRC check")


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range`` header; ``None`` where it does not say."""
    match = _CONTENT_RANGE.match(header or "")
    if match is None:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _span(response: http.client.HTTPResponse, url: str) -> tuple[int, int | None]:
    """(first byte of the body, total size of the file or ``None`` if unknown) of a 200 or 206 answer."""
    if response.status == 206:
        first, total = _content_range(response.headers.get("Content-Range"))
        if first is None:
            raise DatasetError(f"{url}: the server answered 206 without a usable Content-Range header")
        return first, total
    if response.status == 200:
        length = response.headers.get("Content-Length")
        return 0, (int(length) if length and length.isdigit() else None)
    raise DatasetError(f"cannot download {url}: the server answered HTTP {response.status}; {by_hand_hint(url)}")


def download(url: str, archive: Path, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Download ``url`` to ``archive`` through ``<archive>.part``, resuming a partial download.

    The file gets its final name only once its size matches the server's and it passes
    :func:`check_archive`, so an existing ``archive`` is always complete.
    """
    part = partial_path(archive)
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as error:
            if error.code == 416 and offset:
                _, total = _content_range(error.headers.get("Content-Range"))
                error.close()
                if total == offset:
                    logger.info("%s is already complete", part)
                    break
                logger.warning("%s does not fit the file on the server (%s bytes); downloading again", part, total)
                part.unlink()
                continue
            raise DatasetError(
                f"cannot download {url}: the server answered HTTP {error.code} {error.reason}; {by_hand_hint(url)}"
            ) from error
        except (OSError, http.client.HTTPException) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            raise DatasetError(f"cannot download {url}: {reason}; {by_hand_hint(url)}") from error
        with response:
            _receive(response, url, part, offset)
        break
    _check_download(part, archive, url)
    os.replace(part, archive)
    return archive


def _receive(response: http.client.HTTPResponse, url: str, part: Path, offset: int) -> None:
    """Write the body of ``response`` into ``part`` at the byte where it starts."""
    first, total = _span(response, url)
    if first > offset:
        raise DatasetError(f"{url}: the server resumed at byte {first}, after the {offset} bytes of {part}")
    if offset and first == 0:
        logger.info("the server does not support resuming downloads; downloading %s from the start", url)
    elif offset:
        logger.info("resuming %s at byte %d", url, first)
    part.parent.mkdir(parents=True, exist_ok=True)
    if first:
        os.truncate(part, first)
    with (
        open(part, "ab" if first else "wb") as sink,
        progress_bar(total=total, initial=first, unit="B", unit_scale=True, unit_divisor=1024, desc=part.stem) as bar,
    ):
        try:
            while chunk := response.read(CHUNK_BYTES):
                sink.write(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:
            sink.flush()
            raise DatasetError(
                f"the download of {url} broke off after {sink.tell()} bytes ({str(error) or type(error).__name__}); "
                f"{part} is kept: run the command again to resume, or {by_hand_hint(url)}"
            ) from error
    size = part.stat().st_size
    if total is not None and size < total:
        raise DatasetError(
            f"the download of {url} stopped at {size} of {total} bytes; {part} is kept: "
            f"run the command again to resume, or {by_hand_hint(url)}"
        )
    if total is not None and size > total:
        part.unlink()
        raise DatasetError(f"{part} grew to {size} bytes, more than the {total} of {url}; it was removed, run again")


def _check_download(part: Path, archive: Path, url: str) -> None:
    """Remove ``part`` and raise if it is not a valid zip, so that the next run downloads it anew."""
    try:
        check_archive(part)
    except DatasetError as error:
        part.unlink(missing_ok=True)
        raise DatasetError(
            f"{error}; it was removed so that the next run downloads {archive.name} anew from {url}"
        ) from error


def safe_member_path(member: str) -> PurePosixPath:
    """The path of a zip member relative to the extraction folder, refused if it would leave it (zip slip)."""
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or re.match(r"[A-Za-z]:", member) or ".." in path.parts:
        raise DatasetError(f"member {member!r} would be written outside the output folder (absolute path or '..')")
    return path


def extract_archive(archive: Path, output: Path, name: str) -> Path:
    """Unpack ``archive`` (top folder ``<name>/``) into ``output/<name>``; return that folder.

    Members are unpacked into a temporary folder beside it that is renamed at the end, so an
    interrupted extraction leaves no half-filled dataset folder behind.
    """
    target = output / name
    if (target / "01").is_dir():
        logger.info("%s is already unpacked", target)
        return target
    if target.exists():
        if any(target.iterdir()):
            raise DatasetError(f"{target} exists but holds no 01/ folder; move it away or remove it and run again")
        target.rmdir()
    with zipfile.ZipFile(archive) as source:
        members = []
        for info in source.infolist():
            try:
                relative = safe_member_path(info.filename)
            except DatasetError as error:
                raise DatasetError(f"{archive}: refusing to unpack it, {error}; nothing was unpacked") from error
            if relative.parts:
                members.append((info, relative))
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.unpacking-", dir=output))
        try:
            for info, relative in progress_bar(members, desc=f"unpack {name}", unit="file"):
                destination = staging.joinpath(*relative.parts)
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with source.open(info) as member, open(destination, "wb") as sink:
                    shutil.copyfileobj(member, sink, CHUNK_BYTES)
            root = staging / name if (staging / name).is_dir() else staging
            if not (root / "01").is_dir():
                raise DatasetError(f"{archive} holds no {name}/01/ folder: not a Cell Tracking Challenge training set")
            ignored = sorted(path.name for path in staging.iterdir() if path.name != name) if root != staging else []
            if ignored:
                logger.warning("%s: ignored top-level entries %s", archive, ", ".join(ignored))
            os.replace(root, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("unpacked %s into %s", archive.name, target)
    return target


def fetch_dataset(
    name: str,
    output: Path = DEFAULT_OUTPUT,
    base_url: str = DEFAULT_BASE_URL,
    timeout: float = DEFAULT_TIMEOUT,
    extract: bool = True,
) -> Path:
    """Download (unless an intact zip is there) and unpack one dataset; return the zip or the dataset folder."""
    name = canonical_name(name)
    output = Path(output)
    archive = output / f"{name}.zip"
    if extract and (output / name / "01").is_dir():
        logger.info("%s is already unpacked in %s; nothing to download", name, output / name)
        return output / name
    url = dataset_url(name, base_url)
    if archive.exists():
        try:
            check_archive(archive)
            logger.info("%s is already downloaded and intact", archive)
        except DatasetError as error:
            logger.warning("%s; downloading it again", error)
            archive.unlink()
    if not archive.exists():
        logger.info("downloading %s into %s", url, archive)
        download(url, archive, timeout)
    return extract_archive(archive, output, name) if extract else archive


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("names", nargs="*", metavar="NAME", help="datasets to download, e.g. Fluo-N2DL-HeLa")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="folder for the zips and the datasets")
    parser.add_argument("--no_extract", action="store_true", help="only download and check the zips")
    parser.add_argument("--base_url", default=DEFAULT_BASE_URL, help="where the <name>.zip archives are")
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the server (to connect, then for each read)",
    )
    parser.add_argument("--list", action="store_true", help="print the known 2D training datasets and stop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(KNOWN_DATASETS))
        return 0
    if not args.names:
        parser.error("name at least one dataset (see --list)")

    def job() -> None:
        names = [canonical_name(name) for name in args.names]
        with logging_redirect_tqdm():
            for name in names:
                fetch_dataset(name, args.output, args.base_url, args.timeout, extract=not args.no_extract)

    return run_script(job, interrupted_hint="interrupted; run the same command again to resume the download")


if __name__ == "__main__":
    sys.exit(main())
