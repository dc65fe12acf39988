"""A tiny deterministic training set: questions about made-up facts and their passages."""

from __future__ import annotations

import json
from pathlib import Path

TOPICS = [
    ("volcano", "erupts with molten rock from deep underground"),
    ("glacier", "moves slowly down the valley as packed ice"),
    ("library", "lends books and quiet rooms to its readers"),
    ("bakery", "sells fresh bread and pastries every morning"),
    ("harbour", "shelters ships and fishing boats from storms"),
    ("orchard", "grows apple and pear trees in neat rows"),
    ("telescope", "gathers light to show distant stars and planets"),
    ("bicycle", "has two wheels, pedals and a chain drive"),
    ("violin", "is a string instrument played with a bow"),
    ("compass", "points north using a magnetised needle"),
    ("beehive", "houses a colony of bees making honey"),
    ("lighthouse", "guides sailors at night with a rotating lamp"),
    ("desert", "receives very little rain and has sand dunes"),
    ("thermometer", "measures how hot or cold something is"),
    ("windmill", "turns wind into power to grind grain"),
    ("submarine", "travels underwater for long voyages"),
    ("kettle", "boils water for tea on the stove"),
    ("rainforest", "is a dense tropical woodland with heavy rain"),
    ("calendar", "organises days, weeks and months of the year"),
    ("microscope", "magnifies tiny cells and organisms"),
    ("parachute", "slows a fall through the air with fabric"),
    ("anchor", "holds a ship in place on the sea floor"),
    ("candle", "burns a wick in wax to give light"),
    ("tractor", "pulls ploughs and trailers on farms"),
]


def rows() -> list[dict]:
    out = []
    for i, (name, fact) in enumerate(TOPICS):
        other = TOPICS[(i + 7) % len(TOPICS)]
        out.append({"query": f"what does a {name} do",
                    "positive": f"A {name} {fact}.",
                    "negatives": [f"A {other[0]} {other[1]}."]})
        out.append({"query": f"tell me about the {name}",
                    "positive": f"The {name}: it {fact}, as everyone knows."})
    return out


def write_pairs(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    return path
