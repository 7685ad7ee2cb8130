"""Which statistic of an LM's per-token predictions best tells LLM answers from human ones, zero-shot?

    python bench/lm_statistics.py [--pool-sample 300] [--pairs 80] [--seed 42]

The default ranker's LM term uses the mean NLL of the response tokens not copied from the prompt
(scar_core.ranker.LMTerm). This measures that choice against others from the machine-text detection
literature, with the bundled SmolLM2 and the term's own token limit and copy rule (not its
min_tokens: every response with a counted token is measured), no training:
  nll       mean negative log-likelihood per token (the term's statistic)
  logrank   mean log rank of the actual token among the LM's predictions
  top1      share of tokens that were the LM's first choice
  top10     share of tokens among its first ten
  nll-ent   mean of (NLL - entropy of the predicted distribution): surprise beyond what the LM expected
  nll/ent   mean NLL over mean entropy (a one-model take on Binoculars' normalisation)
  ent       mean entropy alone
Reported per statistic: AUC of "the LLM pool's answer looks more LLM-like" for the held-out pool pairs
of bench/heldout.py, and pairwise accuracy on --pairs (human, LLM) pairs of each training source.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from heldout import DATA, POOL_PAIRS, RANKER_FILES  # noqa: E402
from scar_core.lm import _encode, load_language_model  # noqa: E402
from scar_core.example import Example  # noqa: E402
from scar_core.load import load  # noqa: E402
from scar_core.ranker import LMTerm  # noqa: E402
from scar_core.training_data import read_training_rows  # noqa: E402

SOURCES = ["hc3/open_qa", "hc3/finance", "hc3/wiki_csai", "self-instruct", "realign"]


def token_predictions(lm, pairs: list[tuple[str, str]]) -> list[dict | None]:
    """Per counted response token: NLL, entropy and rank of the actual token (None: nothing counted)."""
    term = LMTerm()
    encoded = [_encode(lm.tokenizer, Example(instruction=i, response=r), term.max_tokens, term.copy_span)
               for i, r in pairs]
    out: list[dict | None] = [None] * len(encoded)
    for k in sorted(range(len(encoded)), key=lambda k: encoded[k].width):
        pair = encoded[k]
        if not pair.counted.any() or not pair.prompt:
            continue
        ids = torch.tensor([pair.prompt + pair.response])
        with torch.inference_mode(), torch.autocast(lm.device.type, dtype=lm.dtype, enabled=lm.dtype != torch.float32):
            logits = lm.model(input_ids=ids.to(lm.device)).logits[0]
        p = len(pair.prompt)
        logp = logits[p - 1:p + len(pair.response) - 1].float().log_softmax(-1)[pair.counted]
        target = ids[0, p:].to(lm.device)[pair.counted]
        actual = logp.gather(1, target[:, None])[:, 0]
        out[k] = {"nll": (-actual).cpu().numpy(), "ent": (-(logp.exp() * logp).sum(-1)).cpu().numpy(),
                  "rank": ((logp > actual[:, None]).sum(-1) + 1).cpu().numpy()}
    return out


def statistic(tokens: dict | None, name: str) -> float:
    """The statistic of one response, oriented so that lower means more LLM-like (NaN: no tokens)."""
    if tokens is None:
        return float("nan")
    nll, ent, rank = tokens["nll"], tokens["ent"], tokens["rank"]
    return float({"nll": lambda: nll.mean(), "logrank": lambda: np.log(rank).mean(),
                  "top1": lambda: -(rank == 1).mean(), "top10": lambda: -(rank <= 10).mean(),
                  "nll-ent": lambda: (nll - ent).mean(), "nll/ent": lambda: nll.mean() / max(ent.mean(), 1e-3),
                  "ent": lambda: ent.mean()}[name]())


STATISTICS = ["nll", "logrank", "top1", "top10", "nll-ent", "nll/ent", "ent"]


def pool_auc(human: list, llm: list, name: str) -> float:
    """AUC of 'the LLM pool's answer has the lower statistic'; a response without tokens counts as the median."""
    values = np.array([statistic(t, name) for t in human + llm])
    values = np.where(np.isnan(values), np.nanmedian(values), values)
    return float(roc_auc_score(np.r_[np.zeros(len(human)), np.ones(len(llm))], -values))


def pair_accuracy(human: list, llm: list, name: str) -> float:
    a = np.array([statistic(t, name) for t in human])
    b = np.array([statistic(t, name) for t in llm])
    ok = ~np.isnan(a) & ~np.isnan(b)
    return float(np.mean(b[ok] < a[ok]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--pool-sample", type=int, default=300, help="rows per pool")
    ap.add_argument("--pairs", type=int, default=80, help="(human, LLM) pairs per training source")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if not (args.data / "ranker").is_dir():
        sys.exit(f"{args.data / 'ranker'}: not found (this benchmark needs ../shared/data)")
    lm = load_language_model("smollm2", "auto", "auto")
    columns: dict[str, tuple[list, list, bool]] = {}
    measured: dict[str, list] = {}
    for name in sorted({name for pair in POOL_PAIRS for name in pair}):
        examples = load(args.data / "pools" / name, lenient=True).examples
        keep = np.random.default_rng(args.seed).permutation(len(examples))[:args.pool_sample]
        measured[name] = token_predictions(lm, [(examples[i].ranker_instruction(), examples[i].response)
                                                for i in sorted(keep)])
    for human, llm in POOL_PAIRS:
        columns[f"{human.split('_')[0]}/{llm.split('.')[0]}"] = (measured[human], measured[llm], True)
    rows = read_training_rows([args.data / "ranker" / n for n in RANKER_FILES])
    rng = np.random.default_rng(args.seed)
    for source in SOURCES:
        have = [r for r in rows if (r.source or "").startswith(source) and {"human", "direct"} <= set(r.responses)]
        have = [have[i] for i in rng.permutation(len(have))[:args.pairs]]
        columns[source] = (token_predictions(lm, [(r.instruction, r.responses["human"]) for r in have]),
                           token_predictions(lm, [(r.instruction, r.responses["direct"]) for r in have]), False)
    print("| statistic | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in STATISTICS:
        cells = [(pool_auc if pools else pair_accuracy)(human, llm, name) for human, llm, pools in columns.values()]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    print("(pool columns: AUC; source columns: pairwise accuracy, LLM answer more LLM-like)")


if __name__ == "__main__":
    main()
