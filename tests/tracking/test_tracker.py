"""Tracking on synthetic detections with known motion."""

from __future__ import annotations

import numpy as np
import pytest

from watchkeeper.config import TrackingConfig
from watchkeeper.tracking.tracker import FaceTracker, Shot, Track, iou_matrix
from watchkeeper.vision.observation import FaceObservation, LandmarkScheme


def face(x: float, y: float, size: float = 60.0) -> FaceObservation:
    box = np.array([x, y, x + size, y + size], np.float32)
    landmarks = np.zeros((5, 2), np.float32)
    return FaceObservation(box, landmarks, LandmarkScheme.EYES_NOSE_MOUTH, 0.9)


def shot(quality: float, timestamp: float = 0.0) -> Shot:
    return Shot(chip=np.full((4, 4, 3), 200, np.uint8), quality=quality, timestamp=timestamp)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
        ((0, 0, 10, 10), (0, 0, 0, 0), 0.0),
    ],
)
def test_iou(a: tuple, b: tuple, expected: float) -> None:
    value = iou_matrix(np.array([a], np.float32), np.array([b], np.float32))[0, 0]
    assert value == pytest.approx(expected)


def test_a_face_walking_across_is_one_track() -> None:
    tracker = FaceTracker(TrackingConfig())
    ended = []
    # 40 px per frame at 10 fps: boxes of 60 px overlap by IoU 0.2, below the
    # IoU threshold, so the centre-distance rule and the velocity must carry it.
    for step in range(20):
        ended += tracker.update(step * 0.1, [(face(100 + 40 * step, 200), None)])
    ended += tracker.finish()
    assert len(ended) == 1
    assert ended[0].frames == 20
    assert ended[0].start == 0.0
    assert ended[0].last_seen == pytest.approx(1.9)


def test_two_people_side_by_side_are_two_tracks() -> None:
    tracker = FaceTracker(TrackingConfig())
    for step in range(10):
        t = step * 0.1
        tracker.update(t, [(face(100 + 5 * step, 200), None), (face(400 - 5 * step, 210), None)])
    tracks = tracker.finish()
    assert sorted(t.frames for t in tracks) == [10, 10]
    first, second = sorted(tracks, key=lambda t: t.box[0])
    assert first.box[0] == pytest.approx(145)
    assert second.box[0] == pytest.approx(355)


def test_crossing_paths_keep_identities_by_motion() -> None:
    tracker = FaceTracker(TrackingConfig())
    ids_at_start = {}
    for step in range(12):
        t = step * 0.1
        faces = [(face(100 + 20 * step, 200), None), (face(400 - 20 * step, 200), None)]
        tracker.update(t, faces)
        if step == 1:
            ids_at_start = {int(np.sign(tr.velocity[0])): tr.id for tr in tracker.active}
    tracks = tracker.finish()
    moving_right = next(t for t in tracks if t.velocity[0] > 0)
    moving_left = next(t for t in tracks if t.velocity[0] < 0)
    assert moving_right.id == ids_at_start[1]
    assert moving_left.id == ids_at_start[-1]
    assert moving_right.frames == moving_left.frames == 12


def test_a_gap_longer_than_max_missed_starts_a_new_track() -> None:
    tracker = FaceTracker(TrackingConfig(max_missed_seconds=1.0))
    tracker.update(0.0, [(face(100, 100), None)])
    assert tracker.update(0.5, []) == []
    ended = tracker.update(2.0, [(face(100, 100), None)])
    assert [t.frames for t in ended] == [1]
    assert [t.start for t in tracker.active] == [2.0]


def test_long_tracks_are_decided_and_restarted() -> None:
    tracker = FaceTracker(TrackingConfig(max_track_seconds=5.0))
    ended = []
    for step in range(80):
        ended += tracker.update(step * 0.1, [(face(100, 100), None)])
    assert [round(t.start, 1) for t in ended] == [0.0]
    assert [round(t.start, 1) for t in tracker.active] == [5.0]


def test_best_shots_are_the_highest_quality_and_bounded() -> None:
    tracker = FaceTracker(TrackingConfig(best_shots=3))
    qualities = [0.2, 0.9, 0.5, 0.7, 0.1, 0.8]
    for step, q in enumerate(qualities):
        tracker.update(step * 0.1, [(face(100, 100), shot(q, step * 0.1))])
    (track,) = tracker.finish()
    assert [s.quality for s in track.best_shots] == [0.9, 0.8, 0.7]


def test_dropped_and_wiped_shots_are_overwritten() -> None:
    track = Track(id=1, start=0.0, last_seen=0.0, box=np.zeros(4, np.float32))
    low, high = shot(0.1), shot(0.9)
    track.offer(low, capacity=1)
    track.offer(high, capacity=1)
    assert not low.chip.any(), "a shot pushed out of the best shots is zeroed"
    track.wipe()
    assert not high.chip.any()
    assert track.best_shots == []


def test_faces_without_a_shot_extend_the_track_but_add_no_shot() -> None:
    tracker = FaceTracker(TrackingConfig())
    tracker.update(0.0, [(face(100, 100), None)])
    tracker.update(0.1, [(face(102, 100), shot(0.5))])
    (track,) = tracker.finish()
    assert track.frames == 2
    assert len(track.best_shots) == 1


def test_a_shot_counts_as_a_change_only_when_it_is_kept() -> None:
    track = Track(id=1, start=0.0, last_seen=0.0, box=np.zeros(4, np.float32))
    for quality in (0.5, 0.9, 0.1, 0.7):  # 0.1 never makes the best two
        track.offer(shot(quality), capacity=2)
    assert [s.quality for s in track.best_shots] == [0.9, 0.7]
    assert track.changes == 3


def test_a_snapshot_keeps_its_own_chips() -> None:
    track = Track(id=7, start=0.0, last_seen=0.4, box=np.zeros(4, np.float32))
    track.offer(shot(0.5), capacity=2)
    copy = track.snapshot()
    assert copy.origin is track
    assert copy.id == 7
    track.wipe()  # the tracker overwrites the live track's chips
    assert copy.best_shots[0].chip.all(), "the snapshot still has its chip"
    copy.wipe()
    assert not copy.best_shots


def decided_early(changes_since: int, matched: bool) -> Track:
    track = Track(id=1, start=0.0, last_seen=0.0, box=np.zeros(4, np.float32))
    track.offer(shot(0.5), capacity=3)
    track.early_changes = track.changes
    for step in range(changes_since):
        track.offer(shot(0.6 + step / 10), capacity=3)
    track.matched = matched
    return track


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Track(id=1, start=0.0, last_seen=0.0, box=np.zeros(4)), True),
        (lambda: decided_early(changes_since=0, matched=False), False),
        (lambda: decided_early(changes_since=1, matched=False), True),
        (lambda: decided_early(changes_since=1, matched=True), False),
        (lambda: decided_early(changes_since=0, matched=False).snapshot(), True),
        (lambda: decided_early(changes_since=0, matched=True).snapshot(), False),
    ],
    ids=[
        "never-decided",
        "decided-early-unchanged",
        "decided-early-better-shots-since",
        "matched-early",
        "snapshot",
        "snapshot-of-a-matched-track",
    ],
)
def test_which_tracks_are_worth_deciding(make, expected: bool) -> None:
    assert make().to_decide is expected


def test_early_decisions_cannot_wait_for_more_shots_than_are_kept() -> None:
    with pytest.raises(ValueError, match="cannot exceed best_shots"):
        TrackingConfig(best_shots=2, early_decision_shots=3)
    assert TrackingConfig(best_shots=2, early_decision_shots=0).early_decision_shots == 0
