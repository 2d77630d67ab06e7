"""The standard-library names programs may use: a read-only ``math`` and the ``typing`` names.

Programs cannot import modules, but programs written for ViperGPT and its successors use
``math.ceil`` and annotate with ``List[ImagePatch]``. Those names are in every program's
scope already, and ``import math`` / ``from typing import List`` are accepted as no-ops
(see :func:`vpd.programs.policy.compile_program`). A :class:`SafeModule` exposes only the
members listed here: pure functions on numbers, nothing that reaches the host.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["SAFE_MODULES", "TYPING_NAMES", "SafeModule"]

#: ``math`` members programs may use: constants and pure functions on numbers.
_MATH_MEMBERS = (
    "pi", "e", "tau", "inf", "nan",
    "ceil", "floor", "trunc", "fabs", "copysign", "fmod", "remainder", "modf", "frexp", "ldexp",
    "sqrt", "isqrt", "exp", "expm1", "log", "log1p", "log2", "log10", "pow", "hypot", "dist",
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    "degrees", "radians", "isclose", "isfinite", "isinf", "isnan",
    "gcd", "lcm", "factorial", "comb", "perm", "prod", "fsum",
)  # fmt: skip

#: ``typing`` names programs use in annotations (which are not evaluated: see the policy).
TYPING_NAMES: tuple[str, ...] = ("Any", "Dict", "List", "Optional", "Sequence", "Set", "Tuple", "Union")


class SafeModule:
    """A read-only stand-in for a module: only the listed members, looked up by the sandbox's guard.

    Args:
        name: The module's name, as programs write it.
        members: The members programs may read.
    """

    __slots__ = ("_members", "_name")
    _members: dict[str, Any]
    _name: str

    def __init__(self, name: str, members: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_members", dict(members))

    @property
    def name(self) -> str:
        """The module's name."""
        return self._name

    @property
    def members(self) -> tuple[str, ...]:
        """The names programs may read, sorted."""
        return tuple(sorted(self._members))

    def member(self, name: str) -> Any:
        """The member ``name``.

        Raises:
            AttributeError: Not one of the listed members (the message lists them).
        """
        try:
            return self._members[name]
        except KeyError:
            raise AttributeError(
                f"module {self._name!r} has no attribute {name!r} in programs; it has: {', '.join(self.members)}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"module {self._name!r} is read-only")

    def __repr__(self) -> str:
        return f"<module {self._name!r}>"


#: The modules in every program's scope, by name.
SAFE_MODULES: Mapping[str, SafeModule] = {
    "math": SafeModule("math", {name: getattr(math, name) for name in _MATH_MEMBERS if hasattr(math, name)}),
    "typing": SafeModule("typing", {name: getattr(typing, name) for name in TYPING_NAMES}),
}
