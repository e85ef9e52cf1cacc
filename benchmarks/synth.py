"""A seeded synthetic newsletter: realistic entries for benchmarks and tests.

`make_newsletter(root, weeks=52, per_week=20, seed=7)` writes ROOT/digest.toml and
ROOT/entries/<year>/<slug>.md. The same seed always gives the same bytes.
Descriptions run 400–1200 characters of Markdown (paragraphs, links, emphasis, a list
now and then), events have 0–5 speakers, a week has 1–8 organizers, and time zones
are the ones a real listing uses (New York, Geneva, Nairobi, Bangkok, …).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

FIRST_WEEK = date(2020, 1, 6)  # a Monday: 2020-W02

ZONES = ("America/New_York", "America/New_York", "America/New_York", "Europe/London", "Europe/Zurich",
         "Europe/Berlin", "Africa/Nairobi", "Asia/Bangkok", "America/Los_Angeles", "Asia/Tokyo",
         "America/Sao_Paulo", "Australia/Sydney", "UTC")
ORGANIZERS = (
    "United Nations Office on Genocide Prevention and the Responsibility to Protect",
    "Budapest Centre for Mass Atrocities Prevention", "Impunity Watch", "FXB Center for Health and Human Rights",
    "Global Centre for the Responsibility to Protect", "Auschwitz Institute for Peace and Reconciliation",
    "Stanley Center for Peace and Security", "Asia Pacific Centre for the Responsibility to Protect",
    "International Coalition for the Responsibility to Protect", "Simon-Skjodt Center for the Prevention of Genocide",
    "Institute for the Study of Genocide", "Minority Rights Group International", "Protection Approaches",
    "Sentinel Project", "Early Warning Project", "African Union Commission",
)
FIRST = ("Amina", "Jonas", "Priya", "Carlos", "Mei", "Olena", "Kwame", "Sofia", "Tomás", "Leila", "Ahmed", "Ingrid",
         "Zoë", "Dmitri", "Nadia", "Samuel")
LAST = ("Okafor", "Müller", "Sharma", "Gutiérrez", "Chen", "Kovalenko", "Mensah", "Rossi", "Novák", "Haddad",
        "Rahman", "Lindqvist", "Dubois", "Ivanov", "Farouk", "Adeyemi")
ROLES = ("Special Adviser", "Director, Programme on Prevention", "Professor of International Law",
         "Senior Researcher", "Executive Director", "Ambassador", "Journalist", "")
WORDS = ("prevention atrocity crimes genocide responsibility protect early warning civil society regional "
         "mechanisms accountability justice transitional memory reconciliation minorities hate speech "
         "populations risk factors mediation peacebuilding humanitarian access documentation evidence "
         "survivors communities policy practitioners international cooperation dialogue resilience").split()
TOPICS = ("hate speech", "early warning", "transitional justice", "the responsibility to protect",
          "memorialisation", "minority rights", "documentation of atrocity crimes", "mediation",
          "refugee protection", "sanctions and accountability")
FORMATS = ("Webinar", "Panel discussion", "Online course", "Book launch", "Roundtable", "Lecture", "Workshop")
LOCATIONS = ("Online", "Online (Zoom)", "Palais des Nations, Geneva", "UN Headquarters, New York",
             "Nairobi and online", "Bangkok", "Online (Microsoft Teams)", "")

CONFIG = """\
name = "Synthetic Prevention Events"
tagline = "A generated newsletter for benchmarks"
language = "en"
timezone = "America/New_York"
week_start = "monday"
empty_weeks = "skip"
ahead_weeks = 4
sender = "Synthetic Events <events@example.org>"
reply_to = "editors@example.org"
list_id = "synthetic.example.org"
base_url = "https://events.example.org/"
profile = "smtp"
unsubscribe_url = "https://events.example.org/unsubscribe?token={token}"
postal_address = "Synthetic Events, 1 Example Street, Example City"
"""


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
    if rng.random() < 0.2:
        i = rng.randrange(len(words))
        words[i] = f"[{words[i]}](https://example.org/{rng.choice(WORDS)}/{rng.randint(1, 999)})"
    if rng.random() < 0.15:
        i = rng.randrange(len(words))
        words[i] = f"**{words[i]}**"
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def description(rng: random.Random) -> str:
    """400–1200 characters of Markdown."""
    target = rng.randint(400, 1200)
    paragraphs: list[str] = []
    size = 0
    while size < target:
        if paragraphs and rng.random() < 0.15:
            items = [f"- {_sentence(rng)}" for _ in range(rng.randint(2, 4))]
            chunk = "\n".join(items)
        else:
            chunk = " ".join(_sentence(rng) for _ in range(rng.randint(2, 4)))
        room = target - size
        if len(chunk) > room and paragraphs:
            chunk = chunk[:room].rsplit(" ", 1)[0].rstrip(",;:-*[]()") + "."
        paragraphs.append(chunk)
        size += len(chunk) + 2
    return "\n\n".join(paragraphs)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def entry(rng: random.Random, day: date, organizers: list[str], index: int) -> tuple[str, str]:
    """(file name, file text) of one event on DAY."""
    fmt = rng.choice(FORMATS)
    topic = rng.choice(TOPICS)
    title = f"{fmt} on {topic}: {rng.choice(WORDS)} and {rng.choice(WORDS)} ({index})"
    zone = rng.choice(ZONES)
    lines = ["---", f"title: {_quote(title)}", f"organizer: {_quote(rng.choice(organizers))}"]
    if rng.random() < 0.08:
        lines.append(f"start: {day.isoformat()}")
        if rng.random() < 0.5:
            lines.append(f"end: {(day + timedelta(days=rng.randint(1, 2))).isoformat()}")
    else:
        hour = rng.randint(7, 18)
        minute = rng.choice((0, 0, 15, 30, 45))
        length = rng.choice((60, 90, 90, 120, 180))
        end_h, end_m = divmod(hour * 60 + minute + length, 60)
        lines.append(f"start: {day.isoformat()} {hour:02d}:{minute:02d}")
        if end_h < 24:
            lines.append(f"end: {day.isoformat()} {end_h:02d}:{end_m:02d}")
        lines.append(f"timezone: {zone}")
    location = rng.choice(LOCATIONS)
    if location:
        lines.append(f"location: {_quote(location)}")
    if "Online" in location:
        lines.append("online: true")
    if rng.random() < 0.85:
        lines.append(f"register: https://events.example.org/register/{day:%Y%m%d}-{index}")
    if rng.random() < 0.3:
        lines.append(f"register_by: {(day - timedelta(days=rng.randint(0, 5))).isoformat()}")
    speakers = rng.randint(0, 5)
    if speakers:
        lines.append("speakers:")
        for _ in range(speakers):
            lines.append(f"  - name: {_quote(rng.choice(FIRST) + ' ' + rng.choice(LAST))}")
            role = rng.choice(ROLES)
            if role:
                lines.append(f"    role: {_quote(role)}")
    lines.append(f"tags: [{topic.replace(' ', '-').replace('the-', '')}]")
    lines.append("---")
    name = f"{day.isoformat()}-{index:05d}.md"
    return name, "\n".join(lines) + "\n" + description(rng) + "\n"


def make_newsletter(root: Path, *, weeks: int = 52, per_week: int = 20, seed: int = 7,
                    start: date = FIRST_WEEK) -> list[str]:
    """Write a whole newsletter under ROOT; return the week labels that have events."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "digest.toml").write_text(CONFIG, encoding="utf-8")
    labels = []
    index = 0
    for week in range(weeks):
        monday = start + timedelta(days=7 * week)
        organizers = rng.sample(ORGANIZERS, rng.randint(1, 8))
        for _ in range(per_week):
            index += 1
            day = monday + timedelta(days=rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5)))
            name, text = entry(rng, day, organizers, index)
            folder = root / "entries" / str(day.year)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
        year, number, _ = monday.isocalendar()
        labels.append(f"{year}-W{number:02d}")
    return labels
