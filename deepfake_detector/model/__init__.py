"""The detector itself: the catalog of models and their builders, the fixed-feature models, the model
file (save, load, metadata) and scoring a loaded model."""
