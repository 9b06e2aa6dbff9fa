"""Layers with Keras's names; ``serialize``/``deserialize`` turn them into config dicts and back."""

from __future__ import annotations

from lamina.layers.activation import Activation
from lamina.layers.add import Add, add
from lamina.layers.average import Average, average
from lamina.layers.average_pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    AvgPool1D,
    AvgPool2D,
    AvgPool3D,
)
from lamina.layers.batch_normalization import BatchNormalization
from lamina.layers.bidirectional import Bidirectional
from lamina.layers.center_crop import CenterCrop
from lamina.layers.concatenate import Concatenate, concatenate
from lamina.layers.conv import Conv1D, Conv2D, Conv3D, Convolution1D, Convolution2D, Convolution3D
from lamina.layers.conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from lamina.layers.conv_transpose import (
    Conv1DTranspose,
    Conv2DTranspose,
    Conv3DTranspose,
    Convolution1DTranspose,
    Convolution2DTranspose,
    Convolution3DTranspose,
)
from lamina.layers.cropping import Cropping1D, Cropping2D, Cropping3D
from lamina.layers.dense import Dense
from lamina.layers.depthwise_conv import DepthwiseConv1D, DepthwiseConv2D
from lamina.layers.dot import Dot, dot
from lamina.layers.dropout import Dropout
from lamina.layers.elu import ELU
from lamina.layers.embedding import Embedding
from lamina.layers.flatten import Flatten
from lamina.layers.global_pooling import (
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalAvgPool1D,
    GlobalAvgPool2D,
    GlobalAvgPool3D,
    GlobalMaxPool1D,
    GlobalMaxPool2D,
    GlobalMaxPool3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
)
from lamina.layers.group_normalization import GroupNormalization
from lamina.layers.gru import GRU, GRUCell
from lamina.layers.hashing import Hashing
from lamina.layers.identity import Identity
from lamina.layers.index_lookup import IndexLookup
from lamina.layers.input_layer import Input, InputLayer
from lamina.layers.integer_lookup import IntegerLookup
from lamina.layers.keras_tensor import KerasTensor
from lamina.layers.lambda_layer import Lambda
from lamina.layers.layer import InputSpec, Layer
from lamina.layers.layer_normalization import LayerNormalization
from lamina.layers.leaky_relu import LeakyReLU
from lamina.layers.lstm import LSTM, LSTMCell
from lamina.layers.masking import Masking
from lamina.layers.max_pooling import MaxPool1D, MaxPool2D, MaxPool3D, MaxPooling1D, MaxPooling2D, MaxPooling3D
from lamina.layers.maximum import Maximum, maximum
from lamina.layers.minimum import Minimum, minimum
from lamina.layers.multiply import Multiply, multiply
from lamina.layers.permute import Permute
from lamina.layers.prelu import PReLU
from lamina.layers.random_contrast import RandomContrast
from lamina.layers.random_flip import RandomFlip
from lamina.layers.random_rotation import RandomRotation
from lamina.layers.random_translation import RandomTranslation
from lamina.layers.random_zoom import RandomZoom
from lamina.layers.relu import ReLU
from lamina.layers.repeat_vector import RepeatVector
from lamina.layers.rescaling import Rescaling
from lamina.layers.reshape import Reshape
from lamina.layers.resizing import Resizing
from lamina.layers.rnn import RNN
from lamina.layers.separable_conv import (
    SeparableConv1D,
    SeparableConv2D,
    SeparableConvolution1D,
    SeparableConvolution2D,
)
from lamina.layers.simple_rnn import SimpleRNN, SimpleRNNCell
from lamina.layers.softmax import Softmax
from lamina.layers.spatial_dropout import SpatialDropout1D, SpatialDropout2D, SpatialDropout3D
from lamina.layers.stacked_rnn_cells import StackedRNNCells
from lamina.layers.string_lookup import StringLookup
from lamina.layers.subtract import Subtract, subtract
from lamina.layers.text_vectorization import TextVectorization
from lamina.layers.time_distributed import TimeDistributed
from lamina.layers.unit_normalization import UnitNormalization
from lamina.layers.up_sampling import UpSampling1D, UpSampling2D, UpSampling3D
from lamina.layers.wrapper import Wrapper
from lamina.layers.zero_padding import ZeroPadding1D, ZeroPadding2D, ZeroPadding3D
from lamina.saving.object_config import deserialize_layer, serialize_layer
from lamina.saving.object_registry import register_builtins

__all__ = [
    "Bidirectional", "GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "SimpleRNN", "SimpleRNNCell", "StackedRNNCells",
    "ELU", "Activation", "Add", "Average", "BatchNormalization", "Concatenate", "Dense", "Dot", "Dropout", "Flatten",
    "Embedding",
    "Identity", "Input", "InputLayer", "InputSpec", "KerasTensor", "Lambda", "Layer", "LayerNormalization",
    "LeakyReLU", "Masking", "Maximum", "Minimum", "Multiply", "PReLU", "ReLU", "Reshape", "Softmax", "Subtract",
    "TimeDistributed", "Wrapper", "add", "average", "concatenate", "deserialize", "dot", "maximum", "minimum",
    "multiply", "serialize", "subtract",
    "Cropping1D", "Cropping2D", "Cropping3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
    "Permute", "RepeatVector", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalAvgPool1D",
    "GlobalAvgPool2D", "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D", "MaxPool1D", "MaxPool2D", "MaxPool3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
]
__all__ += ["Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D"]  # convolutions
__all__ += [  # transposed, depthwise and separable convolutions
    "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution1DTranspose", "Convolution2DTranspose",
    "Convolution3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    "SeparableConvolution1D", "SeparableConvolution2D",
]

__all__ += [  # image augmentation, active in training only
    "RandomContrast", "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom",
]

__all__ += [  # around convolutions: channel dropout, image preprocessing, group and unit normalization
    "CenterCrop", "GroupNormalization", "Rescaling", "Resizing", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "UnitNormalization",
]

# text and vocabulary preprocessing; IndexLookup is their base (in keras.src.layers, not keras.layers)
__all__ += ["IndexLookup", "IntegerLookup", "StringLookup", "TextVectorization"]

__all__ += ["Hashing"]  # preprocessing: categorical values hashed into bins
__all__ += ["ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]  # LSTMs with convolutions for matmuls

register_builtins("layers", {name: obj for name, obj in globals().items()
                             if isinstance(obj, type) and issubclass(obj, Layer)})


def serialize(layer: Layer) -> dict:
    """Keras 3's layer entry: module, class_name, config, registered_name (+ build_config)."""
    return serialize_layer(layer)


def deserialize(config: dict, custom_objects: dict | None = None) -> Layer:
    """A layer from ``serialize``'s dict (Keras 3 or Keras 2 style: class_name + config)."""
    return deserialize_layer(config, custom_objects)
