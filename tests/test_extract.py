"""Getting programs out of chat replies (vpd.programs.extract)."""

from __future__ import annotations

import ast

import pytest

from vpd.programs.extract import extract_program

PROGRAM = """def execute_command(image):
    image_patch = ImagePatch(image)
    return len(image_patch.find("cat"))"""


def _defines_entry(code: str) -> bool:
    tree = ast.parse(code)
    return any(isinstance(n, ast.FunctionDef) and n.name == "execute_command" for n in tree.body)


@pytest.mark.parametrize(
    "reply",
    [
        f"```python\n{PROGRAM}\n```",
        f"Here is the program:\n\n```python\n{PROGRAM}\n```\n\nIt counts the cats.",
        f"```\n{PROGRAM}\n```",
        f"```py\n{PROGRAM}\n```",
        f"~~~python\n{PROGRAM}\n~~~",
        PROGRAM,
        f"Sure! {PROGRAM.splitlines()[0]}\n" + "\n".join(PROGRAM.splitlines()[1:]),
        f"{PROGRAM}\n\nThis function finds the cats and returns how many there are.",
        f"   ```python\n{PROGRAM}\n   ```",
    ],
)
def test_program_found_in_common_reply_shapes(reply: str) -> None:
    extracted = extract_program(reply)
    assert extracted.ok, extracted.error
    assert extracted.code is not None and _defines_entry(extracted.code)
    assert 'find("cat")' in extracted.code


def test_unclosed_fence_from_a_cut_off_reply_is_noted() -> None:
    extracted = extract_program(f"```python\n{PROGRAM}\n    # and then we")
    assert extracted.ok
    assert any("not closed" in note for note in extracted.notes)


def test_a_body_cut_off_mid_line_goes_back_to_the_model() -> None:
    # Dropping the broken last line would leave a program that runs and returns None.
    reply = "```python\n" + PROGRAM.replace("return len(", "count = len(") + "\n    return count + (\n"
    extracted = extract_program(reply)
    assert not extracted.ok
    assert extracted.error is not None and "cut off" in extracted.error and "line 4" in extracted.error


def test_prose_inside_the_body_goes_back_to_the_model() -> None:
    reply = "def execute_command(image):\n    x = 1\nNow we return it.\n    return x\n"
    assert not extract_program(reply).ok


def test_trailing_prose_after_the_function_is_dropped_and_noted() -> None:
    reply = PROGRAM + "\n\nExplanation:\n  The function counts cats.\nIt returns a number."
    extracted = extract_program(reply)
    assert extracted.code is not None and extracted.code.rstrip().endswith('return len(image_patch.find("cat"))')
    assert any("dropped 3 lines" in note for note in extracted.notes)


def test_prose_before_a_body_without_def() -> None:
    reply = 'Sure!\nimage_patch = ImagePatch(image)\nreturn len(image_patch.find("cat"))\n'
    extracted = extract_program(reply)
    assert extracted.code is not None and extracted.code.startswith("def execute_command(image):\n")
    assert any("1 line of text before" in note for note in extracted.notes)


def test_several_functions_without_the_entry_point_are_not_wrapped() -> None:
    reply = "def helper(x):\n    return x\n\ndef solve(image, question):\n    return helper(image)\n"
    assert not extract_program(reply).ok


def test_async_def_is_noted_as_such() -> None:
    extracted = extract_program("async def execute_command(image):\n    return 1\n")
    assert extracted.code == "def execute_command(image):\n    return 1\n"
    assert extracted.notes == ("made 'async def execute_command' a plain function",)


def test_long_replies_are_fast() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(4000))
    prose = "\n".join(f"This is sentence number {i} of the explanation." for i in range(4000))
    extracted = extract_program(f"def execute_command(image):\n{body}\n    return x1\n{prose}")
    assert extracted.ok  # one parse per syntax error, not one per line (seconds, not minutes)


def test_missing_def_line_is_added_and_noted() -> None:
    body = 'image_patch = ImagePatch(image)\ncats = image_patch.find("cat")\nreturn len(cats)'
    extracted = extract_program(f"```python\n{body}\n```")
    assert extracted.ok, extracted.error
    assert extracted.code is not None and extracted.code.startswith("def execute_command(image):\n")
    assert any("missing line" in note for note in extracted.notes)


def test_single_function_under_another_name_is_renamed() -> None:
    extracted = extract_program("```python\ndef solve(img):\n    return ImagePatch(img).exists('dog')\n```")
    assert extracted.ok
    assert extracted.code is not None and extracted.code.startswith("def execute_command(img):")
    assert any("renamed" in note for note in extracted.notes)


def test_top_level_calls_are_removed_and_noted() -> None:
    reply = f"```python\n{PROGRAM}\n\nprint(execute_command(image))\nresult = execute_command(image)\n```"
    extracted = extract_program(reply)
    assert extracted.ok
    assert extracted.code is not None and "print(" not in extracted.code and "result =" not in extracted.code
    assert any("removed 2 top-level calls" in note for note in extracted.notes)


def test_helpers_above_the_entry_point_are_kept() -> None:
    code = "def is_big(patch):\n    return patch.width > 100\n\n" + PROGRAM
    extracted = extract_program(f"```python\n{code}\n```")
    assert extracted.code is not None and "def is_big" in extracted.code
    assert extracted.notes == ()


def test_last_of_several_versions_wins() -> None:
    first = PROGRAM
    second = PROGRAM.replace('"cat"', '"dog"')
    extracted = extract_program(f"First try:\n```python\n{first}\n```\nBetter:\n```python\n{second}\n```")
    assert extracted.code is not None and '"dog"' in extracted.code
    assert any("2 versions" in note for note in extracted.notes)


def test_prose_blocks_are_ignored_in_favour_of_code() -> None:
    reply = f"```text\nexecute_command counts cats\n```\n```python\n{PROGRAM}\n```"
    assert extract_program(reply).code is not None


def test_windows_newlines_and_tabs() -> None:
    reply = "```python\r\ndef execute_command(image):\r\n\treturn 1\r\n```"
    extracted = extract_program(reply)
    assert extracted.code == "def execute_command(image):\n    return 1\n"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("I cannot answer questions about images.", "No function execute_command"),
        ("```python\nx = = 1\n```", "No function execute_command"),
        ("```python\ndef execute_command(image:\n    return (\n```", "not valid Python"),
        ("```python\nclass A:\n    def execute_command(self, image):\n        return 1\n```", "top level"),
    ],
)
def test_no_program_gives_a_reason(reply: str, message: str) -> None:
    extracted = extract_program(reply)
    assert not extracted.ok
    assert extracted.code is None
    assert extracted.error is not None and message in extracted.error


def test_non_string_reply() -> None:
    assert not extract_program(None).ok  # type: ignore[arg-type]
