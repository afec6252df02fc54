"""Errors a user can act on.

Each error carries the process exit code the command line uses for it, so that
scripts can tell a bad source from a bad watchlist or a refused model file.
"""

from __future__ import annotations


class WatchkeeperError(Exception):
    """Base class for errors reported to the user as one line."""

    exit_code = 1


class ConfigError(WatchkeeperError):
    """The configuration or a command-line value is invalid."""

    exit_code = 2


class SourceError(WatchkeeperError):
    """A video source cannot be opened, read or decoded."""

    exit_code = 3


class StreamLostError(SourceError):
    """A live stream went away and did not come back within the reconnect budget."""

    exit_code = 4


class WatchlistError(WatchkeeperError):
    """A watchlist cannot be built (missing folder, subject with no usable face)."""

    exit_code = 5


class ModelError(WatchkeeperError):
    """A model file is unknown, missing, or refused (wrong checksum, wrong role)."""

    exit_code = 6


class ImageError(WatchkeeperError):
    """A file that should hold an image cannot be decoded as one."""

    exit_code = 7


class EncryptionKeyError(WatchkeeperError):
    """The encryption key is missing, malformed or not the one the data was made with."""

    exit_code = 8


class PolicyError(WatchkeeperError):
    """A governance rule refuses the action (no incident, expiry beyond policy,
    approving one's own entry, a role that may not do this)."""

    exit_code = 9


class NotFoundError(WatchkeeperError):
    """A named record (subject, incident, site, user, alert) does not exist here."""

    exit_code = 10


class DatabaseError(WatchkeeperError):
    """The database cannot be opened, is not initialised, or is at another schema version."""

    exit_code = 11


class AuditError(WatchkeeperError):
    """The audit log does not verify: an event was edited, inserted or deleted."""

    exit_code = 12


class BackupError(WatchkeeperError):
    """A backup cannot be made, or an archive cannot be restored: it is damaged or was
    altered, the target already holds data, or the service is running on it."""

    exit_code = 13


class AlreadyRunningError(WatchkeeperError):
    """Another `watchkeeper serve` runs on the same data folder."""

    exit_code = 14


class StorageError(WatchkeeperError):
    """The database or the disk refused to store a change: the disk is full
    (``disk_full``), or the database cannot be reached or written. Nothing of the
    change was kept."""

    exit_code = 15

    def __init__(self, reason: str, disk_full: bool) -> None:
        super().__init__(reason)
        self.disk_full = disk_full


class EdgeRefused(WatchkeeperError):
    """A chain's core refused what an edge sent, or an edge was refused by its core: a
    code or credential that is not (or no longer) valid, an alert or audit batch that
    is forged, replayed for another edge or too large. ``status`` is the HTTP status
    the core answers with."""

    exit_code = 16

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.status = status
