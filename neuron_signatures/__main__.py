"""``python -m neuron_signatures`` runs the CLI."""

from .cli import entry

if __name__ == "__main__":
    entry()
