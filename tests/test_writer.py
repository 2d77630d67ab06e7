"""The distilled program writer: LoRA on a tiny random causal LM from verified programs, then solving with it."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

import vpd
from vpd.distill.training import TrainConfig
from vpd.errors import ConfigError, DatasetError

if os.environ.get("CI"):
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
else:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")

from vpd.distill.training.writer import WriterPair, train_writer, writer_pairs
from vpd.testing import Scene, SceneObject
from vpd.testing.tiny_models import tiny_causal_lm
from vpd.tools.config import llm_spec

CATS = "def execute_command(image):\n    return len(ImagePatch(image).find('cat'))"
DOGS = "def execute_command(image):\n    return bool_to_yesno(ImagePatch(image).exists('dog'))"


def _record(qid: str, question: str, programs: list[str | None], chosen: int | None) -> dict[str, Any]:
    return {
        "version": "vpd.synthesis/1",
        "id": qid,
        "question": question,
        "verified": chosen is not None,
        "chosen": chosen,
        "candidates": [{"index": i, "program": p} for i, p in enumerate(programs)],
    }


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    records = [
        _record("q1", "How many cats are there?", ["def execute_command(image):\n    return 3", CATS], 1),
        _record("q2", "Is there a dog?", [DOGS, DOGS], 0),
        _record("q3", "What is the sign?", [None, "def execute_command(image):\n    return 'x'"], None),
        _record("q4", "How many cats are there?", [CATS], 0),  # the same pair again
    ]
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn')
    return folder


def test_writer_pairs_are_the_verified_chosen_programs(run: Path, tmp_path: Path) -> None:
    pairs = writer_pairs(run)
    assert [(p.id, p.program) for p in pairs] == [("q1", CATS), ("q2", DOGS)]
    assert pairs[0].source.endswith("records.jsonl:q1")
    with pytest.raises(ConfigError, match="run `vpd synthesize` first"):
        writer_pairs(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "records.jsonl").write_text(json.dumps(_record("x", "Q?", ["p"], None)) + "\n")
    with pytest.raises(DatasetError, match="No verified programs"):
        writer_pairs(tmp_path / "empty")


def test_a_tuned_writer_trains_and_serves_vpd_solve(run: Path, tmp_path: Path) -> None:
    from vpd.programs.prompt import render_prompt
    from vpd.tools.backends.transformers_llm import TransformersChat

    # A tokenizer that knows the prompt's words keeps the sequences short (about 2k tokens).
    base = tiny_causal_lm(tmp_path / "base", vocab_size=4000, corpus=[render_prompt("Q?")[0]["content"]] * 3)
    config = TrainConfig(
        max_steps=8, learning_rate=2e-2, modules_to_save=("lm_head",), eval_fraction=0, warmup_ratio=0.0,
        lora_dropout=0.0, logging_steps=1, batch_size=2,
    )  # fmt: skip
    result = train_writer(run, base, tmp_path / "writer", config, n_examples=0, progress=False)
    losses = [e["loss_label"] for e in result.history if "loss_label" in e and "eval_loss" not in e]
    assert losses[-1] < 0.7 * losses[0] and result.train_rows == 2
    stored = json.loads((tmp_path / "writer" / "vpd_train.json").read_text())
    assert stored["kind"] == "writer" and stored["base"] == str(base) and stored["n_examples"] == 0

    # The tuned writer is an llm backend: a folder (or transformers:FOLDER) selects it.
    spec = llm_spec(str(tmp_path / "writer"))
    assert (spec.backend, spec.model) == ("transformers", str(tmp_path / "writer"))
    assert llm_spec(f"transformers:{base}").backend == "transformers"
    tuned, plain = TransformersChat(str(tmp_path / "writer")), TransformersChat(str(base))
    messages = render_prompt("How many cats are there?")
    reply = tuned.generate(messages, max_tokens=8)
    assert reply.prompt_tokens == len(
        tuned.load()[1].apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    )
    assert reply.completion_tokens is not None and 0 < reply.completion_tokens <= 8
    assert reply.text != plain.generate(messages, max_tokens=8).text  # the adapter is applied
    assert tuned.generate(messages, max_tokens=8).text == reply.text  # greedy: the same reply
    assert tuned.cache_identity() != plain.cache_identity() and "@" in tuned.cache_identity()

    scene = Scene(200, 150, [SceneObject("cat", (10, 10, 60, 60))])
    solution = vpd.solve(
        scene.image, "How many cats are there?", llm=str(tmp_path / "writer"), toolkit=scene.toolkit(),
        k=1, n_examples=0, cache=False, fallback=False, max_repairs=0,
    )  # fmt: skip
    assert solution.model_name.startswith("transformers") and solution.timings.completion_tokens > 0


def test_writer_pairs_can_be_given_directly_and_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(vpd.InvalidArgumentError, match="n_examples"):
        train_writer([WriterPair("a", "Q?", CATS, "x")], "base", tmp_path, n_examples=-1)
    with pytest.raises(DatasetError, match="No writer pairs"):
        train_writer([], "base", tmp_path)


def test_vpd_train_writer(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vpd.cli import main
    from vpd.programs.prompt import render_prompt

    base = tiny_causal_lm(tmp_path / "base", vocab_size=4000, corpus=[render_prompt("Q?")[0]["content"]] * 3)
    code = main(
        ["train-writer", str(run), "--base", str(base), "--out", str(tmp_path / "w"), "--max-steps", "1",
         "--n-examples", "0", "--eval-fraction", "0", "--precision", "bf16", "--quiet"]
    )  # fmt: skip
    # bf16 runs on a CPU too (the Trainer refuses it there unless told it is on a CPU).
    printed = capsys.readouterr().out
    assert code == 0 and "trained 1 steps on 2 verified programs" in printed
    assert re.search(r"; loss \d+\.\d{4}\n", printed), printed
    with pytest.raises(SystemExit):  # a writer has no rationales to weigh
        main(["train-writer", str(run), "--base", str(base), "--out", str(tmp_path / "w2"), "--rationale-weight", "2"])
    assert "unrecognized arguments: --rationale-weight" in capsys.readouterr().err
    stored = json.loads((tmp_path / "w" / "vpd_train.json").read_text())
    assert stored["n_examples"] == 0 and stored["config"]["precision"] == "bf16"


def test_fp16_without_a_gpu_is_refused_with_the_alternatives(run: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    base = tiny_causal_lm(tmp_path / "base")
    with pytest.raises(ConfigError, match="fp16 training needs a GPU.*'bf16' or 'fp32'"):
        train_writer(run, base, tmp_path / "w", TrainConfig(precision="fp16", max_steps=1), progress=False)


def test_a_gguf_base_loses_its_quantization_marker_so_it_can_train() -> None:
    from types import SimpleNamespace

    from vpd.tools.hub import dequantized

    config = SimpleNamespace(quantization_config={"quant_method": "gguf"}, text_config=None, _is_quantized=True)
    model = SimpleNamespace(hf_quantizer=object(), config=config, is_quantized=True, quantization_method="gguf")
    model = dequantized(model)
    assert model.hf_quantizer is None and not hasattr(model.config, "quantization_config")
    assert not model.is_quantized and not model.config._is_quantized and not hasattr(model, "quantization_method")


def test_gradient_checkpointing_is_on_when_asked_and_changes_no_loss(run: Path, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    seen: list[bool] = []

    class Probe(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            seen.append(bool(model.is_gradient_checkpointing))

    base = tiny_causal_lm(tmp_path / "base")
    losses = []
    for checkpointing in (False, True):
        config = TrainConfig(
            max_steps=2, eval_fraction=0, logging_steps=1, lora_dropout=0.0, gradient_checkpointing=checkpointing
        )
        result = train_writer(
            run, base, tmp_path / f"w{checkpointing}", config, n_examples=0, progress=False, callbacks=[Probe()]
        )
        losses.append([e["loss_label"] for e in result.history if "loss_label" in e])
    assert seen == [False, True]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


@pytest.mark.slow
def test_the_embedded_gguf_trains_as_a_writer_base(tmp_path: Path) -> None:
    """The real Qwen2.5-Coder-0.5B GGUF, dequantised by transformers, takes a LoRA step in bf16 on a CPU."""
    from vpd.tools.gguf import gguf_available, resolve_gguf

    available = gguf_available("qwen2.5-coder-0.5b")
    if not available:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs the 0.5B model, but: {available.reason}")
        pytest.skip(available.reason)
    base = resolve_gguf("qwen2.5-coder-0.5b", download=False)
    config = TrainConfig(max_steps=1, batch_size=1, eval_fraction=0, precision="bf16", logging_steps=1)
    pairs = [WriterPair("q1", "How many cats are there?", CATS, "run:q1")]
    result = train_writer(pairs, base, tmp_path / "w", config, n_examples=0, progress=False)
    assert result.steps == 1 and result.loss_label is not None and 0 < result.loss_label < 5
    assert (tmp_path / "w" / "adapter_model.safetensors").is_file()


def test_prompts_with_a_shared_start_reuse_its_keys_and_values(tmp_path: Path) -> None:
    from vpd.programs.prompt import render_prompt
    from vpd.tools.backends.transformers_llm import TransformersChat

    base = tiny_causal_lm(tmp_path / "base", vocab_size=4000, corpus=[render_prompt("Q?")[0]["content"]] * 3)
    questions = ["How many cats are there?", "Is there a dog?", "What color is the bus?", "Is it sunny?"]
    reusing, plain = TransformersChat(str(base)), TransformersChat(str(base), prefix_cache=False)
    for question in questions:
        messages = render_prompt(question, n_examples=0)
        assert reusing.generate(messages, max_tokens=12).text == plain.generate(messages, max_tokens=12).text
    # The second prompt computes the shared start (the API text); the third and fourth reuse it.
    assert (reusing.prefix_hits, plain.prefix_hits) == (2, 0)
    start = reusing._prefix[0] if reusing._prefix else []
    assert len(start) > 1000
    # A prompt that does not begin with it is computed in full and starts a new shared start.
    other = [{"role": "user", "content": "Write a haiku about tokens. " * 400}]
    assert reusing.generate(other, max_tokens=4).text == plain.generate(other, max_tokens=4).text
    assert reusing.prefix_hits == 2


def test_a_half_precision_base_trains_its_weights_in_fp32(run: Path, tmp_path: Path) -> None:
    import torch
    from transformers import TrainerCallback

    dtypes: dict[str, set[Any]] = {"trained": set(), "frozen": set()}

    class Probe(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            for parameter in model.parameters():
                dtypes["trained" if parameter.requires_grad else "frozen"].add(parameter.dtype)

    base = tiny_causal_lm(tmp_path / "base")
    config = TrainConfig(max_steps=2, eval_fraction=0, precision="bf16", modules_to_save=("lm_head",))
    result = train_writer(run, base, tmp_path / "w", config, n_examples=0, progress=False, callbacks=[Probe()])
    assert dtypes == {"trained": {torch.float32}, "frozen": {torch.bfloat16}}
    assert result.loss is not None and math.isfinite(result.loss)


def test_a_half_precision_checkpoint_trains_in_fp32_when_asked(run: Path, tmp_path: Path) -> None:
    """precision fp32 (or auto without a GPU) loads the base in fp32, whatever dtype it was saved in."""
    import torch
    from transformers import AutoModelForCausalLM

    base = tiny_causal_lm(tmp_path / "base")
    AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16).save_pretrained(base)
    config = TrainConfig(max_steps=1, eval_fraction=0, precision="fp32", modules_to_save=("lm_head",))
    result = train_writer(run, base, tmp_path / "w", config, n_examples=0, progress=False)
    assert result.loss is not None and math.isfinite(result.loss)


def test_models_that_need_their_own_cache_type_skip_the_shared_start(tmp_path: Path) -> None:
    from vpd.programs.prompt import render_prompt
    from vpd.tools.backends.transformers_llm import TransformersChat, _one_logit

    base = tiny_causal_lm(tmp_path / "base", vocab_size=4000, corpus=[render_prompt("Q?")[0]["content"]] * 3)
    chat = TransformersChat(str(base))
    model, _ = chat.load()
    assert _one_logit(model) == {"logits_to_keep": 1}
    model.generation_config.cache_implementation = "static"
    for question in ("How many cats?", "Is there a dog?", "What color is it?"):
        assert chat.generate(render_prompt(question, n_examples=0), max_tokens=4).completion_tokens
    assert chat.prefix_hits == 0
