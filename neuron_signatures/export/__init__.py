"""Exports of atlases to other tools' formats: Neuronpedia, OpenAI NeuronRecord, HTML."""
