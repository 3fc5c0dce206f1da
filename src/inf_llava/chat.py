"""Multi-turn chat about an image: the conversation state behind ``inf-llava chat`` (and usable from Python).

A conversation holds at most one image, attached to its first user turn, as the released models were trained.
Loading another image starts a new conversation; ``reset`` clears the turns but keeps the image.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from typing import Any, TextIO

from PIL import Image

from .images import DEFAULT_MAX_PIXELS, load_image
from .inference import Completion, GenerationSettings, InfLlavaEngine

HELP = """commands:
  /image PATH   load another image (starts a new conversation)
  /reset        forget the conversation (keeps the image)
  /help         show this help
  /quit         leave (also Ctrl-D)"""


class ChatSession:
    """The turns of one conversation and its image."""

    def __init__(
        self,
        engine: InfLlavaEngine,
        settings: GenerationSettings | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        self.engine = engine
        self.settings = settings or GenerationSettings()
        self.max_image_pixels = max_image_pixels
        self.image: Image.Image | None = None
        self.messages: list[dict[str, Any]] = []

    def set_image(self, source: str | os.PathLike | bytes | Image.Image) -> None:
        """Load ``source`` (raises :class:`~inf_llava.errors.ImageError`) and start a new conversation with it."""
        self.image = load_image(source, max_pixels=self.max_image_pixels)
        self.messages = []

    def reset(self) -> None:
        self.messages = []

    def send(self, text: str) -> Generator[str, None, Completion]:
        """Add a user turn and stream the answer; the answer joins the conversation once complete.

        An error (e.g. the conversation outgrew the context) leaves the conversation as it was before the turn.
        """
        if not text.strip():
            raise ValueError("empty message")
        first = not self.messages
        content: list[dict[str, Any]] = [{"type": "image"}] if first and self.image is not None else []
        content.append({"type": "text", "text": text})
        messages = [*self.messages, {"role": "user", "content": content}]
        images = [self.image] if self.image is not None else []
        result = yield from self.engine.stream(messages, images, self.settings)
        self.messages = [*messages, {"role": "assistant", "content": result.text}]
        return result


def repl(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr):
    """Read lines from ``stdin`` until EOF or ``/quit``: commands or questions; answers stream to ``stdout``.

    Errors (a bad image, an over-long conversation) print one ``error: ...`` line to ``stderr`` and the session goes
    on. The ``> `` prompt is shown only on a terminal, so piped input gives just the answers, one per line.
    """
    interactive = stdin.isatty()
    if interactive:
        print("type a question, or /help for commands", file=stderr)
    while True:
        if interactive:
            stdout.write("> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        command, _, argument = line.partition(" ")
        try:
            if command in ("/quit", "/exit"):
                return
            if command == "/help":
                print(HELP, file=stderr)
            elif command == "/reset":
                session.reset()
                print("conversation reset", file=stderr)
            elif command == "/image":
                if not argument.strip():
                    raise ValueError("usage: /image PATH")
                session.set_image(argument.strip())
                print(
                    f"loaded {argument.strip()} ({session.image.width}x{session.image.height}); new conversation",
                    file=stderr,
                )
            elif command.startswith("/"):
                raise ValueError(f"unknown command {command} (try /help)")
            else:
                for piece in session.send(line):
                    stdout.write(piece)
                    stdout.flush()
                stdout.write("\n")
                stdout.flush()
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"error: {' '.join(str(exc).split())}", file=stderr)


__all__ = ["HELP", "ChatSession", "repl"]
