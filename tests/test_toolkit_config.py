"""Toolkit construction: presets, code, environment, TOML, auto selection, errors."""

from __future__ import annotations

import pytest

import vpd
from vpd import BackendSpec, BackendUnavailable, ConfigError, Toolkit
from vpd.testing import FakeDetector, Scene
from vpd.tools import Backend
from vpd.tools.backend import Availability
from vpd.tools.config import config_from_env, config_from_mapping
from vpd.tools.registry import BackendRegistry


class _Ready(Backend):
    capability = "detect"
    name = "ready"
    option_defaults = {"score_threshold": 0.3}

    def detect(self, images, queries):
        return [[] for _ in images]


class _Missing(Backend):
    capability = "detect"
    name = "missing"
    requires = ("surely_not_an_installed_module_xyz",)
    extra = "offline"


@pytest.fixture
def registry():
    reg = BackendRegistry()
    reg.register("detect", "ready", _Ready)
    reg.register("detect", "missing", _Missing)
    return reg


def test_offline_preset_choices():
    from vpd.tools.backends.llama_cpp import LlamaCppChat

    tk = Toolkit.offline()
    chosen = {row.capability: (row.info.backend if row.info else None) for row in tk.describe()}
    assert chosen == {
        "detect": "nanodet",
        "segment": None,
        "depth": "ground_plane",
        "ocr": "rapidocr",
        "vqa": "described",
        "match": None,
        # The embedded model when llama.cpp and its weights are installed (auto), else off.
        "llm": "llama_cpp" if LlamaCppChat.check_available() else None,
    }
    assert Toolkit.offline(segment="grabcut").backend("segment").name == "grabcut"


def test_hub_preset_choices():
    tk = Toolkit.hub()
    assert tk.backend("detect").name == "owlv2"
    assert tk.backend("depth").name == "depth_anything"


def test_code_overrides_and_options(registry):
    tk = Toolkit(detect=BackendSpec("ready", options={"score_threshold": 0.5}), registry=registry)
    assert tk.backend("detect").options["score_threshold"] == 0.5
    with pytest.raises(ConfigError, match="Unknown option.*nms.*known options: score_threshold"):
        Toolkit(detect=BackendSpec("ready", options={"nms": 1}), registry=registry)
    with pytest.raises(ConfigError, match="Unknown detect backend 'nope'; available: missing, ready"):
        Toolkit(detect="nope", registry=registry)
    with pytest.raises(ConfigError, match="takes a backend name"):
        Toolkit(detect=42, registry=registry)


def test_backend_instance_for_wrong_capability():
    scene = Scene(10, 10)
    with pytest.raises(ConfigError, match="serves 'detect', not 'ocr'"):
        Toolkit(ocr=FakeDetector(scene))


def test_auto_picks_first_available(registry, monkeypatch):
    monkeypatch.setitem(vpd.tools.config.AUTO_ORDER, "detect", ("missing", "ready"))
    tk = Toolkit(registry=registry)
    assert tk.backend("detect").name == "ready"
    row = next(r for r in tk.describe() if r.capability == "detect")
    assert "skipped missing" in row.reason and "vpd[offline]" in row.reason


def test_auto_with_nothing_available_turns_off_with_hint(registry, monkeypatch):
    monkeypatch.setitem(vpd.tools.config.AUTO_ORDER, "detect", ("missing",))
    tk = Toolkit(registry=registry)
    assert not tk.has("detect")
    with pytest.raises(BackendUnavailable, match=r"nothing available; missing: .*pip install 'vpd\[offline\]'"):
        tk.backend("detect")


def test_turned_off_capability_error():
    tk = Toolkit.offline()
    with pytest.raises(BackendUnavailable, match="No match backend is configured.*VPD_MATCH"):
        tk.backend("match")
    with pytest.raises(ConfigError, match="Unknown capability 'colour'"):
        tk.backend("colour")


def test_env_configuration():
    cfg = config_from_env(
        {
            "VPD_TOOLKIT": "offline",
            "VPD_DETECT": "owlv2",
            "VPD_DETECT_MODEL": "/models/owl",
            "VPD_DEVICE": "cpu",
            "VPD_SEGMENT": "none",
            "VPD_LLM": "openai/gpt-4o-mini",
            "VPD_LLM_API_BASE": "http://127.0.0.1:9/v1",
            "VPD_LLM_API_KEY": "sk-test",
            "VPD_CACHE_DIR": "/tmp/vpd-cache-test",
        }
    )
    assert cfg.preset == "offline"
    assert cfg.backends["detect"] == BackendSpec("owlv2", model="/models/owl", source="VPD_DETECT")
    assert cfg.backends["segment"] is None
    llm = cfg.backends["llm"]
    assert (llm.backend, llm.model, llm.options["api_base"]) == (
        "litellm",
        "openai/gpt-4o-mini",
        "http://127.0.0.1:9/v1",
    )
    assert llm.options["api_key"] == "sk-test"
    assert cfg.device == "cpu" and cfg.cache_dir == "/tmp/vpd-cache-test"
    tk = Toolkit(cfg)
    assert tk.backend("detect").model_id == "/models/owl"
    assert tk.backend("llm").name == "litellm"
    assert "VPD_DETECT" in next(r.reason for r in tk.describe() if r.capability == "detect")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VPD_TOOLKIT": "fast"}, "neither a preset"),
        ({"VPD_DETECT_MODEL": "/x"}, "VPD_DETECT .*is not"),
    ],
)
def test_env_errors(env, message):
    with pytest.raises(ConfigError, match=message):
        config_from_env(env)


def test_env_disables_cache():
    tk = Toolkit(config_from_env({"VPD_RESULT_CACHE": "0"}))
    assert tk.cache is None


def test_toml(tmp_path):
    path = tmp_path / "toolkit.toml"
    path.write_text(
        'preset = "offline"\ndevice = "cpu"\n[cache]\nmax_entries = 10\n'
        '[detect]\nbackend = "nanodet"\nscore_threshold = 0.5\n[depth]\nbackend = "none"\n'
    )
    tk = Toolkit.from_toml(path)
    assert tk.backend("detect").options["score_threshold"] == 0.5
    assert not tk.has("depth")
    assert tk.cache.max_entries == 10
    env_tk = Toolkit.from_env({"VPD_TOOLKIT": str(path)})
    assert env_tk.backend("detect").name == "nanodet"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("preset = 'x'", "Unknown toolkit preset"),
        ("colour = 1", "Unknown key"),
        ("[detect]\nmodel = 'x'", "no backend"),
        ("[cache]\nsize = 3", "Unknown key.*cache"),
        ("[cache]\nmax_entries = -1", "non-negative"),
        ("[detect\nbackend=", "not valid TOML"),
        ("[detect]\nbackend = 'nanodet'\nmodel = 3", "model .* must be a string"),
    ],
)
def test_toml_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Toolkit.from_toml(path)


def test_toml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Toolkit.from_toml(tmp_path / "nope.toml")


def test_mapping_string_shorthand():
    cfg = config_from_mapping({"detect": "owlv2", "segment": "none"})
    assert cfg.backends["detect"].backend == "owlv2" and cfg.backends["segment"] is None


def test_models_are_shared_and_loaded_lazily():
    loads = []

    class Counting(Backend):
        capability = "detect"
        name = "counting"

        def _load(self):
            loads.append(1)
            return object()

        def detect(self, images, queries):
            self.load()
            return [[] for _ in images]

    reg = BackendRegistry()
    reg.register("detect", "counting", Counting)
    tk = Toolkit(detect="counting", registry=reg)
    assert loads == []  # nothing loads at construction
    twin = tk.replace()  # shares the model store
    assert tk.backend("detect").load() is twin.backend("detect").load()
    assert loads == [1]


def test_default_and_current_toolkit():
    scene = Scene(10, 10)
    custom = scene.toolkit()
    with vpd.use_toolkit(custom):
        assert vpd.current_toolkit() is custom
    vpd.set_default_toolkit(custom)
    try:
        assert Toolkit.default() is custom and vpd.current_toolkit() is custom
    finally:
        vpd.set_default_toolkit(None)


def test_check_available_never_raises_for_builtins():
    from vpd.tools.registry import backend_registry
    from vpd.tools.types import CAPABILITIES

    for cap in CAPABILITIES:
        for name in backend_registry.names(cap):
            cls = backend_registry.get(cap, name)
            assert isinstance(cls.check_available(cls.default_model), Availability)
            assert cls.description, f"{cap}/{name} needs a description"
            assert cls.capability == cap and cls.name == name
