"""`Hooks`: where a test looks into a run or stops it.

Tests pass an object like this one to a recipe's `run(..., hooks=...)`;
nothing here is reachable from the command line. The defaults do nothing.
"""


class Hooks:
    """No-op hooks; override the ones you need."""

    def training_examples(self, dataset):
        """Called on each training input pipeline's unbatched, unprocessed
        (image, label) examples, in the order training consumes them (after
        sharding, shuffling and repeating); returns the dataset to use.
        Under tf.distribute every epoch has its own pipeline, so this is
        called once per epoch and input pipeline."""
        return dataset

    def on_epoch_end(self, stage, epoch, logs):
        """Called after epoch `epoch` (0-based) of stage `stage` was
        checkpointed; raising here stops the run as a kill would."""
