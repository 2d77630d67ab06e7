"""Tiny, randomly initialised Hugging Face models built offline, for testing training code.

:func:`tiny_vlm` writes a vision-language model and its processor (LLaVA or
Idefics3/SmolVLM) to a folder that ``AutoModelForImageTextToText.from_pretrained`` and
``AutoProcessor.from_pretrained`` load; :func:`tiny_causal_lm` writes a Qwen2 text model and
tokenizer with a ChatML chat template. Nothing is downloaded: the byte-level BPE tokenizer
is trained on the spot on a small built-in corpus, the weights are random (seeded), and the
image processors need no torchvision.

The models are a few hundred thousand parameters: a training step takes milliseconds on a
CPU, so a test can overfit a handful of examples and check that the losses fall. With a
random base, LoRA alone barely moves the loss (the frozen random output head caps the
logits): make the output head trainable in such tests (``modules_to_save=["lm_head"]``).

Needs ``torch``, ``transformers`` and ``tokenizers`` (``pip install 'vpd[train]'``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from vpd.errors import BackendUnavailable, InvalidArgumentError

TinyArchitecture = Literal["llava", "idefics3"]
TINY_ARCHITECTURES: tuple[TinyArchitecture, ...] = ("llava", "idefics3")

# A chat template in the ChatML style that understands image parts, as VLM processors'
# own templates do: {"role": ..., "content": [{"type": "image"}, {"type": "text", "text": ...}]}.
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ image_token }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "What color is the car? How many cats are there? Is there a dog in the picture? "
    "Where is he looking? What is the man holding? Which animal is bigger? Does the sign say stop? "
    "Answer with a single word or phrase. Explain the answer step by step, then give it. "
    "The car at [0.120, 0.300, 0.450, 0.700] is red. There are 2 cats, at [0.050, 0.100, 0.300, 0.600]. "
    "So the answer is yes. So the answer is no. So the answer is 3. The text reads STOP. "
    "yes no 0 1 2 3 4 5 6 7 8 9 red blue green white black yellow down table person dog cat "
    "def execute_command(image): image_patch = ImagePatch(image) return len(image_patch.find('cat')) "
    "bool_to_yesno(image_patch.exists('dog')) image_patch.simple_query('What color is the car?')"
)


def _require() -> tuple[Any, Any, Any]:
    try:
        import tokenizers
        import torch
        import transformers
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise BackendUnavailable(
            f"Tiny test models need torch, transformers and tokenizers ({exc.name} is missing): "
            "pip install 'vpd[train]'."
        ) from exc
    return torch, transformers, tokenizers


def _check_size(name: str, value: Any, multiple: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % multiple:
        kind = "integer" if multiple == 1 else f"multiple of {multiple}"
        raise InvalidArgumentError(f"{name} must be a positive {kind}, got {value!r}.")


def _start(path: str | os.PathLike[str], seed: int) -> tuple[Any, Path]:
    """The transformers module and the output folder (created), with torch's seed set for the weights."""
    torch, transformers, _ = _require()
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    return transformers, out


def tiny_tokenizer(special_tokens: Iterable[str] = (), *, vocab_size: int = 600, corpus: Iterable[str] = ()) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on the spot (any text encodes).

    Its special tokens are ``<|endoftext|>`` (also the padding token), ``<|im_start|>``,
    ``<|im_end|>`` (the end of a turn, and the end-of-sequence token) and ``special_tokens``.

    Args:
        special_tokens: More special tokens (e.g. ``<image>``).
        vocab_size: The vocabulary's size (the 256 bytes, the merges, the special tokens).
        corpus: More text to learn merges from.
    """
    _, transformers, tokenizers = _require()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *special_tokens]
    model = tokenizers.Tokenizer(tokenizers.models.BPE())
    model.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    model.train_from_iterator([_CORPUS, *corpus], trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=specials[3:],
    )
    tokenizer.chat_template = _CHAT_TEMPLATE.replace("{{ image_token }}", "")
    return tokenizer


def _text_config(transformers: Any, tokenizer: Any, hidden: int, layers: int, kind: str = "llama") -> Any:
    options = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 8192,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": None,
        "tie_word_embeddings": False,
    }
    config_class = transformers.Qwen2Config if kind == "qwen2" else transformers.LlamaConfig
    return config_class(**options)


def tiny_vlm(
    path: str | os.PathLike[str],
    architecture: TinyArchitecture = "llava",
    *,
    image_size: int = 32,
    hidden_size: int = 64,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny random vision-language model and its processor to ``path``.

    The folder loads with ``AutoModelForImageTextToText.from_pretrained(path)`` and
    ``AutoProcessor.from_pretrained(path)``, and so with everything in vpd that takes a
    student model (``vpd.distill.train``, ``Student.load``).

    Args:
        path: The folder to write (created; files in it are overwritten).
        architecture: ``"llava"`` (a CLIP vision tower and a Llama text model) or
            ``"idefics3"`` (SmolVLM's architecture: a SigLIP-style tower, pixel shuffle, a
            Llama text model).
        image_size: Images are resized to this square side (a multiple of 8; of 16 for idefics3).
        hidden_size: Width of both towers (a multiple of 8).
        layers: Layers of each tower.
        seed: Seeds the random weights.

    Returns:
        The folder.

    Raises:
        InvalidArgumentError: An unknown architecture or a bad size.
        BackendUnavailable: torch, transformers or tokenizers is not installed.
    """
    if architecture not in TINY_ARCHITECTURES:
        raise InvalidArgumentError(
            f"Unknown tiny architecture {architecture!r}; choose one of {', '.join(TINY_ARCHITECTURES)}."
        )
    # Four heads of an even width (rotary embeddings); Idefics3's pixel shuffle halves 8-pixel patches.
    image_multiple = 16 if architecture == "idefics3" else 8
    _check_size("image_size", image_size, image_multiple)
    _check_size("hidden_size", hidden_size, 8)
    _check_size("layers", layers)
    transformers, out = _start(path, seed)
    vision = {
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "image_size": image_size,
        "patch_size": 8,
    }
    if architecture == "llava":
        tokenizer = tiny_tokenizer(["<image>"])
        image_token = "<image>"
        config = transformers.LlavaConfig(
            vision_config=transformers.CLIPVisionConfig(**vision, projection_dim=hidden_size),
            text_config=_text_config(transformers, tokenizer, hidden_size, layers),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,
        )
        model = transformers.LlavaForConditionalGeneration(config)
        # The PIL processors (no torchvision); older transformers name them without "Pil".
        clip_processor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
        image_processor = clip_processor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
        processor = transformers.LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=8,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # CLIP's CLS token, which "default" drops again
            chat_template=_CHAT_TEMPLATE.replace("{{ image_token }}", image_token),
        )
    else:
        specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
        tokenizer = tiny_tokenizer(specials)
        scale_factor = 2
        image_seq_len = (image_size // 8) ** 2 // scale_factor**2
        config = transformers.Idefics3Config(
            vision_config=transformers.Idefics3VisionConfig(**vision),
            text_config=_text_config(transformers, tokenizer, hidden_size, layers),
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            scale_factor=scale_factor,
            tie_word_embeddings=False,
        )
        model = transformers.Idefics3ForConditionalGeneration(config)
        idefics_processor = (
            getattr(transformers, "Idefics3ImageProcessorPil", None) or transformers.Idefics3ImageProcessor
        )
        image_processor = idefics_processor(
            do_image_splitting=False,
            size={"longest_edge": image_size},
            max_image_size={"longest_edge": image_size},
        )
        processor = transformers.Idefics3Processor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            image_seq_len=image_seq_len,
            chat_template=_CHAT_TEMPLATE.replace("{{ image_token }}", "<image>"),
        )
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def tiny_causal_lm(
    path: str | os.PathLike[str],
    *,
    hidden_size: int = 64,
    layers: int = 2,
    seed: int = 0,
    vocab_size: int = 600,
    corpus: Iterable[str] = (),
) -> Path:
    """Write a tiny random Qwen2 causal LM and its tokenizer (ChatML chat template) to ``path``.

    The folder loads with ``AutoModelForCausalLM`` / ``AutoTokenizer``, as a program writer
    to fine-tune in tests.

    Args:
        path: The folder to write.
        hidden_size: The model's width (a multiple of 8).
        layers: Its layers.
        seed: Seeds the random weights.
        vocab_size: The tokenizer's vocabulary size.
        corpus: More text for the tokenizer to learn merges from: text the tests feed the
            model (e.g. vpd's program prompt) then takes fewer tokens.

    Returns:
        The folder.
    """
    _check_size("hidden_size", hidden_size, 8)
    _check_size("layers", layers)
    transformers, out = _start(path, seed)
    tokenizer = tiny_tokenizer(vocab_size=vocab_size, corpus=corpus)
    model = transformers.Qwen2ForCausalLM(_text_config(transformers, tokenizer, hidden_size, layers, kind="qwen2"))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
