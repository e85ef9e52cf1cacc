"""Seeded synthetic entries for size and scale tests (realistic lengths, no real facts)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import yaml

WORDS = ("atrocity prevention civil society dialogue protection civilians accountability justice "
         "memory reconciliation early warning human rights research policy community panel "
         "webinar discussion practitioners scholars regional international response risk").split()
ZONES = ("America/New_York", "Europe/Berlin", "Africa/Nairobi", "Asia/Bangkok", "America/Bogota", "UTC")


def sentence(rng: random.Random, low: int, high: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + "."


def description(rng: random.Random) -> str:
    target = rng.randint(400, 1200)
    paragraphs, length = [], 0
    while length < target:
        paragraph = " ".join(sentence(rng, 8, 18) for _ in range(rng.randint(2, 4)))
        paragraphs.append(paragraph)
        length += len(paragraph)
    return "\n\n".join(paragraphs)[:target].rsplit(" ", 1)[0] + "."


def write_week(root: Path, monday: date, count: int, seed: int = 1, organizers: int = 6) -> list[Path]:
    """COUNT events spread over the week of MONDAY, under ROOT/entries/synthetic/."""
    rng = random.Random(seed)
    folder = root / "entries" / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        day = monday + timedelta(days=rng.randint(0, 6))
        hour = rng.randint(7, 18)
        fields = {
            "title": sentence(rng, 4, 10).rstrip("."),
            "organizer": f"Organizer {rng.randint(1, organizers)} for {rng.choice(WORDS).title()} Studies",
            "start": f"{day.isoformat()} {hour:02d}:00",
            "end": f"{day.isoformat()} {hour + 1:02d}:30",
            "timezone": rng.choice(ZONES),
            "location": rng.choice(["Online", "Geneva, Palais des Nations", "Nairobi and online"]),
            "online": True,
            "register": f"https://events.example.org/register/{seed}-{index}",
            "register_by": (day - timedelta(days=rng.randint(0, 5))).isoformat(),
            "speakers": [{"name": f"Dr. Speaker {index}-{s}", "role": f"{rng.choice(WORDS).title()} Institute"}
                         for s in range(rng.randint(0, 5))],
            "tags": [rng.choice(WORDS)],
        }
        path = folder / f"{seed}-{index:04d}.md"
        path.write_text("---\n" + yaml.safe_dump(fields, sort_keys=False) + "---\n" + description(rng) + "\n",
                        encoding="utf-8")
        paths.append(path)
    return paths
