"""Everything that runs off the UI thread: one-shot tasks, the training worker, the preview worker."""
