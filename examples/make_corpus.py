"""Write examples/docs.jsonl: 300 short self-written documents on five themes (cooking,
astronomy, sailing, gardening, music), the corpus of the README's walk-through (k=5).

Each document mixes one main theme (about 80% of its content words) with a second one,
joined by common English words that the default stop-word list removes. Seeded, so the
file is the same on every run:  python examples/make_corpus.py
"""
from __future__ import annotations

import json
import random
from pathlib import Path

THEMES = {
    "cooking": "oven recipe flour butter sugar dough bake garlic onion pepper simmer sauce kitchen chef "
               "knife roast soup salt spoon skillet",
    "astronomy": "telescope planet orbit galaxy star comet nebula moon jupiter saturn eclipse meteor "
                 "astronomer observatory lens gravity asteroid constellation cosmos sky",
    "sailing": "boat sail wind harbor anchor mast hull deck crew tide keel rudder voyage sailor "
               "compass knot mooring yacht breeze captain",
    "gardening": "garden soil seed compost tomato shovel weed bloom rose tulip mulch prune hedge "
                 "watering sprout greenhouse orchard fertilizer bulb lawn",
    "music": "guitar piano melody chord rhythm drum violin concert orchestra tempo song singer "
             "harmony choir band symphony note lyric album rehearsal",
}
GLUE = "the a and of to in on with for at by from this that it was is we they our".split()


def document(rng: random.Random) -> str:
    main, second = rng.sample(sorted(THEMES), 2)
    words = []
    for _ in range(rng.randint(12, 20)):
        theme = main if rng.random() < 0.8 else second
        words.append(rng.choice(THEMES[theme].split()))
        if rng.random() < 0.6:
            words.append(rng.choice(GLUE))
    return " ".join(words).capitalize() + "."


def main() -> None:
    rng = random.Random(0)
    path = Path(__file__).with_name("docs.jsonl")
    with open(path, "w", encoding="utf-8") as out:
        for i in range(300):
            out.write(json.dumps({"id": f"doc-{i:03d}", "text": document(rng)}) + "\n")
    print(path)


if __name__ == "__main__":
    main()
