"""A generated family of short BARC-format DSL programs, and ARC-like tasks built from them.

Each program is one or two *steps* applied to `output_grid`: geometry (rotations,
flips, transpose), colour maps (replace, swap, keep one colour, recolour), crops
(bounding box, largest/smallest object, halves), scaling and tiling, object filters
by size, gravity, and lines/outlines/hole filling. A step is a template with a few
slots (function, colours, numbers); its code, concept and description sentence are
fixed by the slots, so the whole program text is a function of the steps. That is
what makes the family learnable by a tiny model in minutes (see `arc25.devmodels.warm_model`):
the text is a template and only the slots vary.

A family *task* is made by running a program on real ARC input grids (windows of the
inputs of one ARC task) and showing the pairs like a BARC training prompt: three
examples and one test input. The program's text is then that task's answer.

*Reader tasks* (the end of this module, for `arc25.devmodels.reader_model`) draw from the same steps
plus counting steps, one to three steps of different categories, and split programs by a
hash rule (`held_out`): a held-out program never appears in the reader's training data,
so reading it on a held-out task means reading its parameters from the train outputs. The
functions above are unchanged by them (the warmed model's data stays what it was).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from arc25.grid import MAX_SIDE, is_valid_grid  # noqa: F401  (MAX_SIDE: warm_model imports it from here)
from arc25.tasks import Example, Task

DSL_COLORS = ("BLACK", "BLUE", "RED", "GREEN", "YELLOW", "GRAY", "PINK", "ORANGE", "PURPLE", "BROWN")
COLOR_WORDS = ("black", "blue", "red", "green", "yellow", "gray", "pink", "orange", "purple", "brown")


@dataclass(frozen=True)
class Step:
    """One transformation of `output_grid`: its code lines (inside `transform`), concept and description."""

    category: str
    concept: str
    description: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class FamilyProgram:
    steps: tuple[Step, ...]

    @property
    def code(self) -> str:
        concepts = ", ".join(dict.fromkeys(s.concept for s in self.steps))
        description = ", then ".join(s.description for s in self.steps)
        body = "".join(f"    {line}\n" for s in self.steps for line in s.lines)
        return ("from common import *\n\nimport numpy as np\nfrom typing import *\n\n"
                f"# concepts:\n# {concepts}\n\n"
                f"# description:\n# In the input you will see a grid. To make the output, {description}.\n\n"
                "def transform(input_grid):\n    output_grid = np.copy(input_grid)\n"
                f"{body}    return output_grid\n")

    def run(self, grid: np.ndarray) -> np.ndarray | None:
        """The program's output on `grid` (in this process: our own trusted code), None if not a valid grid."""
        return run_code(self.code, grid)


# ---------------------------------------------------------------------------------------------
# Steps. Each generator lists every variant for the colours in play: `a` colours are present in
# the input, `b` colours may be written (any colour).


def _c(i: int) -> str:
    return f"Color.{DSL_COLORS[i]}"


def geometry(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    steps = [Step("geometry", "rotation", f"rotate the grid by {90 * k} degrees",
                  (f"output_grid = np.rot90(output_grid, k={k})",)) for k in (1, 2, 3)]
    steps.append(Step("geometry", "reflection", "flip the grid upside down", ("output_grid = np.flipud(output_grid)",)))
    steps.append(Step("geometry", "reflection", "flip the grid left to right",
                      ("output_grid = np.fliplr(output_grid)",)))
    steps.append(Step("geometry", "diagonal reflection", "transpose the grid",
                      ("output_grid = np.transpose(output_grid)",)))
    return steps


def colour_maps(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    steps = []
    for x in a:
        for y in b:
            if x != y:
                steps.append(Step("colour", "color mapping", f"change every {COLOR_WORDS[x]} pixel to {COLOR_WORDS[y]}",
                                  (f"output_grid[output_grid == {_c(x)}] = {_c(y)}",)))
        if x != 0:
            steps.append(Step("colour", "color filtering", f"keep only the {COLOR_WORDS[x]} pixels",
                              (f"output_grid[output_grid != {_c(x)}] = Color.BLACK",)))
    for y in b:
        if y != 0:
            steps.append(Step("colour", "recoloring", f"color every non-black pixel {COLOR_WORDS[y]}",
                              (f"output_grid[output_grid != Color.BLACK] = {_c(y)}",)))
    for x, y in itertools.combinations(sorted(a), 2):
        steps.append(Step("colour", "color swap", f"swap the {COLOR_WORDS[x]} and {COLOR_WORDS[y]} pixels",
                          (f"is_first, is_second = output_grid == {_c(x)}, output_grid == {_c(y)}",
                           f"output_grid[is_first], output_grid[is_second] = {_c(y)}, {_c(x)}")))
    return steps


_OBJECTS = ("objects = find_connected_components(output_grid, background=Color.BLACK, connectivity=8, "
            "monochromatic=False)")


def crops(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    steps = [Step("crop", "cropping", "crop the grid to its non-black pixels",
                  ("output_grid = crop(output_grid, background=Color.BLACK)",))]
    for pick, word in (("max", "largest"), ("min", "smallest")):
        steps.append(Step("crop", "object extraction", f"crop the {word} object",
                          (_OBJECTS, f"output_grid = crop({pick}(objects, key=lambda obj: np.sum(obj != Color.BLACK)), "
                           "background=Color.BLACK)")))
    halves = {"top": "[:output_grid.shape[0] // 2, :]", "bottom": "[output_grid.shape[0] // 2:, :]",
              "left": "[:, :output_grid.shape[1] // 2]", "right": "[:, output_grid.shape[1] // 2:]"}
    for side, index in halves.items():
        steps.append(Step("crop", "cropping", f"keep the {side} half of the grid", (f"output_grid = output_grid{index}",)))
    return steps


def scalings(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    steps = []
    for f in (2, 3):
        steps.append(Step("scale", "scaling", f"scale the grid up by a factor of {f}",
                          (f"output_grid = scale_sprite(output_grid, factor={f})",)))
        steps.append(Step("scale", "downscaling", f"keep every {'second' if f == 2 else 'third'} row and column",
                          (f"output_grid = output_grid[::{f}, ::{f}]",)))
    for rows, cols in itertools.product((1, 2, 3), repeat=2):
        if (rows, cols) != (1, 1):
            steps.append(Step("scale", "pattern repetition", f"tile the grid {rows} times down and {cols} times across",
                              (f"output_grid = np.tile(output_grid, ({rows}, {cols}))",)))
    steps.append(Step("scale", "symmetry", "put its mirror image on the right",
                      ("output_grid = np.concatenate([output_grid, np.fliplr(output_grid)], axis=1)",)))
    steps.append(Step("scale", "symmetry", "put its mirror image below",
                      ("output_grid = np.concatenate([output_grid, np.flipud(output_grid)], axis=0)",)))
    return steps


def object_filters(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    steps = [Step("objects", "object extraction", "keep only the largest object",
                  (_OBJECTS, "output_grid = max(objects, key=lambda obj: np.sum(obj != Color.BLACK))"))]
    for op, word in (("<", "fewer"), (">", "more")):
        for n in (1, 2, 3, 4):
            for y in b:
                verb = "remove" if y == 0 else f"color {COLOR_WORDS[y]}"
                steps.append(Step("objects", "object filtering" if y == 0 else "object recoloring",
                                  f"{verb} the objects with {word} than {n} pixels",
                                  ("for obj in find_connected_components(output_grid, background=Color.BLACK, "
                                   "connectivity=8, monochromatic=False):",
                                   f"    if np.sum(obj != Color.BLACK) {op} {n}:",
                                   f"        output_grid[obj != Color.BLACK] = {_c(y)}")))
    return steps


def gravity(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    moves = {"down": ("column", "!=", ".T", ".T"), "up": ("column", "==", ".T", ".T"),
             "right": ("row", "!=", "", ""), "left": ("row", "==", "", "")}
    return [Step("gravity", "gravity", f"let every pixel fall {way}",
                 (f"output_grid = np.array([sorted({name}, key=lambda c: c {op} Color.BLACK) "
                  f"for {name} in output_grid{t_in}]){t_out}",))
            for way, (name, op, t_in, t_out) in moves.items()]


DIRECTIONS = {"down": (1, 0), "up": (-1, 0), "right": (0, 1), "left": (0, -1),
              "down right": (1, 1), "down left": (1, -1), "up right": (-1, 1), "up left": (-1, -1)}


def lines(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    steps = []
    for x in a:
        if x == 0:
            continue
        for way, (dx, dy) in DIRECTIONS.items():
            for y in b:
                if y == 0:
                    continue
                steps.append(Step("lines", "line drawing",
                                  f"draw a {COLOR_WORDS[y]} line from every {COLOR_WORDS[x]} pixel going {way}",
                                  (f"for x, y in np.argwhere(output_grid == {_c(x)}):",
                                   f"    draw_line(output_grid, x, y, direction=({dx}, {dy}), color={_c(y)})")))
    for y in b:
        if y == 0:
            continue
        word = COLOR_WORDS[y]
        steps.append(Step("lines", "filling", f"fill the enclosed black cells with {word}",
                          (f"output_grid[object_interior(output_grid) & (output_grid == Color.BLACK)] = {_c(y)}",)))
        steps.append(Step("lines", "outlining", f"surround every object with {word}",
                          (f"output_grid[object_neighbors(output_grid, connectivity=8)] = {_c(y)}",)))
        steps.append(Step("lines", "boundary", f"color the boundary of every object {word}",
                          (f"output_grid[object_boundary(output_grid)] = {_c(y)}",)))
    return steps


Generator = Callable[[Sequence[int], Sequence[int]], list[Step]]
STEP_GENERATORS: dict[str, Generator] = {
    "geometry": geometry, "colour": colour_maps, "crop": crops, "scale": scalings,
    "objects": object_filters, "gravity": gravity, "lines": lines,
}


SHAPE_KEEPING = ("colour", "objects", "gravity", "lines")  # steps whose output has their input's shape


def all_steps(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    return [s for gen in STEP_GENERATORS.values() for s in gen(a, b)]


# ---------------------------------------------------------------------------------------------
# Running programs (in this process: the family's own code, for building tasks and searching)


@functools.lru_cache(maxsize=4096)
def compile_code(code: str) -> Callable[[np.ndarray], object]:
    from arc25.exec_worker import load_dsl

    load_dsl()  # `from common import *` finds the DSL
    namespace: dict[str, object] = {}
    exec(compile(code, "<family>", "exec"), namespace)
    return namespace["transform"]  # type: ignore[return-value]


def as_grid(value: object) -> np.ndarray | None:
    try:
        arr = np.asarray(value)
    except Exception:
        return None
    return arr.astype(np.int64) if is_valid_grid(arr) else None


def run_code(code: str, grid: np.ndarray) -> np.ndarray | None:
    try:
        return as_grid(compile_code(code)(np.array(grid, dtype=np.int64)))
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# Random programs and the tasks they make


def colours_of(grids: Sequence[np.ndarray]) -> list[int]:
    return sorted({int(v) for g in grids for v in np.unique(g)})


def random_step(rng: random.Random, present: Sequence[int], category: str | None = None,
                generators: dict[str, Generator] | None = None) -> Step:
    """A step of a random category (uniform over categories), its colour slots drawn from `present`."""
    generators = generators or STEP_GENERATORS
    category = category or rng.choice(list(generators))
    writable = sorted(set(rng.sample(range(10), 3)) | {0} | set(present[:1]))
    return rng.choice(generators[category](present, writable))


def random_program(rng: random.Random, present: Sequence[int], two_step_p: float = 0.5) -> FamilyProgram:
    first = random_step(rng, present)
    if rng.random() >= two_step_p:
        return FamilyProgram((first,))
    second = random_step(rng, present, rng.choice([c for c in STEP_GENERATORS if c != first.category]))
    return FamilyProgram((first, second))


def random_window(rng: random.Random, grid: np.ndarray, max_side: int, min_side: int = 3) -> np.ndarray:
    h, w = (min(grid.shape[0], rng.randint(min_side, max_side)), min(grid.shape[1], rng.randint(min_side, max_side)))
    x, y = rng.randint(0, grid.shape[0] - h), rng.randint(0, grid.shape[1] - w)
    return grid[x:x + h, y:y + w].copy()


def source_grids(tasks: dict[str, Task]) -> list[list[np.ndarray]]:
    """The input grids of each real ARC task (train and test inputs), one list per task."""
    return [[ex.input for ex in t.train] + list(t.test_inputs) for t in tasks.values()]


def family_task(rng: random.Random, sources: list[list[np.ndarray]], max_side: int, n_train: int = 3,
                max_cells: int | None = None, tries: int = 50, min_side: int = 3,
                draw: Callable[[random.Random, list[int]], FamilyProgram | None] | None = None
                ) -> tuple[Task, FamilyProgram] | None:
    """A task made by a random family program on windows of one real ARC task's inputs.

    Rejects programs that fail on a window or change nothing (the answer must be readable
    from the pairs), and tasks of more than `max_cells` cells in all (prompt length).
    `draw(rng, colours)`: the program (default `random_program`); None rejects the try.
    """
    for _ in range(tries):
        inputs = rng.choice(sources)
        grids = [random_window(rng, rng.choice(inputs), max_side, min_side) for _ in range(n_train + 1)]
        program = (draw or random_program)(rng, colours_of(grids))
        if program is None:
            continue
        outputs = [program.run(g) for g in grids]
        if any(o is None for o in outputs):
            continue
        if all(o.shape == g.shape and np.array_equal(o, g) for o, g in zip(outputs, grids)):
            continue
        if max_cells is not None and sum(g.size for g in grids) + sum(o.size for o in outputs[:n_train]) > max_cells:
            continue
        train = [Example(g, o) for g, o in zip(grids[:n_train], outputs[:n_train])]
        return Task(f"family-{rng.randrange(16**8):08x}", train, [grids[-1]], [outputs[-1]]), program
    return None


# ---------------------------------------------------------------------------------------------
# Which real tasks the family can express


@functools.lru_cache(maxsize=8192)
def _step_function(step: Step) -> Callable[[np.ndarray], object]:
    body = "".join(f"    {line}\n" for line in step.lines)
    return compile_code(f"from common import *\n\ndef transform(output_grid):\n{body}    return output_grid\n")


def _apply(step: Step, grid: np.ndarray) -> np.ndarray | None:
    try:
        return as_grid(_step_function(step)(np.array(grid, dtype=np.int64)))
    except Exception:
        return None


def _same(a: np.ndarray | None, b: np.ndarray) -> bool:
    return a is not None and a.shape == b.shape and bool(np.array_equal(a, b))


def expressing_programs(task: Task, two_steps: bool = True, include_test: bool = False) -> list[FamilyProgram]:
    """The family programs (one step, and two steps if asked) that map every train input of `task` to
    its output (and every test input, if `include_test`), colour slots from the task's colours.

    Searched step by step (each first step's outputs are reused by every second step), so all
    two-step programs of a small task take about a second.
    """
    pairs = [(ex.input, ex.output) for ex in task.train]
    if include_test:
        pairs += list(zip(task.test_inputs, task.test_outputs or []))
    inputs = [ex.input for ex in task.train]
    steps = all_steps(colours_of(inputs), colours_of(inputs + [ex.output for ex in task.train]))
    found = []
    for first in steps:
        middles = []
        for grid, target in pairs:
            middle = _apply(first, grid)
            if middle is None:
                break
            middles.append(middle)
        if len(middles) < len(pairs):
            continue
        if all(_same(m, target) for m, (_, target) in zip(middles, pairs)):
            found.append(FamilyProgram((first,)))
        if not two_steps:
            continue
        shapes_fit = all(m.shape == target.shape for m, (_, target) in zip(middles, pairs))
        for second in steps:
            if second.category == first.category or (second.category in SHAPE_KEEPING and not shapes_fit):
                continue
            if all(_same(_apply(second, m), target) for m, (_, target) in zip(middles, pairs)):
                found.append(FamilyProgram((first, second)))
    return found


# ---------------------------------------------------------------------------------------------
# Reader tasks: the program is read from the train outputs (arc25.devmodels.reader_model)


def counts(a: Sequence[int], b: Sequence[int]) -> list[Step]:
    """Outputs whose size is a count: of objects (colour read from the outputs) or of one colour's pixels."""
    steps = [Step("count", "counting", f"make a row of {COLOR_WORDS[y]} pixels, one for every object",
                  (_OBJECTS, f"output_grid = np.full((1, len(objects)), {_c(y)})")) for y in b if y != 0]
    steps += [Step("count", "counting", f"make a row of {COLOR_WORDS[x]} pixels, one for every {COLOR_WORDS[x]} pixel",
                   (f"output_grid = np.full((1, np.sum(output_grid == {_c(x)})), {_c(x)})",)) for x in a if x != 0]
    return steps


READER_GENERATORS: dict[str, Generator] = {**STEP_GENERATORS, "count": counts}
HELD_OUT_MOD = 8  # one program in 8 (by the hash of its text) is held out of the reader's training


def held_out(program: FamilyProgram) -> bool:
    """The split rule: a program is held out iff the SHA-256 of its text is 0 modulo HELD_OUT_MOD."""
    return int(hashlib.sha256(program.code.encode()).hexdigest()[:12], 16) % HELD_OUT_MOD == 0


def reader_program(rng: random.Random, present: Sequence[int], n_steps: int) -> FamilyProgram:
    """`n_steps` steps of different categories (uniform over READER_GENERATORS), colour slots as random_step."""
    categories = rng.sample(list(READER_GENERATORS), n_steps)
    return FamilyProgram(tuple(random_step(rng, present, c, READER_GENERATORS) for c in categories))


def reader_task(rng: random.Random, sources: list[list[np.ndarray]], n_steps: int, held: bool, max_side: int = 10,
                n_train: int = 3, max_cells: int = 400, tries: int = 400) -> tuple[Task, FamilyProgram] | None:
    """A family task (`family_task`'s rules) whose program has `n_steps` steps and is held out iff `held`."""
    def draw(rng: random.Random, present: list[int]) -> FamilyProgram | None:
        program = reader_program(rng, present, n_steps)
        return program if held_out(program) == held else None

    return family_task(rng, sources, max_side, n_train=n_train, max_cells=max_cells, tries=tries, draw=draw)


def decoy_task(task: Task, rng: random.Random,
               draw: Callable[[random.Random, list[int]], FamilyProgram] | None = None) -> tuple[Task, FamilyProgram]:
    """`task` with its train outputs replaced by those of another program (`draw(rng, colours)`, default
    `random_program`): the same inputs, so a model that ignores the outputs cannot tell the prompts apart."""
    inputs = [ex.input for ex in task.train]
    while True:
        program = (draw or random_program)(rng, colours_of(inputs))
        outputs = [program.run(g) for g in inputs]
        if all(o is not None for o in outputs) and not all(
                o.shape == ex.output.shape and np.array_equal(o, ex.output) for o, ex in zip(outputs, task.train)):
            return Task(task.task_id, [Example(g, o) for g, o in zip(inputs, outputs)], task.test_inputs), program
