"""Template utterances whose wording carries partial emotion signal.

About ``cue_rate`` of the utterances contain a class-indicative phrase (and a
share of those cues point at a *wrong* class, as sarcasm and quotes do in the
real show); the rest is generic chit-chat that says nothing about the label.
So text alone is informative but far from perfect, and faces can help.
"""

from __future__ import annotations

import numpy as np

from crossemotion.labels import EMOTIONS

CUES: dict[str, list[str]] = {
    "anger": [
        "I can't believe you did that!",
        "Get out of my apartment!",
        "This is so unfair!",
        "Stop it, I'm serious!",
        "You had no right to do that!",
        "Are you kidding me?! Unbelievable!",
        "I am so mad at you right now.",
        "Don't you dare touch my stuff!",
    ],
    "disgust": [
        "Ew, that is disgusting.",
        "Gross! Get that away from me.",
        "That smells horrible.",
        "Ugh, I think I'm gonna be sick.",
        "That's just nasty.",
        "Eww, who would eat that?",
    ],
    "fear": [
        "I'm scared, what was that noise?",
        "Oh no, what if they find out?",
        "Please don't leave me alone here.",
        "I'm so nervous about tomorrow.",
        "That really freaks me out.",
        "What if something goes wrong?",
    ],
    "joy": [
        "This is the best day ever!",
        "I love it, thank you so much!",
        "Yay! We did it!",
        "That's wonderful news!",
        "Oh, I'm so happy for you!",
        "Ha ha, that's hilarious!",
        "You're the best, I love you guys!",
        "Great! That's awesome!",
    ],
    "neutral": [
        "Okay, I'll see you later then.",
        "So what time is it?",
        "I'll get the coffee.",
        "Yeah, I was at the museum today.",
        "He said he'd call back.",
        "Let's go.",
    ],
    "sadness": [
        "I really miss her.",
        "I'm sorry, I just feel so alone.",
        "It's over, she left me.",
        "Nobody even remembered my birthday.",
        "I lost my job today.",
        "I guess it just wasn't meant to be.",
    ],
    "surprise": [
        "Oh my God! Really?",
        "Wait, what?!",
        "No way! You're kidding!",
        "Whoa! When did that happen?",
        "You're getting married?!",
        "Seriously? Wow!",
        "What?! Since when?",
    ],
}

GENERIC: list[str] = [
    "So, um, what are you guys doing tonight?",
    "I was just going to say that.",
    "Yeah.",
    "Hey.",
    "Did you see Ross?",
    "I'll be at the coffee house.",
    "We should talk about the apartment.",
    "Well, it's kinda complicated.",
    "Okay, so here's the thing.",
    "Where are my keys?",
    "Can you pass me the remote?",
    "I think it's on the table.",
    "Monica's making dinner.",
    "Joey has an audition on Tuesday.",
    "Chandler, the phone.",
    "Rachel, did you call your dad?",
    "Phoebe's playing at Central Perk.",
    "It was a whole thing.",
    "Hi, how are you?",
    "Right, right.",
    "No, it's fine.",
    "I don't know, maybe.",
    "Listen to this.",
    "What did he say?",
    "Let me get my coat.",
    "We have to be there at eight.",
]

FILLERS: list[str] = ["", "", "", "Well, ", "Y'know, ", "Okay, ", "Hey, ", "So, "]


def utterance(
    emotion: str, rng: np.random.Generator, cue_rate: float = 0.45, wrong_cue_rate: float = 0.15
) -> tuple[str, bool]:
    """One utterance for ``emotion``; returns the text and whether it has a cue."""
    if emotion not in CUES:
        raise ValueError(f"unknown emotion {emotion!r}")
    filler = FILLERS[int(rng.integers(len(FILLERS)))]
    if rng.random() >= cue_rate:
        text = GENERIC[int(rng.integers(len(GENERIC)))]
        return filler + text[0].lower() + text[1:] if filler else text, False
    cue_class = emotion
    if rng.random() < wrong_cue_rate:
        cue_class = str(rng.choice([e for e in EMOTIONS if e != emotion]))
    options = CUES[cue_class]
    text = options[int(rng.integers(len(options)))]
    if rng.random() < 0.3:  # a generic tail keeps cue sentences from being unique strings
        text += " " + GENERIC[int(rng.integers(len(GENERIC)))]
    return filler + text, cue_class == emotion
