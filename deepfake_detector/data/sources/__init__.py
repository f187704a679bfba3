"""Where the dataset comes from: the built-in sample, Kaggle, or a local file; each writes the one
canonical archive (``canonical.py``) that download hands to preprocess."""
