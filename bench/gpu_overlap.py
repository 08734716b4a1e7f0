"""Where the k-epoch time goes on the Kaggle engine, and whether training can hide behind decoding.

The unsloth backend (vLLM + unsloth sharing the 8B weights) on the 4 evaluation tasks nearest the
median prompt length, one adapter per task. Rows (every generation row makes 8 x 4 x `--rounds`
sequences of `--max-tokens`, the predictions of one task group at k = 1 and at k = `--rounds`):

    one call          all sequences in one engine call (k = 1: n = 8 x rounds per task)
    calls             `rounds` calls of 8 sequences per task (k = rounds, the lockstep scheduler)
    stream            one engine, each task's next 8 added the moment its last 8 finish (continuous refill)
    train             the 4 tasks' learn steps (`--samples` relabeled samples each), one after another
    overlap           `calls` on this thread while a second thread trains on its own CUDA stream
    overlap stream    `stream` beside the training thread

Per row: wall time, decode tokens/s, mean running sequences per engine step (from vLLM's scheduler),
preemptions (a request pushed out of the KV cache and recomputed later), and for the overlap rows
how much of the serial time (calls + train) the overlap saved.

    python bench/gpu_overlap.py --model DIR --challenges C [--set unsloth.memory_cap_gib=22] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epochs import PLANTED, median_tasks  # noqa: E402

from arc25.backends import load_backend  # noqa: E402
from arc25.backends.base import TrainSample  # noqa: E402
from arc25.config import load_config  # noqa: E402
from arc25.prompts import PromptSpec, build_messages  # noqa: E402
from arc25.tasks import load_tasks  # noqa: E402


class Probe:
    """Counts vLLM's preemptions and running requests per step (the in-process engine core's scheduler)."""

    def __init__(self, llm) -> None:
        self.preemptions, self.steps, self.running = 0, 0, 0
        core = getattr(llm.llm_engine.engine_core, "engine_core", None)  # None: the core runs in another process
        self.scheduler = getattr(core, "scheduler", None)
        if self.scheduler is None:
            print("no in-process scheduler: running/preemption counts stay 0", flush=True)
            return
        original = getattr(self.scheduler, "_preempt_request", None)
        if original is None:
            print("this vLLM has no Scheduler._preempt_request: preemptions stay 0", flush=True)
            return

        def counted(*a, **kw):
            self.preemptions += 1
            return original(*a, **kw)

        self.scheduler._preempt_request = counted

    def sample(self) -> None:
        self.steps += 1
        if self.scheduler is not None:
            self.running += len(self.scheduler.running)  # n > 1: each child is a request of its own

    def snapshot(self) -> tuple[int, int, int]:
        return self.preemptions, self.steps, self.running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--challenges", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4, help="k: calls of 8 sequences per task")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--samples", type=int, default=2, help="relabeled samples per learn step")
    parser.add_argument("--switch-ms", type=float, nargs="+", default=[5.0, 1.0],
                        help="sys.setswitchinterval values for the overlap rows (ms)")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    config = load_config(None, args.set)
    config.model.path, config.model.backend, config.run.tasks_per_worker = args.model, "unsloth", 4
    backend = load_backend(config)
    tasks = load_tasks(args.challenges)
    ids = median_tasks(tasks, backend.tokenizer, 4)
    prompts = [build_messages(tasks[t], PromptSpec(test_index=0)) for t in ids]
    print("tasks:", " ".join(ids), "prompt tokens:", [len(backend.prompt_ids(p)) for p in prompts], flush=True)
    gen = [f"g{i}" for i in range(4)]
    trn = [f"t{i}" for i in range(4)]
    for name in gen + trn:
        backend.create_adapter(name)
    samples = [[TrainSample(prompts[i], PLANTED[(i + j) % len(PLANTED)]) for j in range(args.samples)] for i in range(4)]
    llm = backend.engine.llm
    probe = Probe(llm)
    engine = llm.llm_engine
    seed = iter(range(10**9))

    def params(n: int):
        from vllm import SamplingParams as VParams
        return VParams(n=n, temperature=1.0, top_p=0.95, max_tokens=args.max_tokens, seed=next(seed),
                       stop_token_ids=list(backend.stop_ids), ignore_eos=False)

    def add(task: int, n: int) -> str:
        rid = f"b{next(seed)}"
        from arc25.backends.vllm_compat import lora_request

        lora = lora_request(backend.driver.lora(gen[task]))
        engine.add_request(rid, {"prompt_token_ids": backend.prompt_ids(prompts[task])}, params(n), lora_request=lora)
        return rid

    def drive(refill: dict[str, int] | None = None, left: dict[int, int] | None = None) -> int:
        """Step until done; with refill (request -> task), a finished task gets its next request at once."""
        latest: dict[tuple[str, int], int] = {}  # (request, child) -> its tokens so far (children report apart)
        while engine.has_unfinished_requests():
            probe.sample()
            for out in engine.step():
                for c in out.outputs:
                    latest[(out.request_id, c.index)] = len(c.token_ids)
                if out.finished:
                    if refill is not None:
                        task = refill.pop(out.request_id)
                        if left[task] > 0:
                            left[task] -= 1
                            refill[add(task, 8)] = task
        return sum(latest.values())

    def one_call() -> int:
        for t in range(4):
            add(t, 8 * args.rounds)
        return drive()

    def calls() -> int:
        tokens = 0
        for _ in range(args.rounds):
            for t in range(4):
                add(t, 8)
            tokens += drive()
        return tokens

    def stream() -> int:
        refill = {add(t, 8): t for t in range(4)}
        return drive(refill, {t: args.rounds - 1 for t in range(4)})

    def train_all(stream_: torch.cuda.Stream | None = None) -> float:
        start = time.perf_counter()
        for i in range(4):
            if stream_ is None:
                backend.train(trn[i], samples[i])
            else:
                with torch.cuda.stream(stream_):
                    backend.train(trn[i], samples[i])
                stream_.synchronize()
        return time.perf_counter() - start

    rows = []

    def row(name: str, fn, trains: bool = False, switch_ms: float | None = None) -> dict:
        for g in gen:
            backend.handover(g)  # versions exported before any thread trains
        before = probe.snapshot()
        if switch_ms is not None:
            sys.setswitchinterval(switch_ms / 1000)
        result = {}
        thread = None
        if trains:
            side = torch.cuda.Stream()
            thread = threading.Thread(target=lambda: result.setdefault("train_s", train_all(side)))
        torch.cuda.synchronize()
        start = time.perf_counter()
        if thread:
            thread.start()
        tokens = fn() if fn else 0
        gen_s = time.perf_counter() - start
        if thread:
            thread.join()
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
        sys.setswitchinterval(0.005)
        p, s, r = (a - b for a, b in zip(probe.snapshot(), before))
        out = {"row": name, "wall_s": round(wall, 2), "generate_s": round(gen_s, 2) if fn else None,
               "tok_s": round(tokens / gen_s) if tokens else None, "running_per_step": round(r / s, 1) if s else None,
               "preemptions": p, "train_s": round(result.get("train_s", 0), 2) if trains else None,
               "switch_ms": switch_ms}
        rows.append(out)
        print(json.dumps(out), flush=True)
        return out

    # warm-up: CUDA graphs, LoRA loading, the first training step's compilation
    one_call_rounds, args.rounds = args.rounds, 1
    calls()
    args.rounds = one_call_rounds
    train_all()
    row("one call", one_call)
    c = row("calls", calls)
    row("stream", stream)
    t = row("train", None, trains=True)  # the training thread alone: the code path of the overlap rows
    for ms in args.switch_ms:
        o = row("overlap", calls, trains=True, switch_ms=ms)
        o["saved_vs_serial"] = round(1 - o["wall_s"] / (c["wall_s"] + t["wall_s"]), 3)
        s = row("overlap stream", stream, trains=True, switch_ms=ms)
        s["saved_vs_serial"] = round(1 - s["wall_s"] / (c["wall_s"] + t["wall_s"]), 3)
    free, total = torch.cuda.mem_get_info()
    cache = engine.vllm_config.cache_config
    print(f"\nGPU: peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, device used "
          f"{(total - free) / 2**30:.2f} GiB, KV cache {(cache.num_gpu_blocks or 0) * cache.block_size} tokens")
    cols = ["row", "switch_ms", "wall_s", "generate_s", "tok_s", "running_per_step", "preemptions", "train_s",
            "saved_vs_serial"]
    print(f"4 tasks x 8 x {args.rounds} sequences of {args.max_tokens} tokens; {args.samples} samples per learn step")
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    backend.close()


if __name__ == "__main__":
    main()
