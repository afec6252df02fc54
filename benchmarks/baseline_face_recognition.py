"""The plain face_recognition-library approach, for comparison with `watchkeeper scan`.

HOG detection (one upsampling step) and dlib's ResNet embedding of every face
on every frame, as the face_recognition README does it, with the 5-point
landmark model. Prints one JSON object: frames, faces, seconds, fps and the
time per stage.

    uv run python benchmarks/baseline_face_recognition.py CLIP
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import av

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # face_recognition_models imports pkg_resources
    import face_recognition


def run(clip: str) -> dict[str, float]:
    timings = {"decode": 0.0, "detect": 0.0, "embed": 0.0}
    frames = faces = 0
    started = time.perf_counter()
    with av.open(clip) as container:
        decoded = container.decode(video=0)
        while True:
            mark = time.perf_counter()
            try:
                frame = next(decoded)
            except StopIteration:
                break
            rgb = frame.to_ndarray(format="rgb24")
            timings["decode"] += time.perf_counter() - mark
            mark = time.perf_counter()
            locations = face_recognition.face_locations(rgb, number_of_times_to_upsample=1)
            timings["detect"] += time.perf_counter() - mark
            mark = time.perf_counter()
            face_recognition.face_encodings(rgb, locations, model="small")
            timings["embed"] += time.perf_counter() - mark
            frames += 1
            faces += len(locations)
    seconds = time.perf_counter() - started
    return {
        "frames": frames,
        "faces": faces,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 3),
        "stage_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    args = parser.parse_args()
    print(json.dumps(run(args.clip)))  # noqa: T201 - a command-line report


if __name__ == "__main__":
    main()
