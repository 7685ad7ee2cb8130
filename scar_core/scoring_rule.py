"""The version of the rule that decides a score's bits (scar_core.score's docstring says the rule).

1: each batch padded to its longest text (before 2026-12-06): a pair's last bits depended on its batch.
2: each text padded to its own width (a multiple of 16 tokens), every linear layer on blocks of 8 rows.
Runs record the version they were scored by; the store copies cached scores only between runs of the
same version, so a run never mixes rows that a fresh run would score differently. Raise it whenever a
change to scoring can move any score's bits. Kept apart from scar_core.score so the store can read it
without loading torch.
"""
SCORING_RULE = 2

# Engines whose scores follow the rule bit for bit (scar_core.engine): the store copies cached scores only
# between runs of these. The int8 engine's CTranslate2 GEMMs depend on the batch a pair is scored in.
BIT_STABLE_ENGINES = ("torch",)
