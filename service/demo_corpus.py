"""Demo corpus: a deterministic set of small articles in every supported format."""

from __future__ import annotations

import html
import json
import random
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEMO_PHRASE = "aurora lattice of quiet brokers"
# The document that holds DEMO_PHRASE when the corpus has at least 18 documents.
DEMO_PHRASE_FILE = "streaming-017.md"

_PHRASE_INDEX = 17
_EXTENSIONS = ("txt", "html", "md", "json", "pdf")
# Keeps DEMO_PHRASE on one line when paragraphs are wrapped; textwrap never breaks at it.
_PHRASE_GLUE = "\x1f"
_TEXT_WIDTH = 78
# PDF page layout, in points on an A4 page: 84 Helvetica characters at 11 pt fit in the margins.
_PDF_WRAP_CHARS = 84
_PDF_LINES_PER_PAGE = 48
_PDF_LEFT = 72
_PDF_TOP = 770
_PDF_LEADING = 14
_PDF_TITLE_LEADING = 28


@dataclass(frozen=True)
class _Topic:
    slug: str
    label: str
    subjects: tuple[str, ...]
    verbs: tuple[str, ...]
    objects: tuple[str, ...]
    settings: tuple[str, ...]
    headings: tuple[str, ...]
    titles: tuple[str, ...]


# Every subject is singular and every verb agrees with it, so any combination reads as a sentence.
# No topic uses the words of DEMO_PHRASE's rarer half ("aurora", "lattice"), which keeps a search
# for the phrase down to its one document.
_TOPICS: tuple[_Topic, ...] = (
    _Topic(
        slug="databases",
        label="Databases",
        subjects=(
            "the query planner", "a covering index", "the write-ahead log", "the vacuum process",
            "a careful schema migration", "the connection pool", "a partial index",
            "the buffer cache", "a long-running transaction", "the replica",
        ),
        verbs=(
            "shapes", "protects", "slows down", "speeds up", "hides", "depends on", "rewrites",
            "competes with", "reveals", "simplifies",
        ),
        objects=(
            "the hot rows of the orders table", "sequential scans over large tables",
            "lock contention during peak hours", "the cost estimates of every join",
            "crash recovery after a power loss", "the bloat left by frequent updates",
            "point lookups by primary key", "the nightly reporting queries",
            "checkpoint pressure on the disks", "foreign key checks on busy tables",
        ),
        settings=(
            "under heavy write load", "on a freshly restored backup", "when statistics are stale",
            "during a rolling upgrade", "on modest hardware", "long before anyone notices",
            "in most production clusters", "after a large bulk import",
        ),
        headings=(
            "Reading the plan", "Indexes that pay for themselves", "Living with MVCC",
            "Backups and recovery", "Tuning the pool", "When to denormalise",
        ),
        titles=(
            "Notes on query planning", "What the write-ahead log really does",
            "A practical guide to indexing", "Keeping Postgres healthy",
            "Lessons from a slow database",
        ),
    ),
    _Topic(
        slug="streaming",
        label="Streaming",
        subjects=(
            "the consumer group", "a compacted topic", "the partition leader",
            "an idempotent producer", "the offset commit", "a rebalance", "the retention policy",
            "a dead-letter topic", "the stream processor", "a transactional writer",
        ),
        verbs=(
            "guarantees", "delays", "orders", "absorbs", "duplicates", "isolates", "tracks",
            "throttles", "replays", "coordinates",
        ),
        objects=(
            "every event for a given key", "bursts of traffic from upstream services",
            "the lag of slow consumers", "messages that fail validation",
            "the position of each partition", "writes that span several topics",
            "the order of records within a partition", "late events from mobile clients",
            "the throughput of the whole pipeline", "records that arrive twice",
        ),
        settings=(
            "after a broker restart", "across a network partition", "at peak load",
            "when a consumer crashes mid-batch", "in a multi-tenant cluster",
            "without losing a single record", "during a rolling deployment",
            "under at-least-once delivery",
        ),
        headings=(
            "Partitions and keys", "Delivery guarantees", "Handling backpressure",
            "Rebalances without tears", "Exactly once, in practice", "Watching consumer lag",
        ),
        titles=(
            "Designing event pipelines", "Notes on consumer groups", "Kafka in production",
            "Thinking in streams", "Why offsets matter",
        ),
    ),
    _Topic(
        slug="gardening",
        label="Gardening",
        subjects=(
            "the compost heap", "a raised bed", "the tomato seedling", "a layer of mulch",
            "the rain barrel", "a row of beans", "the clay soil", "a hedge of lavender",
            "the early frost", "a patient gardener",
        ),
        verbs=(
            "feeds", "shelters", "attracts", "dries out", "improves", "crowds out", "protects",
            "needs", "tolerates", "rewards",
        ),
        objects=(
            "the roots of young plants", "bees and hoverflies", "the moisture in the topsoil",
            "slugs after a wet night", "the harvest of late summer", "weeds along the paths",
            "the structure of heavy ground", "seedlings on the windowsill",
            "the flavour of the fruit", "worms in the lower layers",
        ),
        settings=(
            "in early spring", "before the first frost", "after a long dry spell",
            "on a north-facing slope", "in a small city garden", "over several seasons",
            "when the nights are still cold", "in the shade of an old apple tree",
        ),
        headings=(
            "Preparing the soil", "Sowing and planting", "Watering wisely", "Living with pests",
            "Harvest and storage", "Planning next season",
        ),
        titles=(
            "A year in the vegetable patch", "Notes from the allotment", "Growing in small spaces",
            "The patient gardener", "Soil first",
        ),
    ),
    _Topic(
        slug="astronomy",
        label="Astronomy",
        subjects=(
            "the refracting telescope", "a dark-sky site", "the waxing moon",
            "a red dwarf star", "the Andromeda galaxy", "a meteor shower", "the star chart",
            "a patient observer", "the planetary nebula", "the eyepiece",
        ),
        verbs=(
            "reveals", "washes out", "magnifies", "outshines", "guides", "hides", "frames",
            "resolves", "rewards", "dims",
        ),
        objects=(
            "the rings of Saturn", "faint galaxies near the horizon",
            "the craters along the terminator",
            "double stars in Cygnus", "the glow of distant cities", "the moons of Jupiter",
            "the spiral arms of nearby galaxies", "the colour of Betelgeuse",
            "the path of the International Space Station", "the dust lanes of the Milky Way",
        ),
        settings=(
            "on a moonless night", "through thin cloud", "after an hour of dark adaptation",
            "from a suburban backyard", "high in the autumn sky", "just after sunset",
            "with a modest pair of binoculars", "in the cold hours before dawn",
        ),
        headings=(
            "Choosing a telescope", "Finding your way around the sky", "Observing the planets",
            "Deep-sky targets", "Keeping an observing log", "Weather and seeing",
        ),
        titles=(
            "A beginner's night sky", "Notes from the observing field",
            "Looking up from the city", "Seasons of the sky", "The patient observer",
        ),
    ),
    _Topic(
        slug="cooking",
        label="Cooking",
        subjects=(
            "a cast-iron pan", "the sourdough starter", "a slow braise", "the crème fraîche",
            "a pinch of salt", "the stock pot", "a sharp knife", "the oven thermostat",
            "a squeeze of lemon", "a wooden spoon",
        ),
        verbs=(
            "brightens", "deepens", "rescues", "transforms", "balances", "tenderises",
            "lifts", "sharpens", "softens", "carries",
        ),
        objects=(
            "the flavour of roasted vegetables", "a tough cut of beef", "a bland tomato sauce",
            "the crust of a country loaf", "the texture of a purée", "a weeknight dinner",
            "the sweetness of caramelised onions", "a pot of lentil soup",
            "the aroma of toasted spices", "the acidity of a vinaigrette",
        ),
        settings=(
            "on a cold winter evening", "with very little effort", "in a small kitchen",
            "when guests arrive early", "after a long day", "at the very last minute",
            "over a low flame", "with ingredients from the market",
        ),
        headings=(
            "Stocking the pantry", "Heat and timing", "Seasoning by taste", "Bread at home",
            "Cooking for a crowd", "Leftovers worth keeping",
        ),
        titles=(
            "Everyday cooking notes", "The weeknight kitchen", "Slow food, quickly",
            "Lessons from a small kitchen", "Cooking by ear",
        ),
    ),
    _Topic(
        slug="hiking",
        label="Hiking",
        subjects=(
            "the ridge trail", "a sturdy pair of boots", "the morning fog", "a paper map",
            "the mountain hut", "a sudden storm", "the steep descent", "a light rucksack",
            "the river crossing", "an early start",
        ),
        verbs=(
            "tests", "spares", "slows", "shapes", "rewards", "humbles", "protects", "hides",
            "shortens", "changes",
        ),
        objects=(
            "the knees of every walker", "the view across the valley", "the plan for the day",
            "tired legs on the last mile", "the path through the forest",
            "the timing of the whole route", "a group of cautious beginners",
            "the water supply for the afternoon", "the markers along the trail",
            "the mood of the party",
        ),
        settings=(
            "above the tree line", "in late autumn", "after heavy rain", "on a crowded weekend",
            "well before noon", "in the high summer heat", "on an unfamiliar route",
            "when the light begins to fade",
        ),
        headings=(
            "Planning the route", "Packing light", "Weather in the hills",
            "Navigation basics", "Walking in a group", "Leave no trace",
        ),
        titles=(
            "Notes from the trail", "Walking the high country", "A season of long walks",
            "Hiking without hurry", "The slow ascent",
        ),
    ),
    _Topic(
        slug="music",
        label="Music",
        subjects=(
            "the string quartet", "a steady metronome", "the second movement", "a good teacher",
            "the concert hall", "a slow practice session", "the bass line", "a borrowed violin",
            "the final chorus", "a patient student",
        ),
        verbs=(
            "carries", "shapes", "reveals", "steadies", "colours", "softens", "drives",
            "frames", "rewards", "tests",
        ),
        objects=(
            "the phrasing of the melody", "the tempo of the whole piece", "a nervous performer",
            "the balance between the voices", "the quiet passages", "the attention of the audience",
            "the tuning of the open strings", "the harmony in the middle section",
            "the rhythm of the dance", "weeks of careful rehearsal",
        ),
        settings=(
            "in a small rehearsal room", "on the night of the concert", "after months of practice",
            "in a resonant church", "at a slower tempo", "without any written score",
            "in front of a full house", "when the hall is nearly empty",
        ),
        headings=(
            "Practising with purpose", "Listening closely", "Playing together",
            "Before the performance", "Reading the score", "Finding your sound",
        ),
        titles=(
            "Notes from the practice room", "On ensemble playing", "Learning an instrument late",
            "The art of rehearsal", "Listening to the quiet parts",
        ),
    ),
    _Topic(
        slug="woodworking",
        label="Woodworking",
        subjects=(
            "a sharp chisel", "the workbench", "a hand plane", "the dovetail joint",
            "the oak board", "a coat of linseed oil", "the marking gauge", "a dull saw",
            "the glue-up", "a careful apprentice",
        ),
        verbs=(
            "reveals", "ruins", "steadies", "strengthens", "protects", "splits", "guides",
            "smooths", "tests", "rewards",
        ),
        objects=(
            "the grain of the timber", "the edges of the drawer front", "a wobbly table leg",
            "the shoulders of a tenon", "the finish of a walnut box", "the accuracy of every cut",
            "the patience of the maker", "the joints of an old chair",
            "the surface of a rough board", "the fit of a sliding lid",
        ),
        settings=(
            "in a cold workshop", "after the wood has acclimatised", "with simple hand tools",
            "over a long weekend", "on the first attempt", "in humid summer weather",
            "before the final assembly", "with a little practice",
        ),
        headings=(
            "Choosing timber", "Sharpening", "Cutting joints", "Glue and clamps",
            "Finishing", "Setting up a small shop",
        ),
        titles=(
            "Notes from the workbench", "Hand tools for beginners", "Building a simple box",
            "The slow craft", "Working with the grain",
        ),
    ),
)  # fmt: skip

_SENTENCE_TEMPLATES = (
    "{s} {v} {o} {m}.",
    "In practice, {s} {v} {o}, which is why {s2} {v2} {o2}.",
    "It is worth noting that {s} {v} {o} {m}.",
    "Few people expect that {s} {v} {o}.",
    "Over time, {s} {v} {o} {m}, and {s2} {v2} {o2}.",
    "A common mistake is to assume that {s} {v} {o}; in fact, {s2} {v2} {o2} {m}.",
    "{s}, for example, {v} {o} {m}.",
    "If {s} {v} {o}, then {s2} {v2} {o2}.",
    "Experienced hands will tell you that {s} {v} {o} {m}.",
    "This is also where {s} {v} {o}.",
)
_TITLE_SUFFIXES = (
    "", "", ": a field guide", ", revisited", ": what we learned", " for beginners",
    ": common mistakes", ", part two",
)  # fmt: skip
_AUTHORS = (
    "Ada Okafor", "Bruno Lindqvist", "Chen Wei", "Dalia Haddad", "Emil Novak", "Farah Qureshi",
    "Greta Moreau", "Hiro Tanaka", "Inés Castillo", "Jonas Berg",
)  # fmt: skip
_PHRASE_SENTENCE = (
    "Some operators describe a well-balanced cluster as an {phrase}, and the name has stuck: "
    "nothing flashy, just steady light from many small parts."
)


@dataclass(frozen=True)
class _Section:
    heading: str
    paragraphs: tuple[str, ...]
    points: tuple[str, ...]


@dataclass(frozen=True)
class _Article:
    name: str
    title: str
    topic: _Topic
    author: str
    published: str
    sections: tuple[_Section, ...]


def write_corpus(directory: Path, count: int = 240, seed: int = 7) -> list[Path]:
    """Write `count` demo documents into `directory` and return their paths in order."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    directory.mkdir(parents=True, exist_ok=True)
    phrase_index = min(_PHRASE_INDEX, count - 1)
    paths: list[Path] = []
    for index in range(count):
        article = _make_article(index, seed, with_phrase=index == phrase_index)
        path = directory / article.name
        path.write_bytes(_render(article))
        paths.append(path)
    return paths


def render_pdf(title: str, paragraphs: Sequence[str]) -> bytes:
    """Return a minimal PDF 1.4 (Helvetica, WinAnsi text) showing a title and paragraphs."""
    lines: list[str | None] = []  # None is a blank line between paragraphs
    for paragraph in paragraphs:
        if lines:
            lines.append(None)
        lines.extend(_wrap(paragraph, _PDF_WRAP_CHARS))
    pages: list[list[str | None]] = [[]]
    for line in lines:
        if len(pages[-1]) == _PDF_LINES_PER_PAGE:
            pages.append([])
        if line is not None or pages[-1]:  # no page starts with a blank line
            pages[-1].append(line)

    # Object numbers: 1 catalog, 2 page tree, 3-4 fonts, 5 info, then (page, content) pairs.
    first_page = 6
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(len(pages)))
        + b"] /Count %d >>" % len(pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Title " + _pdf_string(title) + b" /Producer (kb-ingest demo corpus) >>",
    ]
    for number, page_lines in enumerate(pages):
        stream = _pdf_page_stream(title if number == 0 else None, page_lines)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> "
            b"/Contents %d 0 R >>" % (first_page + 2 * number + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_offset = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 5 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_offset
    return bytes(out)


def _pdf_page_stream(title: str | None, lines: Sequence[str | None]) -> bytes:
    ops = [b"BT", b"%d %d Td" % (_PDF_LEFT, _PDF_TOP)]
    if title is not None:
        ops += [b"/F2 16 Tf", _pdf_string(title) + b" Tj", b"0 -%d Td" % _PDF_TITLE_LEADING]
    ops.append(b"/F1 11 Tf")
    for line in lines:
        if line is not None:
            ops.append(_pdf_string(line) + b" Tj")
        ops.append(b"0 -%d Td" % _PDF_LEADING)
    ops.append(b"ET")
    return b"\n".join(ops)


def _pdf_string(text: str) -> bytes:
    """Return text as a PDF literal string in WinAnsi encoding, in plain ASCII bytes."""
    out = bytearray(b"(")
    for byte in text.encode("cp1252", errors="replace"):
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif 32 <= byte < 127:
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    out += b")"
    return bytes(out)


def _make_article(index: int, seed: int, *, with_phrase: bool) -> _Article:
    # One generator per document: a document does not change when `count` does.
    rng = random.Random(f"kb-ingest-demo:{seed}:{index}")
    topic = _TOPICS[index % len(_TOPICS)]
    extension = _EXTENSIONS[index % len(_EXTENSIONS)]
    title = rng.choice(topic.titles) + rng.choice(_TITLE_SUFFIXES)
    target_chars = rng.randint(1200, 4000)
    headings = rng.sample(topic.headings, k=len(topic.headings))
    sections: list[_Section] = []
    written = 0
    while written < target_chars and headings:
        paragraphs = [_paragraph(rng, topic) for _ in range(rng.randint(1, 3))]
        if with_phrase and not sections:
            paragraphs.insert(1, _PHRASE_SENTENCE.format(phrase=DEMO_PHRASE))
        points: tuple[str, ...] = ()
        if rng.random() < 0.35:
            points = tuple(
                _capitalize(f"{obj} {setting}")
                for obj, setting in zip(
                    rng.sample(topic.objects, k=3), rng.sample(topic.settings, k=3), strict=True
                )
            )
        section = _Section(headings.pop(), tuple(paragraphs), points)
        sections.append(section)
        written += sum(len(text) for text in (section.heading, *paragraphs, *points))
    return _Article(
        name=f"{topic.slug}-{index:03d}.{extension}",
        title=title,
        topic=topic,
        author=rng.choice(_AUTHORS),
        published=f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        sections=tuple(sections),
    )


def _paragraph(rng: random.Random, topic: _Topic) -> str:
    sentences = []
    for _ in range(rng.randint(3, 6)):
        template = rng.choice(_SENTENCE_TEMPLATES)
        # Distinct picks, so that one sentence does not name the same thing twice.
        s, s2 = rng.sample(topic.subjects, k=2)
        v, v2 = rng.sample(topic.verbs, k=2)
        o, o2 = rng.sample(topic.objects, k=2)
        sentence = template.format(s=s, v=v, o=o, m=rng.choice(topic.settings), s2=s2, v2=v2, o2=o2)
        sentences.append(_capitalize(sentence))
    return " ".join(sentences)


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _wrap(paragraph: str, width: int) -> list[str]:
    glued = paragraph.replace(DEMO_PHRASE, DEMO_PHRASE.replace(" ", _PHRASE_GLUE))
    return [line.replace(_PHRASE_GLUE, " ") for line in textwrap.wrap(glued, width)]


def _render(article: _Article) -> bytes:
    extension = article.name.rsplit(".", 1)[1]
    if extension == "pdf":
        return _render_pdf(article)
    renderers = {"txt": _render_txt, "md": _render_md, "html": _render_html, "json": _render_json}
    return renderers[extension](article).encode("utf-8")


def _byline(article: _Article) -> str:
    return f"{article.topic.label} · {article.published} · by {article.author}"


def _render_txt(article: _Article) -> str:
    blocks = [f"{article.title}\n{'=' * len(article.title)}", _byline(article)]
    for section in article.sections:
        blocks.append(f"{section.heading}\n{'-' * len(section.heading)}")
        blocks.extend("\n".join(_wrap(p, _TEXT_WIDTH)) for p in section.paragraphs)
        if section.points:
            blocks.append("\n".join(f"  * {point}" for point in section.points))
    return "\n\n".join(blocks) + "\n"


def _render_md(article: _Article) -> str:
    blocks = [f"# {article.title}", f"*{_byline(article)}*"]
    for section in article.sections:
        blocks.append(f"## {section.heading}")
        blocks.extend(section.paragraphs)
        if section.points:
            blocks.append("\n".join(f"- {point}" for point in section.points))
    return "\n\n".join(blocks) + "\n"


def _render_html(article: _Article) -> str:
    e = html.escape
    body = [
        f"<h1>{e(article.title)}</h1>",
        f'<p class="byline">By {e(article.author)} on <time>{article.published}</time></p>',
    ]
    for section in article.sections:
        body.append(f"<h2>{e(section.heading)}</h2>")
        body.extend(f"<p>{e(p)}</p>" for p in section.paragraphs)
        if section.points:
            items = "".join(f"<li>{e(point)}</li>" for point in section.points)
            body.append(f"<ul>{items}</ul>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{e(article.title)}</title>",
            "<style>body { font-family: Georgia, serif; max-width: 40em; margin: auto; }</style>",
            '<script>window.pageviews = (window.pageviews || 0) + 1; track("view");</script>',
            "</head>",
            "<body>",
            f'<nav><a href="/">Home</a> | <a href="/topics/{article.topic.slug}">'
            f"{e(article.topic.label)}</a></nav>",
            "<article>",
            *body,
            "</article>",
            "<!-- rendered by the kb-ingest demo corpus -->",
            "<footer><p>Demo notes, shared for testing.</p></footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _render_json(article: _Article) -> str:
    document = {
        "kind": "article",
        "title": article.title,
        "topic": article.topic.label,
        "author": article.author,
        "published": article.published,
        "reading_minutes": max(1, sum(len(s.paragraphs) for s in article.sections) // 2),
        "draft": False,
        "sections": [
            {"heading": s.heading, "paragraphs": list(s.paragraphs), "points": list(s.points)}
            for s in article.sections
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _render_pdf(article: _Article) -> bytes:
    paragraphs = [_byline(article)]
    for section in article.sections:
        paragraphs.append(section.heading)
        paragraphs.extend(section.paragraphs)
        paragraphs.extend(f"- {point}" for point in section.points)
    return render_pdf(article.title, paragraphs)
