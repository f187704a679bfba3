"""From a dataset to checked records: the sources (sample, Kaggle, local), image decoding and checks,
near-duplicate search, preprocessing and the TFRecord files."""
