"""The 80 COCO detection classes: names, English plurals, query synonyms, composed captions.

A detector's class ids index ``COCO_LABELS``. ``compose_caption`` turns a frame's labels
into "3 people, 2 bicycles and a car"; ``SYNONYMS`` give each class the words a free-text
query might use for it, so "cyclist" or "pedestrian" can match a detected person.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from operators.results import Captions, Detections, ModelOutput

__all__ = ["COCO_LABELS", "SYNONYMS", "compose_caption", "count_phrase", "label_phrases", "plural"]

COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

# (singular phrase, plural phrase) where the English rule below gets it wrong.
_IRREGULAR: dict[str, tuple[str, str]] = {
    "person": ("a person", "people"), "mouse": ("a mouse", "mice"), "knife": ("a knife", "knives"),
    "sheep": ("a sheep", "sheep"), "skis": ("a pair of skis", "pairs of skis"),
    "scissors": ("a pair of scissors", "pairs of scissors"), "broccoli": ("some broccoli", "broccoli"),
    "tv": ("a TV", "TVs"),
}

SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("people", "pedestrian", "man", "woman", "child", "kid", "human", "someone", "crowd"),
    "bicycle": ("bike", "cycle", "cyclist", "bicycle rider"), "car": ("automobile", "sedan", "taxi"),
    "motorcycle": ("motorbike", "scooter", "moped"), "airplane": ("plane", "aircraft", "jet"),
    "bus": ("coach", "minibus"), "train": ("railway", "locomotive", "tram"), "truck": ("lorry", "van", "pickup truck"),
    "boat": ("ship", "vessel", "canoe"), "traffic light": ("traffic signal", "stoplight"),
    "fire hydrant": ("hydrant",), "stop sign": ("road sign",), "bench": ("park bench", "seat"),
    "bird": ("pigeon", "seagull", "duck"), "cat": ("kitten",), "dog": ("puppy",),
    "horse": ("pony",), "cow": ("cattle", "bull"), "backpack": ("rucksack", "bag"),
    "umbrella": ("parasol",), "handbag": ("purse", "bag"), "tie": ("necktie",), "suitcase": ("luggage", "bag"),
    "sports ball": ("ball", "football", "soccer ball", "basketball"), "skateboard": ("skater",),
    "surfboard": ("surfer",), "tennis racket": ("racket",), "bottle": ("drink",), "wine glass": ("glass", "wine"),
    "cup": ("mug", "coffee"), "donut": ("doughnut",), "couch": ("sofa",), "potted plant": ("plant", "flower pot"),
    "dining table": ("table",), "tv": ("television", "screen", "monitor"), "laptop": ("computer", "notebook"),
    "remote": ("remote control",), "cell phone": ("phone", "smartphone", "mobile phone"),
    "refrigerator": ("fridge",), "hair drier": ("hair dryer",), "teddy bear": ("stuffed toy", "teddy"),
}

_VOWEL_SOUND = ("a", "e", "i", "o", "u")


def plural(label: str) -> str:
    """English plural of a COCO label ("bus" -> "buses", "person" -> "people")."""
    if label in _IRREGULAR:
        return _IRREGULAR[label][1]
    if label.endswith(("s", "sh", "ch", "x", "z")):
        return label + "es"
    if label.endswith("y") and label[-2:-1] not in _VOWEL_SOUND:
        return label[:-1] + "ies"
    return label + "s"


def count_phrase(label: str, n: int) -> str:
    """"a car", "an apple", "3 people"."""
    if n != 1:
        return f"{n} {plural(label)}"
    if label in _IRREGULAR:
        return _IRREGULAR[label][0]
    return f"{'an' if label.startswith(_VOWEL_SOUND) else 'a'} {label}"


def compose_caption(labels: Sequence[str], empty: str = "no objects detected") -> str:
    """A caption from one frame's detected labels, most frequent first, ties in order of appearance.

    >>> compose_caption(["car", "person", "bicycle", "person", "bicycle", "person"])
    '3 people, 2 bicycles and a car'
    >>> compose_caption([])
    'no objects detected'
    """
    counts = Counter(labels)
    if not counts:
        return empty
    first = {lab: i for i, lab in reversed(list(enumerate(labels)))}
    parts = [count_phrase(lab, n) for lab, n in sorted(counts.items(), key=lambda kv: (-kv[1], first[kv[0]]))]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def label_phrases(label: str) -> tuple[str, ...]:
    """The label itself, its plural and its synonyms: what a query about it may say."""
    return tuple(dict.fromkeys((label, plural(label), *SYNONYMS.get(label, ()))))


def detector_output(dets: Detections, n: int, tasks: Sequence[str], model_id: str) -> ModelOutput:
    """A closed-set detector's batch output: its boxes (task detect) and captions composed from them (caption)."""
    out = ModelOutput(n_frames=n)
    if "detect" in tasks:
        out.detections = dets
        out.models["detect"] = model_id
    if "caption" in tasks:
        out.captions = Captions([compose_caption(dets.for_frame(r).label.tolist()) for r in range(n)],
                                kind="composed")
        out.models["caption"] = f"composed:{model_id}"
    return out
