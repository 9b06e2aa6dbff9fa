"""Which of Keras 3.15.1's test files run, per module of issue 13 (paths under ``keras/src/``).

The rule: each module lamina implements, plus the files whose API the issue asks for (Adafactor, Ftrl,
BackupAndRestore, TensorBoard) and what lamina has added since (LossScaleOptimizer, Lamb). Files for what
neither has (quantizers, Muon, Orbax, einsum...) are left out rather than counted as
failures; ``--scope dirs`` runs every test file in the same folders to see them too.
"""

from __future__ import annotations

KERAS_VERSION = "3.15.1"

MODULES = {
    "activations": ["activations/activations_test.py"],
    "layers/core": ["layers/core/dense_test.py", "layers/core/input_layer_test.py", "layers/core/masking_test.py",
                    "layers/core/embedding_test.py"],
    "layers/activations": [
        "layers/activations/activation_test.py", "layers/activations/elu_test.py",
        "layers/activations/leaky_relu_test.py", "layers/activations/prelu_test.py",
        "layers/activations/relu_test.py", "layers/activations/softmax_test.py",
    ],
    "layers/normalization": [
        "layers/normalization/batch_normalization_test.py", "layers/normalization/layer_normalization_test.py",
        "layers/normalization/group_normalization_test.py", "layers/normalization/unit_normalization_test.py",
    ],
    "layers/regularization": ["layers/regularization/dropout_test.py", "layers/regularization/spatial_dropout_test.py"],
    "layers/preprocessing": [
        "layers/preprocessing/rescaling_test.py", "layers/preprocessing/image_preprocessing/resizing_test.py",
        "layers/preprocessing/image_preprocessing/center_crop_test.py",
        "layers/preprocessing/hashing_test.py",
        "layers/preprocessing/integer_lookup_test.py", "layers/preprocessing/string_lookup_test.py",
        "layers/preprocessing/text_vectorization_test.py",
    ],
    "layers/reshaping": [
        "layers/reshaping/cropping1d_test.py", "layers/reshaping/cropping2d_test.py",
        "layers/reshaping/cropping3d_test.py", "layers/reshaping/flatten_test.py", "layers/reshaping/permute_test.py",
        "layers/reshaping/repeat_vector_test.py", "layers/reshaping/reshape_test.py",
        "layers/reshaping/up_sampling1d_test.py", "layers/reshaping/up_sampling2d_test.py",
        "layers/reshaping/up_sampling3d_test.py", "layers/reshaping/zero_padding1d_test.py",
        "layers/reshaping/zero_padding2d_test.py", "layers/reshaping/zero_padding3d_test.py",
    ],
    "layers/pooling": [
        "layers/pooling/average_pooling_test.py", "layers/pooling/global_average_pooling_test.py",
        "layers/pooling/global_max_pooling_test.py", "layers/pooling/max_pooling_test.py",
    ],
    "layers/merging": ["layers/merging/merging_test.py"],
    "layers/convolutional": [
        "layers/convolutional/conv_test.py", "layers/convolutional/conv_transpose_test.py",
        "layers/convolutional/depthwise_conv_test.py", "layers/convolutional/separable_conv_test.py",
    ],
    "layers/rnn": ["layers/rnn/lstm_test.py", "layers/rnn/gru_test.py", "layers/rnn/simple_rnn_test.py",
                   "layers/rnn/stacked_rnn_cells_test.py", "layers/rnn/time_distributed_test.py",
                   "layers/rnn/conv_lstm_test.py", "layers/rnn/conv_lstm1d_test.py",
                   "layers/rnn/conv_lstm2d_test.py", "layers/rnn/conv_lstm3d_test.py",
                   "layers/rnn/bidirectional_test.py"],
    "losses": ["losses/loss_test.py", "losses/losses_test.py"],
    "metrics": [
        "metrics/accuracy_metrics_test.py", "metrics/confusion_metrics_test.py",
        "metrics/correlation_metrics_test.py", "metrics/f_score_metrics_test.py", "metrics/hinge_metrics_test.py",
        "metrics/iou_metrics_test.py", "metrics/metric_test.py", "metrics/probabilistic_metrics_test.py",
        "metrics/reduction_metrics_test.py", "metrics/regression_metrics_test.py",
    ],
    "optimizers": [
        "optimizers/adadelta_test.py", "optimizers/adafactor_test.py", "optimizers/adagrad_test.py",
        "optimizers/adam_test.py", "optimizers/adamax_test.py", "optimizers/adamw_test.py",
        "optimizers/ftrl_test.py", "optimizers/lion_test.py", "optimizers/nadam_test.py",
        "optimizers/rmsprop_test.py", "optimizers/sgd_test.py", "optimizers/optimizer_test.py",
        "optimizers/loss_scale_optimizer_test.py", "optimizers/lamb_test.py",
        "optimizers/schedules/learning_rate_schedule_test.py",
    ],
    "callbacks": [
        "callbacks/backup_and_restore_test.py", "callbacks/callback_test.py", "callbacks/csv_logger_test.py",
        "callbacks/early_stopping_test.py", "callbacks/lambda_callback_test.py",
        "callbacks/learning_rate_scheduler_test.py", "callbacks/model_checkpoint_test.py",
        "callbacks/monitor_callback_test.py", "callbacks/reduce_lr_on_plateau_test.py",
        "callbacks/tensorboard_test.py", "callbacks/terminate_on_nan_test.py",
    ],
    "models": ["models/sequential_test.py", "models/functional_test.py", "models/model_test.py"],
    "saving": ["saving/saving_api_test.py", "saving/saving_lib_test.py", "saving/serialization_lib_test.py"],
    "utils": ["utils/sequence_utils_test.py", "utils/timeseries_dataset_utils_test.py"],
    "wrappers": ["wrappers/sklearn_test.py"],
}

# Files that need packages lamina's tests never install ("a,b": all of them), with the allowed skip category as
# the reason.
REQUIRES = {
    "callbacks/tensorboard_test.py": (
        "tensorflow", "TensorFlow-only: the test reads the event files back with tensorflow"),
    # these import tensorflow.data (and grain) at module level, for their tf.data/grain pipeline tests
    **{f"layers/preprocessing/{name}_test.py": (
        "tensorflow,grain", "TensorFlow-only: the file imports tensorflow.data and grain at module level")
       for name in ("rescaling", "image_preprocessing/resizing", "string_lookup", "text_vectorization")},
    "layers/preprocessing/image_preprocessing/center_crop_test.py": (
        "tensorflow", "TensorFlow-only: the file imports tensorflow.data at module level"),
    "layers/preprocessing/hashing_test.py": (
        "tensorflow", "TensorFlow-only: the file imports tensorflow at module level (for its tf.data test)"),
    "layers/preprocessing/integer_lookup_test.py": (
        "tensorflow", "TensorFlow-only: the file imports tensorflow.data at module level"),
}


def select(scope: str, sdist_files: list[str], only: list[str] | None = None) -> dict[str, list[str]]:
    """Module → test files. ``scope`` "issue" is ``MODULES``; "dirs" is every ``*_test.py`` in their folders.

    ``only`` keeps the modules (or single files) whose name contains one of its words.
    """
    if scope == "issue":
        chosen = {module: list(files) for module, files in MODULES.items()}
    elif scope == "dirs":
        chosen = {}
        for module, files in MODULES.items():
            folders = {f.rsplit("/", 1)[0] for f in files}
            chosen[module] = sorted(f for f in sdist_files
                                    if f.endswith("_test.py") and f.rsplit("/", 1)[0] in folders)
    else:
        raise ValueError(f"scope must be 'issue' or 'dirs'. Received: scope={scope!r}")
    if only:
        chosen = {m: [f for f in files if any(w in m or w in f for w in only)] for m, files in chosen.items()}
        chosen = {m: files for m, files in chosen.items() if files}
    return chosen
