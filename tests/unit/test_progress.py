"""Progress ends on its final state, on a terminal and in a pipe (issue 35 item 6)."""

from __future__ import annotations

import io

from citybrain.kafka.reading import read_note
from citybrain.progress import Progress


class FakeStream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def screen(text: str) -> list[str]:
    """What a terminal shows: each carriage return redraws the line."""
    return [line.split("\r")[-1].replace("\033[K", "") for line in text.split("\n")]


def test_pipe_throttled_then_closed_prints_the_final_line():
    out = FakeStream(tty=False)
    p = Progress("读取 reading t", total=2973, every=3600, stream=out)
    p.update(100, "100/2,973", force=True)
    p.update(2596, "2,596/2,973")          # throttled: not printed
    p.close(2973, "2,973/2,973")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "100.0%" in lines[-1] and lines[-1].endswith("2,973/2,973")
    assert "█" * 24 in lines[-1]


def test_pipe_close_draws_the_last_update_once():
    out = FakeStream(tty=False)
    p = Progress("t", total=10, every=3600, stream=out)
    p.update(3, "3/10", force=True)
    p.update(10, "10/10")                  # throttled
    p.close()
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("3/10") and lines[1].endswith("10/10") and "100.0%" in lines[1]


def test_pipe_no_duplicate_when_the_final_state_is_on_screen():
    out = FakeStream(tty=False)
    p = Progress("t", total=10, every=3600, stream=out)
    p.update(10, "10/10", force=True)
    p.close(10, "10/10")
    assert len(out.getvalue().splitlines()) == 1


def test_tty_ends_on_the_final_state_and_a_newline():
    out = FakeStream(tty=True)
    p = Progress("读取 reading t", total=2973, stream=out)
    p.update(100, "100/2,973", force=True)
    p.update(2596, "2,596/2,973")          # within 0.2 s: throttled
    p.close(2973, "2,973/2,973")
    text = out.getvalue()
    assert text.endswith("\n")
    shown = [line for line in screen(text) if line]
    assert len(shown) == 1
    assert "100.0%" in shown[0] and shown[0].endswith("2,973/2,973")


def test_nothing_drawn_nothing_printed():
    out = FakeStream(tty=True)
    Progress("t", total=5, stream=out).close()
    assert out.getvalue() == ""


def test_read_note():
    assert read_note(521, 521, 0) == "521/521"
    assert read_note(500, 521, 0) == "500 records in 521 offsets"
    assert read_note(10, 521, 511) == "10/521 (stopped early)"
