"""Evaluation of a model on a dataset: pairs, embeddings (cached), figures and reports."""
