"""Install hints: vpd's default dependencies are named as packages, optional ones by their extra."""

from __future__ import annotations

import pytest

from vpd.errors import BackendUnavailable
from vpd.tools.backend import install_hint
from vpd.tools.backends.grabcut import GrabCutSegmenter
from vpd.tools.backends.nanodet import NanoDetDetector


def test_default_dependencies_are_named_by_their_distribution() -> None:
    # The import name cv2 is not what pip installs; vpd depends on the headless build.
    assert install_hint(["cv2"], None) == "pip install opencv-python-headless"
    assert install_hint(["rapidocr", "onnxruntime"], None) == "pip install rapidocr onnxruntime"
    assert install_hint(["transformers"], "hub") == "pip install 'vpd[hub]'"


def test_a_missing_default_dependency_does_not_send_users_to_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GrabCutSegmenter, "requires", ("cv2_missing_for_this_test",))
    assert "pip install cv2_missing_for_this_test" in GrabCutSegmenter.check_available().reason
    monkeypatch.setattr(NanoDetDetector, "requires", ("onnxruntime_missing_for_this_test",))
    with pytest.raises(BackendUnavailable, match=r"pip install onnxruntime_missing_for_this_test$"):
        NanoDetDetector.ensure_requirements()
