"""The embedded default task: short product reviews whose sentiment hinges on negation and
intensity words, generated from templates with a fixed seed. It ships with the code, needs no
download, and is hard enough that an untrained head sits at chance while fine-tuning learns it."""

from __future__ import annotations

import random

from omegaconf import DictConfig

SUBJECTS = ["the movie", "this phone", "the hotel", "our dinner", "the book", "this laptop", "the concert",
            "the service", "the game", "this jacket", "the app", "the coffee", "the trip", "the show"]
POSITIVE = ["good", "great", "wonderful", "pleasant", "excellent", "delightful", "solid", "charming", "superb"]
NEGATIVE = ["bad", "awful", "dull", "terrible", "boring", "disappointing", "poor", "clumsy", "dreadful"]
INTENSIFIERS = ["", "really ", "very ", "quite ", "truly ", "rather "]
NEGATIONS = ["not ", "never ", "hardly ", "by no means "]
TEMPLATES = ["{s} was {neg}{adv}{adj}.", "honestly, {s} was {neg}{adv}{adj}.", "i thought {s} was {neg}{adv}{adj}.",
             "{s} is {neg}{adv}{adj}, in my opinion.", "overall {s} felt {neg}{adv}{adj}."]


def generate(task_cfg: DictConfig, split: str) -> list[dict]:
    """`task.num_train` / `task.num_eval` rows of {sentence, label}; label 1 = positive."""
    n = int(task_cfg.num_train if split == "train" else task_cfg.num_eval)
    rng = random.Random(f"{task_cfg.seed}-{split}")
    rows = []
    for _ in range(n):
        positive_word = rng.random() < 0.5
        negated = rng.random() < 0.5
        sentence = rng.choice(TEMPLATES).format(
            s=rng.choice(SUBJECTS),
            neg=rng.choice(NEGATIONS) if negated else "",
            adv=rng.choice(INTENSIFIERS),
            adj=rng.choice(POSITIVE if positive_word else NEGATIVE),
        )
        rows.append({"sentence": sentence, "label": str(int(positive_word != negated))})
    return rows
