"""Make ranker training data from human (instruction, response) pairs, as SCAR does.

An LLM writes a "referenced" answer (the human answer in its own words) and a "direct" answer
(its own answer, temperature 0); an LLM judge scores every response for helpfulness and
correctness (0-9). One module per job: prompts, client interface, two back ends, call cache,
judge-reply parsing and the pipeline that ties them together.
"""
from scar_core.synth.client import Client
from scar_core.synth.pipeline import SynthProgress, SynthSummary, synthesize

__all__ = ["Client", "SynthProgress", "SynthSummary", "synthesize"]
