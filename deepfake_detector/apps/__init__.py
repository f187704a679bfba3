"""What users run on their own files: the CLI, predict, watch, serve (and its page), export and explain;
faces are found here too."""
