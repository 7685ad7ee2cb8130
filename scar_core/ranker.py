"""The SCAR style ranker (Li et al., ACL 2025) and its checkpoint formats.

One shared encoder embeds instruction and response separately. Per pair:
  e_i, e_r = pooler output (or first-token state) of instruction and response
  v_is = relation_network([e_i ; e_r])        instructional-surprisal representation
  v_lf = masked max-pool of response states    linguistic-form representation
  score = output_layer([v_is ; v_lf])          an unbounded real; higher = more consistent style
Parameter names follow the official `scar-tool` so state dicts are interchangeable.

Optional Studio extension, the LM term (`LMTerm`; off unless a ranker was trained with it):
  score += -lm_weight * (nll - mean) / std
where nll is the response's mean per-token negative log-likelihood given the instruction under a
small causal LM (scar_core.lm): instructional surprisal measured rather than
learned. LLM-written answers are far more predictable to an LM than human ones, in every domain,
whatever their length; one learned weight keeps the score monotonic in it. Tokens copied from the
prompt (runs of `copy_span` tokens) are left out of the NLL, so that pasting from a passage in the
instruction does not pass for an LLM's fluency; a response with fewer than `min_tokens` of its own
counts as average.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scar_core.device import precision_name
from scar_core.errors import ScarError
from scar_core.export import file_sha256
from scar_core.lm import load_language_model, response_nll

FORMAT = "scar-studio-ranker"
WEIGHTS = "model.safetensors"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models" / "default"


@dataclass
class RankerOutput:
    score: torch.Tensor  # (B,)
    v_lf: torch.Tensor   # (B, H)
    v_is: torch.Tensor   # (B, H)


@dataclass
class LMTerm:
    """Settings of the LM term: which LM, its token limit per pair, the shortest run of tokens shared
    with the prompt that counts as copied, the fewest remaining tokens that make a measurement (fewer:
    the response counts as average), whether the token ending the turn counts too (after a response
    that fits whole), and the standardisation of its NLL (mean and std over the training responses,
    set when the term is first trained). None for copy_span or min_tokens, False for count_end: as
    terms saved before these settings existed scored.

    `predicted`: the ranker's own head predicts the standardised NLL from the encoder's outputs
    (trained to match the LM's measurements, "distilled"), so scoring runs no language model; the
    other settings then say what the prediction was trained on."""

    lm: str = "smollm2"
    max_tokens: int = 256
    copy_span: int | None = 4
    min_tokens: int | None = 4
    count_end: bool = True
    mean: float | None = None
    std: float | None = None
    predicted: bool = False


class StyleRanker(nn.Module):
    def __init__(self, encoder: nn.Module, tokenizer, hidden_dim: int | None = None,
                 linear_dim: int | None = None, encoder_name: str = "", lm_term: LMTerm | None = None):
        super().__init__()
        hidden = encoder.config.hidden_size
        if hidden_dim is not None and hidden_dim != hidden:
            raise ScarError(f"checkpoint hidden_dim {hidden_dim} does not match the encoder's hidden size {hidden}")
        self.hidden_dim = hidden
        self.linear_dim = linear_dim or hidden
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.encoder_name = encoder_name
        self.max_length = 512
        self.relation_network = nn.Sequential(
            nn.Linear(2 * hidden, self.linear_dim), nn.ReLU(), nn.Linear(self.linear_dim, hidden))
        self.output_layer = nn.Sequential(
            nn.Linear(2 * hidden, self.linear_dim), nn.ReLU(), nn.Linear(self.linear_dim, 1))
        self.weights_hash = ""
        self.lm_term: LMTerm | None = None
        self.known_nll: dict[tuple[str, str], float] = {}  # (instruction, response) -> NLL, filled by training
        self._lm = None
        if lm_term is not None:
            self.add_lm_term(lm_term)

    @property
    def identity(self) -> str:
        """The store's key for this checkpoint's scores (see scoring_identity); weights_hash alone is
        the plain file hash that manifests record."""
        return scoring_identity(self.weights_hash, self.lm_term)

    def add_lm_term(self, term: LMTerm) -> None:
        """Give the score an LM term with weight 0 (training learns the weight)."""
        self.lm_term = term
        self.lm_weight = nn.Parameter(torch.zeros(()))
        if term.predicted:
            self.predict_lm()

    def predict_lm(self) -> None:
        """Make the LM term predicted (LMTerm.predicted): a fresh MLP over the two representations
        estimates the standardised NLL; the term's weight and standardisation stay as they are."""
        self.lm_term.predicted = True
        self.nll_predictor = nn.Sequential(
            nn.Linear(2 * self.hidden_dim, self.linear_dim), nn.ReLU(), nn.Linear(self.linear_dim, 1))

    def language_model(self, device: torch.device, dtype: torch.dtype):
        """The LM term's language model, loaded once (scar_core.lm.LanguageModel)."""
        if self._lm is None or self._lm.device != device or self._lm.dtype != dtype:
            self._lm = load_language_model(self.lm_term.lm, str(device), precision_name(dtype))
        return self._lm

    def lm_nll(self, instructions: list[str], responses: list[str], device: torch.device,
               dtype: torch.dtype, progress=None) -> np.ndarray:
        """NLL of each response given its instruction under the term's LM (known values are reused);
        `progress(done, total, rate)` follows the measurement of the others."""
        pairs = list(zip(instructions, responses))
        out = np.array([self.known_nll.get(pair, np.nan) for pair in pairs])
        todo = [i for i, pair in enumerate(pairs) if pair not in self.known_nll]
        if todo:
            term = self.lm_term
            out[todo] = response_nll(self.language_model(device, dtype), [instructions[i] for i in todo],
                                     [responses[i] for i in todo], max_tokens=term.max_tokens,
                                     copy_span=term.copy_span, min_tokens=term.min_tokens,
                                     count_end=term.count_end, progress=progress)
        return out

    def lm_score(self, nll: torch.Tensor) -> torch.Tensor:
        """The LM term of the score; a row without an NLL (empty, or too little of it not copied from
        its prompt) counts as average, and so does every row while the term is untrained (no
        standardisation yet)."""
        if self.lm_term.mean is None or self.lm_term.std is None:
            return torch.zeros_like(nll, dtype=torch.float32)
        return -self.lm_weight * self.standardised(nll).nan_to_num(0.0)

    def standardised(self, nll: torch.Tensor) -> torch.Tensor:
        """NLL in units of the training responses' spread around their mean (the term's z)."""
        return (nll.float() - self.lm_term.mean) / self.lm_term.std

    def predicted_nll(self, v_is: torch.Tensor, v_lf: torch.Tensor) -> torch.Tensor:
        """A predicted LM term's estimate of each response's NLL (in nats, as measured ones are)."""
        z = self.nll_predictor(torch.cat([v_is, v_lf], dim=-1)).squeeze(-1).float()
        if self.lm_term.mean is None or self.lm_term.std is None:  # untrained: no scale yet
            return z
        return z * self.lm_term.std + self.lm_term.mean

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled vector, masked max-pool of last hidden states) for a batch of texts."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        states = out.last_hidden_state
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = states[:, 0]
        masked = states.masked_fill(attention_mask.unsqueeze(-1) == 0, -1e9)
        return pooled, masked.max(dim=1).values

    @property
    def runs_lm(self) -> bool:
        """Whether scoring needs the language model (an LM term that is measured, not predicted)."""
        return self.lm_term is not None and not self.lm_term.predicted

    def head(self, e_instruction: torch.Tensor, e_response: torch.Tensor, v_lf: torch.Tensor,
             nll: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(score, v_is) from the pooled vectors and the form representation (and the responses'
        LM NLL, which a ranker whose LM term is measured needs)."""
        v_is = self.relation_network(torch.cat([e_instruction, e_response], dim=-1))
        score = self.score_from(v_is, v_lf)
        if self.lm_term is not None:
            if self.lm_term.predicted:
                nll = self.predicted_nll(v_is, v_lf)
            elif nll is None:
                raise ScarError("this ranker has an LM term: pass each response's NLL under its LM")
            score = score + self.lm_score(nll.to(score.device))
        return score, v_is

    def score_from(self, v_is: torch.Tensor, v_lf: torch.Tensor) -> torch.Tensor:
        """The SCAR head's score of the two representations (without any LM term)."""
        return self.output_layer(torch.cat([v_is, v_lf], dim=-1)).squeeze(-1)

    def forward(self, instruction_ids, instruction_mask, response_ids, response_mask) -> RankerOutput:
        e_i, _ = self.embed(instruction_ids, instruction_mask)
        e_r, v_lf = self.embed(response_ids, response_mask)
        score, v_is = self.head(e_i, e_r, v_lf)
        return RankerOutput(score, v_lf, v_is)

    def save(self, directory: str | Path, include_encoder: bool = True, extra: dict | None = None,
             dtype: torch.dtype | None = None) -> Path:
        """Write `config.json`, `model.safetensors` and the tokenizer.

        With include_encoder=False only the head is stored and the encoder is loaded from
        `encoder_name` (useful when the encoder was frozen and is available offline).
        `dtype` (e.g. torch.float16) stores floating-point weights in that type, halving the file;
        loading casts them back to fp32.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
                 for k, v in self.state_dict().items() if include_encoder or not k.startswith("encoder.")}
        config = {"format": FORMAT, "version": 1, "encoder": self.encoder_name,
                  "hidden_dim": self.hidden_dim, "linear_dim": self.linear_dim,
                  "max_length": self.max_length, "includes_encoder": include_encoder,
                  "lm_term": asdict(self.lm_term) if self.lm_term is not None else None,
                  "encoder_config": self.encoder.config.to_dict(), **(extra or {})}
        save_file(state, str(directory / WEIGHTS))
        (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        self.weights_hash = file_sha256(directory / WEIGHTS)
        return directory


def lm_term_of(config: dict) -> LMTerm | None:
    """The LM term a checkpoint config describes; terms saved before copy_span, min_tokens and
    count_end existed get None / False for them, which scores as those terms always did (and
    `predicted` False: a measured term)."""
    term = config.get("lm_term")
    return LMTerm(**{"copy_span": None, "min_tokens": None, "count_end": False, **term}) if term else None


def has_predicted_lm_term(model: str | Path) -> bool:
    """Whether a checkpoint's LM term is predicted by the ranker itself (LMTerm.predicted); False
    without a term, or when the checkpoint's config cannot be read."""
    try:
        term = lm_term_of(read_config(model)[1])
    except ScarError:
        return False
    return term is not None and term.predicted


def scoring_identity(weights_hash: str, lm_term: LMTerm | None) -> str:
    """What decides a checkpoint's scores, as one sha256: its weights file, and its LM term's settings
    (which live in config.json). Without a term it is the weights hash itself."""
    if lm_term is None:
        return weights_hash
    settings = json.dumps(asdict(lm_term), sort_keys=True)
    return hashlib.sha256(f"{weights_hash}\n{settings}".encode()).hexdigest()


def new_ranker(encoder: str = "minilm", linear_dim: int | None = None, seed: int = 0,
               lm: str | None = None) -> StyleRanker:
    """A ranker with a pretrained encoder and a freshly initialised head (the start of training);
    `lm` names the language model of an LM term (see LMTerm), None for plain SCAR."""
    from scar_core.encoders import load_encoder

    model, tokenizer = load_encoder(encoder)
    torch.manual_seed(seed)
    return StyleRanker(model, tokenizer, linear_dim=linear_dim, encoder_name=encoder,
                       lm_term=LMTerm(lm) if lm else None)


def load_ranker(path: str | Path = "default", encoder: str | None = None) -> StyleRanker:
    """Load a ranker: "default" (the bundled one), a folder in this project's format, or a folder
    written by the official scar-tool (`pytorch_model.bin`). `encoder` overrides where the encoder
    comes from, e.g. a local copy when the checkpoint names a hub model or another machine's path."""
    directory, config = read_config(path)
    if config.get("format") == FORMAT:
        build = _load_own
    elif "encoder_name" in config and (directory / "pytorch_model.bin").is_file():
        build = _load_scar_tool
    else:
        raise ScarError(f"{directory}: unknown checkpoint format (expected {WEIGHTS} with a "
                        "scar-studio config, or scar-tool's pytorch_model.bin with encoder_name)")
    try:
        return build(directory, config, encoder).eval()
    except KeyError as e:
        raise ScarError(f"{directory / 'config.json'}: missing or invalid setting {e}") from None
    except (TypeError, ValueError) as e:  # transformers' refusals of an encoder config, tokenizer or code
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ScarError(f"{directory}: cannot build the ranker or its encoder from this checkpoint "
                        f"({type(e).__name__}: {first})") from None


def read_config(path: str | Path = "default") -> tuple[Path, dict]:
    """(folder, parsed config.json) of a checkpoint ("default": the bundled one), without loading it."""
    directory = DEFAULT_DIR if str(path) == "default" else Path(path).expanduser()
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ScarError(f"{directory}: not a ranker checkpoint (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScarError(f"{config_path}: unreadable config ({e})") from None
    if not isinstance(config, dict):
        raise ScarError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    return directory, config


def checkpoint_location(model: str | Path = "default") -> tuple[str, str]:
    """(name, absolute location) of a checkpoint: "default" names the bundled ranker, a folder its
    last path part; how the store and manifests name a ranker."""
    if str(model) == "default":
        return "default", str(DEFAULT_DIR)
    location = Path(model).expanduser().resolve()
    return location.name, str(location)


def checkpoint_hashes(path: str | Path = "default") -> tuple[str, str, dict]:
    """(weights file sha256, scoring identity, config) of a checkpoint, without loading the model:
    the same values `load_ranker(path)` gives as `weights_hash` and `identity`."""
    directory, config = read_config(path)
    weights = next((directory / n for n in (WEIGHTS, "pytorch_model.bin") if (directory / n).is_file()), None)
    if weights is None:
        raise ScarError(f"{directory}: no {WEIGHTS} or pytorch_model.bin")
    try:
        term = lm_term_of(config)
    except TypeError as e:
        raise ScarError(f"{directory / 'config.json'}: invalid lm_term ({e})") from None
    weights_hash = file_sha256(weights)
    return weights_hash, scoring_identity(weights_hash, term), config


def _load_own(directory: Path, config: dict, encoder: str | None) -> StyleRanker:
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    weights = directory / WEIGHTS
    try:
        state = load_file(str(weights))
    except Exception as e:  # a corrupt file raises SafetensorError, OSError and others
        raise ScarError(f"{weights}: cannot read weights ({e})") from None
    has_encoder = any(k.startswith("encoder.") for k in state)
    if has_encoder and encoder is None:
        cfg = dict(config["encoder_config"])
        enc_config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        model = AutoModel.from_config(enc_config)
        tokenizer = AutoTokenizer.from_pretrained(str(directory / "tokenizer"), local_files_only=True,
                                                  trust_remote_code=False)
    else:
        from scar_core.encoders import load_encoder

        model, tokenizer = load_encoder(encoder or config["encoder"])
    ranker = StyleRanker(model, tokenizer, config["hidden_dim"], config["linear_dim"],
                         encoder_name=encoder or config["encoder"], lm_term=lm_term_of(config))
    ranker.max_length = int(config.get("max_length", 512))
    _load_state(ranker, state, weights, strict_encoder=has_encoder)
    ranker.to(torch.float32)
    ranker.weights_hash = file_sha256(weights)
    return ranker


def _load_scar_tool(directory: Path, config: dict, encoder: str | None) -> StyleRanker:
    from transformers import AutoTokenizer

    from scar_core.encoders import load_encoder

    weights = directory / "pytorch_model.bin"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code with UnpicklingError, corrupt files vary
        raise ScarError(f"{weights}: refused to load ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    model, tokenizer = load_encoder(encoder or config["encoder_name"])
    if (directory / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True,
                                                  trust_remote_code=False)
    ranker = StyleRanker(model, tokenizer, config.get("hidden_dim"), config.get("linear_dim"),
                         encoder_name=encoder or config["encoder_name"])
    _load_state(ranker, state, weights, strict_encoder=any(k.startswith("encoder.") for k in state))
    ranker.weights_hash = file_sha256(weights)
    return ranker


def _load_state(ranker: StyleRanker, state: dict, weights: Path, strict_encoder: bool) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ScarError(f"{weights}: not a state dict of tensors")
    expected = ranker.state_dict()
    required = [k for k in expected if strict_encoder or not k.startswith("encoder.")]
    # Buffers such as position_ids are rebuilt by the encoder and may be absent from older files.
    missing = [k for k in required if k not in state and not k.endswith("position_ids")]
    if missing:
        raise ScarError(f"{weights}: missing weights {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise ScarError(f"{weights}: weights of the wrong shape (checkpoint vs model): {wrong[:3]}")
    ranker.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
