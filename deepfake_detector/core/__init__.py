"""What every floor stands on: errors users see, atomic files, the project's paths, the typed params
and how a process starts (TensorFlow loaded quietly, numerics made portable)."""
