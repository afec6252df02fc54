"""Settings: defaults, TOML file, environment and options, in that order of priority."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import pytest

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
