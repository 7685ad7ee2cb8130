"""The version of the rule that decides a score's bits (scar_core.score's docstring says the rule).

1: each batch padded to its longest text (before 2026-12-06): a pair's last bits depended on its batch.
2: each text padded to its own width (a multiple of 16 tokens), every linear layer on blocks of 8 rows.
3: as 2, and the int8 engine in fp32 encodes through ONNX Runtime, each text alone (2026-12-07; its
   vectors moved by up to 1e-5, so its earlier rows are not mixed with new ones).
Runs record the version they were scored by; the store copies cached scores only between runs of the
same version, so a run never mixes rows that a fresh run would score differently. Raise it whenever a
change to scoring can move any score's bits. Kept apart from scar_core.score so the store can read it
without loading torch.
"""
SCORING_RULE = 3

# Engines whose scores follow the rule bit for bit (scar_core.engine): the store copies cached scores only
# between runs of these (and of one engine: int8's NLLs are not torch's). An engine added later joins only
# once a test shows a pair scores alike whatever its batch (tests/test_engines.py does for these two).
BIT_STABLE_ENGINES = ("torch", "int8")
