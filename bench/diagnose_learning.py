"""Why learning helps or not: what each learn step does to the task's own prompt.

    python bench/diagnose_learning.py [--tasks 8] [--predictions 32] [--epochs 4] [--seed 0]

Runs search and learn (the real `TaskSolver`, HF backend, sandboxed executor) on the
tasks `bench_learning.py` chooses, one epoch at a time, and after every learn step
measures on the task's own, unaugmented prompt (the prompt the search samples from,
not the relabeled prompts the adapter trained on):

    right   mean -log p per answer token of the task's *right* programs (the family
            programs that solve train and test: known, since the tasks are chosen so),
            adapter minus base model: below 0 = learning moved towards the answer
    own     the same for the programs the adapter has trained on so far (relabeled,
            mostly wrong for this task): below 0 = the adapter reinforces its own samples
    repeat  of the next epoch's valid programs, the fraction whose outputs equal those
            of a program already trained on (resampling what it learned)

plus each epoch's train-pass count and best fraction of correct train grids. A
table per task, then the means over tasks. One process, the given torch threads.

With --reader N (a reader model: `arc25 make-tiny-model --reader`), the tasks are the
reader's held-out tasks (`arc25.devmodels.reader_model.heldout_tasks`: N per stratum of 1, 2 and 3
held-out steps, then the real ARC-AGI-1 tasks the family expresses), the right program a
synthetic task's own, and the decoys reader programs; the check also prints, per stratum,
the fraction of tasks whose right programs are likelier on the true prompt than on the
decoy prompt and the mean margin (decoy minus true, nats per answer token).

First, a check that needs no sampling (`--reads-only`: only this): does the base model
read the train *outputs* at all? Per task, the mean -log p per answer token of its right
programs on its own prompt and on a decoy prompt (same inputs, outputs made by another,
random family program), and of the decoy program on both. A model that reads the
outputs finds the right programs likelier on the true prompt and the decoy likelier on
the decoy prompt; if both columns are equal, its programs depend on the inputs alone,
and hindsight relabeling ("these outputs come from this program") has nothing to teach
it about the task's own outputs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "arc25_src"))
sys.path.insert(0, str(REPO / "bench"))

from bench_learning import SOURCE, chosen_tasks, search_settings  # noqa: E402

from arc25.tasks import load_tasks  # noqa: E402

ADAPTER = "diagnose"


def nll(backend, adapter: str | None, samples) -> float:
    """Mean over samples of the mean -log p per answer token, under `adapter` (None: the base model)."""
    import torch

    losses = []
    with torch.no_grad(), backend.loras.using(adapter) as model:
        for sample in samples:
            ids, labels = backend.loras.encode(sample)
            device = next(model.parameters()).device
            losses.append(model(input_ids=torch.tensor([ids], device=device),
                                labels=torch.tensor([labels], device=device)).loss.item())
    return statistics.mean(losses) if losses else float("nan")


def reads_outputs(task, backend, rng, max_right: int = 4, right_programs=None, decoy=None) -> dict:
    """-log p per token of the right programs and of a decoy program, on the true and the decoy prompt.

    `right_programs`: the task's right programs (default: the family programs that solve it);
    `decoy(task, rng)`: the decoy task and program (default `program_family.decoy_task`)."""
    from arc25.backends.base import TrainSample
    from arc25.devmodels.program_family import decoy_task, expressing_programs
    from arc25.prompts import build_messages, format_answer

    decoy, program = (decoy or decoy_task)(task, rng)
    right_programs = right_programs or expressing_programs(task, include_test=True)
    right = [format_answer(p.code) for p in right_programs[:max_right]]
    true_prompt, decoy_prompt = build_messages(task), build_messages(decoy)
    on = lambda prompt, answers: nll(backend, None, [TrainSample(prompt, a) for a in answers])  # noqa: E731
    return {"right_true": on(true_prompt, right), "right_decoy": on(decoy_prompt, right),
            "decoy_decoy": on(decoy_prompt, [format_answer(program.code)]),
            "decoy_true": on(true_prompt, [format_answer(program.code)]), "decoy": program.steps[0].description}


def diagnose_task(task, backend, executor, config, max_right: int = 4) -> list[dict]:
    """One row per epoch: the solver's numbers and the likelihood shifts after its learn step."""
    from arc25.backends.base import TrainSample
    from arc25.devmodels.program_family import expressing_programs
    from arc25.prompts import build_messages, format_answer
    from arc25.search_and_learn import TaskSolver

    own_prompt = build_messages(task)
    right = [TrainSample(own_prompt, format_answer(p.code))
             for p in expressing_programs(task, include_test=True)[:max_right]]
    base_right = nll(backend, None, right)
    solver = TaskSolver(task, backend, executor, config, budget_s=3600.0, adapter=ADAPTER)
    rows: list[dict] = []
    while not solver.done:
        phase = solver.phase
        solver.step()
        if phase == "search":
            epoch = solver.state.epochs[-1]
            new = [p for p in solver.state.predictions if p.epoch == epoch.epoch and p.valid_outputs]
            trained = solver.relabeler.trained
            repeat = sum(p.outputs_key() in trained for p in new) / len(new) if new and trained else None
            rows.append({"epoch": epoch.epoch, "train_pass": epoch.train_pass, "valid": epoch.valid_outputs,
                         "best": epoch.best_correct_grids, "repeat": repeat, "samples": 0, "loss": None,
                         "right": None, "own": None})
        elif phase == "learn" and rows[-1]["epoch"] == solver.state.epoch - 1:
            record = solver.state.epochs[-1]
            trained = [p for p in solver.state.predictions if p.valid_outputs and p.code
                       and p.outputs_key() in solver.relabeler.trained]
            # one program per trained output set, on the task's own prompt
            own = list({p.outputs_key(): TrainSample(own_prompt, p.completion) for p in trained}.values())
            rows[-1].update(samples=record.train_samples, loss=record.train_loss,
                            right=nll(backend, ADAPTER, right) - base_right,
                            own=nll(backend, ADAPTER, own) - nll(backend, None, own) if own else None)
    return rows


def reading_rows(reads: list[dict]) -> list[dict]:
    """Per stratum and in all: tasks whose right programs are likelier on the true prompt than on the
    decoy prompt, and the margin (right on decoy minus right on true, nats per answer token)."""
    groups: dict[str, list[dict]] = {}
    for r in reads:
        if r["right_true"] == r["right_true"]:  # not NaN: the task has a right program
            groups.setdefault(r.get("stratum", "all"), []).append(r)
    if len(groups) > 1:
        groups["all"] = [r for rs in list(groups.values()) for r in rs]
    rows = []
    for name, rs in groups.items():
        margins = [r["right_decoy"] - r["right_true"] for r in rs]
        rows.append({"tasks": name, "n": len(rs), "reads": sum(m > 0 for m in margins),
                     "fraction": sum(m > 0 for m in margins) / len(rs), "margin_mean": statistics.mean(margins),
                     "margin_median": statistics.median(margins)})
    return rows


def reading_summary(reads: list[dict]) -> str:
    """`reading_rows` as a table."""
    lines = ["| tasks | n | reads (right likelier on true) | margin mean | margin median |", "|---|---|---|---|---|"]
    for r in reading_rows(reads):
        lines.append(f"| {r['tasks']} | {r['n']} | {r['reads']}/{r['n']} ({r['fraction']:.0%}) | "
                     f"{r['margin_mean']:+.4f} | {r['margin_median']:+.4f} |")
    return "\n".join(lines)


def fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--task-ids", help="comma-separated task ids instead of the rule")
    parser.add_argument("--predictions", type=int, default=32, help="predictions per task")
    parser.add_argument("--epochs", type=int, default=4, help="k: predictions/k per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", help="model folder (default: the warm model, built on first use)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--reads-only", action="store_true", help="only the does-it-read-the-outputs check")
    parser.add_argument("--reader", type=int, metavar="N",
                        help="the reader's held-out tasks, N per stratum (with --model: a reader folder)")
    parser.add_argument("--no-real", action="store_true", help="with --reader: synthetic held-out tasks only")
    parser.add_argument("--device", default="cpu", help="the HF backend's device (cpu, cuda)")
    parser.add_argument("--json", help="write the reading check here (per task, and the summary per stratum)")
    args = parser.parse_args()

    import torch

    from arc25.backends import load_backend
    from arc25.commands.dry_run import WARM_SETTINGS, default_cache_dir
    from arc25.config import load_config
    from arc25.execution import Executor
    from arc25.devmodels.warm_model import warm_model_path

    torch.set_num_threads(args.threads)
    heldout = None
    if args.reader:
        from arc25.devmodels.reader_model import heldout_tasks, model_real_heldout

        heldout = heldout_tasks(args.reader, real=None if args.no_real else model_real_heldout(args.model))
        tasks = [h.task for h in heldout]
    else:
        everything = load_tasks(SOURCE)
        tasks = [everything[t] for t in args.task_ids.split(",")] if args.task_ids else chosen_tasks(args.tasks)
    model_dir = args.model or str(warm_model_path(default_cache_dir()))
    k = args.epochs
    # every epoch runs (no early stop on a solve): we want to see what the later learn steps do
    config = load_config(None, [
        f"seed={args.seed}", f"model.path={model_dir}", "model.backend=hf", "search.learn=true",
        f"search.max_epochs={k}", f"search.predictions_per_epoch={args.predictions // k}",
        f"search.max_predictions={args.predictions}", "search.stop_distinct_outputs=1000", f"model.device={args.device}",
        "search.stop_agreeing_programs=1000", *search_settings(WARM_SETTINGS), *args.overrides])
    backend = load_backend(config)
    backend.create_adapter(ADAPTER)
    print(f"model {model_dir}, {args.predictions} predictions per task in {k} epochs, seed {args.seed}, "
          f"overrides {args.overrides}\n", flush=True)
    print("does the base model read the outputs? -log p per answer token (true prompt vs decoy outputs)\n")
    print("| task | right on true | right on decoy | decoy on decoy | decoy on true | decoy program |\n"
          "|---|---|---|---|---|---|")
    rng = random.Random(args.seed)
    reads = []
    for i, task in enumerate(tasks):
        if heldout is not None:
            from arc25.devmodels.reader_model import reader_decoy

            program = heldout[i].program
            r = reads_outputs(task, backend, rng, right_programs=[program] if program else None, decoy=reader_decoy)
            r["stratum"] = heldout[i].stratum
        else:
            r = reads_outputs(task, backend, rng)
        reads.append(r)
        print(f"| {task.task_id} | {r['right_true']:.3f} | {r['right_decoy']:.3f} | {r['decoy_decoy']:.3f} | "
              f"{r['decoy_true']:.3f} | {r['decoy']} |", flush=True)
    print()
    print(reading_summary(reads))
    if args.json:
        from arc25.io import atomic_write_text

        atomic_write_text(args.json, json.dumps({"model": model_dir, "seed": args.seed, "reads": reads,
                                                 "summary": reading_rows(reads)}, indent=1) + "\n")
    if args.reads_only:
        return
    print()
    header = ("| task | epoch | valid outputs | train pass | best train grids | repeat | samples | loss | "
              "right: adapter - base | own: adapter - base |\n|---|---|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    every: list[dict] = []
    started = time.monotonic()
    with Executor(workers=1, timeout_s=config.execution.timeout_s) as executor:
        for task in tasks:
            rows = diagnose_task(task, backend, executor, config)
            every += rows
            for r in rows:
                print(f"| {task.task_id} | {r['epoch']} | {r['valid']} | {r['train_pass']} | {r['best']:.2f} | "
                      f"{fmt(r['repeat'])} | {r['samples']} | {fmt(r['loss'], '.3f')} | {fmt(r['right'], '+.3f')} | "
                      f"{fmt(r['own'], '+.3f')} |", flush=True)
    print(f"\nmeans over {len(tasks)} tasks by epoch ({time.monotonic() - started:.0f} s):\n")
    print("| epoch | train pass | best train grids | repeat | right: adapter - base | own: adapter - base |\n"
          "|---|---|---|---|---|---|")
    for epoch in range(k):
        rows = [r for r in every if r["epoch"] == epoch]
        mean = lambda key: statistics.mean(v) if (v := [r[key] for r in rows if r[key] is not None]) else None  # noqa: E731
        print(f"| {epoch} | {fmt(mean('train_pass'))} | {fmt(mean('best'))} | {fmt(mean('repeat'))} | "
              f"{fmt(mean('right'), '+.3f')} | {fmt(mean('own'), '+.3f')} |")
    backend.close()


if __name__ == "__main__":
    main()
