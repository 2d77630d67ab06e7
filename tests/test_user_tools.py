"""@vpd.tool and @vpd.tool.method: registration, validation errors, calls, tracing, prompt."""

from __future__ import annotations

import pytest

import vpd
from vpd import ImagePatch, InvalidArgumentError, RegistrationError, ToolError
from vpd.programs import render_api
from vpd.testing import Scene, SceneObject
from vpd.tools.user_tools import ToolRegistry, tool_registry


@pytest.fixture
def registry():
    reg = tool_registry.copy()  # keeps the built-in reservations, not shared with other tests
    return reg


@pytest.fixture
def scene():
    return Scene(200, 100, [SceneObject("car", (10, 10, 90, 60), attributes=("red",))])


def test_function_tool_registers_and_renders(registry):
    @vpd.tool(registry=registry)
    def count_wheels(vehicle: str, axles: int = 2) -> int:
        """Count the wheels of a vehicle.

        Args:
            vehicle: The vehicle's name.
            axles: Its axles.

        Returns:
            The number of wheels.
        """
        return axles * 2

    spec = registry.get("count_wheels")
    assert spec is not None and spec.kind == "function"
    assert count_wheels("car") == 4  # the decorator returns the function unchanged
    api = render_api(registry)
    assert "def count_wheels(vehicle: str, axles: int = 2) -> int:" in api
    assert "Count the wheels of a vehicle." in api


def test_method_tool_is_callable_on_patches_and_traced(registry, scene):
    @vpd.tool.method(registry=registry)
    def aspect_ratio(patch: ImagePatch, rounding: int = 2) -> float:
        """Width divided by height of the patch.

        Returns:
            The ratio.
        """
        return round(patch.width / patch.height, rounding)

    tk = vpd.Toolkit(tools=registry, **{c: b for c, b in _fakes(scene).items()})
    car = ImagePatch(scene.image, toolkit=tk).find("car")[0]
    with vpd.record_tool_calls() as events:
        assert car.aspect_ratio() == pytest.approx(1.6)
    assert events[0].operation == "aspect_ratio" and events[0].capability == "tool"
    assert "def aspect_ratio(self, rounding: int = 2) -> float:" in render_api(registry)
    with pytest.raises(InvalidArgumentError, match="aspect_ratio"):
        car.aspect_ratio(1, 2, 3)


def _fakes(scene):
    tk = scene.toolkit()
    return {c: tk.backend(c) for c in ("detect", "segment", "depth", "ocr", "vqa", "match", "llm")}


def test_tool_that_raises_becomes_tool_error(registry, scene):
    @vpd.tool.method(registry=registry)
    def explode(patch: ImagePatch) -> int:
        """Always fails."""
        raise ZeroDivisionError("boom")

    tk = vpd.Toolkit(tools=registry, **_fakes(scene))
    with vpd.record_tool_calls() as events, pytest.raises(ToolError, match="explode.*boom"):
        ImagePatch(scene.image, toolkit=tk).explode()
    assert events[0].error


def test_call_tool_unknown_name(scene):
    tk = vpd.Toolkit(tools=ToolRegistry(), **_fakes(scene))
    with pytest.raises(InvalidArgumentError, match="Unknown tool"):
        tk.call_tool("nope")


@pytest.mark.parametrize("name", ["CountWheels", "count-wheels", "_private", "class", "count__wheels", "9lives"])
def test_bad_names(registry, name):
    def f(x: int) -> int:
        """Doc."""
        return x

    with pytest.raises(RegistrationError, match="snake_case"):
        vpd.tool(name=name, registry=registry)(f)


def test_missing_docstring_or_hints(registry):
    def no_doc(x: int) -> int:
        return x

    def no_hint(x) -> int:
        """Doc."""
        return x

    def no_return(x: int):
        """Doc."""
        return x

    def star(*xs: int) -> int:
        """Doc."""
        return 0

    with pytest.raises(RegistrationError, match="docstring"):
        vpd.tool(registry=registry)(no_doc)
    with pytest.raises(RegistrationError, match="'x' needs a type hint"):
        vpd.tool(registry=registry)(no_hint)
    with pytest.raises(RegistrationError, match="return type"):
        vpd.tool(registry=registry)(no_return)
    with pytest.raises(RegistrationError, match=r"\*args"):
        vpd.tool(registry=registry)(star)


def test_clashes_are_named(registry):
    def find(x: int) -> int:
        """Doc."""
        return x

    def llm_query(x: int) -> int:
        """Doc."""
        return x

    with pytest.raises(RegistrationError, match="clashes with an ImagePatch attribute"):
        vpd.tool(registry=registry)(find)
    with pytest.raises(RegistrationError, match="clashes with"):
        vpd.tool(registry=registry)(llm_query)

    def helper(x: int) -> int:
        """Doc."""
        return x

    def other(x: int) -> int:
        """Doc."""
        return x

    vpd.tool(registry=registry)(helper)
    with pytest.raises(RegistrationError, match=r"already registered \(.*helper\)"):
        vpd.tool(name="helper", registry=registry)(other)
    vpd.tool(name="helper", registry=registry, replace=True)(other)
    assert registry.get("helper").func is other


def test_method_tool_needs_patch_parameter(registry):
    def nothing() -> int:
        """Doc."""
        return 1

    with pytest.raises(RegistrationError, match="patch as its first parameter"):
        vpd.tool.method(registry=registry)(nothing)


def test_global_decorator_registers_in_default_registry():
    @vpd.tool
    def vpd_test_global_tool(x: int) -> int:
        """Return x.

        Returns:
            x.
        """
        return x

    try:
        assert "vpd_test_global_tool" in vpd.tool_registry
        assert "def vpd_test_global_tool(x: int) -> int:" in render_api()
    finally:
        vpd.tool_registry.remove("vpd_test_global_tool")


def test_redefining_the_same_function_replaces_it(registry):
    # A notebook cell run twice defines a new function object with the same qualname.
    def make():
        def rerun_tool(x: int) -> int:
            """Doc."""
            return x

        return rerun_tool

    first, second = make(), make()
    vpd.tool(registry=registry)(first)
    vpd.tool(registry=registry)(second)
    assert registry.get("rerun_tool").func is second


def test_builtin_names_async_and_generators_rejected(registry):
    def sorted(x: int) -> int:
        """Doc."""
        return x

    async def fetch(x: int) -> int:
        """Doc."""
        return x

    def numbers(x: int) -> int:
        """Doc."""
        yield x

    with pytest.raises(RegistrationError, match="Python builtin"):
        vpd.tool(registry=registry)(sorted)
    with pytest.raises(RegistrationError, match="not async, not a generator"):
        vpd.tool(registry=registry)(fetch)
    with pytest.raises(RegistrationError, match="not async, not a generator"):
        vpd.tool(registry=registry)(numbers)
