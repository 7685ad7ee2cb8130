"""Style diagnostics: per-example score breakdown, linguistic-form features, measured surprisal,
style outliers, and a data-set report (one module per job)."""
