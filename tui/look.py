"""How the app looks on the terminal it is given: a bare Linux console or a modern terminal.

A Linux console (TERM=linux) has 16 colours and a font that may lack box drawing and block
elements. There the app uses a theme of ANSI colours (the console's own palette, so every
colour is one the console has) and an output filter that turns every character outside ASCII
into an ASCII one of the same width: borders become +-|, blocks become # or spaces, arrows
become ^v<>. Anything else gets the full-colour theme and Unicode borders.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from textual.color import Color
from textual.filter import LineFilter
from textual.theme import Theme

# Terminals whose font cannot be trusted with box drawing, or that have 16 colours at most.
CONSOLE_TERMS = ("linux", "vt100", "vt102", "vt220", "ansi", "cons25", "dumb")

APPLIANCE_THEME = Theme(
    name="appliance",
    primary="#2f7fd8",
    secondary="#3aa6a6",
    accent="#e0a030",
    warning="#e0a030",
    error="#e04848",
    success="#48b060",
    foreground="#e6e6e6",
    background="#101418",
    surface="#182028",
    panel="#22303c",
    dark=True,
)

CONSOLE_THEME = Theme(
    name="appliance-console",
    ansi=True,
    primary="ansi_blue",
    secondary="ansi_cyan",
    accent="ansi_bright_yellow",
    warning="ansi_yellow",
    error="ansi_bright_red",
    success="ansi_green",
    foreground="ansi_default",
    background="ansi_default",
    surface="ansi_default",
    panel="ansi_default",
    boost="ansi_default",
    dark=True,
    variables={
        "ansi-background": "ansi_black",
        "ansi-foreground": "ansi_white",
        "border-blurred": "ansi_white",
        "block-cursor-foreground": "ansi_black",
        "block-cursor-background": "ansi_bright_white",
        "block-cursor-blurred-foreground": "ansi_black",
        "block-cursor-blurred-background": "ansi_white",
        "input-cursor-background": "ansi_bright_white",
        "input-cursor-foreground": "ansi_black",
        "input-selection-background": "ansi_blue",
        "footer-key-foreground": "ansi_bright_yellow",
        "footer-background": "ansi_default",
        "text-muted": "ansi_white",
    },
)


@dataclass(frozen=True)
class Look:
    """The terminal's abilities as the app uses them."""

    ascii: bool  # only ASCII characters reach the terminal
    console: bool  # 16 colours: the ANSI theme

    @property
    def theme(self) -> str:
        return CONSOLE_THEME.name if self.console else APPLIANCE_THEME.name


def detect(
    environ: dict[str, str] | None = None, *, ascii: bool | None = None, console: bool | None = None
) -> Look:
    """The look for this terminal; APPLIANCE_TUI_ASCII / APPLIANCE_TUI_CONSOLE = 1 or 0
    (or the arguments) override what TERM and the locale suggest."""
    env = dict(os.environ) if environ is None else environ
    term = env.get("TERM", "")
    is_console = term in CONSOLE_TERMS or term.startswith("linux")
    locale = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or ""
    utf8 = "utf-8" in locale.lower() or "utf8" in locale.lower()
    want_ascii = is_console or not utf8
    if env.get("APPLIANCE_TUI_ASCII") in ("0", "1"):
        want_ascii = env["APPLIANCE_TUI_ASCII"] == "1"
    if env.get("APPLIANCE_TUI_CONSOLE") in ("0", "1"):
        is_console = env["APPLIANCE_TUI_CONSOLE"] == "1"
    return Look(
        ascii=want_ascii if ascii is None else ascii,
        console=is_console if console is None else console,
    )


_FIXED = {
    "\u2191": "^",
    "\u2193": "v",
    "\u2190": "<",
    "\u2192": ">",
    "\u25b2": "^",
    "\u25bc": "v",
    "\u25b6": ">",
    "\u25c0": "<",
    "\u2026": ".",
    "\u2022": "*",
    "\u25cf": "*",
    "\u2713": "v",
    "\u2717": "x",
    "\u00d7": "x",
    "\u00b7": ".",
    "\u2588": "#",
    "\u2014": "-",
    "\u2013": "-",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u00a0": " ",
    "\u23ce": "~",
    "\u2591": ".",
    "\u2592": ":",
    "\u2593": "#",
    "\u25a0": "#",
    "\u2b58": "o",
    "\U0001f4c1": "> ",  # the file tree's closed folder (two cells wide)
    "\U0001f4c2": "v ",  # its open folder
    "\U0001f4c4": "  ",  # its file
}


@lru_cache(maxsize=4096)
def ascii_char(char: str) -> str:
    """One ASCII string as wide as `char` on the terminal."""
    if char.isascii():
        return char
    if char in _FIXED:
        return _FIXED[char]
    width = max(cell_len(char), 0)
    if width == 0:
        return ""  # combining marks, zero-width joiners
    name = unicodedata.name(char, "")
    if name.startswith("BOX DRAWINGS"):
        horizontal = "HORIZONTAL" in name or "LEFT" in name or "RIGHT" in name
        vertical = "VERTICAL" in name or " UP" in name or "DOWN" in name
        if "HORIZONTAL" in name and "VERTICAL" not in name and " AND " not in name:
            out = "=" if "DOUBLE" in name else "-"
        elif "VERTICAL" in name and "HORIZONTAL" not in name and " AND " not in name:
            out = "|"
        elif horizontal and vertical:
            out = "+"
        else:
            out = "-" if horizontal else "|"
        return out * width
    if name.startswith(("UPPER", "LOWER")) and "BLOCK" in name:
        return " " * width  # thin edges of "tall" borders and scroll bars
    if name.startswith(("LEFT", "RIGHT")) and "BLOCK" in name:
        return "|" * width
    if name.startswith("QUADRANT") or "BLOCK" in name:
        return "#" * width
    decomposed = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    if len(decomposed) == width and decomposed.isprintable():
        return decomposed  # é -> e
    return "?" * width


def to_ascii(text: str) -> str:
    if text.isascii():
        return text
    return "".join(ascii_char(char) for char in text)


class AsciiFilter(LineFilter):
    """Replace every non-ASCII character of the rendered screen with an ASCII one."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        out: list[Segment] = []
        for segment in segments:
            text = segment.text
            if segment.control or text.isascii():
                out.append(segment)
            else:
                out.append(Segment(to_ascii(text), segment.style, segment.control))
        return out


ASCII_KEYS = {
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "enter": "Enter",
    "escape": "Esc",
    "backspace": "BkSp",
    "tab": "Tab",
    "space": "Space",
    "delete": "Del",
}


def key_label(key: str) -> str:
    """How a binding's key is written in the footer: plain words, never symbols."""
    parts = key.split("+")
    name = ASCII_KEYS.get(parts[-1], parts[-1])
    if parts[:-1] == ["ctrl"]:
        return f"^{name.upper()}"
    if len(parts) > 1:
        return "+".join([*(p.capitalize() for p in parts[:-1]), name])
    return name
