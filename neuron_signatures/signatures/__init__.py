"""Signatures: per-probe metrics, per-neuron aggregates, role classes, names and config."""
