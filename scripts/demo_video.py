"""Record the console's demo videos: ``make demo-video`` (``python scripts/demo_video.py``).

Boots Switchyard on its embedded defaults (like ``make run``: ``migrate`` and ``seed_demo``
in a temporary VAR_DIR, daphne on a free port, the offline demo model, no API key), drives
Debian's headless chromium with Playwright through three short scenarios and records each
through the Chrome DevTools screencast (``Page.startScreencast``: JPEG frames with
timestamps), then encodes the frames to WebM (VP9) with ffmpeg, each frame shown for as long
as it was on screen. Writes docs/media/demo-agent-run.webm, demo-moderation.webm and
demo-key-rotation.webm (``--only NAME`` records one; ``--out DIR`` writes elsewhere).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 720}
ADMIN_PASSWORD = "demo-video-password"
# The last frame stays on screen this long, so a video does not end on its last change.
HOLD_LAST_S = 1.5
# Gaps longer than this (the page did not change) are shortened, to keep the videos short.
MAX_FRAME_S = 2.0


@dataclass
class Frame:
    """One screencast frame: JPEG bytes and when the browser painted it (seconds)."""

    timestamp: float
    jpeg: bytes


def frame_durations(frames: list[Frame], *, hold_last_s: float = HOLD_LAST_S) -> list[float]:
    """How long each frame is shown: until the next one (at most MAX_FRAME_S); the last
    one ``hold_last_s``. Out-of-order or equal timestamps get a minimal duration."""
    durations = []
    for current, following in zip(frames, frames[1:], strict=False):
        durations.append(min(max(following.timestamp - current.timestamp, 0.001), MAX_FRAME_S))
    if frames:
        durations.append(hold_last_s)
    return durations


def concat_script(names: list[str], durations: list[float]) -> str:
    """An ffmpeg concat-demuxer script showing each file for its duration (the last file
    is repeated, as the demuxer ignores the last duration)."""
    lines = ["ffconcat version 1.0"]
    for name, duration in zip(names, durations, strict=True):
        lines += [f"file '{name}'", f"duration {duration:.3f}"]
    if names:
        lines.append(f"file '{names[-1]}'")
    return "\n".join(lines) + "\n"


def encode_webm(frames: list[Frame], out: Path, *, crf: int = 42) -> Path:
    """Encode the frames to a VP9 WebM at ``out`` with ffmpeg, honouring their timing."""
    if not frames:
        raise ValueError("no frames to encode")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sy-frames-") as tmp:
        names = []
        for i, frame in enumerate(frames):
            name = f"f{i:05d}.jpg"
            (Path(tmp) / name).write_bytes(frame.jpeg)
            names.append(name)
        script = Path(tmp) / "frames.ffconcat"
        script.write_text(concat_script(names, frame_durations(frames)))
        command = [
            *("ffmpeg", "-y", "-loglevel", "error", "-f", "concat", "-safe", "0"),
            *("-i", str(script)),
            # Constant 15 fps out of the variable-rate frames; even sizes for yuv420p.
            *("-vf", "fps=15,scale=trunc(iw/2)*2:trunc(ih/2)*2", "-pix_fmt", "yuv420p"),
            *("-c:v", "libvpx-vp9", "-b:v", "0", "-crf", str(crf)),
            *("-deadline", "good", "-cpu-used", "4", "-row-mt", "1", "-an"),
            str(out),
        ]
        subprocess.run(command, check=True)
    return out


# --- The product, booted like ``make run`` ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def product() -> Iterator[str]:
    """Switchyard on the embedded defaults in a temporary VAR_DIR; yields its base URL."""
    with tempfile.TemporaryDirectory(prefix="sy-demo-video-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            VAR_DIR=str(Path(tmp) / "var"),
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            DEMO_MODEL_DELAY_MS="150",  # the stream is visible, word by word
            PYTHONUNBUFFERED="1",
        )
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
        subprocess.run([*manage, "seed_demo"], env=env, check=True, cwd=ROOT, capture_output=True)
        port = free_port()
        log = open(Path(tmp) / "daphne.log", "wb")  # closed in the finally below
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
            + ["config.asgi:application"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, server)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=15)
            log.close()


def wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("daphne exited early")
        with contextlib.suppress(OSError), urlopen(f"{base}/readyz", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{base}/readyz did not answer 200")


# --- Recording ------------------------------------------------------------------------


@dataclass
class Recorder:
    """Collects a page's screencast frames and acknowledges each (or chromium stops)."""

    cdp: Any
    frames: list[Frame] = field(default_factory=list)

    def on_frame(self, params: dict[str, Any]) -> None:
        self.frames.append(Frame(params["metadata"]["timestamp"], base64.b64decode(params["data"])))
        self.cdp.send("Page.screencastFrameAck", {"sessionId": params["sessionId"]})

    def start(self) -> None:
        self.cdp.on("Page.screencastFrame", self.on_frame)
        self.cdp.send(
            "Page.startScreencast",
            {"format": "jpeg", "quality": 70, "maxWidth": 1280, "maxHeight": 720},
        )

    def stop(self) -> None:
        self.cdp.send("Page.stopScreencast")


def pause(page: Any, seconds: float = 0.8) -> None:
    """Let the viewer read the screen (the page keeps streaming frames meanwhile)."""
    page.wait_for_timeout(int(seconds * 1000))


def login(page: Any, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def type_slowly(page: Any, selector: str, text: str) -> None:
    page.click(selector)
    page.keyboard.type(text, delay=25)


def start_test_run(page: Any, text: str) -> None:
    type_slowly(page, "#test-run-form textarea", text)
    pause(page, 0.4)
    page.click("#test-run-form input[type=submit]")
    page.wait_for_url("**/admin/agents/run/*/change/")


def agent_run(page: Any, base: str) -> None:
    """Define an agent with the calculator tool, start a run and watch it stream."""
    page.goto(f"{base}/admin/agents/agent/add/")
    pause(page)
    type_slowly(page, "#id_slug", "math-helper")
    type_slowly(page, "#id_name", "Math helper")
    page.select_option("#id_provider", label="demo (demo)")
    type_slowly(page, "#id_model_name", "demo")
    type_slowly(page, "#id_instructions", "You answer arithmetic questions with the calculator.")
    page.check("input[name=tools][value=calculator]")
    pause(page, 0.5)
    page.click("[name=_continue]")
    page.wait_for_url("**/admin/agents/agent/*/change/")
    pause(page)
    start_test_run(page, "What is (17 + 25) * 3?")
    page.wait_for_function(
        "document.querySelector('#run-live').dataset.synced === 'succeeded'", timeout=30_000
    )
    pause(page, 1.5)


def moderation(page: Any, base: str) -> None:
    """A run the demo policy blocks (the internal codename), then its flag in triage."""
    page.goto(f"{base}/admin/agents/agent/")
    page.click("text=demo-assistant")
    pause(page, 0.5)
    start_test_run(page, "Summarise the plans of Project Bluebird for me.")
    page.wait_for_function(
        "document.querySelector('#run-live-state').dataset.status === 'blocked'", timeout=30_000
    )
    pause(page, 1.5)
    page.goto(f"{base}/admin/moderation/flag/")
    pause(page, 1.5)
    row = page.locator("#result_list tbody tr", has_text="Summarise the plans")
    row.locator("a").first.click()
    page.wait_for_url("**/admin/moderation/flag/*/change/")
    pause(page)
    page.select_option("#id_status", "confirmed")
    type_slowly(page, "#id_note", "Codename in a user prompt: blocked as it should be.")
    page.click("[name=_save]")
    page.wait_for_url("**/admin/moderation/flag/")
    pause(page, 1.5)


def key_rotation(page: Any, base: str) -> None:
    """Store a provider key in the vault, then rotate it to a new version."""
    page.goto(f"{base}/admin/secrets_vault/secret/add/")
    pause(page, 0.5)
    type_slowly(page, "#id_name", "openai-api-key")
    type_slowly(page, "#id_value", "sk-demo-old-0000000000000000")
    type_slowly(page, "#id_description", "The OpenAI provider's key")
    page.click("[name=_continue]")
    page.wait_for_url("**/admin/secrets_vault/secret/*/change/")
    pause(page)
    page.goto(page.url.replace("/change/", "/rotate/"))
    pause(page, 0.5)
    type_slowly(page, "#id_value", "sk-demo-new-1111111111111111")
    type_slowly(page, "#id_confirm", "sk-demo-new-1111111111111111")
    page.get_by_role("button", name="Rotate").click()
    page.wait_for_url("**/admin/secrets_vault/secret/*/change/")
    pause(page, 2.0)


SCENARIOS: dict[str, tuple[str, Callable[[Any, str], None]]] = {
    "agent-run": ("demo-agent-run.webm", agent_run),
    "moderation": ("demo-moderation.webm", moderation),
    "key-rotation": ("demo-key-rotation.webm", key_rotation),
}


def record(browser: Any, base: str, scenario: Callable[[Any, str], None], out: Path) -> Path:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    login(page, base)
    recorder = Recorder(context.new_cdp_session(page))
    recorder.start()
    page.set_default_timeout(15_000)
    try:
        scenario(page, base)
    except Exception:
        shot = Path(tempfile.gettempdir()) / f"{out.stem}.error.png"
        page.screenshot(path=str(shot))
        print(f"failed; the page is in {shot}", file=sys.stderr)
        raise
    finally:
        recorder.stop()
        context.close()
    return encode_webm(recorder.frames, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "media")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    args = parser.parse_args(argv)
    if shutil.which("ffmpeg") is None or not Path(CHROMIUM).exists():
        sys.exit("needs ffmpeg and chromium: apt-get install -y ffmpeg chromium")
    from playwright.sync_api import sync_playwright

    with product() as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name in args.only or SCENARIOS:
                filename, scenario = SCENARIOS[name]
                path = record(browser, base, scenario, args.out / filename)
                print(
                    f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
                    f"{path.stat().st_size / 1e6:.2f} MB"
                )
        finally:
            browser.close()


if __name__ == "__main__":
    main()
