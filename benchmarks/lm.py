"""Default char language model on DATA_TEXT: bits per char after a fixed budget, tokens/s, and fp32 vs bf16 speed.

1. Trains `heron lm train`'s default model (LMConfig defaults) on the text
   for --minutes (the budget the CLI honours) and prints the validation bits
   per char, the tokens trained and tokens/s over the whole run (validation
   included), plus a short greedy-ish sample.
2. Times training steps of that model (forward, loss, backward, clipping,
   AdamW) in fp32 and under bf16 autocast, interleaved, median of
   --repeats, and prints the tokens/s of each and their ratio. With --cells
   the same for other cells (e.g. gru lstm).

    .venv/bin/python benchmarks/lm.py tinyshakespeare/input.txt [--minutes 3] [--threads 2]
        [--cells gru lstm] [--repeats 5] [--skip-train]
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import machine, parse_timing_args, timing_parser  # noqa: E402

from heron.data.text import CharTokenizer, read_text  # noqa: E402
from heron.nn.precision import cpu_supports_bf16  # noqa: E402
from heron.tasks.sequence.lm import (LMConfig, StatefulLM, StreamBatches, build_lm, lm_learner,  # noqa: E402
                                     load_language_model, token_stream, train_language_model)


def train_for_budget(path: str, minutes: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = LMConfig(text=path, out=str(Path(tmp) / "run"), max_minutes=minutes, quiet=True)
        start = time.perf_counter()
        result = train_language_model(config)
        seconds = time.perf_counter() - start
        m = result.metrics
        print(f"default char LM ({config.cell}, hidden {config.hidden}, {config.layers} layer, bptt {config.bptt}, "
              f"batch {config.batch_size}), budget {minutes:g} min: {m['epochs_run']} epochs in {seconds:.0f}s")
        print(f"  valid bits per char = {m['valid_bpc']:.3f}  perplexity = {m['valid_perplexity']:.3f}  "
              f"(best epoch {m['best_epoch']})")
        print(f"  {m['tokens_trained']:,} tokens trained, {m['tokens_trained'] / seconds:,.0f} tokens/s overall")
        sample = load_language_model(result.run).generate("ROMEO:", n=240, temperature=0.6, seed=0)
        print("  sample: " + ("ROMEO:" + sample).replace("\n", "\n          "))


def step_tokens_per_second(path: str, cell: str, precision: str, steps: int) -> float:
    """Tokens/s of `steps` training steps of the default model (after two warm-up steps)."""
    config = LMConfig(text=path, cell=cell, precision=precision)
    text = read_text(path)[:200_000]
    tokenizer = CharTokenizer.fit(text)
    torch.manual_seed(0)
    model = StatefulLM(build_lm(len(tokenizer), config))
    batches = StreamBatches(token_stream(tokenizer, text), config.batch_size, config.bptt)
    learner = lm_learner(copy.deepcopy(model), batches, lr=config.lr, grad_clip=config.grad_clip,
                         precision=precision)
    learner.opt = learner.create_opt()
    windows = iter(batches)
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        xb, yb = learner.to_device(next(windows))
        _, loss = learner.forward_loss(xb, yb)
        learner.backward_step(loss)
    return steps * batches.tokens_per_batch / (time.perf_counter() - start)


def compare_precisions(path: str, cells: list[str], repeats: int, steps: int) -> None:
    print(f"fp32 vs bf16 autocast, training steps of the default model (CPU native bf16: {cpu_supports_bf16()})")
    for cell in cells:
        runs = {"fp32": [], "bf16": []}
        try:
            for _ in range(repeats):  # interleaved, so a busy machine slows both alike
                for precision in runs:
                    runs[precision].append(step_tokens_per_second(path, cell, precision, steps))
        except RuntimeError as err:  # e.g. oneDNN has no bf16 LSTM without AVX512-BF16
            print(f"  {cell}: bf16 fails here: {str(err).splitlines()[0][:100]}")
            continue
        fp32, bf16 = (sorted(v)[len(v) // 2] for v in runs.values())
        print(f"  {cell}: fp32 {fp32:,.0f} tokens/s  bf16 {bf16:,.0f} tokens/s  bf16/fp32 = {bf16 / fp32:.2f}x")


def main() -> None:
    parser = timing_parser(__doc__, repeats=3)
    parser.add_argument("text", metavar="DATA_TEXT", help="a text file, e.g. tinyshakespeare's input.txt")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget (default %(default)s)")
    parser.add_argument("--cells", nargs="+", default=["gru"], choices=("gru", "lstm", "rnn"))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per precision run (default %(default)s)")
    parser.add_argument("--skip-train", action="store_true", help="only the precision comparison")
    args = parse_timing_args(parser)
    print(machine())
    if not args.skip_train:
        train_for_budget(args.text, args.minutes)
    compare_precisions(args.text, args.cells, args.repeats, args.steps)


if __name__ == "__main__":
    main()
