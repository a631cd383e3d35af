"""Input pipelines: TensorFlow Datasets (CIFAR-10/100, ImageNet) and synthetic.

Every pipeline is a `dataset_fn(input_context)` (training:
`dataset_fn(input_context, epoch)`, one epoch's stream) for
`strategy.distribute_datasets_from_function`: it shards by the input
context and batches by the per-replica batch size, so batch sizes given to
the recipes are global.

- Training data is split over the input pipelines by example (each worker
  reads a disjoint part of every epoch, whatever the number of files:
  `tfds.even_splits` for TFDS, `Dataset.shard` otherwise), shuffled before
  preprocessing, and repeats; a recipe runs `steps_per_epoch` steps of
  each epoch's pipeline, `dataset_fn(input_context, epoch)`.
- Each epoch's stream is a function of `--seed`, the epoch's number and
  the input pipeline only (`stream_seed`): the order of files and examples
  and every random augmentation (stateless ops, seeded per example). A run
  resumed at epoch `e` therefore reads exactly what the uninterrupted run
  read in epoch `e`.
- Evaluation data is read whole by every input pipeline, padded to a
  multiple of the global batch with examples of weight 0, and split
  element-wise, so every replica runs the same number of steps (needed by
  the collective operations of `MultiWorkerMirroredStrategy`) and every
  test image counts exactly once.

`tensorflow_datasets` is imported only when a real dataset is read; the
recipes never download: the dataset must be prepared in `data_dir` first.
"""

import dataclasses
import hashlib

import numpy as np

from recipes.lazy_tensorflow import tf


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a recipe needs to know about a dataset."""

    name: str
    classes: int
    image_size: int
    train_examples: int
    eval_examples: int
    train_split: str = "train"
    eval_split: str = "test"


DATASETS = {
    "cifar10": DatasetInfo("cifar10", 10, 32, 50_000, 10_000),
    "cifar100": DatasetInfo("cifar100", 100, 32, 50_000, 10_000),
    "imagenet2012": DatasetInfo("imagenet2012", 1000, 224, 1_281_167, 50_000,
                                eval_split="validation"),
}

# Per-channel mean and standard deviation of the CIFAR training images.
CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465),
              "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616),
             "cifar100": (0.2673, 0.2564, 0.2762)}
# Caffe-style means (BGR) used by keras.applications ResNet weights.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def prepared_builder(name, data_dir):
    """The TFDS builder of `name` in `data_dir`, or a clear error.

    Raises:
        ImportError: tensorflow-datasets is not installed.
        FileNotFoundError: the dataset is not prepared in `data_dir`.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "Reading real datasets needs tensorflow-datasets: "
            "`pip install keras_slim[recipes]` (or `pip install "
            "tensorflow-datasets`), or run with --dataset=synthetic."
        ) from error
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        hint = f"`tfds build {name} --data_dir={data_dir}`"
        if name == "imagenet2012":
            hint = (
                "put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
                f"{data_dir}/downloads/manual, then run " + hint
            )
        raise FileNotFoundError(
            f"The dataset `{name}` (version {builder.version}) is not "
            f"prepared in --data_dir={data_dir!r} (no {builder.data_dir}). "
            f"The recipes never download data: prepare it first ({hint}), "
            "or run with --dataset=synthetic."
        )
    return builder


def _per_replica(global_batch_size, input_context):
    if input_context is None:
        return global_batch_size
    return input_context.get_per_replica_batch_size(global_batch_size)


def _shard_count(input_context):
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


# -- preprocessing ------------------------------------------------------------


def stream_seed(seed, epoch, pipeline=0):
    """The seed of training epoch `epoch` (0-based) of input pipeline
    `pipeline` under `--seed=seed`: the same in every process and on every
    rerun (not Python's salted `hash`), different for every epoch."""
    text = f"keras_slim.recipes/{int(seed)}/{int(epoch)}/{int(pipeline)}"
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:7], "little")  # < 2**56: an int64


def _split_seed(seed, count):
    """`count` stateless seeds (shape [2] each) drawn from `seed`."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def cifar_preprocess(dataset_name, training, style="crop_flip"):
    """Per-example CIFAR preprocessing: `preprocess(image, seed=None)`.

    Training augmentation is stateless, drawn from `seed` (a shape [2]
    integer tensor, one per example), so it is the same on every rerun.

    Args:
        dataset_name: "cifar10" or "cifar100" (for the normalization).
        training: augment (pad and random crop, flip) or not.
        style: "crop_flip" (Network Slimming: pad 4, crop, flip, normalize
            by the dataset's mean and standard deviation) or "ye" (Ye et
            al.: pad to 40, crop, flip, random brightness and contrast,
            per-image standardization).
    """
    mean = tf.constant(CIFAR_MEAN.get(dataset_name, CIFAR_MEAN["cifar10"]))
    std = tf.constant(CIFAR_STD.get(dataset_name, CIFAR_STD["cifar10"]))

    def preprocess(image, seed=None):
        image = tf.cast(image, tf.float32) / 255.0
        if training:
            crop, flip, brightness, contrast = _split_seed(seed, 4)
            size = tf.shape(image)
            image = tf.image.pad_to_bounding_box(image, 4, 4, size[0] + 8,
                                                 size[1] + 8)
            image = tf.image.stateless_random_crop(image, size, crop)
            image = tf.image.stateless_random_flip_left_right(image, flip)
            if style == "ye":
                image = tf.image.stateless_random_brightness(
                    image, 63 / 255, brightness)
                image = tf.image.stateless_random_contrast(image, 0.2, 1.8,
                                                           contrast)
        if style == "ye":
            return tf.image.per_image_standardization(image)
        return (image - mean) / std

    return preprocess


def imagenet_preprocess(image_size, training):
    """Random-resized crop and flip (training) or a central crop (eval),
    then Caffe-style BGR mean subtraction, as keras.applications ResNets
    expect. `preprocess(image, seed=None)`: training draws its crop and
    flip statelessly from `seed` (see `cifar_preprocess`)."""

    def preprocess(image, seed=None):
        if training:
            box, flip = _split_seed(seed, 2)
            begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
                tf.shape(image), tf.zeros([0, 0, 4], tf.float32), seed=box,
                min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
                area_range=(0.08, 1.0), max_attempts=10,
                use_image_if_no_bounding_boxes=True)
            image = tf.slice(image, begin, size)
            image = tf.image.resize(image, (image_size, image_size))
            image = tf.image.stateless_random_flip_left_right(image, flip)
        else:
            shape = tf.cast(tf.shape(image)[:2], tf.float32)
            scale = (image_size / 0.875) / tf.reduce_min(shape)
            resized = tf.cast(tf.round(shape * scale), tf.int32)
            image = tf.image.resize(image, resized)
            image = tf.image.resize_with_crop_or_pad(image, image_size,
                                                     image_size)
        image = tf.cast(image, tf.float32)[..., ::-1]
        return image - tf.constant(IMAGENET_BGR_MEAN)

    return preprocess


# -- pipelines ----------------------------------------------------------------


def _finish_training(dataset, batch, seed, preprocess=None, observe=None):
    """Shuffle, repeat, `observe` (a test hook), preprocess, batch.

    `seed` is the epoch's `stream_seed`: it orders the examples and gives
    example `i` of the stream the augmentation seed `[seed, i]`.
    """
    dataset = dataset.shuffle(10 * batch + 100, seed=seed).repeat()
    if observe is not None:
        dataset = observe(dataset)
    if preprocess is not None:
        dataset = dataset.enumerate().map(
            lambda i, example: (preprocess(example[0], tf.stack(
                [tf.constant(seed, tf.int64), i])), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _epoch_seed(seed, epoch, input_context):
    return stream_seed(seed, epoch, _shard_count(input_context)[1])


def _finish_eval(dataset, count, global_batch_size, input_context,
                 image_shape):
    """Weighted examples, padded to a multiple of the global batch, split
    element-wise over the input pipelines."""
    pipelines, index = _shard_count(input_context)
    padded = -(-count // global_batch_size) * global_batch_size
    dataset = dataset.map(lambda x, y: (x, y, tf.ones((), tf.float32)))
    if padded > count:
        filler = tf.data.Dataset.from_tensors(
            (tf.zeros(image_shape, tf.float32), tf.zeros((), tf.int64),
             tf.zeros((), tf.float32))).repeat(padded - count)
        dataset = dataset.concatenate(filler)
    if pipelines > 1:
        dataset = dataset.shard(pipelines, index)
    batch = _per_replica(global_batch_size, input_context)
    return dataset.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_steps(count, global_batch_size):
    """Steps that cover `count` evaluation examples (the last one padded)."""
    return -(-count // global_batch_size)


def tfds_dataset_fn(info, data_dir, training, global_batch_size, preprocess,
                    image_shape, seed=0, observe=None):
    """A `dataset_fn(input_context, epoch=0)` reading `info.name` from
    TFDS (the epoch is that of a training stream; evaluation ignores it).

    The builder is checked (prepared, never downloaded) when this function
    is called, before any model is built. Training data is split by
    example with `tfds.even_splits` (not by file, which fails or repeats
    examples when the split has fewer files than input pipelines); each
    pipeline reads only the files its part lies in.
    """
    builder = prepared_builder(info.name, data_dir)
    split = info.train_split if training else info.eval_split
    count = builder.info.splits[split].num_examples

    def dataset_fn(input_context=None, epoch=0):
        import tensorflow_datasets as tfds

        if training:
            pipelines, index = _shard_count(input_context)
            part = split
            if pipelines > 1:
                part = tfds.even_splits(split, n=pipelines)[index]
            epoch_seed = _epoch_seed(seed, epoch, input_context)
            dataset = builder.as_dataset(
                split=part, shuffle_files=True, as_supervised=True,
                read_config=tfds.ReadConfig(shuffle_seed=epoch_seed))
            return _finish_training(
                dataset, _per_replica(global_batch_size, input_context),
                epoch_seed, preprocess, observe)
        dataset = builder.as_dataset(split=split, shuffle_files=False,
                                     as_supervised=True)
        dataset = dataset.map(lambda x, y: (preprocess(x), y),
                              num_parallel_calls=tf.data.AUTOTUNE)
        return _finish_eval(dataset, count, global_batch_size, input_context,
                            image_shape)

    return dataset_fn, count


def synthetic_dataset_fn(image_shape, classes, count, training,
                         global_batch_size, seed=0, observe=None):
    """A `dataset_fn(input_context, epoch=0)` of `count` random images and
    labels.

    The images are standard normal (already "preprocessed"); the labels are
    uniform over `classes`. The same `seed` gives the same examples in every
    process, so multi-worker runs see one dataset.
    """
    rng = np.random.default_rng(seed + (0 if training else 1))
    images = rng.standard_normal((count, *image_shape)).astype("float32")
    labels = rng.integers(0, classes, count).astype("int64")

    def dataset_fn(input_context=None, epoch=0):
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        if training:
            pipelines, index = _shard_count(input_context)
            if pipelines > 1:
                dataset = dataset.shard(pipelines, index)
            return _finish_training(
                dataset, _per_replica(global_batch_size, input_context),
                _epoch_seed(seed, epoch, input_context), observe=observe)
        return _finish_eval(dataset, count, global_batch_size, input_context,
                            image_shape)

    return dataset_fn, count


def dataset_fn_from(dataset, training, global_batch_size, image_shape,
                    seed=0, observe=None):
    """A `dataset_fn(input_context, epoch=0)` from an unbatched (image, label)
    `tf.data.Dataset` of known length (`datasets_override`)."""
    count = int(dataset.cardinality())
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32),
                                        tf.cast(y, tf.int64)))

    def dataset_fn(input_context=None, epoch=0):
        if training:
            pipelines, index = _shard_count(input_context)
            shard = dataset.shard(pipelines, index) if pipelines > 1 else dataset
            return _finish_training(
                shard, _per_replica(global_batch_size, input_context),
                _epoch_seed(seed, epoch, input_context), observe=observe)
        return _finish_eval(dataset, count, global_batch_size, input_context,
                            image_shape)

    return dataset_fn


def override_dataset_fns(datasets_override, batch_size, seed, observe):
    """The training and evaluation dataset functions of a
    `datasets_override` pair of unbatched datasets, their counts and the
    image shape."""
    train, evaluation = datasets_override
    counts = []
    for dataset in (train, evaluation):
        count = int(dataset.cardinality())
        if count < 0:
            raise ValueError("Expected `datasets_override` datasets of known "
                             "length (`dataset.cardinality()`).")
        counts.append(count)
    image_shape = tuple(train.element_spec[0].shape)
    return (dataset_fn_from(train, True, batch_size, image_shape, seed,
                            observe),
            dataset_fn_from(evaluation, False, batch_size, image_shape, seed),
            counts, image_shape)
