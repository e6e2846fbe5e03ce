"""Writes the demo's small NLI triplets and STS pairs (shipped in cft/demo/data; re-run to regenerate).

The sentences are composed from a small hand-written world of people, actions and places, each with paraphrases,
so that the data is ours to ship and the scores are known by construction:

- triplets: anchor = a scene, positive = the same scene in other words, hard negative = a different person doing
  something else in the same place (lexically close, meaning different), as in NLI contradictions;
- STS pairs, scored 0-5 by how much of the scene two sentences share (same scene in other words = 5 ... nothing = 0).

The scenes of the training anchors and of the STS pairs' first sentences are disjoint, so the demo measures
generalisation to new scenes rather than recall of trained ones.

    python -m cft.demo.sample_data
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

# Each entry: ways of saying the same thing.
PEOPLE = [
    ["A man", "A guy", "A gentleman"],
    ["A woman", "A lady"],
    ["A young boy", "A little boy", "A small boy"],
    ["A girl", "A young girl"],
    ["Two children", "Two kids", "Two young kids"],
    ["An old man", "An elderly man", "An older gentleman"],
    ["Several friends", "A few friends", "Some friends"],
    ["A chef", "A cook"],
    ["A police officer", "A cop", "A policeman"],
    ["A dog", "A puppy", "A pet dog"],
    ["A musician", "A performer"],
    ["A teenager", "A teen", "A young adult"],
]
ACTIONS = [
    ["is playing a guitar", "is strumming a guitar", "plays the guitar"],
    ["is riding a bicycle", "is cycling", "rides a bike"],
    ["is reading a book", "is reading a novel", "reads a book"],
    ["is eating a sandwich", "is having a sandwich", "eats a sandwich"],
    ["is swimming", "is taking a swim", "swims"],
    ["is cooking dinner", "is preparing a meal", "makes dinner"],
    ["is sleeping", "is taking a nap", "is asleep"],
    ["is running", "is jogging", "runs"],
    ["is painting a picture", "is painting", "paints a picture"],
    ["is talking on the phone", "is on a phone call", "is making a phone call"],
    ["is dancing", "dances", "is busting some moves"],
    ["is climbing a tree", "climbs a tree", "is scaling a tree"],
]
PLACES = [
    ["in the park", "at the park", "in a public park"],
    ["on the beach", "at the beach", "by the sea"],
    ["in the kitchen", "inside the kitchen"],
    ["on a busy street", "on a crowded street", "in a busy road"],
    ["in the snow", "on a snowy day", "outside in the snow"],
    ["at home", "in the house", "inside the home"],
    ["near a river", "by the river", "next to a river"],
    ["in a small cafe", "at a coffee shop", "in a cafe"],
]


PLURAL_PEOPLE = {4, 6}


def verb_phrase(text: str, plural: bool) -> str:
    """'is running' -> 'are running', 'plays the guitar' -> 'play the guitar' for plural subjects."""
    if not plural:
        return text
    verb, _, rest = text.partition(" ")
    verb = "are" if verb == "is" else verb[:-1]
    return f"{verb} {rest}".strip()


def scene(rng: random.Random, person: int, action: int, place: int) -> str:
    action_text = verb_phrase(rng.choice(ACTIONS[action]), person in PLURAL_PEOPLE)
    return f"{rng.choice(PEOPLE[person])} {action_text} {rng.choice(PLACES[place])} ."


def paraphrase(rng: random.Random, person: int, action: int, place: int, first: str) -> str:
    for _ in range(20):
        other = scene(rng, person, action, place)
        if other != first:
            return other
    return first


def make_triplets(rng: random.Random, scenes: list[tuple[int, int, int]]) -> list[tuple[str, str, str]]:
    rows = []
    for person, action, place in scenes:
        anchor = scene(rng, person, action, place)
        positive = paraphrase(rng, person, action, place, anchor)
        other_person = rng.choice([p for p in range(len(PEOPLE)) if p != person])
        other_action = rng.choice([a for a in range(len(ACTIONS)) if a != action])
        negative = scene(rng, other_person, other_action, place)
        rows.append((anchor, positive, negative))
    return rows


def make_sts(rng: random.Random, scenes: list[tuple[int, int, int]]) -> list[tuple[str, str, float]]:
    """Pairs at every level of overlap; the score is the share of the scene two sentences agree on."""
    rows = []
    for person, action, place in scenes:
        first = scene(rng, person, action, place)
        other_person = rng.choice([p for p in range(len(PEOPLE)) if p != person])
        other_action = rng.choice([a for a in range(len(ACTIONS)) if a != action])
        other_place = rng.choice([p for p in range(len(PLACES)) if p != place])
        kind = rng.randrange(5)
        if kind == 0:
            rows.append((first, paraphrase(rng, person, action, place, first), 5.0))
        elif kind == 1:
            rows.append((first, scene(rng, person, action, other_place), 3.8))
        elif kind == 2:
            rows.append((first, scene(rng, other_person, action, place), 2.6))
        elif kind == 3:
            rows.append((first, scene(rng, person, other_action, other_place), 1.4))
        else:
            rows.append((first, scene(rng, other_person, other_action, place), 0.6))
    return rows


def write(seed: int = 13, triplets: int = 240, pairs: int = 150) -> tuple[Path, Path]:
    rng = random.Random(seed)
    every = [(p, a, l) for p in range(len(PEOPLE)) for a in range(len(ACTIONS)) for l in range(len(PLACES))]
    rng.shuffle(every)
    sts_scenes, train_scenes = every[:pairs], every[pairs:pairs + triplets]
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    nli = DATA_DIR / "nli-sample.csv"
    with nli.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sent0", "sent1", "hard_neg"])
        writer.writerows(make_triplets(rng, train_scenes))
    sts = DATA_DIR / "sts" / "demo-sts.tsv"
    sts.parent.mkdir(parents=True, exist_ok=True)
    with sts.open("w", encoding="utf-8", newline="") as handle:
        handle.write("sentence1\tsentence2\tscore\n")
        for first, second, score in make_sts(rng, sts_scenes):
            handle.write(f"{first}\t{second}\t{score}\n")
    return nli, sts


if __name__ == "__main__":
    for path in write():
        print(f"wrote {path}")
