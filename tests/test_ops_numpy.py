"""The NumPy-like part of ``keras.ops``: values and dtypes against real Keras (torch backend), gradients
against central differences, and the errors that name the op and argument."""

import warnings

import numpy as np
import pytest

import lamina
from lamina import ops
from tests.helpers import check_gradients

R = np.random.default_rng(7)
F = R.normal(size=(3, 4)).astype("float32")
F3 = R.normal(size=(2, 3, 4)).astype("float32")
POS = R.uniform(0.5, 2.0, size=(3, 4)).astype("float32")
UNIT = R.uniform(-0.9, 0.9, size=(3, 4)).astype("float32")
IN = R.integers(-5, 6, size=(3, 4)).astype("int32")
NAT = R.integers(0, 5, size=(6,)).astype("int32")
BOOL = R.random((3, 4)) > 0.5
SQ = R.normal(size=(4, 4)).astype("float32")
V3 = R.normal(size=(4, 3)).astype("float32")

# (label, op name, args, kwargs): the same call on lamina.ops and keras.ops.
ORACLE = [
    ("array_ints", "array", ([1, 2],), {}),
    ("array_floats", "array", ([1.5, 2.0],), {}),
    ("array_dtype", "array", ([1, 2],), {"dtype": "float32"}),
    ("array_i64", "array", (np.arange(3),), {}),
    ("convert_ints", "convert_to_tensor", ([[1, 2], [3, 4]],), {}),
    ("convert_int_scalar", "convert_to_tensor", (7,), {}),
    ("convert_float_scalar", "convert_to_tensor", (0.5,), {}),
    ("convert_bools", "convert_to_tensor", ([True, False],), {}),
    ("convert_dtype", "convert_to_tensor", ([1, 2],), {"dtype": "float32"}),
    ("full", "full", ((2, 3), 3), {}),
    ("full_dtype", "full", ((2,), 7), {"dtype": "int32"}),
    ("full_like", "full_like", (IN, 2.5), {}),
    ("full_like_dtype", "full_like", (IN, 2.5), {"dtype": "float32"}),
    ("zeros", "zeros", ((2, 3),), {}),
    ("ones_int", "ones", ((2,),), {"dtype": "int32"}),
    ("zeros_like", "zeros_like", (IN,), {}),
    ("ones_like", "ones_like", (F,), {"dtype": "int32"}),
    ("empty", "empty", ((2, 2),), {}),
    ("empty_like", "empty_like", (IN,), {}),
    ("eye", "eye", (3,), {}),
    ("eye_rect", "eye", (2, 4), {"k": 1}),
    ("identity", "identity", (3,), {}),
    ("tri", "tri", (3, 4), {"k": -1}),
    ("arange_int", "arange", (5,), {}),
    ("arange_float", "arange", (0.0, 2.0, 0.25), {}),
    ("arange_mixed", "arange", (1, 5, 0.5), {}),
    ("arange_dtype", "arange", (1, 7, 2), {"dtype": "float32"}),
    ("linspace", "linspace", (0, 1, 5), {}),
    ("linspace_open", "linspace", (0, 1, 4), {"endpoint": False}),
    ("linspace_int", "linspace", (0, 10, 4), {"dtype": "int32"}),
    ("logspace", "logspace", (0, 2, 3), {}),
    ("geomspace", "geomspace", (1, 16, 5), {}),
    ("ndim", "ndim", (F3,), {}),
    ("size", "size", (F3,), {}),
    ("shape", "shape", (F3,), {}),
    ("std", "std", (F,), {"axis": 1}),
    ("std_int", "std", (IN,), {}),
    ("var", "var", (F,), {"axis": 0, "keepdims": True}),
    ("var_int", "var", (IN,), {"axis": -1}),
    ("mean_int", "mean", (IN,), {}),
    ("prod", "prod", (F,), {"axis": 1}),
    ("prod_int", "prod", (IN,), {"axis": 0}),
    ("cumsum", "cumsum", (F,), {"axis": 1}),
    ("cumsum_flat", "cumsum", (F,), {}),
    ("cumsum_bool", "cumsum", (BOOL,), {}),
    ("cumsum_int", "cumsum", (IN,), {"axis": 0}),
    ("cumprod", "cumprod", (F,), {"axis": 0}),
    ("any", "any", (IN,), {"axis": 0}),
    ("all", "all", (BOOL,), {"axis": 1, "keepdims": True}),
    ("count_nonzero", "count_nonzero", (IN,), {"axis": 1}),
    ("average", "average", (F,), {"axis": 1, "weights": POS[0]}),
    ("average_int", "average", (IN,), {}),
    ("median", "median", (F,), {"axis": 1}),
    ("median_even", "median", (F,), {"axis": 0}),
    ("quantile", "quantile", (F, [0.1, 0.5, 0.9]), {"axis": 1}),
    ("quantile_keep", "quantile", (F3, 0.3), {"axis": (0, 2), "keepdims": True}),
    ("quantile_lower", "quantile", (F, 0.3), {"method": "lower"}),
    ("quantile_nearest", "quantile", (F, 0.7), {"method": "nearest"}),
    ("quantile_midpoint", "quantile", (F, 0.3), {"method": "midpoint"}),
    ("quantile_higher", "quantile", (F, 0.3), {"method": "higher"}),
    ("percentile", "percentile", (F, 25), {"axis": 0}),
    ("ptp", "ptp", (IN,), {"axis": 1}),
    ("argmin", "argmin", (F,), {"axis": 1}),
    ("argmax", "argmax", (F,), {}),
    ("argsort", "argsort", (F,), {"axis": 0}),
    ("argsort_flat", "argsort", (F,), {"axis": None}),
    ("sort", "sort", (IN,), {}),
    ("norm", "norm", (F,), {}),
    ("norm_int", "norm", (IN,), {}),
    ("norm_axis", "norm", (F,), {"axis": 1, "keepdims": True}),
    ("norm_1", "norm", (F,), {"ord": 1, "axis": 0}),
    ("norm_inf", "norm", (F,), {"ord": np.inf, "axis": 1}),
    ("norm_p3", "norm", (F,), {"ord": 3, "axis": 1}),
    ("norm_0", "norm", (F[0],), {"ord": 0}),
    ("norm_fro", "norm", (F,), {"ord": "fro"}),
    ("norm_nuc", "norm", (F,), {"ord": "nuc"}),
    ("norm_spectral", "norm", (F,), {"ord": 2}),
    ("norm_m1", "norm", (F,), {"ord": 1}),
    ("norm_minf", "norm", (F,), {"ord": -np.inf}),
    ("norm_batch", "norm", (F3,), {"ord": "fro", "axis": (1, 2)}),
    ("floor", "floor", (F,), {}),
    ("floor_int", "floor", (IN,), {}),
    ("ceil", "ceil", (F,), {}),
    ("round", "round", (F * 10,), {}),
    ("round_dec", "round", (F,), {"decimals": 1}),
    ("round_int", "round", (IN,), {}),
    ("trunc", "trunc", (F * 3,), {}),
    ("reciprocal", "reciprocal", (POS,), {}),
    ("reciprocal_int", "reciprocal", (IN + 10,), {}),
    ("rsqrt", "rsqrt", (POS,), {}),
    ("cbrt", "cbrt", (F,), {}),
    ("log2", "log2", (POS,), {}),
    ("log2_int", "log2", (NAT + 1,), {}),
    ("log10", "log10", (POS,), {}),
    ("exp2", "exp2", (F,), {}),
    ("exp2_int", "exp2", (IN,), {}),
    ("tan", "tan", (UNIT,), {}),
    ("sinh", "sinh", (F,), {}),
    ("cosh", "cosh", (F,), {}),
    ("arcsin", "arcsin", (UNIT,), {}),
    ("arccos", "arccos", (UNIT,), {}),
    ("arctan", "arctan", (F,), {}),
    ("arcsinh", "arcsinh", (F,), {}),
    ("arccosh", "arccosh", (POS + 1,), {}),
    ("arctanh", "arctanh", (UNIT,), {}),
    ("deg2rad", "deg2rad", (F,), {}),
    ("rad2deg", "rad2deg", (F,), {}),
    ("sinc", "sinc", (F,), {}),
    ("erfc", "erfc", (F,), {}),
    ("fabs", "fabs", (IN,), {}),
    ("nan_to_num", "nan_to_num", (np.array([np.nan, np.inf, -np.inf, 1.0], "float32"),), {}),
    (
        "nan_to_num_args",
        "nan_to_num",
        (np.array([np.nan, np.inf, -np.inf], "float32"),),
        {"nan": 1.0, "posinf": 9.0, "neginf": -9.0},
    ),
    ("mod", "mod", (F, 0.7), {}),
    ("mod_int", "mod", (IN, 3), {}),
    ("fmod", "fmod", (IN, 3), {}),
    ("fmod_f", "fmod", (F, 0.7), {}),
    ("floor_divide", "floor_divide", (IN, 3), {}),
    ("floor_divide_f", "floor_divide", (F, 0.3), {}),
    ("divide_no_nan", "divide_no_nan", (F, np.where(BOOL, F, 0)), {}),
    ("arctan2", "arctan2", (F, POS), {}),
    ("arctan2_int", "arctan2", (IN, IN + 7), {}),
    ("hypot", "hypot", (F, POS), {}),
    ("logaddexp", "logaddexp", (F, POS), {}),
    ("logaddexp2", "logaddexp2", (F, POS), {}),
    ("fmax", "fmax", (np.array([np.nan, 1.0, 2.0], "float32"), np.array([0.5, np.nan, 3.0], "float32")), {}),
    ("fmin", "fmin", (np.array([np.nan, 1.0, 2.0], "float32"), np.array([0.5, np.nan, 3.0], "float32")), {}),
    ("heaviside", "heaviside", (IN, np.float32(0.5)), {}),
    ("ldexp", "ldexp", (F, IN), {}),
    ("greater_equal", "greater_equal", (IN, 0), {}),
    ("less_equal", "less_equal", (F, 0.1), {}),
    ("logical_and", "logical_and", (IN, BOOL), {}),
    ("logical_or", "logical_or", (IN, BOOL), {}),
    ("logical_xor", "logical_xor", (IN, BOOL), {}),
    ("logical_not", "logical_not", (IN,), {}),
    ("isnan", "isnan", (np.array([np.nan, 1.0, np.inf], "float32"),), {}),
    ("isinf", "isinf", (np.array([np.nan, -np.inf, 1.0], "float32"),), {}),
    ("isfinite", "isfinite", (np.array([np.nan, -np.inf, 1.0], "float32"),), {}),
    ("isnan_int", "isnan", (IN,), {}),
    ("isneginf", "isneginf", (np.array([np.nan, -np.inf, np.inf], "float32"),), {}),
    ("isposinf", "isposinf", (np.array([np.nan, -np.inf, np.inf], "float32"),), {}),
    ("signbit", "signbit", (F,), {}),
    ("isclose", "isclose", (F, F + 1e-6), {}),
    ("isin", "isin", (IN, [0, 1, 2]), {}),
    ("bitwise_and", "bitwise_and", (IN, 3), {}),
    ("bitwise_or", "bitwise_or", (IN, 4), {}),
    ("bitwise_xor", "bitwise_xor", (IN, 5), {}),
    ("bitwise_invert", "bitwise_invert", (IN,), {}),
    ("left_shift", "left_shift", (NAT, 2), {}),
    ("right_shift", "right_shift", (IN, 1), {}),
    ("gcd", "gcd", (NAT, 4), {}),
    ("lcm", "lcm", (NAT + 1, 4), {}),
    ("einsum", "einsum", ("ij,jk->ik", F, V3), {}),
    ("einsum_implicit", "einsum", ("ij,kj", F, F), {}),
    ("einsum_ellipsis", "einsum", ("...j,jk->...k", F3, V3), {}),
    ("einsum_trace", "einsum", ("ii", SQ), {}),
    ("outer", "outer", (F[0], F[1]), {}),
    ("inner", "inner", (F, F), {}),
    ("tensordot", "tensordot", (F3, V3), {"axes": 1}),
    ("tensordot_pairs", "tensordot", (F3, F), {"axes": ([1, 2], [0, 1])}),
    ("vdot", "vdot", (F[0], F[1]), {}),
    ("kron", "kron", (F[:2, :2], F[:2, :3]), {}),
    ("cross", "cross", (V3, V3[::-1]), {}),
    ("ravel", "ravel", (F3,), {}),
    ("swapaxes", "swapaxes", (F3, 0, 2), {}),
    ("moveaxis", "moveaxis", (F3, 0, -1), {}),
    ("moveaxis_multi", "moveaxis", (F3, [0, 1], [2, 0]), {}),
    ("flip", "flip", (F3,), {"axis": 1}),
    ("flip_all", "flip", (F,), {}),
    ("fliplr", "fliplr", (F,), {}),
    ("flipud", "flipud", (F,), {}),
    ("roll", "roll", (F, 2), {"axis": 1}),
    ("roll_flat", "roll", (F, -3), {}),
    ("rot90", "rot90", (F,), {"k": 3}),
    ("tile", "tile", (F, (2, 1)), {}),
    ("tile_rank", "tile", (F[0], (2, 1, 2)), {}),
    ("repeat", "repeat", (F, 2), {"axis": 0}),
    ("repeat_flat", "repeat", (IN, 2), {}),
    ("repeat_counts", "repeat", (F, np.array([1, 0, 2])), {"axis": 0}),
    ("split", "split", (F, 2), {"axis": 1}),
    ("split_at", "split", (F, [1, 3]), {"axis": 1}),
    ("array_split", "array_split", (F, 3), {"axis": 1}),
    ("hsplit", "hsplit", (F, 2), {}),
    ("vsplit", "vsplit", (F3[0], 3), {}),
    ("dsplit", "dsplit", (F3, 2), {}),
    ("unstack", "unstack", (F3,), {"axis": 1}),
    ("hstack", "hstack", ([F, F[:, :2]],), {}),
    ("vstack", "vstack", ([F, F[:1]],), {}),
    ("vstack_1d", "vstack", ([F[0], F[1]],), {}),
    ("dstack", "dstack", ([F, F],), {}),
    ("append", "append", (F, F[0]), {}),
    ("append_axis", "append", (F, F[:1]), {"axis": 0}),
    ("stack", "stack", ([F, F],), {"axis": -1}),
    ("concatenate", "concatenate", ([F, F[:1]],), {"axis": 0}),
    ("pad", "pad", (F, ((1, 2), (0, 1))), {}),
    ("pad_value", "pad", (F, ((1, 1), (1, 1))), {"constant_values": 3.0}),
    ("pad_reflect", "pad", (F, ((2, 1), (1, 3))), {"mode": "reflect"}),
    ("tril", "tril", (F,), {}),
    ("triu", "triu", (F3,), {"k": 1}),
    ("diag", "diag", (F[0],), {"k": -1}),
    ("diag_2d", "diag", (F,), {"k": 1}),
    ("diagonal", "diagonal", (F3,), {"offset": 1, "axis1": 1, "axis2": 2}),
    ("diagflat", "diagflat", (F[:2, :2],), {}),
    ("trace", "trace", (F,), {"offset": 1}),
    ("trace_int", "trace", (IN,), {}),
    ("take_along_axis", "take_along_axis", (F, np.argsort(F, axis=1)), {"axis": 1}),
    ("take_along_axis_bcast", "take_along_axis", (F3, np.array([[[0], [2], [1]]])), {"axis": 2}),
    ("take_along_axis_flat", "take_along_axis", (F, np.array([0, 5, 11])), {"axis": None}),
    ("take", "take", (F, np.array([[0, 3], [2, 2]])), {"axis": 1}),
    ("expand_dims", "expand_dims", (F, -1), {}),
    ("squeeze", "squeeze", (F[:1],), {}),
    ("broadcast_to", "broadcast_to", (F[0], (2, 4)), {}),
    ("transpose", "transpose", (F3, (1, 2, 0)), {}),
    ("reshape", "reshape", (F3, (4, -1)), {}),
    ("where", "where", (BOOL, F, -F), {}),
    ("cast", "cast", (F, "int32"), {}),
    ("copy", "copy", (F,), {}),
    ("top_k", "top_k", (F, 2), {}),
    ("in_top_k", "in_top_k", (np.array([0, 3, 2]), F, 2), {}),
    ("searchsorted", "searchsorted", (np.sort(F[0]), F[1]), {}),
    (
        "searchsorted_right",
        "searchsorted",
        (np.array([1.0, 2, 2, 3], "float32"), np.array([2.0], "float32")),
        {"side": "right"},
    ),
    ("digitize", "digitize", (F, np.array([-1.0, 0.0, 1.0], "float32")), {}),
    ("bincount", "bincount", (NAT,), {}),
    ("bincount_weights", "bincount", (NAT,), {"weights": F.ravel()[:6], "minlength": 8}),
    ("bincount_2d", "bincount", (NAT.reshape(2, 3),), {}),
    ("unique", "unique", (IN,), {}),
    ("unique_all", "unique", (NAT,), {"return_inverse": True, "return_counts": True}),
    ("slice", "slice", (F3, (0, 1, 1), (2, 2, 3)), {}),
    ("slice_update", "slice_update", (F, (1, 1), np.ones((2, 2), "float32")), {}),
    ("scatter", "scatter", (np.array([[0, 1], [2, 3], [0, 1]]), np.array([1.0, 2.0, 3.0], "float32"), (3, 4)), {}),
    ("scatter_rows", "scatter", (np.array([[2], [0]]), F[:2], (3, 4)), {}),
    ("scatter_update", "scatter_update", (F, np.array([[0, 1], [2, 3]]), np.array([9.0, 8.0], "float32")), {}),
    (
        "scatter_update_add",
        "scatter_update",
        (F, np.array([[0, 1], [0, 1]]), np.array([9.0, 8.0], "float32")),
        {"reduction": "add"},
    ),
    ("segment_sum", "segment_sum", (F, np.array([0, 2, 0])), {"num_segments": 4}),
    ("segment_max", "segment_max", (F, np.array([1, 1, 0])), {}),
    ("segment_min", "segment_min", (F, np.array([1, 1, 0])), {"num_segments": 2}),
    ("select", "select", ([F > 0.5, F < -0.5], [F, -F]), {"default": 7.0}),
    ("saturate_cast", "saturate_cast", (np.array([-10.0, 3.7, 300.0], "float32"), "uint8"), {}),
    ("saturate_cast_int", "saturate_cast", (np.array([-200, 5, 1000], "int32"), "int8"), {}),
    ("moments", "moments", (F3, [0, 2]), {}),
    ("moments_keep", "moments", (F3, [1]), {"keepdims": True}),
    (
        "batch_normalization",
        "batch_normalization",
        (F3, F3.mean((0, 1)), POS[0], -1),
        {"offset": F[0], "scale": POS[1]},
    ),
    ("layer_normalization", "layer_normalization", (F3,), {"gamma": POS[0], "beta": F[1]}),
    ("layer_normalization_axes", "layer_normalization", (F3,), {"axis": [1, 2]}),
    ("rms_normalization", "rms_normalization", (F3,), {"scale": POS[0]}),
    ("normalize", "normalize", (F,), {}),
    ("normalize_l1", "normalize", (F,), {"axis": 0, "order": 1}),
    ("normalize_zero", "normalize", (np.zeros((2, 3), "float32"),), {}),
    ("psnr", "psnr", (POS, POS * 0.9, 2.0), {}),
    ("multi_hot", "multi_hot", (np.array([[0, 2], [1, 1]]),), {"num_classes": 4}),
    ("multi_hot_1d", "multi_hot", (np.array([0, 4]),), {"num_classes": 5}),
    ("gelu", "gelu", (F,), {}),
    ("gelu_exact", "gelu", (F,), {"approximate": False}),
    ("elu", "elu", (F,), {"alpha": 0.5}),
    ("silu", "silu", (F,), {}),
    ("leaky_relu", "leaky_relu", (F,), {}),
    ("selu", "selu", (F,), {}),
    ("relu6", "relu6", (F * 5,), {}),
    ("hard_sigmoid", "hard_sigmoid", (F,), {}),
    ("softsign", "softsign", (F,), {}),
    ("log_sigmoid", "log_sigmoid", (F,), {}),
    ("glu", "glu", (F,), {}),
]

Q = R.normal(size=(2, 3, 4, 8)).astype("float32")  # (batch, q_len, heads, head_dim)
KV = R.normal(size=(2, 5, 4, 8)).astype("float32")
MASK = R.random((2, 1, 3, 5)) > 0.3
MASK[0, 0, 1] = False  # a query that may attend to nothing: uniform weights, as Keras
NANS = np.array([[np.nan, 1.0, 3.0, -2.0], [np.nan, np.nan, np.nan, np.nan], [0.5, 0.5, np.nan, 4.0]], "float32")
PROBS = (np.abs(F) + 0.1) / (np.abs(F) + 0.1).sum(-1, keepdims=True)
ORACLE += [
    ("nansum", "nansum", (NANS,), {"axis": 1}),
    ("nanprod", "nanprod", (NANS,), {"axis": 1}),
    ("nanmean", "nanmean", (NANS,), {"axis": 1}),
    ("nanmean_all", "nanmean", (NANS,), {}),
    ("nanvar", "nanvar", (NANS,), {"axis": 1, "keepdims": True}),
    ("nanstd", "nanstd", (NANS,), {"axis": 1}),
    ("nanmax", "nanmax", (NANS,), {"axis": 1}),
    ("nanmin", "nanmin", (NANS,), {"axis": 1}),
    ("nanargmax", "nanargmax", (NANS,), {"axis": 1}),
    ("nanargmin", "nanargmin", (NANS,), {"axis": 1}),
    ("nancumsum", "nancumsum", (NANS,), {"axis": 1}),
    ("nancumprod", "nancumprod", (NANS,), {"axis": 0}),
    ("diff", "diff", (F,), {}),
    ("diff_n", "diff", (F,), {"n": 2, "axis": 0}),
    ("trapezoid", "trapezoid", (F,), {}),
    ("trapezoid_x", "trapezoid", (F, np.array([0.0, 0.5, 2.0, 2.5], "float32")), {}),
    ("trapezoid_dx", "trapezoid", (F,), {"dx": 0.3, "axis": 0}),
    ("vander", "vander", (F[0],), {}),
    ("vander_inc", "vander", (F[0], 3), {"increasing": True}),
    ("corrcoef", "corrcoef", (F,), {}),
    ("correlate", "correlate", (F[0], F[1, :3]), {}),
    ("correlate_same", "correlate", (F.ravel(), F[1, :3]), {"mode": "same"}),
    ("correlate_full", "correlate", (F[1, :3], F.ravel()), {"mode": "full"}),
    ("cdist", "cdist", (F, V3.T[:2]), {}),
    ("cdist_batch", "cdist", (F3, F3[:, :2]), {}),
    ("unravel_index", "unravel_index", (np.array([5, 7, 0]), (3, 4)), {}),
    ("histogram", "histogram", (F.ravel(),), {"bins": 4}),
    ("hamming", "hamming", (5,), {}),
    ("hanning", "hanning", (6,), {}),
    ("bartlett", "bartlett", (5,), {}),
    ("blackman", "blackman", (5,), {}),
    ("kaiser", "kaiser", (5, 2.0), {}),
    ("real", "real", (F,), {}),
    ("conj", "conj", (F,), {}),
    ("angle", "angle", (F,), {}),
    ("erfinv", "erfinv", (UNIT,), {}),
    ("binary_crossentropy", "binary_crossentropy", (BOOL.astype("float32"), np.abs(UNIT)), {}),
    ("binary_crossentropy_logits", "binary_crossentropy", (BOOL.astype("float32"), F * 5), {"from_logits": True}),
    ("categorical_crossentropy", "categorical_crossentropy", (PROBS[::-1].copy(), PROBS), {}),
    ("categorical_crossentropy_logits", "categorical_crossentropy", (PROBS, F), {"from_logits": True, "axis": 0}),
    ("sparse_categorical_crossentropy", "sparse_categorical_crossentropy", (np.array([0, 3, 1]), PROBS), {}),
    ("unique_index", "unique", (NAT,), {"return_index": True}),
    # Keras takes a list of axes where NumPy's reductions want a tuple.
    ("sum_list_axes", "sum", (F3,), {"axis": [0, 2]}),
    ("mean_list_axes", "mean", (F3,), {"axis": [1, 2], "keepdims": True}),
    ("max_list_axes", "max", (F3,), {"axis": [0, 1]}),
    ("var_list_axes", "var", (F3,), {"axis": [0, 2]}),
    ("std_list_axes", "std", (F3,), {"axis": [0, 2], "keepdims": True}),
    ("prod_list_axes", "prod", (F3,), {"axis": [0, 1]}),
    ("logsumexp_list_axes", "logsumexp", (F3,), {"axis": [1, 2]}),
    ("any_list_axes", "any", (F3 > 1,), {"axis": [0, 2]}),
    ("nanmean_list_axes", "nanmean", (F3,), {"axis": [0, 2]}),
    ("count_nonzero_list_axes", "count_nonzero", (IN,), {"axis": [0, 1]}),
    ("nanmedian", "nanmedian", (NANS,), {"axis": 1}),
    ("nanquantile", "nanquantile", (NANS, [0.25, 0.9]), {"axis": 1, "keepdims": True}),
    ("nanquantile_all", "nanquantile", (NANS, 0.3), {}),
    ("nanpercentile", "nanpercentile", (NANS, 60), {"axis": 0, "method": "nearest"}),
    ("segment_prod", "segment_prod", (F, np.array([1, 0, 1])), {"num_segments": 3}),
    ("attention", "dot_product_attention", (Q, KV, KV[..., ::-1].copy()), {}),
    ("attention_mask", "dot_product_attention", (Q, KV, KV), {"mask": MASK}),
    ("attention_causal", "dot_product_attention", (Q, KV, KV), {"is_causal": True, "scale": 0.3}),
    ("attention_bias", "dot_product_attention", (Q, KV, KV), {"bias": R.normal(size=(2, 4, 3, 5)).astype("float32")}),
    ("attention_gqa", "dot_product_attention", (Q, KV[:, :, :2], KV[:, :, 2:]), {"mask": MASK, "is_causal": True}),
    ("layer_normalization_rms", "layer_normalization", (F3,), {"gamma": POS[0], "rms_scaling": True}),
    ("einsum_optimize", "einsum", ("ij,jk,kl->il", F, V3, F[:, :2]), {"optimize": True}),
    ("stack_keyword", "stack", (), {"x": [F, F], "axis": 1}),
    ("add_keywords", "add", (), {"x1": F, "x2": 1.0}),
    ("sparse_categorical_crossentropy_logits", "sparse_categorical_crossentropy", (np.array([[2], [0], [1]]), F),
     {"from_logits": True}),
]

# Keras's torch backend returns int64 for these index outputs (torch's own dtype) but int32 from
# argsort, argmax and nonzero; lamina's indices are int32 throughout, so only values are compared.
INT64_ON_TORCH = {"top_k": [1], "unique_all": [1, 2], "unique_index": [1]}
UNINITIALIZED = {"empty", "empty_like"}  # Keras leaves the entries unset: compare shape and dtype only


def _numpy_tree(x, to_numpy):
    if isinstance(x, (tuple, list)):
        return [_numpy_tree(v, to_numpy) for v in x]
    if isinstance(x, (int, float, bool, np.generic)):
        return np.asarray(x)
    return np.asarray(to_numpy(x))


def _compare(got, want, label, int64_parts=()):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{label}: {len(got)} parts, Keras {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            if i in int64_parts:
                assert (g.dtype, w.dtype) == (np.int32, np.int64), f"{label}[{i}]: {g.dtype}, Keras {w.dtype}"
                w = w.astype(np.int32)
            _compare(g, w, f"{label}[{i}]")
        return
    assert got.shape == want.shape, f"{label}: shape {got.shape}, Keras {want.shape}"
    assert got.dtype == want.dtype, f"{label}: dtype {got.dtype}, Keras {want.dtype}"
    if label in UNINITIALIZED:
        return
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=label)
    else:
        np.testing.assert_array_equal(got, want, err_msg=label)


@pytest.mark.oracle
@pytest.mark.parametrize("label,name,args,kwargs", ORACLE, ids=[c[0] for c in ORACLE])
def test_values_and_dtypes_match_keras(keras, label, name, args, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notes from inside Keras are not lamina's
        kargs = [keras.ops.convert_to_tensor(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in args]
        want = _numpy_tree(getattr(keras.ops, name)(*kargs, **kwargs), keras.ops.convert_to_numpy)
    got = _numpy_tree(getattr(ops, name)(*args, **kwargs), ops.convert_to_numpy)
    _compare(got, want, label, INT64_ON_TORCH.get(label, ()))


# ----------------------------------------------------------------------------- gradients (float64 central differences)

A = R.normal(size=(3, 4))
B = R.normal(size=(3, 4))
A3 = R.normal(size=(2, 3, 4))
P = R.uniform(0.5, 2.0, size=(3, 4))
U = R.uniform(-0.8, 0.8, size=(3, 4))

GRAD_UNARY = {
    "std": lambda x: ops.std(x, axis=1),
    "std_all": ops.std,
    "var": lambda x: ops.var(x, axis=0, keepdims=True),
    "prod": lambda x: ops.prod(x, axis=1),
    "prod_axes": lambda x: ops.prod(x, axis=(0, 1)),
    "cumsum": lambda x: ops.cumsum(x, axis=0),
    "cumsum_flat": ops.cumsum,
    "cumprod": lambda x: ops.cumprod(x, axis=1),
    "cumprod_flat": ops.cumprod,
    "average": lambda x: ops.average(x, axis=1, weights=np.array([1.0, 2.0, 0.5, 3.0])),
    "median": lambda x: ops.median(x, axis=1),
    "quantile": lambda x: ops.quantile(x, [0.2, 0.75], axis=0),
    "percentile_keep": lambda x: ops.percentile(x, 40, axis=1, keepdims=True),
    "ptp": lambda x: ops.ptp(x, axis=0),
    "norm": ops.norm,
    "norm_1": lambda x: ops.norm(x, ord=1, axis=1),
    "norm_inf": lambda x: ops.norm(x, ord=np.inf, axis=0),
    "norm_p3": lambda x: ops.norm(x, ord=3, axis=1),
    "norm_nuc": lambda x: ops.norm(x, ord="nuc"),
    "norm_spectral": lambda x: ops.norm(x, ord=2),
    "norm_m1": lambda x: ops.norm(x, ord=-1),
    "reciprocal": lambda x: ops.reciprocal(x + 3.0),
    "rsqrt": lambda x: ops.rsqrt(x + 3.0),
    "cbrt": lambda x: ops.cbrt(x + 3.0),
    "log2": lambda x: ops.log2(x + 3.0),
    "log10": lambda x: ops.log10(x + 3.0),
    "exp2": ops.exp2,
    "tan": ops.tan,
    "sinh": ops.sinh,
    "cosh": ops.cosh,
    "arcsin": lambda x: ops.arcsin(x * 0.3),
    "arccos": lambda x: ops.arccos(x * 0.3),
    "arctan": ops.arctan,
    "arcsinh": ops.arcsinh,
    "arccosh": lambda x: ops.arccosh(x * x + 1.5),
    "arctanh": lambda x: ops.arctanh(x * 0.3),
    "deg2rad": ops.deg2rad,
    "rad2deg": ops.rad2deg,
    "sinc": ops.sinc,
    "erfc": ops.erfc,
    "fabs": ops.fabs,
    "nan_to_num": ops.nan_to_num,
    "copy": ops.copy,
    "ravel": ops.ravel,
    "swapaxes": lambda x: ops.swapaxes(x, 0, 1),
    "moveaxis": lambda x: ops.moveaxis(x, 1, 0),
    "flip": lambda x: ops.flip(x, 1),
    "fliplr": ops.fliplr,
    "roll": lambda x: ops.roll(x, 5),
    "rot90": ops.rot90,
    "tile": lambda x: ops.tile(x, (2, 1, 2)),
    "repeat": lambda x: ops.repeat(x, [2, 0, 1], axis=0),
    "repeat_flat": lambda x: ops.repeat(x, 2),
    "split": lambda x: ops.split(x, [1, 3], axis=1)[1],
    "array_split": lambda x: ops.array_split(x, 3, axis=1)[0],
    "unstack": lambda x: ops.unstack(x, axis=1)[2],
    "hstack": lambda x: ops.hstack([x, x[:, :1]]),
    "vstack": lambda x: ops.vstack([x, x[0]]),
    "dstack": lambda x: ops.dstack([x, x]),
    "append": lambda x: ops.append(x, x[0]),
    "pad": lambda x: ops.pad(x, ((1, 2), (0, 1)), constant_values=2.0),
    "pad_reflect": lambda x: ops.pad(x, ((2, 1), (1, 3)), mode="reflect"),
    "pad_symmetric": lambda x: ops.pad(x, ((2, 1), (1, 3)), mode="symmetric"),
    "pad_edge": lambda x: ops.pad(x, 2, mode="edge"),
    "pad_wrap": lambda x: ops.pad(x, ((1, 1), (2, 0)), mode="wrap"),
    "tril": lambda x: ops.tril(x, 1),
    "triu": ops.triu,
    "diag": lambda x: ops.diag(x, -1),
    "diag_1d": lambda x: ops.diag(x[0], 1),
    "diagonal": lambda x: ops.diagonal(x, 1),
    "diagflat": lambda x: ops.diagflat(x[:2, :2]),
    "trace": ops.trace,
    "take_along_axis": lambda x: ops.take_along_axis(x, np.array([[0, 0], [3, 1], [2, 2]]), axis=1),
    "take_along_axis_flat": lambda x: ops.take_along_axis(x, np.array([1, 1, 11]), axis=None),
    "sort": lambda x: ops.sort(x, axis=0),
    "top_k": lambda x: ops.top_k(x, 2)[0],
    "slice": lambda x: ops.slice(x, (1, 1), (2, -1)),
    "segment_sum": lambda x: ops.segment_sum(x, np.array([1, 0, 1])),
    "segment_max": lambda x: ops.segment_max(x, np.array([1, 0, 1])),
    "segment_min": lambda x: ops.segment_min(x, np.array([0, 0, 1])),
    "select": lambda x: ops.select([A > 0.5, A < -0.5], [x, ops.square(x)], default=0.0),
    "einsum_trace": lambda x: ops.einsum("ij->", x),
    "einsum_sum_only": lambda x: ops.einsum("ij,k->k", x, np.arange(3.0)),
    "moments_var": lambda x: ops.moments(x, [0])[1],
    "layer_normalization": lambda x: ops.layer_normalization(x, rms_scaling=False),
    "rms_normalization": lambda x: ops.rms_normalization(x, scale=np.arange(4.0)),
    "normalize": ops.normalize,
    "normalize_l1": lambda x: ops.normalize(x, order=1),
    "gelu": ops.gelu,
    "map": lambda x: ops.map(ops.square, x),
    "scan": lambda x: ops.scan(lambda c, r: (ops.multiply(c, r), ops.sum(c)), np.ones(4), x)[0],
    "associative_scan": lambda x: ops.associative_scan(ops.multiply, x, axis=1),
    "fori_loop": lambda x: ops.fori_loop(0, 3, lambda i, v: ops.multiply(v, x), np.ones((3, 4))),
    "while_loop": lambda x: ops.while_loop(lambda v, i: i < 2, lambda v, i: (ops.sin(v), i + 1), (x, 0))[0],
    "cond": lambda x: ops.cond(True, lambda: ops.exp(x), lambda: x),
    "switch": lambda x: ops.switch(5, [ops.exp, ops.sin], x),
}
GRAD_BINARY = {
    "mod": lambda a, b: ops.mod(a, ops.abs(b) + 0.5),
    "fmod": lambda a, b: ops.fmod(a, ops.abs(b) + 0.5),
    "divide_no_nan": ops.divide_no_nan,
    "arctan2": ops.arctan2,
    "hypot": ops.hypot,
    "logaddexp": ops.logaddexp,
    "logaddexp2": ops.logaddexp2,
    "fmax": ops.fmax,
    "fmin": ops.fmin,
    "einsum": lambda a, b: ops.einsum("ij,kj->ik", a, b),
    "einsum_ellipsis": lambda a, b: ops.einsum("...j,...j->...", a, b),
    "outer": ops.outer,
    "inner": ops.inner,
    "tensordot": lambda a, b: ops.tensordot(a, b, axes=([0], [0])),
    "vdot": ops.vdot,
    "kron": ops.kron,
    "cross": lambda a, b: ops.cross(a[:, :3], b[:, 1:]),
    "slice_update": lambda a, b: ops.slice_update(a, (1, 0), b[:2, :3]),
    "scatter_update": lambda a, b: ops.scatter_update(a, np.array([[0, 1], [2, 2]]), b[0, :2]),
    "scatter_update_add": lambda a, b: ops.scatter_update(a, np.array([[0, 1], [0, 1]]), b[0, :2], reduction="add"),
    "scatter": lambda a, b: ops.multiply(ops.scatter(np.array([[1], [0], [1]]), b, (2, 4)), a[:2]),
    "batch_normalization": lambda a, b: ops.batch_normalization(
        a, b[0], ops.square(b[1]) + 0.5, axis=-1, offset=b[2], scale=a[0]
    ),
    "layer_normalization_affine": lambda a, b: ops.layer_normalization(a, gamma=b[0], beta=b[1]),
    "moments_mean": lambda a, b: ops.multiply(ops.moments(a, [1])[0], b[:, 0]),
    "psnr": lambda a, b: ops.psnr(ops.abs(a), ops.abs(b), 2.0),
    "quantile_weights": lambda a, b: ops.average(a, weights=ops.abs(b)),
}


@pytest.mark.parametrize("name", sorted(GRAD_UNARY))
def test_unary_gradients(name):
    check_gradients(GRAD_UNARY[name], A)


@pytest.mark.parametrize("name", sorted(GRAD_BINARY))
def test_binary_gradients(name):
    check_gradients(GRAD_BINARY[name], A, B)


def _grad(f, x):
    v = lamina.Variable(np.array(x, dtype="float64"), dtype="float64")
    with lamina.GradientTape() as tape:
        y = ops.sum(f(v))
    return tape.gradient(y, v)


# ----------------------------------------------------------------------------- kinks and exact gradients


def test_prod_and_cumprod_gradients_are_exact_at_zeros():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0]])
    # d prod / d x_i = product of the others: nonzero only where the other entries are nonzero.
    np.testing.assert_array_equal(_grad(lambda v: ops.prod(v, axis=1), x), [[0, 6, 0], [0, 0, 0]])
    # cumprod [2, 0, 0]: d/dx0 = 1 (+0 +0), d/dx1 = 1 + 2*3 = 7... computed term by term below.
    want = np.zeros_like(x)
    for r in range(2):
        for i in range(3):
            want[r, i] = sum(np.prod([x[r, k] for k in range(j + 1) if k != i]) for j in range(i, 3))
    np.testing.assert_array_equal(_grad(lambda v: ops.cumprod(v, axis=1), x), want)


def test_std_and_norm_gradients_are_zero_where_the_value_is_zero():
    const = np.full((2, 3), 4.0)
    np.testing.assert_array_equal(_grad(lambda v: ops.std(v, axis=1), const), np.zeros((2, 3)))
    np.testing.assert_array_equal(_grad(lambda v: ops.norm(v, axis=1), np.zeros((2, 3))), np.zeros((2, 3)))
    # normalize keeps a zero row at zero, with a zero (not nan) gradient.
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(ops.normalize(x), [[0, 0], [0.6, 0.8]])
    assert np.all(np.isfinite(_grad(ops.normalize, x)))


def test_max_gradient_routes_and_saturate_cast_clips():
    g = _grad(lambda v: ops.saturate_cast(v, "float32"), [1e39, 1.0, -1e39])
    np.testing.assert_array_equal(g, [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(
        ops.saturate_cast(np.array([1e39, -1e39]), "float32"),
        np.array([np.finfo("float32").max, np.finfo("float32").min], "float32"),
    )
    np.testing.assert_array_equal(
        ops.saturate_cast(np.array([3e9, -3e9, np.nan], "float32"), "int32"), [2**31 - 1, -(2**31), 0]
    )


def test_tile_repeat_and_pad_modes_sum_copies_back_to_the_source():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    np.testing.assert_array_equal(_grad(lambda v: ops.tile(v, (2, 2)), x), np.full((2, 3), 4.0))
    np.testing.assert_array_equal(_grad(lambda v: ops.repeat(v, [3, 1], axis=0), x), [[3, 3, 3], [1, 1, 1]])
    widths = ((1, 2), (2, 1))
    for mode in ("reflect", "symmetric", "edge", "wrap"):
        np.testing.assert_array_equal(ops.pad(x, widths, mode=mode), np.pad(x, widths, mode=mode), err_msg=mode)
        # Each output entry is one source entry: the gradient counts how often each was copied.
        idx = np.pad(np.arange(6).reshape(2, 3), widths, mode=mode)
        np.testing.assert_array_equal(
            _grad(lambda v, m=mode: ops.pad(v, widths, mode=m), x),
            np.bincount(idx.ravel(), minlength=6).reshape(2, 3),
            err_msg=mode,
        )


def test_scatter_sums_duplicates_and_scatter_update_overwrites():
    out = ops.scatter(np.array([[0, 1], [0, 1], [1, 0]]), np.array([1.0, 2.0, 5.0]), (2, 2))
    np.testing.assert_array_equal(out, [[0, 3], [5, 0]])
    x = np.zeros((2, 2))
    v = lamina.Variable(x, dtype="float64")
    u = lamina.Variable(np.array([7.0, 9.0]), dtype="float64")
    with lamina.GradientTape() as tape:
        y = ops.scatter_update(v, np.array([[1, 1], [0, 0]]), u)
        loss = ops.sum(ops.multiply(y, np.array([[1.0, 2.0], [3.0, 4.0]])))
    gv, gu = tape.gradient(loss, [v, u])
    np.testing.assert_array_equal(y, [[9, 0], [0, 7]])
    np.testing.assert_array_equal(gv, [[0, 2], [3, 0]])  # overwritten entries pass no gradient to the input
    np.testing.assert_array_equal(gu, [4, 1])


def test_argpartition_top_k_unsorted_and_nonzero():
    x = np.array([3.0, 1.0, 2.0, 0.5, 4.0], "float32")
    idx = ops.argpartition(x, 2)
    assert idx.dtype == np.int32 and sorted(idx.tolist()) == list(range(5))
    assert np.all(x[idx[:2]] <= x[idx[2]]) and np.all(x[idx[3:]] >= x[idx[2]]) and x[idx[2]] == 2.0
    vals, ind = ops.top_k(x, 3, sorted=False)
    assert sorted(vals.tolist()) == [2.0, 3.0, 4.0] and sorted(ind.tolist()) == [0, 2, 4]
    np.testing.assert_array_equal(x[ind], vals)
    vals, ind = ops.top_k(np.array([1.0, 5.0, 5.0, 2.0]), 2)
    assert ind.tolist() == [1, 2]  # ties: the lower index first
    nz = ops.nonzero(np.array([[0, 1], [2, 0]]))
    assert len(nz) == 2 and all(i.dtype == np.int32 for i in nz)
    np.testing.assert_array_equal(np.stack(nz), [[0, 1], [1, 0]])


@pytest.mark.oracle
def test_nonzero_and_top_k_unsorted_agree_with_keras_as_sets(keras):
    want = keras.ops.convert_to_numpy(keras.ops.nonzero(keras.ops.convert_to_tensor(IN)))
    np.testing.assert_array_equal(np.stack(ops.nonzero(IN)), want)  # Keras/torch stacks the index arrays
    kv, _ = keras.ops.top_k(keras.ops.convert_to_tensor(F), 3, sorted=False)
    np.testing.assert_allclose(
        np.sort(ops.top_k(F, 3, sorted=False)[0], -1), np.sort(keras.ops.convert_to_numpy(kv), -1)
    )


def test_control_flow_follows_keras_structure():
    assert ops.while_loop(lambda i: i < 5, lambda i: i + 2, 0) == 6
    out = ops.while_loop(lambda i, s: i < 3, lambda i, s: (i + 1, s * 2), [0, 1])
    assert isinstance(out, tuple) and out == (3, 8)
    assert ops.while_loop(lambda i: True, lambda i: i + 1, 0, maximum_iterations=4) == 4
    assert ops.fori_loop(0, 4, lambda i, v: v + i, 10) == 16
    assert ops.switch(-3, [lambda: "a", lambda: "b"]) == "a"  # the index is clipped
    carry, ys = ops.scan(lambda c, x: (c + x, c * x), 0.0, np.array([1.0, 2.0, 3.0]))
    assert carry == 6.0 and ys.tolist() == [0.0, 2.0, 9.0]
    carry, ys = ops.scan(lambda c, x: (c + x, c), 0.0, np.array([1.0, 2.0, 3.0]), reverse=True)
    assert carry == 6.0 and ys.tolist() == [5.0, 3.0, 0.0]
    _, ys = ops.scan(lambda c, _: (c + 1, None), 0, length=3)
    assert ys is None
    tree = ops.map(lambda d: {"s": d["a"] + d["b"]}, {"a": np.arange(3.0), "b": np.ones(3)})
    assert tree["s"].tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(ops.associative_scan(ops.add, np.arange(5.0), reverse=True), [10, 10, 9, 7, 4])


def test_dtype_rules_for_creation_and_float_functions():
    assert ops.zeros((2,)).dtype == np.float32 and ops.full((2,), 1).dtype == np.float32
    assert ops.arange(3).dtype == np.int32 and ops.arange(3.0).dtype == np.float32
    assert ops.array(np.float64(1.0)).dtype == np.float64  # NumPy values keep their dtype
    assert ops.array([2**40]).dtype == np.int64  # too big for int32
    assert ops.log2(np.arange(1, 3)).dtype == np.float32
    assert ops.mean(np.arange(4)).dtype == np.float32 and ops.sum(np.ones(3, bool)).dtype == np.int32
    assert ops.sum(np.arange(3, dtype="int64")).dtype == np.int64
    assert ops.std(np.arange(4.0)).dtype == np.float64  # float64 stays float64
    assert ops.argmax(F).dtype == np.int32 and ops.argsort(F).dtype == np.int32
    lamina.backend.set_floatx("float64")
    try:
        assert ops.ones((1,)).dtype == np.float64 and ops.linspace(0, 1, 3).dtype == np.float64
    finally:
        lamina.backend.set_floatx("float32")


# ----------------------------------------------------------------------------- errors name the op and argument

ERRORS = [
    (lambda: ops.eye(2.5), r"`eye`: argument `N` must be an integer\. Received: N=2\.5"),
    (lambda: ops.arange(0, 3, 0), r"`arange`: argument `step` must be nonzero\. Received: step=0"),
    (lambda: ops.linspace(0, 1, -1), r"`linspace`: argument `num` must be non-negative"),
    (lambda: ops.split(np.zeros(5), 2), r"`split`: an axis of length 5 does not split into 2 equal sections"),
    (lambda: ops.split(np.zeros(5), 0), r"`split`: the number of sections must be positive"),
    (lambda: ops.unstack(np.zeros((2, 3)), num=3), r"`unstack`: axis 0 has length 2, not num=3"),
    (lambda: ops.unstack(np.zeros((2, 3)), axis=2), r"`unstack`: axis 2 is out of bounds for an input of rank 2"),
    (lambda: ops.pad(np.zeros(3), 1, mode="mean"), r"`pad`: argument `mode` must be one of .*Received: mode='mean'"),
    (
        lambda: ops.pad(np.zeros(3), 1, mode="edge", constant_values=1),
        r"`pad`: argument `constant_values` only applies",
    ),
    (lambda: ops.pad(np.zeros(3), -1), r"`pad`: pad widths must be non-negative"),
    (lambda: ops.diag(np.zeros((2, 2, 2))), r"`diag`: the input must be 1-D or 2-D\. Received: x\.shape=\(2, 2, 2\)"),
    (lambda: ops.fliplr(np.zeros(3)), r"`fliplr`: the input must have at least 2 axes"),
    (
        lambda: ops.take_along_axis(np.zeros(3), np.array([0.5])),
        r"`take_along_axis`: argument `indices` must be integers",
    ),
    (lambda: ops.quantile(np.zeros(3), 1.5), r"`quantile`: argument `q` must lie in \[0, 1\]"),
    (lambda: ops.quantile(np.zeros(3), 0.5, method="x"), r"`quantile`: argument `method` must be one of"),
    (lambda: ops.round(np.zeros(3), 1.5), r"`round`: argument `decimals` must be an integer"),
    (lambda: ops.bitwise_and(np.zeros(3), 1), r"`bitwise_and`: arguments must be integers or bools"),
    (lambda: ops.einsum("ij,jk->ik", np.zeros((2, 2))), r"`einsum`: the subscripts name 2 operands but 1 were given"),
    (lambda: ops.top_k(np.zeros(3), 4), r"`top_k`: argument `k` must be in \[0, 3\]"),
    (
        lambda: ops.in_top_k(np.zeros(2), np.zeros(3), 1),
        r"`in_top_k`: expected `predictions` of shape \(batch, classes\)",
    ),
    (lambda: ops.searchsorted(np.zeros((2, 2)), 1), r"`searchsorted`: `sorted_sequence` must be 1-D"),
    (lambda: ops.bincount(np.array([-1, 2])), r"`bincount`: `x` must hold non-negative integers"),
    (lambda: ops.norm(np.zeros(3), ord="fro", axis=0), r"`norm`: ord='fro' is a matrix norm"),
    (lambda: ops.norm(np.zeros((2, 2, 2)), ord=1), r"`norm`: `ord` needs a 1-D or 2-D input"),
    (
        lambda: ops.norm(np.zeros((2, 2)), ord=3, axis=(0, 1)),
        r"`norm`: invalid `ord` for a matrix norm\. Received: ord=3",
    ),
    (
        lambda: ops.slice(np.zeros((2, 3)), (1, 1), (2, 2)),
        r"`slice`: the slice \[1, 3\) does not fit in an axis of length 2",
    ),
    (lambda: ops.slice_update(np.zeros((2, 3)), (0,), np.zeros((1, 1))), r"`slice_update`: need one start index"),
    (lambda: ops.scatter(np.array([0.5]), np.zeros(1), (2,)), r"`scatter`: `indices` must be integers of shape"),
    (
        lambda: ops.scatter_update(np.zeros(2), np.array([[0]]), np.zeros(1), reduction="max"),
        r"`scatter_update`: argument `reduction` must be None or 'add'",
    ),
    (
        lambda: ops.segment_sum(np.zeros((3, 2)), np.array([0, 1])),
        r"`segment_sum`: `segment_ids` must be 1-D integers, one per row",
    ),
    (lambda: ops.scan(lambda c, x: (c, x), 0), r"`scan`: give `xs` or `length`"),
    (lambda: ops.normalize(np.zeros(3), order=0), r"Argument `order` must be an int >= 1\. Received: order=0"),
    (lambda: ops.multi_hot(np.array([0])), r"`multi_hot`: argument `num_classes` must be given"),
    (lambda: ops.cross(np.zeros(2), np.zeros(2)), r"`cross`: vectors must have 3 components"),
    (lambda: ops.meshgrid(np.zeros(2), indexing="ji"), r"`meshgrid`: argument `indexing` must be 'xy' or 'ij'"),
    (lambda: ops.select([], []), r"`select`: `condlist` and `choicelist` must be non-empty"),
    (lambda: ops.unique(np.zeros(2), sorted=False), r"`unique`: only sorted results are supported"),
    (lambda: ops.ldexp(np.ones(2), np.ones(2)), r"`ldexp`: argument `x2` must be integers"),
]


@pytest.mark.parametrize("call,message", ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_errors_name_the_op_and_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_einsum_gradient_through_a_repeated_subscript_is_refused():
    v = lamina.Variable(np.eye(2), dtype="float64")
    with lamina.GradientTape() as tape:
        y = ops.einsum("ii->", v)
    assert float(y) == 2.0
    with pytest.raises(ValueError, match=r"`einsum`: no gradient for operand 0, whose subscripts repeat a letter"):
        tape.gradient(y, v)


NAN_A = np.zeros((3, 4))
NAN_A[[0, 1, 2, 2], [1, 2, 0, 1]] = np.nan  # no row or column is all nan: those give nan, tested apart
GRAD_MORE = {
    "nansum": lambda x: ops.nansum(ops.add(x, NAN_A), axis=1),
    "nanprod": lambda x: ops.nanprod(ops.add(x, NAN_A), axis=1),
    "nanmean": lambda x: ops.nanmean(ops.add(x, NAN_A), axis=0),
    "nanvar": lambda x: ops.nanvar(ops.add(x, NAN_A), axis=0),
    "nanstd": lambda x: ops.nanstd(ops.add(x, NAN_A), axis=1),
    "nanmax": lambda x: ops.nanmax(ops.add(x, NAN_A), axis=1),
    "nanmin": lambda x: ops.nanmin(ops.add(x, NAN_A), axis=0),
    "nancumsum": lambda x: ops.nancumsum(ops.add(x, NAN_A), axis=1),
    "nancumprod": lambda x: ops.nancumprod(ops.add(x, NAN_A), axis=1),
    "diff": lambda x: ops.diff(x, n=2),
    "trapezoid": lambda x: ops.trapezoid(x, x[0] * 0 + np.array([0.0, 0.5, 2.0, 2.5])),
    "vander": lambda x: ops.vander(x[0]),
    "corrcoef": ops.corrcoef,
    "correlate": lambda x: ops.correlate(ops.ravel(x), x[1, :3], mode="same"),
    "cdist": lambda x: ops.cdist(x, x[:2] * 2.0),
    "real": ops.real,
    "conj": ops.conj,
    "erfinv": lambda x: ops.erfinv(x * 0.4),
    "binary_crossentropy": lambda x: ops.binary_crossentropy(A > 0, ops.sigmoid(x)),
    "binary_crossentropy_logits": lambda x: ops.binary_crossentropy(U + 0.5, x, from_logits=True),
    "categorical_crossentropy": lambda x: ops.categorical_crossentropy(P, ops.softmax(x)),
    "categorical_crossentropy_logits": lambda x: ops.categorical_crossentropy(P, x, from_logits=True),
    "sparse_categorical_crossentropy": lambda x: ops.sparse_categorical_crossentropy(
        np.array([1, 0, 3]), x, from_logits=True
    ),
    "vectorize": lambda x: ops.vectorize(lambda a, b: ops.multiply(ops.sin(a), b))(x, x[0]),
}


@pytest.mark.parametrize("name", sorted(GRAD_MORE))
def test_more_gradients(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nan entries must not make NumPy warn
        check_gradients(GRAD_MORE[name], A)


def test_all_nan_slices_give_numpys_answers_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = np.full((1, 3), np.nan)
        assert np.isnan(ops.nanmean(row, axis=1)[0]) and np.isnan(ops.nanstd(row, axis=1)[0])
        assert np.isnan(ops.nanmax(row, axis=1)[0]) and ops.nansum(row, axis=1)[0] == 0
        assert ops.nanprod(row, axis=1)[0] == 1 and ops.nanargmin(row, axis=1)[0] == -1


def test_erfinv_inverts_erf_to_float64_precision():
    y = np.linspace(-5, 5, 201)
    x = ops.erf(y.astype("float64"))
    np.testing.assert_allclose(ops.erfinv(x)[np.abs(y) < 3], y[np.abs(y) < 3], rtol=1e-9, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(ops.erfinv(np.array([-1.0, 1.0, 1.5, 0.0])), [-np.inf, np.inf, np.nan, 0.0])
    assert ops.erfinv(np.array([0.5], "float32")).dtype == np.float32


def test_binary_crossentropy_from_logits_is_exact_at_zero_and_large_logits():
    z = np.array([0.0, 800.0, -800.0])
    t = np.array([1.0, 0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(ops.binary_crossentropy(t, z, from_logits=True), [np.log(2), 800, 800])
        np.testing.assert_allclose(_grad(lambda v: ops.binary_crossentropy(t, v, from_logits=True), z), [-0.5, 1, -1])


def test_custom_gradient_replaces_the_recorded_one_in_both_conventions():
    def make(torch_style):
        @ops.custom_gradient
        def log1pexp(x):
            e = ops.exp(x)

            def grad_torch(*args, upstream=None):
                return ops.multiply(upstream, 1.0 - 1.0 / ops.add(1.0, e))

            def grad_jax(upstream):
                return ops.multiply(upstream, 1.0 - 1.0 / ops.add(1.0, e))

            return ops.log(ops.add(1.0, e)), grad_torch if torch_style else grad_jax

        return log1pexp

    for torch_style in (True, False):
        f = make(torch_style)
        x = np.array([-2.0, 0.0, 100.0])
        # exp(100) = 2.7e43 in float64: the recorded gradient would be e / (1 + e) = 1 too, so
        # check that grad_fn ran by giving it a different answer: its value at 100 is exactly 1.
        np.testing.assert_allclose(f(x), np.log1p(np.exp(x)))
        np.testing.assert_allclose(_grad(f, x), 1 / (1 + np.exp(-x)))

    @ops.custom_gradient
    def clip_grad(x, y):
        return ops.multiply(x, y), lambda g: (ops.clip(g, -0.5, 0.5), None)

    v = lamina.Variable(np.array([3.0]), dtype="float64")
    with lamina.GradientTape() as tape:
        z = ops.multiply(clip_grad(v, np.array([4.0])), 10.0)
    np.testing.assert_array_equal(tape.gradient(z, v), [0.5])  # the custom rule, not 4 * 10

    @ops.custom_gradient
    def wrong(x):
        return x, lambda g: (g, g)

    with lamina.GradientTape() as tape:
        z = wrong(v)
    with pytest.raises(ValueError, match=r"`custom_gradient`: `grad_fn` must return one gradient per argument \(1\)"):
        tape.gradient(z, v)


def test_vectorize_applies_entry_by_entry_and_imag_is_zero_for_real_inputs():
    f = ops.vectorize(lambda a, b: a + 2 * b if a > 0 else b)
    np.testing.assert_array_equal(f(np.array([[1.0, -1.0]]), np.array([3.0])), [[7.0, 3.0]])
    g = ops.vectorize(lambda a, k: a * k, excluded={1})
    np.testing.assert_array_equal(g(np.arange(3.0), 2), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(ops.imag(F), np.zeros_like(F))
    assert ops.imag(F).dtype == np.float32


def test_matmul_gradients_for_vector_operands():
    # matrix @ vector (and batched), vector @ matrix, vector @ vector: every operand's gradient.
    check_gradients(lambda a, b: ops.matmul(a, b[0]), A, B)
    check_gradients(lambda a, b: ops.matmul(a, b[:, 0]), A3[:, :, :3], B)
    check_gradients(lambda a, b: ops.matmul(a[0, :3], b), A, B)
    check_gradients(lambda a, b: ops.matmul(a[0, :3], ops.reshape(b, (2, 3, 2))), A, B)
    check_gradients(lambda a, b: ops.matmul(a[0], b[1]), A, B)


@pytest.mark.oracle
def test_signatures_follow_keras(keras):
    """Every op lamina shares with keras.ops takes Keras's parameters, by the same names, in the same
    order and with the same defaults (lamina may add trailing optional ones, e.g. ``max(initial=)``)."""
    import inspect  # lazy: only this test reads signatures

    mismatched = []
    for name in sorted(n for n in dir(keras.ops) if not n.startswith("_") and hasattr(ops, n)):
        kf, lf = getattr(keras.ops, name), getattr(ops, name)
        if not (callable(kf) and callable(lf)) or inspect.isclass(kf):
            continue
        kp = [(p.name, p.kind, repr(p.default)) for p in inspect.signature(kf).parameters.values()]
        lp = [(p.name, p.kind, repr(p.default)) for p in inspect.signature(lf).parameters.values()]
        if lp[: len(kp)] != kp:
            mismatched.append(f"{name}: keras {kp} lamina {lp}")
    assert mismatched == []


GRAD_LAST = {
    "nanmedian": lambda x: ops.nanmedian(ops.add(x, NAN_A), axis=1),
    "nanquantile": lambda x: ops.nanquantile(ops.add(x, NAN_A), [0.3, 0.8], axis=0),
    "segment_prod": lambda x: ops.segment_prod(x, np.array([1, 0, 1])),
    "list_axes": lambda x: ops.add(ops.std(x, axis=[0, 1]), ops.mean(x, axis=[1], keepdims=True)),
    "list_axes_max_prod": lambda x: ops.add(ops.max(x, axis=[0, 1]), ops.prod(x, axis=[0, 1])),
    "attention": lambda x: ops.dot_product_attention(
        ops.reshape(x, (1, 3, 2, 2)), ops.reshape(ops.flip(x), (1, 3, 2, 2)), ops.reshape(ops.sin(x), (1, 3, 2, 2)),
        mask=np.array([[[[True, False, True]]]]), is_causal=True, attn_logits_soft_cap=2.0),
}


@pytest.mark.parametrize("name", sorted(GRAD_LAST))
def test_last_gradients(name):
    check_gradients(GRAD_LAST[name], A)


def test_segment_prod_gradient_is_exact_at_zeros():
    x = np.array([[2.0], [0.0], [3.0], [0.0]])
    g = _grad(lambda v: ops.segment_prod(v, np.array([0, 0, 0, 1])), x)
    np.testing.assert_array_equal(g, [[0.0], [6.0], [0.0], [1.0]])


def test_tensor_operators_floordiv_mod_and_logic():
    v = lamina.Variable(np.array([5.0, -7.0]), dtype="float64")
    with lamina.GradientTape() as tape:
        y = ops.sum(v % 3.0) + ops.sum(10.0 % v)
    np.testing.assert_array_equal((v // 2).tolist(), [2.0, -4.0])
    # d(v mod 3)/dv = 1 and d(10 mod v)/dv = -floor(10 / v).
    np.testing.assert_array_equal(tape.gradient(y, v), [1 - np.floor(10 / 5), 1 - np.floor(10 / -7)])
    t = lamina.Variable(np.array([True, False]), dtype="bool", trainable=False)
    assert (t & True).tolist() == [True, False] and (~t).tolist() == [False, True]
    assert (t | np.array([False, True])).tolist() == [True, True] and (t ^ True).tolist() == [False, True]
