"""The downloader against a real HTTP server on 127.0.0.1: resume, hashes, refusals."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from photofind.models.download import ALLOW_HTTP_ENV, DownloadError, check_url, download
from tests.local_http import LocalServer, Served

DATA = os.urandom(3 * 65536 + 1234)  # several chunks, not a multiple of one


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")
    with LocalServer() as srv:
        yield srv


def test_download_verifies_and_reports_progress(server, tmp_path):
    server.files["/m.bin"] = Served(DATA)
    seen = []
    result = download(
        server.url("/m.bin"),
        tmp_path / "m.bin",
        sha256=server.files["/m.bin"].sha256,
        progress=seen.append,
    )
    assert (tmp_path / "m.bin").read_bytes() == DATA
    assert result.sha256 == server.files["/m.bin"].sha256 and result.size == len(DATA)
    assert result.resumed_from == 0
    assert seen[-1].done == seen[-1].total == len(DATA)
    assert all(p.rate > 0 for p in seen)
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert not list(tmp_path.glob("*.part*"))


def test_plain_http_needs_the_test_switch(tmp_path, monkeypatch):
    monkeypatch.delenv(ALLOW_HTTP_ENV, raising=False)
    with pytest.raises(DownloadError, match="refusing plain http"):
        download("http://127.0.0.1:9/m.bin", tmp_path / "m.bin")
    with pytest.raises(DownloadError, match="not an https URL"):
        check_url("ftp://example.org/m.bin")
    check_url("https://example.org/m.bin")  # no exception


def test_not_found_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(server.url("/missing.bin"), tmp_path / "m.bin")
    assert not (tmp_path / "m.bin").exists()


def test_interrupted_download_resumes_on_the_next_call(server, tmp_path):
    served = server.files["/m.bin"] = Served(DATA, drops=1)
    with pytest.raises(DownloadError, match="interrupted after .* run the same command again"):
        download(server.url("/m.bin"), tmp_path / "m.bin", sha256=served.sha256, attempts=1)
    part = tmp_path / "m.bin.part"
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)
    assert not (tmp_path / "m.bin").exists()

    result = download(server.url("/m.bin"), tmp_path / "m.bin", sha256=served.sha256)
    assert result.resumed_from == kept
    assert (tmp_path / "m.bin").read_bytes() == DATA
    assert server.log.ranges("/m.bin") == [None, f"bytes={kept}-"]
    assert not part.exists()


def test_drops_within_one_call_are_resumed(server, tmp_path):
    served = server.files["/m.bin"] = Served(DATA, drops=2)
    result = download(server.url("/m.bin"), tmp_path / "m.bin", sha256=served.sha256, attempts=3)
    assert result.resumed_from > 0
    assert (tmp_path / "m.bin").read_bytes() == DATA
    ranges = server.log.ranges("/m.bin")
    assert ranges[0] is None and all(r.startswith("bytes=") for r in ranges[1:])


def test_wrong_hash_is_refused_and_deleted(server, tmp_path):
    server.files["/m.bin"] = Served(DATA)
    with pytest.raises(DownloadError, match="sha256 is .* expected 0000"):
        download(server.url("/m.bin"), tmp_path / "m.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_a_changed_file_restarts_instead_of_splicing(server, tmp_path):
    server.files["/m.bin"] = Served(DATA, drops=1)
    with pytest.raises(DownloadError):
        download(server.url("/m.bin"), tmp_path / "m.bin", attempts=1)
    new = os.urandom(len(DATA))
    server.files["/m.bin"] = Served(new, etag='"v2"')
    result = download(server.url("/m.bin"), tmp_path / "m.bin")
    assert (tmp_path / "m.bin").read_bytes() == new and result.resumed_from == 0
    assert server.log.requests[-1]["if_range"] == '"v1"'


def test_a_server_without_ranges_restarts_from_zero(server, tmp_path):
    served = server.files["/m.bin"] = Served(DATA, drops=1, honour_range=False)
    with pytest.raises(DownloadError):
        download(server.url("/m.bin"), tmp_path / "m.bin", attempts=1)
    download(server.url("/m.bin"), tmp_path / "m.bin", sha256=served.sha256)
    assert (tmp_path / "m.bin").read_bytes() == DATA


def test_a_complete_part_file_is_finished_not_refetched(server, tmp_path):
    served = server.files["/m.bin"] = Served(DATA)
    (tmp_path / "m.bin.part").write_bytes(DATA)
    (tmp_path / "m.bin.part.json").write_text(f'{{"url": "{server.url("/m.bin")}"}}')
    result = download(server.url("/m.bin"), tmp_path / "m.bin", sha256=served.sha256)
    assert result.resumed_from == len(DATA)
    assert (tmp_path / "m.bin").read_bytes() == DATA


def test_size_limit(server, tmp_path):
    server.files["/m.bin"] = Served(DATA)
    with pytest.raises(DownloadError, match="more than the 1,000 allowed"):
        download(server.url("/m.bin"), tmp_path / "m.bin", max_bytes=1000)


def test_connection_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")
    # A port that was just free: nothing listens there.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot connect"):
        download(f"http://127.0.0.1:{port}/m.bin", tmp_path / "m.bin")


def test_a_stalled_server_times_out_and_keeps_nothing_unverified(server, tmp_path):
    stall = threading.Event()
    server.files["/m.bin"] = Served(DATA, stall=stall)
    try:
        with pytest.raises(DownloadError, match="interrupted|no answer"):
            download(server.url("/m.bin"), tmp_path / "m.bin", timeout=0.5, attempts=1)
    finally:
        stall.set()
    assert not (tmp_path / "m.bin").exists()
