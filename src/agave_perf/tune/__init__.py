"""Phase 0 tuning with zero code changes: host stages, validator flags, build profile."""
