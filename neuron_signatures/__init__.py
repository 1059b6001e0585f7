"""neuron-signatures: dump, rank, attribute and browse the MLP neurons of Gemma models."""

__version__ = "0.1.0"
