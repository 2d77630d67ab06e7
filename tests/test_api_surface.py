"""The public surface: light import, documented program API, registry plug-ins, CLI."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import pytest

import vpd
from vpd import ConfigError, RegistrationError
from vpd.helpers import HELPER_API
from vpd.patch import PATCH_API, ImagePatch
from vpd.programs import render_api
from vpd.tools import Backend, register_backend
from vpd.tools.registry import BackendRegistry, backend_registry


def test_import_vpd_is_light():
    code = (
        "import sys, vpd, vpd.testing, vpd.programs, vpd.tools.toolkit, vpd.cli, vpd.render, vpd.traces, vpd.distill; "
        "print(sorted(m for m in ('torch','transformers','litellm','onnxruntime','cv2','sentence_transformers',"
        "'rapidocr','numpy','PIL','llama_cpp','peft','trl','accelerate','datasets','ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


def test_all_is_explicit_and_importable():
    for name in vpd.__all__:
        assert hasattr(vpd, name), name


@pytest.mark.parametrize("name", [n for n in PATCH_API if callable(inspect.getattr_static(ImagePatch, n))])
def test_patch_methods_are_documented_for_the_llm(name):
    func = getattr(ImagePatch, name)
    doc = inspect.getdoc(func) or ""
    # What the prompt shows: members that also take ViperGPT's keywords show vpd's own only.
    sig = getattr(func, "__prompt_signature__", None) or inspect.signature(func)
    assert sig.return_annotation is not inspect.Signature.empty
    for param in list(sig.parameters.values())[1:]:
        assert param.annotation is not inspect.Parameter.empty, f"{name}.{param.name}"
        assert f"{param.name}:" in doc, f"{name} docstring lacks Args entry for {param.name}"
    assert "Returns:" in doc and "Example:" in doc, name


@pytest.mark.parametrize("name", HELPER_API)
def test_helpers_are_documented_for_the_llm(name):
    func = getattr(vpd.helpers, name)
    doc = inspect.getdoc(func) or ""
    assert "Args:" in doc and "Returns:" in doc and "Example:" in doc


def test_rendered_api_contains_every_member_and_the_convention():
    api = render_api()
    compile(api, "<api>", "exec")  # the prompt's API section is valid Python
    for name in PATCH_API:
        assert name in api
    for name in HELPER_API:
        assert f"def {name}(" in api
    assert "BOTTOM-LEFT" in api


def test_register_backend_decorator_and_errors():
    @register_backend("detect", "unit_test_detector")
    class UnitTestDetector(Backend):
        description = "test"

        def detect(self, images, queries):
            return [[] for _ in images]

    try:
        assert backend_registry.get("detect", "unit_test_detector") is UnitTestDetector
        assert UnitTestDetector.capability == "detect"
        with pytest.raises(RegistrationError, match="already registered"):
            register_backend("detect", "unit_test_detector")(type("Other", (Backend,), {"detect": lambda s, i, q: []}))
        with pytest.raises(RegistrationError, match=r"has no detect\(\) method"):
            register_backend("detect", "no_method")(type("NoMethod", (Backend,), {}))
    finally:
        backend_registry._entries["detect"].pop("unit_test_detector")
    with pytest.raises(RegistrationError, match="Unknown capability"):
        register_backend("colour", "x")(type("X", (Backend,), {}))
    with pytest.raises(RegistrationError, match="snake_case"):
        register_backend("detect", "Bad-Name")(type("Y", (Backend,), {"detect": lambda s, i, q: []}))
    with pytest.raises(RegistrationError, match="must subclass"):
        register_backend("detect", "plain")(object)
    with pytest.raises(RegistrationError, match="must subclass"):
        BackendRegistry().register("detect", "plain", object)  # type: ignore[arg-type]


def test_entry_point_plugins(tmp_path, monkeypatch):
    # A minimal installed distribution declaring a vpd.backends entry point.
    pkg = tmp_path / "vpd_plugin_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from vpd.tools import Backend

            class DemoOCR(Backend):
                capability = "ocr"
                name = "demo_ocr"
                description = "demo plug-in"

                def read_text(self, images):
                    return [[] for _ in images]
            """
        )
    )
    dist = tmp_path / "vpd_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vpd-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vpd.backends]\nocr.demo_ocr = vpd_plugin_demo:DemoOCR\nbroken = x:y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = BackendRegistry()
    with pytest.warns(UserWarning, match="Ignoring entry point 'broken'"):
        assert "demo_ocr" in registry.names("ocr")
    assert registry.get("ocr", "demo_ocr").description == "demo plug-in"
    with pytest.raises(ConfigError, match="Unknown ocr backend 'nope'.*demo_ocr"):
        registry.get("ocr", "nope")


def test_cli_tools_table_and_json(capsys):
    from vpd.cli import main

    assert main(["tools", "--toolkit", "offline"]) == 0
    out = capsys.readouterr().out
    assert "nanodet" in out and "rapidocr" in out and "preset 'offline'" in out
    assert main(["tools", "--toolkit", "offline", "--json", "--all"]) == 0
    payload = json.loads(capsys.readouterr().out)
    caps = {row["capability"]: row for row in payload["capabilities"]}
    assert caps["detect"]["backend"]["backend"] == "nanodet"
    assert caps["match"]["backend"] is None
    assert "owlv2" in payload["registered"]["detect"]


def test_cli_errors_exit_nonzero(tmp_path, capsys):
    from vpd.cli import main

    assert main(["tools", "--toolkit", str(tmp_path / "missing.toml")]) == 1
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "vpd", "tools", "--toolkit", "offline"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "capability" in out.stdout
