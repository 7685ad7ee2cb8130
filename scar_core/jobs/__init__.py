"""Orchestration: background jobs, the only code besides the CLI that touches both the store (`db`)
and the library (the rest of `scar_core`). `runner` runs any job; one module per kind of job."""
