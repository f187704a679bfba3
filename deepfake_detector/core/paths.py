"""Where the pipeline's files live, relative to the project root (DVC runs every stage there).

The one list that the stage scripts, the tests and the benchmarks share. ``dvc.yaml`` has to spell
the same paths out (it cannot import Python); ``tests/test_paths.py`` checks that the two agree.
"""

from pathlib import Path

# local_input: a link to data.local_path (or a placeholder), through which DVC hashes a local dataset
LOCAL_INPUT = Path("data/local_input")

# download: the dataset in the canonical layout, and where it came from
RAW_DIR = Path("data/raw")
ARCHIVE = RAW_DIR / "dataset.zip"
SOURCE_INFO = RAW_DIR / "source.json"

# preprocess: one folder, replaced as a whole; the file names inside it
PROCESSED = Path("data/processed")
CATALOG_FILE = "records.json"  # the TFRecord shards of each split, with their counts
MANIFEST_FILE = "manifest.csv"  # one row per source image
NEAR_FILE = "near_duplicates.csv"  # the closest cross-split near-duplicate pairs, to look at by eye
MANIFEST = PROCESSED / MANIFEST_FILE

# train
MODEL = Path("models/model.keras")
TRAIN_CHECKPOINT = Path("models/train_checkpoint")  # the last finished epoch of a killed run (persist)

# evaluate: the Validation threshold beside the model, with the model file's sha256 (predict reads it)
THRESHOLD_SUFFIX = ".threshold.json"  # any model file M has its threshold in M + this
THRESHOLD = MODEL.with_name(MODEL.name + THRESHOLD_SUFFIX)
PREDICTIONS = Path("data/eval/predictions.csv")

# metrics and plots: small, committed to git (cache: false)
DATA_METRICS = Path("metrics/data.json")
TRAIN_METRICS = Path("metrics/train.json")
TRAIN_LIVE = Path("metrics/train_live")  # dvclive's per-epoch curves
TRAIN_TIMING = Path("metrics/timing/train.json")  # speed figures: they differ on every run
PREPROCESS_TIMING = Path("metrics/timing/preprocess.json")
EVAL_METRICS = Path("metrics/eval.json")
PLOTS = Path("metrics/plots")
