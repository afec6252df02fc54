"""Typed configuration: the one place where every tunable value lives.

Values come, in increasing priority, from the defaults below, a TOML file
(``--config`` or ``WATCHKEEPER_CONFIG``), environment variables
(``WATCHKEEPER_<FIELD>``, nested with ``__``, e.g.
``WATCHKEEPER_QUALITY__MIN_INTEROCULAR_PX=16``) and command-line options.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from watchkeeper.errors import ConfigError

CONFIG_FILE_ENV = "WATCHKEEPER_CONFIG"


class DetectionConfig(BaseModel):
    """How faces are found in a frame."""

    backend: Literal["auto", "yunet", "hog"] = Field(
        "auto",
        description="Face detector: 'yunet' (OpenCV YuNet, needs its model file), 'hog' "
        "(dlib's HOG detector with the 5-point landmark model, always installed) or 'auto' "
        "(YuNet when its file is present, else HOG).",
    )
    max_width: int | None = Field(
        None,
        ge=160,
        description="Frames wider than this many pixels are downscaled for detection only; "
        "alignment and quality use the full-resolution frame. Empty: 960 for YuNet, 1280 "
        "for HOG. YuNet finds faces from about 12 px wide at detection resolution (24 px of "
        "a 1080p frame at 960), already below what the quality gate accepts for "
        "recognition; on the 1080p crowd clip 960 px found 663 faces (460 usable) at half "
        "the cost of 1280 px (703, 463 usable). HOG needs faces of about 40 px at "
        "detection resolution. Raise it for wide scenes where faces are smaller.",
    )
    score_threshold: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="YuNet confidence below which a candidate box is discarded (0-1).",
    )
    nms_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="YuNet non-maximum suppression IoU threshold."
    )
    hog_upsample: int = Field(
        1,
        ge=0,
        le=3,
        description="dlib HOG image pyramid upsampling steps. HOG finds faces from about "
        "80 px wide at 0, 40 px at 1 and 20 px at 2; each step costs about 4x the time.",
    )


class QualityConfig(BaseModel):
    """When a detected face is good enough to be used for recognition.

    A face that fails any limit is still tracked (so that one person stays one
    track) but is never embedded or matched.
    """

    min_interocular_px: float = Field(
        12.0,
        gt=0,
        description="Smallest distance between the eye centres, in pixels of the "
        "full-resolution frame. Below it there is too little detail for identity.",
    )
    good_interocular_px: float = Field(
        40.0,
        gt=0,
        description="Inter-ocular distance in pixels at which the size factor of the "
        "quality score reaches 1.",
    )
    min_sharpness: float = Field(
        5.0,
        ge=0,
        description="Smallest variance of the Laplacian of the aligned grey chip. A sharp "
        "press photo scores 25-40, a compressed 1080p CCTV face 5-15; a Gaussian blur of "
        "2.5 px on a press photo brings it to 5. Strong motion blur falls below.",
    )
    good_sharpness: float = Field(
        30.0,
        gt=0,
        description="Laplacian variance at which the sharpness factor of the quality score "
        "reaches 1.",
    )
    max_yaw_deg: float = Field(
        45.0,
        gt=0,
        le=90,
        description="Largest head turn left or right, in degrees, estimated from landmarks.",
    )
    max_pitch_deg: float = Field(
        40.0,
        gt=0,
        le=90,
        description="Largest head tilt up or down, in degrees, estimated from landmarks "
        "(only for detectors that give mouth corners).",
    )
    min_detector_score: float = Field(
        0.75,
        ge=0,
        le=1,
        description="Smallest detector confidence (0-1; HOG margins are mapped through a "
        "logistic function).",
    )


class TrackingConfig(BaseModel):
    """How detections in successive frames are joined into one track per person."""

    iou_threshold: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Smallest overlap (intersection over union) between a track's predicted "
        "box and a detection for them to be joined.",
    )
    max_centre_shift: float = Field(
        1.0,
        ge=0,
        description="When boxes barely overlap, a detection may still join a track whose "
        "predicted centre is within this many face widths (fast or low-fps motion).",
    )
    max_missed_seconds: float = Field(
        1.0,
        gt=0,
        description="A track not seen for this long has ended and is decided.",
    )
    best_shots: int = Field(
        3,
        ge=1,
        le=16,
        description="Quality-ranked shots kept per track; only these are embedded, so this "
        "bounds the embedding work per person.",
    )
    early_decision_shots: int = Field(
        3,
        ge=0,
        le=16,
        description="A track is decided as soon as it holds this many usable shots, while "
        "the person is still in view, so that an alert comes within about a second of their "
        "arrival instead of after they leave (0: decide only when the track ends). A track "
        "that matched raises one alert only; one that did not is decided again when it ends "
        "if better shots came since. At most best_shots.",
    )
    max_track_seconds: float = Field(
        30.0,
        gt=0,
        description="A track older than this is decided and a new one starts, so that a "
        "person who stays in view is still decided.",
    )

    @model_validator(mode="after")
    def _early_within_best(self) -> TrackingConfig:
        if self.early_decision_shots > self.best_shots:
            raise ValueError(
                f"early_decision_shots ({self.early_decision_shots}) cannot exceed best_shots "
                f"({self.best_shots}): a track never holds more shots than that"
            )
        return self


class MatchingConfig(BaseModel):
    """How a track is compared with the watchlist."""

    threshold: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="Cosine similarity a track's fused score must reach to be a match. "
        "Empty: the embedder's calibration, which sets the threshold for the watchlist's "
        "size so that the declared share of strangers raising an alert (FPIR) holds.",
    )
    top_k: int = Field(5, ge=1, description="Candidates kept per decision, best first.")


class StoreConfig(BaseModel):
    """How a scan against the stored watchlist keeps up with it."""

    watchlist_refresh_s: float = Field(
        60.0,
        gt=0,
        description="Seconds between reloads of the searchable watchlist during a scan, so "
        "approvals, suspensions, restrictions and expiries take effect. Every alert is also "
        "checked against the entry's current state before it is stored.",
    )
    sweep_interval_s: float = Field(
        3600.0,
        gt=0,
        description="Seconds between retention sweeps inside the running service and a "
        "running `scan --db` (expired entries and old alerts deleted with their files; one "
        "runs at start); `watchkeeper purge` runs one at once.",
    )


class VideoConfig(BaseModel):
    """How frames are read from a source."""

    analysis_fps: float = Field(
        10.0,
        ge=0,
        description="Frames per second analysed; 0 analyses every decoded frame. Frames "
        "between samples are decoded (codecs need them) but not analysed.",
    )
    open_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait when opening a network source."
    )
    read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds without data after which a network source counts as dropped.",
    )
    reconnect_initial_s: float = Field(
        0.5, gt=0, description="First wait before reconnecting a dropped live source."
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, description="Longest wait between reconnection attempts (doubling)."
    )
    reconnect_attempts: int | None = Field(
        8,
        ge=0,
        description="Consecutive failed reconnections after which a live source is given "
        "up; empty means never give up (a shop's camera).",
    )


class InferenceConfig(BaseModel):
    """Where and how the identity network runs."""

    backend: Literal["auto", "onnxruntime", "torch", "dlib"] = Field(
        "auto",
        description="Runtime for dlib's ResNet embedder: 'onnxruntime' (the network converted "
        "to ONNX on first use, cached in models_dir; batched, multi-threaded, GPU-capable with "
        "onnxruntime-gpu), 'torch' (the same network built in PyTorch, for GPUs where PyTorch "
        "is installed), 'dlib' (dlib's own single-threaded CPU code) or 'auto' (a GPU through "
        "onnxruntime-gpu or PyTorch when there is one, else onnxruntime on the CPU). All give "
        "the same vectors (cosine at least 0.9999), so templates stay valid.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="'cuda' needs an NVIDIA GPU and onnxruntime-gpu or PyTorch with CUDA; "
        "'auto' uses the GPU when one of them can and the CPU otherwise. The choice is logged "
        "at start.",
    )
    precision: Literal["float32", "tf32", "float16"] = Field(
        "float16",
        description="Arithmetic of the PyTorch backend on a GPU: 'float32' (exact), 'tf32' "
        "(float32 numbers, tensor-core products with 10-bit mantissas) or 'float16'. "
        "Every choice keeps cosine similarity with dlib's own vectors at 0.9999 or more "
        "(tested); float16 is the fastest. The CPU always computes in float32.",
    )
    threads: int = Field(
        0,
        ge=0,
        description="CPU threads for one embedding batch; 0 means one per CPU core.",
    )


class StreamingConfig(BaseModel):
    """How sources are decoded and analysed concurrently."""

    workers: int = Field(
        0,
        ge=0,
        description="Threads running detection and the quality gate, shared by all cameras "
        "in turn; 0 means one per CPU core. Decoding is separate: one thread per camera.",
    )
    queue_frames: int = Field(
        2,
        ge=1,
        description="Decoded frames held per camera while analysis is busy. When a live "
        "source fills it the oldest frame is dropped (and counted), so latency stays "
        "bounded; a file waits instead, so every frame is analysed. On 2 cores, 4 camera "
        "streams at 5 fps held p95 latency at 0.3 s with 2 and 1.2 s with 4.",
    )
    processes: int = Field(
        0,
        ge=0,
        description="For `watchkeeper bench`: worker processes sharing the cameras, each "
        "with its own detector, embedder and share of the cores. 0 runs one per camera, the "
        "layout of the service (`serve` always runs each camera in a process of its own, "
        "with its share of the cores); 1 runs everything in one process, as `scan` does. "
        "One process's "
        "threads stop scaling at about 8 busy cores (tracking and the glue between stages "
        "hold Python's GIL): on 16 cores with a GPU, 1 process held 12 live 1080p streams at "
        "5 fps, 4 held 24 and 8 held 32. Each process loads its own models (about 0.5 GB, "
        "1.7 GB with PyTorch on a GPU).",
    )
    stall_seconds: float = Field(
        30.0,
        gt=0,
        description="`serve` restarts a camera's worker process that has reported nothing "
        "(no frame, no error) for this long.",
    )
    late_decision_seconds: float = Field(
        10.0,
        gt=0,
        description="The cameras page and API mark a camera whose decisions (and so its "
        "alerts) come this many seconds or more after the frame that ended the track: the "
        "machine cannot keep up with its cameras. Fewer cameras, a lower "
        "`video.analysis_fps` or a GPU help.",
    )
    restart_max_seconds: float = Field(
        60.0,
        gt=0,
        description="`serve` restarts a failed camera after 1, 2, 4, ... seconds, at most "
        "this long, while the other cameras keep running.",
    )
    max_batch: int = Field(
        64,
        ge=1,
        description="Most face chips embedded in one batch, gathered across tracks and "
        "cameras. Larger batches use the hardware better; each batch delays the decisions "
        "in it until all of it is done.",
    )
    decision_backlog: int = Field(
        256,
        ge=1,
        description="Most face chips waiting to be embedded and decided in one process. "
        "When a machine cannot keep up, analysis waits at this many instead of piling up "
        "decisions in memory, and a live camera drops its oldest frames (counted) meanwhile; "
        "no decided track is ever dropped.",
    )


def default_data_dir() -> Path:
    """Per-user folder for the database and encrypted files."""
    return Path(platformdirs.user_data_dir("watchkeeper"))


def default_models_dir() -> Path:
    """Per-user folder where model files are looked up and fetched to."""
    return default_data_dir() / "models"


def default_key_file() -> Path:
    """Where the encryption key is kept: the user's configuration folder, never the
    data folder, so that a copy of the data is not a copy of the key."""
    return Path(platformdirs.user_config_dir("watchkeeper")) / "key"


class SignInLimits(BaseModel):
    """Sign-in throttling (governance/throttle.py). Failures are counted per name and
    address and per address; past the free failures each further one doubles a delay
    during which that name (or that address) cannot sign in from there. Nobody is
    locked out everywhere: the same account signs in from another address as usual."""

    free_per_name_and_address: int = Field(
        5, ge=1, description="Wrong passwords for one name from one address before delays."
    )
    free_per_address: int = Field(
        20, ge=1, description="Failed sign-ins from one address, any names, before delays."
    )
    first_delay_s: float = Field(
        30.0, gt=0, description="The first delay, in seconds; each further failure doubles it."
    )
    max_delay_minutes: float = Field(60.0, gt=0, description="The longest delay, in minutes.")
    forget_hours: float = Field(
        24.0, gt=0, description="A counter with no failure for this long starts again from 0."
    )
    ceiling: int = Field(
        200,
        ge=1,
        description="Failed sign-ins from all addresses together in one window beyond "
        "which only known addresses (where someone signed in before) may try.",
    )
    ceiling_window_minutes: float = Field(
        15.0, gt=0, description="The window the ceiling counts over, in minutes."
    )
    known_address_days: float = Field(
        90.0,
        gt=0,
        description="An address stays known this long after a successful sign-in from it.",
    )


class WebConfig(BaseModel):
    """The web app of `watchkeeper serve`: where it listens, and how sign-in is guarded."""

    host: str = Field(
        "127.0.0.1",
        description="Address to listen on. The default answers this machine only; put a "
        "TLS-terminating proxy in front before opening it to the shop's network.",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    session_hours: float = Field(
        12.0, gt=0, description="A sign-in lasts at most this long (one shift), in hours."
    )
    idle_minutes: float = Field(
        30.0, gt=0, description="A session unused for this long ends, in minutes."
    )
    sign_in: SignInLimits = Field(
        default_factory=SignInLimits,
        description="How failed sign-ins slow guessing down without locking anyone out.",
    )
    secure_cookies: bool = Field(
        False,
        description="Mark the session cookie Secure (sent over HTTPS only). Turn on when "
        "the app is reached through HTTPS; plain HTTP on 127.0.0.1 needs it off.",
    )
    max_photo_mb: float = Field(
        10.0,
        gt=0,
        description="Largest enrolment photo accepted in one upload, in MB (10^6 bytes); "
        "a larger file is refused (413) while it arrives, before it is read whole.",
    )
    max_upload_mb: float = Field(
        60.0,
        gt=0,
        description="Largest upload request (every photo and field of one enrolment), in MB; "
        "refused (413) from its Content-Length, or while it arrives when none is given.",
    )
    camera_test_s: float = Field(
        5.0,
        gt=0,
        le=10,
        description="Seconds that 'Test connection' on the cameras page waits for a camera's "
        "first frame (at most 10); a camera that has not answered by then is reported as such.",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+",
        description="Address at which staff reach the web app, e.g. http://shop-pc:8000; "
        "notifications link to the alert card there. Empty: notifications carry no link.",
    )


class ReviewConfig(BaseModel):
    """What the alert card tells a reviewer beside the two faces: a band for the score and
    plain warnings about how the face was seen. Neither decides anything; people do.

    The score margins are in cosine similarity of ``sface-2021dec``, the default embedder
    (a setting, because another embedder or a calibration on local data moves them). With
    ``dlib-resnet-v1``, whose scores lie far closer together, set 0.02 and 0.005."""

    strong_margin: float = Field(
        0.16,
        ge=0,
        description="Score at least this far above the alert's threshold is shown as "
        "'strong'. With the shipped calibration (0.459 for 100 entries) that is above 0.61: "
        "in the LFW measurement no two different people scored higher, except brothers "
        "(George W. and Jeb Bush, 0.61) and label errors (one person under two names, up to "
        "0.77); about half of the same person's pairs did (median 0.70).",
    )
    likely_margin: float = Field(
        0.04,
        ge=0,
        description="Score at least this far above the threshold (and below strong_margin) "
        "is 'likely'; closer is 'weak'. The threshold for one false alert in 10,000 "
        "strangers lies 0.01-0.04 above the one for 1 in 1,000 (100 to 1,000 entries), so "
        "strangers' scores still reach the weak band, and a tenth of the same person's pairs "
        "on LFW scored under 0.58: the band is no verdict.",
    )
    brief_sighting_s: float = Field(
        1.0,
        ge=0,
        description="A face seen for less than this many seconds is flagged as a brief "
        "sighting (someone walking past is usually in view for several seconds).",
    )
    min_shots: int = Field(
        3,
        ge=1,
        description="Fewer usable shots than this are flagged. A match is normally decided "
        "on tracking.early_decision_shots (3) shots; fewer means the face was lost first, "
        "and a single shot misses or mistakes more people than three fused ones.",
    )
    low_quality: float = Field(
        0.25,
        ge=0,
        le=1,
        description="A best shot whose quality score (0-1: detector confidence times the "
        "size, sharpness and pose factors of the quality gate) is below this is flagged. "
        "Eyes 20 px apart and a sharpness of 15 (half of good_interocular_px and "
        "good_sharpness) with a confident detection give about 0.22.",
    )
    close_runner_up: float = Field(
        0.01,
        ge=0,
        description="A second watchlist entry scoring within this much of the matched one "
        "is flagged: the score alone cannot tell two entries apart that closely.",
    )
    guidance: str = Field(
        "Do not approach or accuse anyone on the strength of this alert. Compare the faces "
        "yourself: the system is sometimes wrong, more often with small, blurred or turned "
        "faces. Confirm only if you are sure it is the same person; a second reviewer must "
        "confirm too. If confirmed, follow your shop's procedure: keep your distance, "
        "watch, and call the manager or the police if there is a risk to anyone.",
        min_length=1,
        description="The response guidance shown on every alert card.",
    )


class WebhookConfig(BaseModel):
    """One receiver of signed webhooks (see :mod:`watchkeeper.notify`)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        description="Where each notification is POSTed as JSON: an http:// or https:// URL "
        "(e.g. a Home Assistant webhook). Redirects are not followed."
    )
    name: str = Field(
        "",
        max_length=100,
        description="Name of the receiver in logs and in the outbox; empty: the URL's host "
        "and port (never its path, which may hold a token). Names must differ; a queued "
        "notification goes to the receiver of its name.",
    )
    secret: SecretStr | None = Field(
        None,
        description="Shared secret for the X-Watchkeeper-Signature HMAC (at least 16 "
        "characters); or give secret_env instead, to keep it out of the file.",
    )
    secret_env: str | None = Field(
        None, description="Name of the environment variable holding the secret."
    )
    events: list[Literal["alert.created", "alert.confirmed", "alert.rejected"]] = Field(
        default_factory=lambda: ["alert.created", "alert.confirmed", "alert.rejected"],
        min_length=1,
        description="Events sent to this receiver: 'alert.created' (a match stored as a "
        "pending alert), 'alert.confirmed' (two reviewers confirmed it) and 'alert.rejected' "
        "(a reviewer rejected it). The MQTT broker gets all three.",
    )

    @model_validator(mode="after")
    def _check(self) -> WebhookConfig:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook url must be http:// or https:// with a host: {self.url!r}")
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError(f"webhook {self.url!r} needs exactly one of secret or secret_env")
        if self.secret is not None and len(self.secret.get_secret_value()) < 16:
            raise ValueError("a webhook secret needs at least 16 characters")
        if not self.name:
            self.name = parts.netloc.rpartition("@")[2][:100]
        return self

    @property
    def destination(self) -> str:
        """Its name in the notification outbox."""
        return f"webhook:{self.name}"

    def wants(self, event: str) -> bool:
        return event in self.events


class MqttConfig(BaseModel):
    """An MQTT broker to publish alerts to (Home Assistant, NVRs)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, description="The broker's host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="The broker's port (8883 with TLS).")
    username: str | None = Field(None, description="User name at the broker, if it asks.")
    password: SecretStr | None = Field(
        None,
        description="Password at the broker; best given as WATCHKEEPER_NOTIFY__MQTT__PASSWORD.",
    )
    tls: bool = Field(False, description="Connect with TLS, checking the broker's certificate.")
    ca_file: Path | None = Field(
        None, description="CA certificate(s) to check the broker with; empty: the system's."
    )
    topic_prefix: str = Field(
        "watchkeeper",
        pattern=r"^[^#+]+$",
        description="Alerts go to <prefix>/<site>/alert (QoS 1, not retained; site as a "
        "lower-case slug) and the retained <prefix>/status says 'online' or 'offline'.",
    )
    client_id: str = Field("watchkeeper", min_length=1, description="MQTT client id.")

    @property
    def destination(self) -> str:
        """Its name in the notification outbox."""
        return "mqtt"

    def wants(self, event: str) -> bool:
        return True  # the broker gets every event; subscribers choose


class NotifyConfig(BaseModel):
    """Notifications of alerts to other systems. Both kinds are off until configured:
    nothing leaves the machine otherwise. Each notification is queued in the database in
    the transaction that stores its alert, then delivered, and retried until delivered,
    across restarts."""

    webhooks: list[WebhookConfig] = Field(
        default_factory=list, description="Receivers of signed webhooks (none by default)."
    )
    mqtt: MqttConfig | None = Field(None, description="MQTT broker; empty: no MQTT.")
    timeout_s: float = Field(
        5.0, gt=0, le=60, description="Seconds one delivery may take before it counts as failed."
    )
    retry_initial_s: float = Field(
        1.0, gt=0, description="Wait before the first retry; it doubles after each failure."
    )
    retry_max_s: float = Field(
        600.0, gt=0, description="Longest wait between retries (each wait varies by 20%)."
    )
    max_attempts: int = Field(
        20,
        ge=1,
        description="Attempts before a notification is marked failed (kept, logged and "
        "counted). With the defaults, 20 attempts span about two hours.",
    )
    poll_s: float = Field(
        0.5, gt=0, le=10, description="Seconds between looks for notifications that are due."
    )
    probe_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="While a receiver fails, the next of its queued notifications is tried "
        "after at most this many seconds (each failed one waits for its own retry): one "
        "notification a receiver refuses holds back the others no longer than this, and "
        "once one gets through, every notification that waited for the receiver is sent.",
    )

    @property
    def channels(self) -> list[WebhookConfig | MqttConfig]:
        """Every configured destination's settings."""
        return [*self.webhooks, *([self.mqtt] if self.mqtt is not None else [])]

    @model_validator(mode="after")
    def _unique_names(self) -> NotifyConfig:
        names = [hook.name for hook in self.webhooks]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two webhooks are named {name!r}; give each a different name")
        return self


class EstateConfig(BaseModel):
    """The camera estate audit (`watchkeeper estate`): how hard it may knock, and what
    counts as old. Command-line options override each for one run."""

    model_config = ConfigDict(extra="forbid")

    discovery_rate: float = Field(
        200.0, ge=1, le=5000, description="New connections a second, at most, while sweeping."
    )
    discovery_timeout_s: float = Field(
        1.0, ge=0.05, le=30, description="Seconds to wait for each connection while sweeping."
    )
    probe_timeout_s: float = Field(
        5.0, ge=0.1, le=60, description="Seconds each question to a device may take."
    )
    probe_max_body_kib: int = Field(
        256, ge=4, le=65536, description="Most KiB read of one answer from a device."
    )
    probe_concurrency: int = Field(16, ge=1, le=256, description="Devices asked at once.")
    firmware_max_age_days: int = Field(
        1095,
        ge=1,
        description="Firmware older than this many days (by the date it reports) is a "
        "finding: makers stop fixing flaws in old releases.",
    )


class EdgeConfig(BaseModel):
    """A store's edge box in a chain (`watchkeeper edge`), and how the core treats edges.
    The edge keeps a copy of its site's watchlist templates and its own alert outbox;
    the core holds everything else."""

    model_config = ConfigDict(extra="forbid")

    max_staleness_s: float = Field(
        900.0,
        ge=10,
        le=86400,
        description="Seconds an edge goes on matching with its copy of the watchlist after "
        "its last contact with the core; after that it stops matching (fail closed: an "
        "entry erased or suspended on the core must not go on being searched) until the "
        "link is back and the copy is brought up to date.",
    )
    poll_wait_s: float = Field(
        25.0,
        ge=0,
        le=300,
        description="Seconds an edge's request for watchlist changes waits on the core when "
        "nothing has changed (a long poll): changes reach the edge as soon as they are made.",
    )
    retry_max_s: float = Field(
        30.0,
        ge=0.1,
        le=3600,
        description="Longest wait between an edge's attempts to reach the core "
        "(1, 2, 4, ... seconds, at most this).",
    )
    request_timeout_s: float = Field(
        10.0, ge=1, le=300, description="Seconds an edge waits for the core to answer a request."
    )
    enrolment_code_hours: float = Field(
        24.0,
        gt=0,
        le=720,
        description="Hours an enrolment code from `watchkeeper edges add` stays valid "
        "(it works once).",
    )
    max_snapshot_kib: int = Field(
        512,
        ge=16,
        le=16384,
        description="Largest alert snapshot (KiB) the core accepts from an edge; a larger "
        "one is refused and audited.",
    )


class Settings(BaseSettings):
    """All of Watchkeeper's settings."""

    model_config = SettingsConfigDict(
        env_prefix="WATCHKEEPER_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    models_dir: Path = Field(
        default_factory=default_models_dir,
        description="Folder searched first for model files (then installed packages). "
        "`watchkeeper models fetch` writes here. Default: 'models' in data_dir.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder holding the SQLite database and the encrypted face images and "
        "alert snapshots.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the database; empty means SQLite in data_dir. Use "
        "postgresql+psycopg://user:password@host/db for several sites.",
    )
    key_file: Path = Field(
        default_factory=default_key_file,
        description="File holding the 32-byte encryption key (base64). WATCHKEEPER_KEY, "
        "when set, is used instead. Keep it off the data disk's backups.",
    )
    key: SecretStr | None = Field(
        None, description="The encryption key itself (base64), instead of key_file."
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("watchkeeper")),
        description="Folder for the evaluation embedding cache (vectors of evaluation "
        "images only, never of camera faces); safe to delete.",
    )
    embedder: str = Field(
        "sface-2021dec",
        description="Registry name of the identity embedder used for watchlist and probes: "
        "'sface-2021dec' (OpenCV Zoo's SFace, the default: on the LFW development part it "
        "misses about an eighth as many watchlist subjects as dlib at the same false-alert "
        "rate) or 'dlib-resnet-v1' (dlib's ResNet, always installed; the fallback where "
        "SFace cannot be fetched). A stored watchlist moves to another model with "
        "`watchkeeper models use`.",
    )
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    video: VideoConfig = Field(default_factory=VideoConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    estate: EstateConfig = Field(default_factory=EstateConfig)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)

    @model_validator(mode="after")
    def _models_follow_the_data(self) -> Settings:
        """Without a models folder of its own, a data folder moved elsewhere (say with
        WATCHKEEPER_DATA_DIR) takes its models folder with it."""
        if "models_dir" not in self.model_fields_set and "data_dir" in self.model_fields_set:
            self.models_dir = self.data_dir / "models"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = settings_cls.model_config.get("toml_file") or os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build the settings from a TOML file, the environment and explicit overrides.

    ``overrides`` use the field names of :class:`Settings` (command-line options);
    nested sections are given as dicts and merged over the lower-priority
    sources field by field.
    """
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"configuration file not found: {config_file}")

        class FileSettings(Settings):
            model_config = SettingsConfigDict({**Settings.model_config, "toml_file": config_file})

        settings_cls = FileSettings
    try:
        base = settings_cls()
        if settings_cls is not Settings:
            # Settings travel to camera worker processes, and a class made in this
            # function cannot be pickled: hand back a plain Settings with the same values
            # and the same record of which fields were set.
            base = Settings.model_validate(base.model_dump(exclude_unset=True))
        if not overrides:
            return base
        merged = base.model_dump(exclude_unset=True)
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from exc
