"""``make demo-video``'s encoding half: screencast frames to a WebM that honours their timing.

Recording the whole videos needs chromium and takes a minute; these tests encode a few
synthetic JPEG frames with the script's own function and read the result with ffprobe.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import require_service

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_video.py"


@pytest.fixture(scope="module")
def demo_video() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_video", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_video"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def jpeg(tmp_path: Path, colour: str) -> bytes:
    """A 320x180 single-colour JPEG, made by ffmpeg (no imaging library needed)."""
    out = tmp_path / f"{colour}.jpg"
    subprocess.run(
        ["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", f"color={colour}:s=320x180"]
        + ["-frames:v", "1", str(out)],
        check=True,
    )
    return out.read_bytes()


def probe(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)


def test_frames_are_shown_until_the_next_one_and_the_last_is_held(demo_video: ModuleType) -> None:
    Frame = demo_video.Frame
    frames = [Frame(100.0, b""), Frame(100.5, b""), Frame(100.5, b""), Frame(130.0, b"")]
    # A frame lasts until the next one; a repeated timestamp a minimal time; a long idle
    # gap is shortened; the last frame is held.
    assert demo_video.frame_durations(frames, hold_last_s=1.5) == [0.5, 0.001, 2.0, 1.5]
    script = demo_video.concat_script(["a.jpg", "b.jpg"], [0.5, 1.5])
    assert script.splitlines() == [
        "ffconcat version 1.0",
        "file 'a.jpg'",
        "duration 0.500",
        "file 'b.jpg'",
        "duration 1.500",
        "file 'b.jpg'",
    ]


def test_synthetic_frames_encode_to_a_vp9_webm_of_their_duration(
    demo_video: ModuleType, tmp_path: Path
) -> None:
    require_service("ffmpeg (apt-get install ffmpeg)", shutil.which("ffmpeg") is not None)
    # Given three frames painted at 0, 1 and 2 s
    Frame = demo_video.Frame
    frames = [Frame(10.0 + i, jpeg(tmp_path, c)) for i, c in enumerate(["red", "green", "blue"])]
    # When the script encodes them
    out = demo_video.encode_webm(frames, tmp_path / "out" / "clip.webm")
    # Then ffprobe reads a WebM with one VP9 stream of the frames' size
    info = probe(out)
    assert "webm" in info["format"]["format_name"]
    (stream,) = info["streams"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("vp9", 320, 180)
    # And its length is the frames' timing: 1 s + 1 s + the held last frame (1.5 s)
    assert float(info["format"]["duration"]) == pytest.approx(3.5, abs=0.2)


def test_no_frames_is_an_error_not_an_empty_file(demo_video: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        demo_video.encode_webm([], tmp_path / "empty.webm")
    assert not (tmp_path / "empty.webm").exists()
