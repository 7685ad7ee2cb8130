"""The interface every generation back end implements: chat prompt in, text out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from scar_core.errors import ScarError
from scar_core.synth.prompts import Messages

OnResult = Callable[[int, str], None]


class BackendError(ScarError):
    """A back end could not answer (server down after all retries, refused request, bad reply)."""


def as_messages(prompt: str | Messages) -> Messages:
    """A bare string is one user turn."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


class Client(ABC):
    """A text generator. `name` and `model` identify it in the call cache."""

    name: str
    model: str

    @abstractmethod
    def generate(self, prompt: str | Messages, temperature: float = 0.0, max_tokens: int = 512) -> str:
        """One reply to one prompt."""

    def generate_many(self, prompts: Sequence[str | Messages], on_result: OnResult,
                      temperature: float = 0.0, max_tokens: int = 512) -> None:
        """Answer every prompt, calling `on_result(index, text)` as each reply arrives (in any order),
        so callers can store finished work before a later call fails."""
        for i, prompt in enumerate(prompts):
            on_result(i, self.generate(prompt, temperature=temperature, max_tokens=max_tokens))

    def close(self) -> None:
        """Release connections or memory; the client is not used afterwards."""
