"""Settings: defaults, TOML file, environment and options, in that order of priority."""

from __future__ import annotations

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
