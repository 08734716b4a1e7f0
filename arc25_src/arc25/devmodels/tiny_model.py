"""A tiny, randomly initialised stand-in for the BARC induction model, for tests and benches.

`make_tiny_model` writes a normal HF model folder (config, safetensors weights,
generation config, tokenizer) that loads with exactly the code used for the real
Llama-3.1-8B fine-tune:

- LlamaForCausalLM with head_dim 64 and grouped-query attention, vocab 128256;
- a byte-level BPE tokenizer (Llama-3 pre-tokenizer regex) trained on text that
  looks like BARC prompts and answers, its vocabulary padded with unreachable filler
  tokens so that every Llama-3.1 special token sits at its real id (BOS 128000,
  <|finetune_right_pad_id|> 128004, <|eot_id|> 128009, ...);
- the Llama-3.1 Instruct chat template (system header with the cutting-knowledge
  date lines), BOS added by the template *and* by the tokenizer's post-processor,
  so the double-BOS trap of the real tokenizer is reproduced, pad_token <|eot_id|>
  and eos ids [128001, 128008, 128009] as released.

Nothing is downloaded; the same seed gives the same files.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from arc25.prompts import ANSWER_PREFIX, COLOR_NAMES, SYSTEM_MESSAGE, USER_INTRO, USER_OUTRO, render_grid

log = logging.getLogger(__name__)

VOCAB_SIZE = 128256
N_REGULAR = 128000  # ids below this are ordinary BPE tokens; special tokens follow
BOS, EOT_TEXT, PAD_FT = "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"
EOT = "<|eot_id|>"
EOS_IDS = [128001, 128008, 128009]
LM_HEAD_STD = 0.15
TINY_FORMAT_VERSION = 1  # bump when the generated files change, so caches rebuild

# The Llama-3 pre-tokenizer split (digits in groups of up to 3, words with one leading non-letter, ...).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Llama-3.1 Instruct's template reduced to what the pipeline uses (system + user/assistant turns,
# no tools): same bytes out for those messages, including the trim of each message's content.
CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "{%- endif %}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- set date_string = \"26 Jul 2024\" %}\n"
    "{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)


def llama31_special_tokens() -> list[str]:
    """The 256 special tokens of Llama 3.1, in id order from 128000."""
    named = {0: BOS, 1: EOT_TEXT, 4: PAD_FT, 6: "<|start_header_id|>", 7: "<|end_header_id|>",
             8: "<|eom_id|>", 9: EOT, 10: "<|python_tag|>"}
    reserved = iter(range(256))
    return [named[i] if i in named else f"<|reserved_special_token_{next(reserved)}|>" for i in range(256)]


# ---------------------------------------------------------------------------------------------
# Training text for the BPE: BARC-like prompts and answers

_CONCEPTS = ["color mapping", "object detection", "symmetry", "translation", "scaling", "pattern repetition",
             "flood fill", "counting", "bounding box", "line drawing", "cropping", "rotation", "reflection"]
_CODE_TEMPLATES = [
    """def transform(input_grid):
    output_grid = np.copy(input_grid)
    objects = find_connected_components(input_grid, background=Color.BLACK, connectivity={conn}, monochromatic=True)
    for obj in objects:
        x, y, w, h = bounding_box(obj, background=Color.BLACK)
        if w * h > {n}:
            output_grid[obj != Color.BLACK] = Color.{c1}
    return output_grid""",
    """def transform(input_grid: np.ndarray) -> np.ndarray:
    # find the {c1} pixels and draw lines from them
    output_grid = input_grid.copy()
    for x, y in np.argwhere(input_grid == Color.{c1}):
        draw_line(output_grid, x, y, direction=(0, 1), color=Color.{c2}, stop_at_color=Color.NOT_BLACK)
    return output_grid""",
    """def transform(input_grid):
    sprite = crop(input_grid, background=Color.BLACK)
    output_grid = np.full((sprite.shape[0] * {n}, sprite.shape[1] * {n}), Color.BLACK)
    for i in range(len(Color.ALL_COLORS)):
        output_grid = scale_sprite(sprite, factor={n})
    return output_grid""",
    """def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    symmetries = detect_mirror_symmetry(input_grid, ignore_colors=[Color.BLACK])
    for x, y in np.argwhere(input_grid != Color.BLACK):
        for sx, sy in orbit(output_grid, x, y, symmetries):
            output_grid[sx, sy] = input_grid[x, y]
    return output_grid""",
    """def transform(input_grid):
    output_grid = np.copy(input_grid)
    output_grid[input_grid == Color.{c1}] = Color.{c2}
    output_grid[input_grid == Color.{c2}] = Color.{c1}
    return np.rot90(output_grid, k={conn})""",
]
_DSL_COLORS = ["BLACK", "BLUE", "RED", "GREEN", "YELLOW", "GRAY", "GREY", "PINK", "ORANGE", "PURPLE", "TEAL",
               "BROWN", "MAROON"]


def _random_grid(rng: random.Random) -> np.ndarray:
    shape = (rng.randint(1, 12), rng.randint(1, 12))
    background = rng.choice([0, 0, 0, rng.randrange(10)])
    grid = np.full(shape, background)
    for _ in range(rng.randint(0, shape[0] * shape[1])):
        grid[rng.randrange(shape[0]), rng.randrange(shape[1])] = rng.randrange(10)
    return grid


def _fake_prompt(rng: random.Random) -> str:
    # The chat template's own words (role names, date lines) too, so they become single tokens.
    parts = ["system\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n", SYSTEM_MESSAGE,
             "user\n\n", USER_INTRO, "\nHere are the input and output grids for the reference examples:\n"]
    for i in range(1, rng.randint(2, 4) + 1):
        parts.append(f"Example {i}\nInput:\n{render_grid(_random_grid(rng))}\n\nOutput:\n"
                     f"{render_grid(_random_grid(rng))}\n\n\n")
    parts.append(f"Here is the input grid for the test example:\nInput:\n{render_grid(_random_grid(rng))}\n")
    parts.append(USER_OUTRO + "assistant\n\n")
    return "".join(parts)


def _fake_answer(rng: random.Random) -> str:
    concepts = ", ".join(rng.sample(_CONCEPTS, 3))
    code = rng.choice(_CODE_TEMPLATES).format(conn=rng.choice([4, 8]), n=rng.randint(1, 5),
                                              c1=rng.choice(_DSL_COLORS), c2=rng.choice(_DSL_COLORS))
    program = (f"from common import *\n\nimport numpy as np\nfrom typing import *\n\n# concepts:\n# {concepts}\n\n"
               f"# description:\n# In the input you will see a grid with {rng.choice(COLOR_NAMES).lower()} pixels.\n"
               f"# To make the output, {rng.choice(_CONCEPTS)} the objects.\n\n{code}")
    return f"{ANSWER_PREFIX}```python\n{program}\n```"


def training_corpus(seed: int, n_documents: int = 120) -> list[str]:
    rng = random.Random(seed)
    return [_fake_prompt(rng) if i % 2 == 0 else _fake_answer(rng) for i in range(n_documents)]


# ---------------------------------------------------------------------------------------------
# Tokenizer


def build_tokenizer(seed: int = 0, n_merges: int = 1500, extra_corpus: list[str] | None = None):
    """A byte-level BPE `tokenizers.Tokenizer` with Llama-3.1's special tokens at their real ids.

    `extra_corpus`: more training text (the warm model adds its program family's prompts and
    answers, so its programs take few tokens).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(alphabet) + n_merges, initial_alphabet=alphabet,
                                  show_progress=False, special_tokens=[])
    tok.train_from_iterator(training_corpus(seed) + list(extra_corpus or []), trainer=trainer)

    # Pad the BPE vocabulary with filler entries no merge can produce (so they never come
    # out of encoding), up to id 128000, then append the special tokens in Llama-3.1 order.
    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    for i in range(len(vocab), N_REGULAR):
        filler = f"<unused{i}>"
        assert filler not in vocab, filler
        vocab[filler] = i
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.add_special_tokens(llama31_special_tokens())
    # Like the released tokenizer: encoding with special tokens on prepends BOS.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, N_REGULAR)])
    assert tok.token_to_id(EOT) == 128009 and tok.get_vocab_size() == VOCAB_SIZE
    return tok


def _save_tokenizer(tok, out_dir: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOT, pad_token=EOT,
                                     model_max_length=131072, clean_up_tokenization_spaces=False)
    hf_tok.chat_template = CHAT_TEMPLATE
    # The released model keeps its template in tokenizer_config.json, not chat_template.jinja.
    hf_tok.save_pretrained(out_dir, save_jinja_files=False)
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # as in the Llama-3.1 release
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Model


def _save_model(out_dir: Path, seed: int, hidden: int, layers: int, heads: int, kv_heads: int,
                intermediate: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    config = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=hidden // heads,
        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        bos_token_id=128000, eos_token_id=EOS_IDS, pad_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        # With the usual std 0.02 head and RMS-normed hidden states, logits cannot leave ~[-3, 3]: the
        # loss is stuck near log(128256) - 3 and sampling stays near-uniform however long a LoRA trains.
        # A wider head lets fine-tuning make the model confident, as the real model is.
        torch.nn.init.normal_(model.lm_head.weight, std=LM_HEAD_STD)
    # bf16 on disk like the 8B release; the backend picks the compute dtype when loading.
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" bars in test logs
    try:
        model.to(torch.bfloat16).save_pretrained(out_dir)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    GenerationConfig(bos_token_id=128000, eos_token_id=EOS_IDS, do_sample=True, temperature=0.6,
                     top_p=0.9).save_pretrained(out_dir)


def make_tiny_model(out_dir: str | Path, seed: int = 0, hidden: int = 128, layers: int = 2, heads: int = 2,
                    kv_heads: int = 1, intermediate: int = 256, n_merges: int = 1500,
                    extra_corpus: list[str] | None = None) -> Path:
    """Write the tiny model folder to `out_dir` (created; existing files are overwritten)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_tokenizer(build_tokenizer(seed, n_merges, extra_corpus), out_dir)
    _save_model(out_dir, seed, hidden, layers, heads, kv_heads, intermediate)
    log.info("tiny model written to %s", out_dir)
    return out_dir


def build_once(target: Path, build: Callable[[Path], object], done: Callable[[Path], bool]) -> Path:
    """`target`, built by `build(folder)` in a temporary folder renamed into place when `done` says it is
    missing: atomic, so concurrent callers (test sessions, pytest-xdist workers, run workers) agree on one
    complete copy; and built once, so they do not all pay for it (the warm model is minutes of CPU): the
    builder holds `target`'s lock file (a flock, released by the OS if the builder dies), and the others
    wait on it, then find the copy made."""
    from filelock import FileLock

    if done(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f"{target.name}.lock"):
        if done(target):  # built by another process while this one waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            build(tmp)
            tmp.rename(target)
        except OSError:
            if not done(target):  # not a lost race: a real failure
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_model_path(cache_dir: str | Path, seed: int = 0) -> Path:
    """The default tiny model under `cache_dir`, built on first use (atomically, so concurrent callers agree)."""
    return build_once(Path(cache_dir) / f"tiny-llama-v{TINY_FORMAT_VERSION}-seed{seed}",
                      lambda folder: make_tiny_model(folder, seed=seed),
                      lambda t: (t / "config.json").exists() and (t / "tokenizer.json").exists())
