"""The downloader against local sources: file:// URLs and a Range-aware HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from gipc.data.download import download
from gipc.cli.download import main
from gipc.errors import DownloadError


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


ARCHIVE = _zip({"MFI-WHU-master/full_clear/1.jpg": b"\xff\xd8" + bytes(range(256)) * 400, "MFI-WHU-master/README.md": b"hi"})
DIGEST = hashlib.sha256(ARCHIVE).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ARCHIVE, honours ``Range: bytes=N-``, and can drop the connection after ``cut`` bytes once."""

    ranges: list[str | None] = []
    cut: int | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        start = int(header.split("=")[1].rstrip("-")) if header else 0
        if start >= len(ARCHIVE):
            self.send_response(416)
            self.end_headers()
            return
        body = ARCHIVE[start:]
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(ARCHIVE) - 1}/{len(ARCHIVE)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut, type(self).cut = type(self).cut, None
        self.wfile.write(body[:cut] if cut is not None else body)
        if cut is not None:
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.ranges, _Handler.cut = [], None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/MFI-WHU.zip"
    httpd.shutdown()
    httpd.server_close()


def _extracted(dest: Path) -> None:
    assert (dest / "mfi-whu" / "MFI-WHU-master" / "README.md").read_bytes() == b"hi"
    assert sorted(p.name for p in dest.iterdir()) == ["mfi-whu"]  # no .part, no temp folder


def test_file_url_with_pinned_digest(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(ARCHIVE)
    dest = tmp_path / "data"
    assert download("mfi-whu", dest, url=archive.as_uri(), sha256=DIGEST, progress=False) == dest / "mfi-whu"
    _extracted(dest)
    with pytest.raises(DownloadError, match="already exists"):
        download("mfi-whu", dest, url=archive.as_uri(), progress=False)


def test_a_stale_part_is_replaced_when_the_source_sends_the_whole_file(tmp_path: Path) -> None:
    # file:// ignores Range and sends everything, so the part file must be rewritten, not appended to.
    archive = tmp_path / "a.zip"
    archive.write_bytes(ARCHIVE)
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / ".mfi-whu.part").write_bytes(b"stale bytes of an earlier try")
    download("mfi-whu", dest, url=archive.as_uri(), sha256=DIGEST, progress=False)
    _extracted(dest)


def test_cli_accepts_an_uppercase_digest_and_prints_the_folder_with_the_sets_note(tmp_path: Path, capsys) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(ARCHIVE)
    dest = tmp_path / "data"
    assert main(["mfi-whu", "--dest", str(dest), "--url", archive.as_uri(), "--sha256", DIGEST.upper()]) == 0  # hex is case-blind
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"mfi-whu: {dest / 'mfi-whu'} (") and "full_clear/" in last  # the registry's note on MFI-WHU
    _extracted(dest)
    other = tmp_path / "other"  # -o, as every gipc command takes its output
    assert main(["mfi-whu", "-o", str(other), "--url", archive.as_uri(), "--sha256", DIGEST]) == 0
    _extracted(other)


def test_a_non_zip_archive_is_kept_whole_for_the_user(tmp_path: Path, capsys) -> None:
    archive = tmp_path / "set.tar.gz"
    archive.write_bytes(b"not a zip")
    dest = tmp_path / "data"
    kept = download("mfi-whu", dest, url=archive.as_uri(), progress=False)
    assert kept == dest / "mfi-whu.tar.gz" and kept.read_bytes() == b"not a zip"  # named as what it is, not .gz
    assert sorted(p.name for p in dest.iterdir()) == ["mfi-whu.tar.gz"]  # no .part left, nothing unpacked
    assert f"{kept} is not a zip archive; unpack it by hand" in capsys.readouterr().out
    kept.write_bytes(b"unpacked by hand and edited")
    with pytest.raises(DownloadError, match="mfi-whu.tar.gz already exists"):  # a rerun never replaces it
        download("mfi-whu", dest, url=archive.as_uri(), progress=False)
    assert kept.read_bytes() == b"unpacked by hand and edited"


def test_http_download_prints_an_unpinned_digest(server: str, tmp_path: Path, capsys) -> None:
    download("mfi-whu", tmp_path, url=server, progress=False)
    assert f"sha256 of mfi-whu: {DIGEST}" in capsys.readouterr().out
    assert _Handler.ranges == [None]
    _extracted(tmp_path)


def test_interrupted_download_resumes_with_a_range_request(server: str, tmp_path: Path) -> None:
    _Handler.cut = 5000
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        download("mfi-whu", tmp_path, url=server, sha256=DIGEST, progress=False)
    part = tmp_path / ".mfi-whu.part"
    assert part.stat().st_size == 5000 and not (tmp_path / "mfi-whu").exists()
    download("mfi-whu", tmp_path, url=server, sha256=DIGEST, progress=False)
    assert _Handler.ranges == [None, "bytes=5000-"]
    _extracted(tmp_path)


def test_a_whole_part_file_is_verified_without_refetching(server: str, tmp_path: Path) -> None:
    (tmp_path / ".mfi-whu.part").write_bytes(ARCHIVE)
    download("mfi-whu", tmp_path, url=server, sha256=DIGEST, progress=False)
    assert _Handler.ranges == [f"bytes={len(ARCHIVE)}-"]  # answered 416: nothing left
    _extracted(tmp_path)


def test_checksum_mismatch_deletes_the_download(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=f"sha256 mismatch for mfi-whu: expected {'0' * 64}, got {DIGEST}"):
        download("mfi-whu", tmp_path, url=server, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_sha256_that_is_no_sha256_is_refused_before_downloading(server: str, tmp_path: Path) -> None:
    # it was fetched, then deleted as a mismatch
    with pytest.raises(DownloadError, match=r"^--sha256 abc: a sha256 is 64 hexadecimal digits$"):
        download("mfi-whu", tmp_path, url=server, sha256="abc", progress=False)
    assert _Handler.ranges == [] and list(tmp_path.iterdir()) == []
    download("mfi-whu", tmp_path, url=server, sha256=DIGEST.upper(), progress=False)  # either case
    _extracted(tmp_path)


def test_offline_is_one_clear_line(tmp_path: Path, capsys) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on exit: nothing listens there
    assert main(["mfi-whu", "--dest", str(tmp_path), "--url", f"http://127.0.0.1:{port}/x.zip"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gipc-download: error: cannot reach http://127.0.0.1:{port}/x.zip") and "\n" not in err


def test_unsafe_zip_and_unknown_link(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip({"../evil.txt": b"x"}))
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match="unsafe path"):
        download("mfi-whu", dest, url=archive.as_uri(), progress=False)
    assert not (tmp_path / "evil.txt").exists() and list(dest.iterdir()) == []
    with pytest.raises(DownloadError, match="no direct download link is known for lytro; .* pass --url"):
        download("lytro", dest, progress=False)


def test_ctrl_c_says_the_download_resumes_while_its_part_file_is_there(tmp_path: Path, capsys, monkeypatch) -> None:
    archive = tmp_path / "x.zip"
    archive.write_bytes(ARCHIVE)
    dest = tmp_path / "data"

    def stopped_while_unpacking(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("gipc.data.download._extract_zip", stopped_while_unpacking)
    argv = ["mfi-whu", "--dest", str(dest), "--url", archive.as_uri()]
    assert main(argv) == 130 and not (dest / ".mfi-whu.part").exists()  # unusable once unpacking began: deleted
    assert capsys.readouterr().err.splitlines()[-1] == "gipc-download: interrupted; nothing written"

    def stopped_while_fetching(url, part, *args):
        part.write_bytes(ARCHIVE[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr("gipc.data.download.fetch", stopped_while_fetching)
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"gipc-download: interrupted; the partial download stays in {dest / '.mfi-whu.part'}, run the same command again to resume"
    )
