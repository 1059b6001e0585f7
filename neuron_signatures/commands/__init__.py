"""One module per CLI command (discovered by :mod:`neuron_signatures.cli`)."""
