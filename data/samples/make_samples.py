"""Writes the project's own sample data: `python -m data.samples.make_samples`.

Every sentence and fact is generated here from word lists and tables written for this project, so the
quick start and the tests need no download and carry no third-party text. The output is deterministic
(fixed seeds); a test checks that the committed files equal what this script writes.

- `sentiment/{train,validation}.tsv`: short movie-review sentences, `sentence<TAB>label` (0 negative,
  1 positive), balanced, including negated phrases so a bag of words is not enough.
- `closed_book_qa/{train,validation}.jsonl`: NQ-open form `{"question": ..., "answer": [...]}`.
- `lm/{train,validation}.txt`: a small word-level corpus of simple English sentences.
"""

import json
import random
from pathlib import Path

from . import SAMPLES_DIR

_SUBJECTS = [
    "the film",
    "this movie",
    "the acting",
    "the script",
    "the soundtrack",
    "the ending",
    "the cast",
    "the story",
    "the photography",
    "the dialogue",
    "the pacing",
    "the lead performance",
    "the sequel",
    "the plot",
    "the humour",
    "the final act",
]
_PRAISE = [
    "wonderful",
    "gripping",
    "charming",
    "clever",
    "moving",
    "beautiful",
    "funny",
    "brilliant",
    "fresh",
    "delightful",
    "thrilling",
    "smart",
]
_SCORN = [
    "dull",
    "tedious",
    "clumsy",
    "boring",
    "lifeless",
    "predictable",
    "messy",
    "awful",
    "bland",
    "silly",
    "tiresome",
    "forgettable",
]
_VERBS = {
    1: ["i loved", "we enjoyed", "everyone admired", "critics praised"],
    0: ["i hated", "we regretted", "everyone mocked", "critics dismissed"],
}


def sentiment_sentences(seed: int = 0) -> list[tuple[str, int]]:
    """Every generated sentence with its label, shuffled with `seed`, positive and negative alternating."""
    by_label: dict[int, set[str]] = {0: set(), 1: set()}
    for subject in _SUBJECTS:
        for good, bad in zip(_PRAISE, _SCORN, strict=True):
            by_label[1].add(f"{subject} was {good}")
            by_label[0].add(f"{subject} was {bad}")
            by_label[1].add(f"{subject} was not {bad} at all")
            by_label[0].add(f"{subject} was not {good} at all")
        for label, verbs in _VERBS.items():
            by_label[label].update(f"{verb} {subject}" for verb in verbs)
    rng = random.Random(seed)
    positives, negatives = sorted(by_label[1]), sorted(by_label[0])
    rng.shuffle(positives)
    rng.shuffle(negatives)
    return [pair for pos, neg in zip(positives, negatives, strict=True) for pair in ((pos, 1), (neg, 0))]


_CAPITALS = {
    "france": "paris",
    "germany": "berlin",
    "italy": "rome",
    "spain": "madrid",
    "portugal": "lisbon",
    "japan": "tokyo",
    "china": "beijing",
    "india": "new delhi",
    "egypt": "cairo",
    "kenya": "nairobi",
    "canada": "ottawa",
    "mexico": "mexico city",
    "peru": "lima",
    "chile": "santiago",
    "argentina": "buenos aires",
    "norway": "oslo",
    "sweden": "stockholm",
    "finland": "helsinki",
    "denmark": "copenhagen",
    "poland": "warsaw",
    "greece": "athens",
    "turkey": "ankara",
    "russia": "moscow",
    "ireland": "dublin",
    "austria": "vienna",
    "hungary": "budapest",
    "australia": "canberra",
    "thailand": "bangkok",
    "vietnam": "hanoi",
    "cuba": "havana",
}
_SYMBOLS = {
    "hydrogen": "h",
    "helium": "he",
    "carbon": "c",
    "nitrogen": "n",
    "oxygen": "o",
    "sodium": "na",
    "iron": "fe",
    "gold": "au",
    "silver": "ag",
    "copper": "cu",
    "lead": "pb",
    "tin": "sn",
    "potassium": "k",
    "calcium": "ca",
    "neon": "ne",
    "zinc": "zn",
    "mercury": "hg",
    "sulfur": "s",
}
_PLANETS = ["mercury", "venus", "earth", "mars", "jupiter", "saturn", "uranus", "neptune"]
_ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]


def qa_pairs(seed: int = 0) -> list[dict]:
    """Question/answer pairs in NQ-open form; numeric answers accept the digits and the word."""
    pairs = [(f"what is the capital of {country}", [city]) for country, city in _CAPITALS.items()]
    pairs += [(f"what is the chemical symbol for {element}", [symbol]) for element, symbol in _SYMBOLS.items()]
    pairs += [(f"which planet is {_ORDINALS[i]} from the sun", [p]) for i, p in enumerate(_PLANETS)]
    pairs += [(f"what day comes after {day}", [_DAYS[(i + 1) % 7]]) for i, day in enumerate(_DAYS)]
    pairs += [(f"what month comes after {m}", [_MONTHS[(i + 1) % 12]]) for i, m in enumerate(_MONTHS)]
    pairs += [
        (f"how many days are in {m}", [str(d), _NUMBER_WORDS[d] if d <= 20 else f"{d} days"])
        for m, d in zip(_MONTHS, [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], strict=True)
    ]
    for a in range(1, 11):
        for b in range(1, 11):
            pairs.append((f"what is {a} plus {b}", [str(a + b), _NUMBER_WORDS[a + b]]))
            if b < a:
                pairs.append((f"what is {a} minus {b}", [str(a - b), _NUMBER_WORDS[a - b]]))
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return [{"question": q, "answer": answers} for q, answers in pairs]


_NOUNS = [
    "cat",
    "dog",
    "bird",
    "child",
    "teacher",
    "farmer",
    "river",
    "garden",
    "city",
    "train",
    "ship",
    "king",
]
_ADJECTIVES = ["old", "young", "quiet", "busy", "small", "large", "happy", "tired", "bright", "dark"]
_TRANSITIVE = ["sees", "follows", "finds", "helps", "watches", "visits", "paints", "remembers"]
_PLACES = ["near the river", "in the garden", "at the market", "by the sea", "in the city", "on the hill"]


def lm_sentences(count: int, seed: int) -> list[str]:
    """`count` simple sentences from a small grammar; agreement and word order make them learnable."""
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        subject = f"the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        obj = f"the {rng.choice(_NOUNS)}"
        lines.append(f"{subject} {rng.choice(_TRANSITIVE)} {obj} {rng.choice(_PLACES)} .")
    return lines


def write_samples(root: Path = SAMPLES_DIR) -> list[Path]:
    """Writes every sample file under `root` and returns their paths."""
    written = []
    sentences = sentiment_sentences()
    num_validation = 100
    splits = {"validation": sentences[:num_validation], "train": sentences[num_validation:]}
    for split, rows in splits.items():
        lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in rows]
        written.append(_write(root / "sentiment" / f"{split}.tsv", lines))
    pairs = qa_pairs()
    for split, rows in {"validation": pairs[:40], "train": pairs[40:]}.items():
        written.append(_write(root / "closed_book_qa" / f"{split}.jsonl", [json.dumps(r) for r in rows]))
    written.append(_write(root / "lm" / "train.txt", lm_sentences(4000, seed=1)))
    written.append(_write(root / "lm" / "validation.txt", lm_sentences(400, seed=2)))
    return written


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    for written_path in write_samples():
        print(written_path)
