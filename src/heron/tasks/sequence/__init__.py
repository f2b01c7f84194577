"""Sequence tasks: language models, text classification, tagging, translation and 1-D signals.

Each task is a module of this package with its own train / predict functions;
they share the tokenisers of `heron.data.text` and the recurrent family of
`heron.models.rnn`.
"""
