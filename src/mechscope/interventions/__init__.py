"""Interventions: patching, ablation, steering, remote execution (all through nnsight)."""
