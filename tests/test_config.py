"""Settings: defaults, TOML file, environment and options, in that order of priority."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from watchkeeper.config import Settings, load_settings
from watchkeeper.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "WATCHKEEPER_CONFIG",
        "WATCHKEEPER_MODELS_DIR",
        "WATCHKEEPER_QUALITY__MAX_YAW_DEG",
    ):
        monkeypatch.delenv(name, raising=False)


def test_every_setting_is_described() -> None:
    def undescribed(model: type, prefix: str = "") -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                missing += undescribed(annotation, f"{prefix}{name}.")
            elif not field.description:
                missing.append(prefix + name)
        return missing

    assert undescribed(Settings) == []


def test_sources_override_each_other_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "watchkeeper.toml"
    config.write_text("[quality]\nmin_interocular_px = 20\nmax_yaw_deg = 30\n")
    monkeypatch.setenv("WATCHKEEPER_QUALITY__MAX_YAW_DEG", "25")
    settings = load_settings(config, quality={"min_sharpness": 9.0})
    assert settings.quality.min_interocular_px == 20  # file
    assert settings.quality.max_yaw_deg == 25  # environment over file
    assert settings.quality.min_sharpness == 9.0  # option
    assert settings.quality.max_pitch_deg == 40.0  # default


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"video": {"analysis_fps": -1}}, "invalid setting video.analysis_fps"),
        ({"detection": {"backend": "cnn"}}, "invalid setting detection.backend"),
        ({"colour": "blue"}, "invalid setting colour"),
    ],
)
def test_invalid_settings_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**overrides)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "absent.toml")


def _embedder_in_a_worker(settings: Settings, answers: multiprocessing.Queue) -> None:
    answers.put((settings.embedder, settings.notify.webhooks[0].name))


def test_settings_from_a_file_reach_worker_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --config FILE` hands the settings to one worker process per camera: they
    must pickle (a class made inside load_settings did not, and every camera died)."""
    config = tmp_path / "watchkeeper.toml"
    config.write_text(
        'embedder = "dlib-resnet-v1"\n[[notify.webhooks]]\nurl = "http://127.0.0.1:9/hook"\n'
        'secret = "0123456789abcdef"\n'
    )
    monkeypatch.setenv("WATCHKEEPER_QUALITY__MAX_YAW_DEG", "25")
    settings = load_settings(config)
    assert type(settings) is Settings
    assert settings.quality.max_yaw_deg == 25
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings
    assert {"embedder", "notify", "quality"} <= copy.model_fields_set
    assert "video" not in copy.model_fields_set, "defaults stay unset: the user chose none"
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    worker = context.Process(target=_embedder_in_a_worker, args=(settings, answers))
    worker.start()
    assert answers.get(timeout=60) == ("dlib-resnet-v1", "127.0.0.1:9")
    worker.join(10)
    assert worker.exitcode == 0


# --- every setting, from every source, in every process ------------------------------------


def _leaves(model: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every setting that is one value (sections walked into; lists of sections such as
    webhooks, and optional sections such as mqtt, have tests of their own)."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            found += _leaves(annotation, (*prefix, name))
        elif not _is_section_list(annotation):
            found.append(((*prefix, name), field))
    return found


def _is_section_list(annotation: Any) -> bool:
    """A list of sections (webhooks) or an optional section (mqtt)."""
    if typing.get_origin(annotation) is typing.Literal:
        return False
    inner = [a for a in typing.get_args(annotation) if a is not type(None)]
    return typing.get_origin(annotation) is list or any(hasattr(a, "model_fields") for a in inner)


def _candidates(field: Any, default: Any) -> list[Any]:
    """Values to try for a setting, other than its default."""
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        options = [annotation]
    else:
        options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    values: list[Any] = []
    for option in options:
        if typing.get_origin(option) is typing.Literal:
            values += [v for v in typing.get_args(option) if v != default]
        elif option is bool:
            values.append(not default)
        elif option is int:
            base = default if isinstance(default, int) else 1
            values += [base + 1, base - 1, 2, 1, 0, 640, 1000]
        elif option is float:
            base = default if isinstance(default, (int, float)) else 0.5
            values += [round(base * 1.25 + 0.125, 4), round(base * 0.75, 4), 0.5, 0.25, 1.0]
        elif option is str:
            values += ["settings-table", "https://wk.example"]
        elif option is Path:
            values.append("/srv/watchkeeper-settings-table")
        elif option is SecretStr:
            values.append("a-secret-of-enough-length")
    return [v for v in values if v != default]


def _value_for(path: tuple[str, ...], field: Any) -> Any:
    """A valid value for the setting at ``path`` that is not its default."""
    default = field.get_default(call_default_factory=True)
    for candidate in _candidates(field, default):
        try:
            settings = Settings.model_validate(_nest(path, candidate))
        except ValidationError:
            continue
        if _read(settings, path) != _read(Settings(), path):
            return candidate
    raise AssertionError(f"no test value for {'.'.join(path)}: add its type to _candidates")


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {path[-1]: value}
    for part in reversed(path[:-1]):
        tree = {part: tree}
    return tree


def _read(settings: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        settings = getattr(settings, part)
    return settings.get_secret_value() if isinstance(settings, SecretStr) else settings


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a TOML basic string


SETTINGS = [(path, _value_for(path, field)) for path, field in _leaves(Settings)]


def test_the_table_covers_every_setting() -> None:
    assert len(SETTINGS) > 60
    assert ("embedder",) in dict(SETTINGS)
    assert ("web", "port") in dict(SETTINGS)


@pytest.mark.parametrize(("path", "value"), SETTINGS, ids=[".".join(p) for p, _ in SETTINGS])
def test_every_setting_works_alike_from_a_file_the_environment_and_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...], value: Any
) -> None:
    """The same value set three ways gives the same settings, and a worker process (which
    gets them pickled, as each camera's does) sees it too."""
    expected = _read(Settings.model_validate(_nest(path, value)), path)
    config = tmp_path / "watchkeeper.toml"
    section = f"[{'.'.join(path[:-1])}]\n" if len(path) > 1 else ""
    config.write_text(f"{section}{path[-1]} = {_toml(value)}\n")
    from_file = load_settings(config)
    monkeypatch.setenv("WATCHKEEPER_" + "__".join(p.upper() for p in path), str(value).lower()
                       if isinstance(value, bool) else str(value))  # fmt: skip
    from_environment = load_settings()
    monkeypatch.undo()
    from_options = load_settings(**_nest(path, value))
    for settings in (from_file, from_environment, from_options):
        assert _read(settings, path) == expected
        assert _read(pickle.loads(pickle.dumps(settings)), path) == expected
    assert from_file == from_environment == from_options


def _dump_in_a_worker(settings: Settings, answers: multiprocessing.Queue) -> None:
    answers.put(settings.model_dump(mode="json"))


def test_every_setting_from_one_file_reaches_a_worker_process(tmp_path: Path) -> None:
    """All the table's values in one file: a spawned worker (as a camera's is) gets them all."""
    sections: dict[str, list[str]] = {}
    for path, value in SETTINGS:
        if path == ("models_dir",) or path == ("data_dir",):
            continue  # folders that must exist for other checks of this test's process
        sections.setdefault(".".join(path[:-1]), []).append(f"{path[-1]} = {_toml(value)}")
    text = "\n".join(sections.pop("", []))
    for name, lines in sections.items():
        text += f"\n[{name}]\n" + "\n".join(lines)
    config = tmp_path / "watchkeeper.toml"
    config.write_text(text + "\n")
    settings = load_settings(config)
    context = multiprocessing.get_context("spawn")
    answers = context.Queue()
    worker = context.Process(target=_dump_in_a_worker, args=(settings, answers))
    worker.start()
    assert answers.get(timeout=60) == settings.model_dump(mode="json")
    worker.join(10)
    assert worker.exitcode == 0


def test_a_data_folder_moved_elsewhere_takes_its_models_folder_along(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: WATCHKEEPER_DATA_DIR moved the database but not the models, which were
    then fetched again into the home folder."""
    monkeypatch.setenv("WATCHKEEPER_DATA_DIR", str(tmp_path / "shop"))
    assert load_settings().models_dir == tmp_path / "shop" / "models"
    assert load_settings(models_dir=tmp_path / "m").models_dir == tmp_path / "m"
    monkeypatch.delenv("WATCHKEEPER_DATA_DIR")
    assert load_settings(data_dir=tmp_path / "other").models_dir == tmp_path / "other" / "models"
