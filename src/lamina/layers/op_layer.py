"""``OpLayer``: one ``lamina.ops`` function applied to symbolic tensors, as a node of a Functional graph.

``x + residual``, ``x[:, 0]`` or ``ops.mean(x, axis=-1)`` on a :class:`KerasTensor` records an ``OpLayer``
call, as Keras 3 records an ``Operation``: the layer holds the op's name and its constructor arguments
(Keras's ``Mean(axis, keepdims)``); the node's ``call_inputs`` hold the call arguments, KerasTensors and
constants mixed (``[x, 2.5]``). The output shape and dtype come from running the op twice on small dummy
arrays, unknown dimensions set to 2 then 3: a dimension that differs between the two runs is unknown.

In a config the layer is written as Keras writes the operation (``module: "keras.src.ops.numpy"``,
``class_name: "Add"``), so a ``.keras`` file moves between lamina and Keras in both directions.
"""

from __future__ import annotations

import functools
import inspect
import re
import warnings

import numpy as np

from lamina import activations, ops
from lamina.layers.keras_tensor import KerasTensor, Node, flatten, pack_like, register_op_builder
from lamina.layers.layer import Layer
from lamina.naming import auto_name

# Keras's op classes by module, for the lamina ops of the same name: ``name[=Class][(constructor args)]``.
# The class defaults to the name in CamelCase (``true_divide`` -> ``TrueDivide``); constructor arguments
# go to the layer's config, the op's other arguments are call arguments (as in Keras's ``symbolic_call``).
_SPEC = {
    "numpy": (
        "abs=Absolute absolute add all(axis,keepdims) allclose=AllClose(rtol,atol,equal_nan) amax(axis,keepdims) "
        "amin(axis,keepdims) angle any(axis,keepdims) append(axis) arccos arccosh arcsin arcsinh arctan arctan2 "
        "arctanh argmax(axis,keepdims) argmin(axis,keepdims) argpartition(kth,axis) argsort(axis) "
        "array_split(indices_or_sections,axis) average(axis) bitwise_and "
        "bitwise_invert bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift bitwise_xor "
        "broadcast_to(shape) cbrt ceil clip(x_min,x_max) concatenate(axis) conjugate copy corrcoef "
        "correlate(mode) cos cosh count_nonzero(axis) cross(axisa,axisb,axisc,axis) cumprod(axis,dtype) "
        "cumsum(axis,dtype) deg2rad diag(k) diagflat(k) diagonal(offset,axis1,axis2) digitize divide "
        "divide_no_nan dot dsplit(indices_or_sections) dstack empty_like(dtype) equal exp exp2 expand_dims(axis) "
        "expm1 fabs flip(axis) fliplr flipud floor floor_divide fmax fmin fmod full_like(dtype) gcd get_item "
        "greater greater_equal heaviside histogram(bins,range) hsplit(indices_or_sections) hstack hypot imag "
        "inner isclose(equal_nan) isfinite isin=IsIn(assume_unique,invert) isinf isnan isneginf isposinf isreal "
        "kron lcm ldexp left_shift less less_equal log log10 log1p log2 logaddexp logaddexp2 logical_and "
        "logical_not logical_or logical_xor matmul max(axis,keepdims,initial) maximum mean(axis,keepdims) "
        "median(axis,keepdims) min(axis,keepdims,initial) minimum mod moveaxis(source,destination) multiply "
        "nan_to_num(nan,posinf,neginf) nanargmax(axis,keepdims) nanargmin(axis,keepdims) nancumprod(axis,dtype) "
        "nancumsum(axis,dtype) nanmax(axis,keepdims) nanmean(axis,keepdims) nanmin(axis,keepdims) "
        "nanprod(axis,keepdims) nanstd(axis,keepdims) nansum(axis,keepdims) nanvar(axis,keepdims) negative "
        "nextafter not_equal ones_like(dtype) outer percentile(axis,method,keepdims) power "
        "prod(axis,keepdims,dtype) ptp(axis,keepdims) quantile(axis,method,keepdims) rad2deg ravel real "
        "reciprocal repeat(axis,repeats) reshape(newshape) right_shift roll(axis,shift) rot90(k,axes) "
        "round(decimals) searchsorted=SearchSorted(side) select sign signbit sin sinc sinh sort(axis) "
        "split(axis,indices_or_sections) sqrt square squeeze(axis) stack(axis) std(axis,keepdims) subtract "
        "sum(axis,keepdims) swapaxes(axis1,axis2) take(axis) take_along_axis(axis) tan tanh tensordot(axes) "
        "tile(repeats) trace(offset,axis1,axis2) transpose(axes) trapezoid(x,dx,axis) tril(k) triu(k) true_divide "
        "trunc unravel_index(shape) "
        "vander(N,increasing) var(axis,keepdims) vdot vsplit(indices_or_sections) vstack where zeros_like(dtype) "
    ),
    "nn": (
        "batch_normalization=BatchNorm(axis,epsilon) binary_crossentropy(from_logits) "
        "categorical_crossentropy(from_logits,axis) celu(alpha) elu(alpha) gelu(approximate) glu(axis) "
        "conv(strides,padding,data_format,dilation_rate) "
        "conv_transpose(strides,padding,output_padding,data_format,dilation_rate) "
        "depthwise_conv(strides,padding,data_format,dilation_rate) "
        "separable_conv(strides,padding,data_format,dilation_rate) "
        "hard_shrink(threshold) hard_sigmoid hard_silu hard_tanh "
        "layer_normalization=LayerNorm(axis,epsilon,rms_scaling) leaky_relu(negative_slope) log_sigmoid "
        "log_softmax(axis) moments(synchronized,axes,keepdims) multi_hot(num_classes,axis,dtype,sparse) "
        "normalize(axis,order,epsilon) one_hot(axis,dtype,sparse,num_classes) psnr=PSNR(max_val) relu relu6 "
        "rms_normalization=RMSNorm(axis,epsilon) selu sigmoid silu soft_shrink(threshold) softmax(axis) softplus "
        "softsign sparse_categorical_crossentropy(from_logits,axis) sparse_plus sparse_sigmoid sparsemax(axis) "
        "squareplus(b) tanh_shrink threshold(threshold,default_value) "
    ),
    "math": (
        "cdist=CDist erf erfc erfinv in_top_k(k) logsumexp(axis,keepdims) rsqrt segment_max(num_segments,sorted) "
        "segment_min(num_segments,sorted) segment_sum(num_segments,sorted) top_k(k,sorted) "
    ),
    "linalg": (
        "norm(ord,axis,keepdims) "
    ),
    "core": (
        "cast(dtype) scatter(shape) scatter_update(reduction) slice(shape) slice_update stop_gradient "
        "unstack(num,axis) "
    ),
}
# Left out: Keras's ops that take functions (map, scan, ...), build arrays from nothing (arange, full), or
# whose output shape depends on the values (nonzero, unique, bincount), which a dry run on zeros would get wrong.
_MODULE_PREFIX = "keras.src.ops."
_PARSE = re.compile(r"(\w+)(?:=(\w+))?(?:\(([\w,]*)\))?$")


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _parse_spec() -> tuple[dict, dict]:
    by_name, by_class = {}, {}
    for module, text in _SPEC.items():
        for item in text.split():
            name, cls, init = _PARSE.match(item).groups()
            entry = (module, cls or _camel(name), tuple(init.split(",")) if init else ())
            by_name[name] = entry
            by_class.setdefault((module, entry[1]), name)
    return by_name, by_class


OPS, _BY_CLASS = _parse_spec()


class OpLayer(Layer):
    """One ``lamina.ops`` function as a layer: called on the list of the op's call arguments (tensors and
    constants), with ``op_kwargs`` (the constructor arguments of Keras's op class) passed by name."""

    _drops_masks_quietly = True  # Keras's ops neither read nor pass on masks

    def __init__(self, op: str, op_kwargs: dict | None = None, name: str | None = None, **kwargs):
        if op not in OPS:
            raise ValueError(f"OpLayer: '{op}' is not a lamina op that can act on symbolic tensors. "
                             f"Received: op={op!r}")
        module, class_name, _ = OPS[op]
        super().__init__(name=name or auto_name(class_name), **kwargs)
        self.op = op
        self.op_kwargs = {k: _config_value(v) for k, v in (op_kwargs or {}).items()}
        self._fn = _ORIGINALS.get(op) or getattr(ops, op)
        self.built = True

    @property
    def keras_module(self) -> str:
        return _MODULE_PREFIX + OPS[self.op][0]

    @property
    def keras_class_name(self) -> str:
        return OPS[self.op][1]

    def _convert_inputs(self, inputs):
        return inputs  # the op converts its own arguments; ints stay ints, constants stay constants

    def call(self, inputs, **kwargs):
        args = list(inputs)
        if self.op == "get_item" and len(args) > 1 and isinstance(args[1], list):
            args[1] = tuple(args[1])  # a JSON config turns the key's tuple into a list
        return self._fn(*args, **self.op_kwargs, **kwargs)

    def _symbolic_call(self, inputs, args, kwargs):
        if args:
            raise TypeError(f"OpLayer '{self.name}' takes its call arguments as one list. Received: "
                            f"{len(args)} extra positional arguments")
        inputs = list(inputs)
        flat = flatten(inputs)
        result = self._dry_run(inputs, flat, kwargs)
        node_index = len(self._inbound_nodes)
        outs = [KerasTensor(shape, dtype=dtype, history=(self, node_index, i))
                for i, (shape, dtype) in enumerate(result)]
        self._inbound_nodes.append(Node(self, inputs, [t for t in flat if isinstance(t, KerasTensor)], outs,
                                        dict(kwargs)))
        return outs[0] if self._single else pack_like(self._out_struct, outs)

    def _dry_run(self, inputs, flat, kwargs) -> list:
        """Shapes and dtypes of the outputs: the op run with unknown dims as 2, then as 3."""
        runs = []
        for size in (2, 3):
            dummy = [np.zeros([size if d is None else d for d in t.shape], dtype=t.dtype)
                     if isinstance(t, KerasTensor) else t for t in flat]
            try:
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # zeros may leave an op's domain; only shapes matter here
                    out = self.call(pack_like(inputs, dummy), **kwargs)
            except Exception as e:  # whatever the op raises, these arguments do not fit it: say so plainly
                shapes = [t.shape if isinstance(t, KerasTensor) else type(t).__name__ for t in flat]
                raise ValueError(f"ops.{self.op} cannot be applied to these symbolic arguments ({e}). "
                                 f"Received: arguments {shapes}") from None
            runs.append(flatten(out) if isinstance(out, (list, tuple)) else [out])
        if isinstance(out, (list, tuple)):
            self._single, self._out_struct = False, out
        else:
            self._single, self._out_struct = True, None
        return [_merge_shapes(self.op, a, b) for a, b in zip(*runs, strict=True)]

    def compute_output_shape(self, input_shape):
        raise NotImplementedError(f"OpLayer '{self.name}' infers its output from a dry run of ops.{self.op}; "
                                  f"call it on KerasTensors. Received: input_shape={input_shape}")

    def get_config(self) -> dict:
        """Keras's op config: the name and the constructor arguments."""
        return {"name": self.name, **self.op_kwargs}

    def keras_entry(self) -> dict:
        """The layer's entry in a Functional config, as Keras writes an operation."""
        return {"module": self.keras_module, "class_name": self.keras_class_name, "config": self.get_config(),
                "registered_name": self.keras_class_name}


def _config_value(value):
    """A constructor argument as the config keeps it: tuples for lists (a JSON config has lists where the op
    was given ``axis=(1, 2)``, and NumPy wants tuples), names for dtypes, Python numbers for NumPy scalars."""
    if isinstance(value, (list, tuple)):
        return tuple(_config_value(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    return value


def _merge_shapes(op: str, a, b) -> tuple:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != b.ndim:
        raise ValueError(f"ops.{op} gives outputs whose rank depends on the unknown dimensions of its "
                         f"symbolic inputs, which a Functional graph cannot describe. Received: output shapes "
                         f"{a.shape} and {b.shape} for two sizes of the unknown dimensions")
    return tuple(x if x == y else None for x, y in zip(a.shape, b.shape)), a.dtype.name


def is_op_entry(entry) -> bool:
    """True for a Functional config's layer entry that describes a Keras operation (``keras.src.ops.*``)."""
    return isinstance(entry, dict) and str(entry.get("module", "")).startswith(_MODULE_PREFIX)


def from_keras_entry(entry: dict) -> OpLayer:
    """The OpLayer a Keras operation's config entry describes (``Add``, ``Mean(axis=-1)``, ...)."""
    module = entry["module"][len(_MODULE_PREFIX):]
    class_name = entry.get("class_name")
    op = _BY_CLASS.get((module, class_name))
    if op is None:
        raise ValueError(f"Keras operation '{entry['module']}.{class_name}' has no lamina op to run it, so this "
                         f"Functional graph cannot be rebuilt. Received: {{'module': {entry['module']!r}, "
                         f"'class_name': {class_name!r}}}")
    config = dict(entry.get("config") or {})
    name = config.pop("name", None) or entry.get("name")
    unknown = sorted(set(config) - set(OPS[op][2]))
    if unknown:
        raise ValueError(f"Keras operation '{class_name}' ({name}): lamina's ops.{op} does not take {unknown}. "
                         f"Received: config={entry.get('config')!r:.200}")
    return OpLayer(op, config, name=name)


def symbolic_call(op: str, args: tuple, kwargs: dict):
    """``ops.<op>(*args, **kwargs)`` on symbolic tensors: a new OpLayer called on the call arguments."""
    _, _, init = OPS[op]
    fn = _ORIGINALS.get(op) or getattr(ops, op)
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"ops.{op}: {e}. Received: args={args!r:.200}, kwargs={kwargs!r:.200}") from None
    given = dict(bound.arguments)
    bound.apply_defaults()
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    op_kwargs = {name: bound.arguments[name] for name in init if name in bound.arguments}
    for name in init:
        if isinstance(op_kwargs.get(name), KerasTensor):
            raise TypeError(f"ops.{op}: its `{name}` argument must be a constant when it builds a Functional "
                            f"graph (Keras keeps it in the op's config). Received: {name}={op_kwargs[name]!r}")
    call_params = [p.name for p in params if p.name not in init]
    last = max((i for i, n in enumerate(call_params) if n in given), default=0)
    call_args = [bound.arguments[n] for n in call_params[:last + 1]]
    return OpLayer(op, op_kwargs)(call_args)


def _dispatching(op: str, fn):
    """``fn`` that builds a graph node when any argument (or a list's entry) is a KerasTensor. Every op
    call pays this check, so it compares types only (no KerasTensor subclasses exist)."""
    kt = KerasTensor

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in args:
            t = type(a)
            if t is kt or ((t is list or t is tuple) and any(type(b) is kt for b in a)):
                return symbolic_call(op, args, kwargs)
        if kwargs and any(type(v) is kt for v in kwargs.values()):
            return symbolic_call(op, args, kwargs)
        return fn(*args, **kwargs)

    wrapper._lamina_op = fn
    return wrapper


def _install() -> dict:
    """Make each lamina op in the table accept KerasTensors (ops sits below layers on the ladder, so the
    layers rung wraps it); returns the unwrapped functions, which OpLayer runs on arrays.

    The ops that *are* activation functions (``ops.sigmoid is activations.sigmoid``) stay unwrapped: Dense
    fuses and serializes its activation by that identity. Op nodes of theirs still load from Keras configs.
    """
    originals = {}
    for op in OPS:
        fn = getattr(ops, op, None)
        if fn is None or not callable(fn):
            continue
        fn = getattr(fn, "_lamina_op", fn)  # a re-import wraps once
        originals[op] = fn
        if fn is not getattr(activations, op, None):
            setattr(ops, op, _dispatching(op, fn))
    return originals


_ORIGINALS = _install()
register_op_builder(symbolic_call)
