"""Examples per second of program synthesis at k = 5: sequential (as ViperGPT runs) vs vpd.

Side by side in one run, on the same questions, with the offline toolkit (NanoDet,
RapidOCR: real models on the CPU) and a scripted OpenAI-compatible LLM on 127.0.0.1 that
answers each request after a fixed latency (a hosted model's round trip):

* **sequential**: for each question, k times: one request, then run its program with
  ``vpd.run_program`` (no result cache), one after another;
* **vpd**: ``vpd.distill.synthesize``: the k requests of a question concurrently,
  identical programs run once, the programs run concurrently and share tool results through
  the toolkit's result cache, ``--jobs`` questions at a time.

The scripted replies are three programs per question kind (counting, yes/no, other), so
some of the k samples repeat, as sampling at temperature 0.7 does in practice.

    python benchmarks/synthesis.py                 # 12 vqav2-mini questions (needs ../shared/data)
    python benchmarks/synthesis.py --n 30 --latency 0.5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import vpd
from vpd.distill import Dataset, load_dataset, synthesize
from vpd.testing.openai_server import FakeOpenAIServer
from vpd.tools.config import ToolkitConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "vqav2-mini" / "data.json"

COUNT = "```python\ndef execute_command(image):\n    return len(ImagePatch(image).find('{0}'))\n```"
COUNT_ALL = (
    "```python\ndef execute_command(image):\n    patches = ImagePatch(image).find('{0}')\n"
    "    return len([p for p in patches if p.width > 4])\n```"
)
EXISTS = "```python\ndef execute_command(image):\n    return bool_to_yesno(ImagePatch(image).exists('{0}'))\n```"
READ = "```python\ndef execute_command(image):\n    return ImagePatch(image).ocr() or 'none'\n```"
PROGRAMS = {"count": [COUNT, COUNT_ALL, COUNT], "yes/no": [EXISTS, EXISTS, READ], "other": [READ, COUNT, READ]}


def _kind(question: str) -> str:
    q = question.lower()
    return "count" if q.startswith("how many") else "yes/no" if q.split()[0] in ("is", "are", "does", "do") else "other"


def _noun(question: str) -> str:
    words = [w.strip("?.,") for w in question.lower().split()]
    return next((w for w in reversed(words) if len(w) > 3 and w not in ("there", "this", "picture", "image")), "person")


def responder(latency: float) -> Any:
    def respond(request: dict[str, Any]) -> Any:
        time.sleep(latency)
        question = request["messages"][-1]["content"]
        last = question.strip().splitlines()[-1]
        seed = int(request.get("seed", 0))
        return PROGRAMS[_kind(last)][seed % 3].format(_noun(last))

    return respond


def sequential(data: Dataset, server: FakeOpenAIServer, k: int) -> float:
    """One request, then one program run, k times per question: ViperGPT's loop."""
    from vpd.programs.extract import extract_program
    from vpd.tools.backends.litellm_llm import LiteLLMChat

    toolkit = vpd.Toolkit(ToolkitConfig(preset="offline"), cache=False)
    llm = LiteLLMChat(server.model_string, api_base=server.base_url, api_key="bench")
    started = time.perf_counter()
    for example in data:
        for i in range(k):
            reply = llm.generate(
                [{"role": "user", "content": f"Write a program.\n{example.question}"}], temperature=0.7, seed=i
            )
            code = extract_program(reply.text).code
            if code is not None:
                vpd.run_program(code, example.image, toolkit=toolkit)
    return time.perf_counter() - started


def concurrent(data: Dataset, server: FakeOpenAIServer, k: int, jobs: int) -> float:
    toolkit = vpd.Toolkit(ToolkitConfig(preset="offline"))
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        synthesize(
            data,
            out,
            k=k,
            toolkit=toolkit,
            llm=server.model_string,
            api_base=server.base_url,
            api_key="bench",
            cache=False,
            max_repairs=0,
            jobs=jobs,
        )
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12, help="questions")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="questions at a time for vpd")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per LLM request")
    args = parser.parse_args(argv)
    if not DATA.exists():
        print(f"needs the shared sample data at {DATA}")
        return 1
    data = load_dataset(DATA).limit(args.n)
    with FakeOpenAIServer(responder(args.latency)) as server:
        concurrent(Dataset("warm", data.examples[:1]), server, 1, 1)  # load the models once, for both
        seq = sequential(data, server, args.k)
        vpd_seconds = concurrent(data, server, args.k, args.jobs)
    print(f"Synthesis at k = {args.k}, {len(data)} vqav2-mini questions, offline toolkit, LLM latency {args.latency} s")
    print(f"  {'':<34}{'seconds':>10}{'examples/s':>12}")
    print(f"  {'sequential (ViperGPT loop)':<34}{seq:>10.1f}{len(data) / seq:>12.3f}")
    print(f"  {f'vpd synthesize (jobs={args.jobs})':<34}{vpd_seconds:>10.1f}{len(data) / vpd_seconds:>12.3f}")
    print(f"  speed-up: {seq / vpd_seconds:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
