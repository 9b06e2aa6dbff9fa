"""``BatchNormalization``: normalise each feature by the batch's statistics in training and by moving
averages of them in inference, then scale by ``gamma`` and shift by ``beta``."""

from __future__ import annotations

import numpy as np

from lamina import backend, constraints, initializers, ops, regularizers
from lamina.autodiff import needs_gradient, record, recording, unwrap
from lamina.layers import batch_norm_accel
from lamina.layers.layer import InputSpec, Layer

# The dtypes the BLAS fast path takes: a float16 product would also sum in float16.
_BLAS_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _param_grad(g, ndim: int, axis: int):
    """Sum ``g`` over every axis but ``axis``: the gradient of a per-feature vector."""
    return np.sum(g, axis=tuple(i for i in range(ndim) if i != axis))


def batch_norm_train(x, gamma, beta, axis: int, epsilon: float, mask=None):
    """Normalise ``x`` by its own statistics over every axis but ``axis``; returns ``(y, mean, var)``.

    ``mean = c * sum(w * x)``, ``var = c * sum(w * (x - mean)**2)`` (biased, as Keras), with weights
    ``w`` from ``mask`` and ``c = 1 / (sum(w) + 1e-7)`` when masked, else ``w = 1, c = 1 / N``;
    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``.

    One primitive; its backward, with ``s = (var + eps)**-0.5`` and ``d = g * gamma``:
    ``dvar = -s**3 / 2 * sum(d * (x - mean))``,
    ``dmean = -s * sum(d) - 2 * c * dvar * sum(w * (x - mean))``,
    ``dx = d * s + 2 * c * dvar * w * (x - mean) + c * dmean * w``,
    ``dgamma = sum(g * xhat)``, ``dbeta = sum(g)``. Without a mask the sum(w * (x - mean)) term is 0
    and ``dx`` reduces to the familiar ``s / N * (N d - sum(d) - xhat * sum(d * xhat))``.
    """
    y, mean, var, vjp = batch_norm_train_kernel(
        np.asarray(unwrap(x)), None if gamma is None else unwrap(gamma), None if beta is None else unwrap(beta),
        axis, epsilon, mask, needs_gradient(x))
    parents = (x,) + tuple(p for p in (gamma, beta) if p is not None)
    return record(y, parents, vjp), mean, var


def _moments(xv: np.ndarray, red: tuple, mask):
    """``(mean, x - mean, var, w, c)`` over the axes ``red`` (kept as size 1), weighted by ``mask`` as
    :func:`batch_norm_train` describes (``w`` is None without a mask)."""
    if mask is None:
        c = 1.0 / max(1, int(np.prod([xv.shape[i] for i in red])))
        mean = np.mean(xv, axis=red, keepdims=True)
        diff = xv - mean
        return mean, diff, np.mean(np.square(diff), axis=red, keepdims=True), None, c
    w = np.broadcast_to(mask, xv.shape).astype(xv.dtype)
    c = (1.0 / (np.sum(w, axis=red, keepdims=True) + backend.epsilon())).astype(xv.dtype)
    mean = np.sum(w * xv, axis=red, keepdims=True) * c
    diff = xv - mean
    return mean, diff, np.sum(w * np.square(diff), axis=red, keepdims=True) * c, w, c


def batch_moments(xv: np.ndarray, axis: int, mask=None) -> tuple:
    """The per-feature ``(mean, var)`` (1-D) that :func:`batch_norm_train` normalises ``xv`` by."""
    mean, _, var, _, _ = _moments(xv, tuple(i for i in range(xv.ndim) if i != axis), mask)
    return np.reshape(mean, -1), np.reshape(var, -1)


def batch_norm_train_kernel(xv: np.ndarray, gamma, beta, axis: int, epsilon: float, mask, need_x: bool):
    """:func:`batch_norm_train` on plain arrays: ``(y, mean, var, vjp)``, where ``vjp(g)`` gives
    ``(dx, dgamma, dbeta)`` without the entries for a missing gamma or beta (the compiled step calls
    this directly; the tape wraps it)."""
    ndim = xv.ndim
    if mask is None and axis == ndim - 1 and xv.flags.c_contiguous and xv.dtype in _BLAS_FLOATS and xv.size:
        return _train_channels_last(xv, gamma, beta, epsilon, need_x)
    red = tuple(i for i in range(ndim) if i != axis)
    bshape = [1] * ndim
    bshape[axis] = xv.shape[axis]
    mean, diff, var, w, c = _moments(xv, red, mask)
    inv = 1.0 / np.sqrt(var + epsilon)
    xhat = diff * inv
    gv = None if gamma is None else np.reshape(gamma, bshape)
    y = xhat * gv if gv is not None else xhat.copy()
    if beta is not None:
        y += np.reshape(beta, bshape)

    def vjp(g):
        dgamma = None if gamma is None else _param_grad(g * xhat, ndim, axis)
        dbeta = None if beta is None else _param_grad(g, ndim, axis)
        dx = None
        if need_x:
            d = g * gv if gv is not None else g
            dvar = -0.5 * inv ** 3 * np.sum(d * diff, axis=red, keepdims=True)
            dmean = -inv * np.sum(d, axis=red, keepdims=True)
            if w is None:
                dx = d * inv + (2 * c) * dvar * diff + c * dmean
            else:
                dmean = dmean - 2 * c * dvar * np.sum(w * diff, axis=red, keepdims=True)
                dx = d * inv + w * (2 * c * dvar * diff + c * dmean)
        grads = [dx]
        if gamma is not None:
            grads.append(dgamma)
        if beta is not None:
            grads.append(dbeta)
        return tuple(grads)

    return y, np.reshape(mean, -1), np.reshape(var, -1), vjp


def _train_channels_last(xv: np.ndarray, gamma, beta, epsilon: float, need_x: bool):
    """:func:`batch_norm_train_kernel` for an unmasked, contiguous, channels-last ``xv`` seen as rows
    ``(n, C)``: the sums over rows are BLAS products with a ones vector (fast, and summed more accurately
    than NumPy's row-by-row reduction), and the backward pass is the reduced form
    ``dx = gamma * s * (g - sum(g) / n - xhat * sum(g * xhat) / n)`` in four in-place passes."""
    shape, channels = xv.shape, xv.shape[-1]
    x2 = xv.reshape(-1, channels)
    fast = batch_norm_accel.train_channels_last(x2, gamma, beta, epsilon, need_x)
    if fast is not None:  # numba: two passes each way, xhat never stored
        y2, mean, var, vjp2 = fast

        def vjp_fast(g):
            dx2, dgamma, dbeta = vjp2(g)
            dx = None if dx2 is None else dx2.reshape(shape)
            return (dx,) + ((dgamma,) if gamma is not None else ()) + ((dbeta,) if beta is not None else ())

        return y2.reshape(shape), mean, var, vjp_fast
    n = x2.shape[0]
    ones = np.ones(n, xv.dtype)
    mean = (ones @ x2) / n
    xhat = x2 - mean
    var = np.einsum("ij,ij->j", xhat, xhat) / n
    inv = (1.0 / np.sqrt(var + epsilon)).astype(xv.dtype, copy=False)
    xhat *= inv
    y = xhat * gamma if gamma is not None else xhat.copy()
    if beta is not None:
        y += beta

    def vjp(g):
        g2 = np.asarray(g).reshape(-1, channels)
        dbeta = ones @ g2
        dgamma = np.einsum("ij,ij->j", g2, xhat)
        dx = None
        if need_x:
            dx = np.multiply(xhat, -(dgamma / n))
            dx += g2
            dx -= dbeta / n
            dx *= inv if gamma is None else inv * gamma
            dx = dx.reshape(shape)
        return (dx,) + ((dgamma,) if gamma is not None else ()) + ((dbeta,) if beta is not None else ())

    return y.reshape(shape), mean, var, vjp


def batch_norm_inference(x, mean, variance, gamma, beta, axis: int, epsilon: float):
    """``gamma * (x - mean) / sqrt(variance + epsilon) + beta`` with fixed statistics, as one primitive.

    Backward: ``dx = g * gamma * s``, ``dgamma = sum(g * xhat)``, ``dbeta = sum(g)``, with
    ``s = (variance + epsilon)**-0.5``; the statistics get no gradient.
    """
    xv = np.asarray(unwrap(x))
    ndim = xv.ndim
    bshape = [1] * ndim
    bshape[axis] = xv.shape[axis]
    inv = np.reshape(1.0 / np.sqrt(np.asarray(variance) + epsilon), bshape).astype(xv.dtype, copy=False)
    if not recording() and xv.dtype in _BLAS_FLOATS:
        # No tape: one scale and one shift per feature, two passes over x instead of four.
        scale = inv if gamma is None else inv * np.reshape(unwrap(gamma), bshape)
        shift = -np.reshape(mean, bshape) * scale
        if beta is not None:
            shift = shift + np.reshape(unwrap(beta), bshape)
        y = xv * scale.astype(xv.dtype, copy=False)
        y += shift.astype(xv.dtype, copy=False)
        return y
    xhat = (xv - np.reshape(mean, bshape)) * inv
    gv = None if gamma is None else np.reshape(unwrap(gamma), bshape)
    y = xhat * gv if gv is not None else xhat
    if beta is not None:
        y = y + np.reshape(unwrap(beta), bshape)
    need_x = needs_gradient(x)

    def vjp(g):
        grads = [(g * (inv if gv is None else inv * gv)) if need_x else None]
        if gamma is not None:
            grads.append(_param_grad(g * xhat, ndim, axis))
        if beta is not None:
            grads.append(_param_grad(g, ndim, axis))
        return tuple(grads)

    return record(y, (x,) + tuple(p for p in (gamma, beta) if p is not None), vjp)


def _check_renorm_clipping(clipping) -> dict:
    """``renorm_clipping`` as a dict with only the keys ``rmax``, ``rmin``, ``dmax`` (``{}`` for None),
    ``rmax >= rmin`` and ``dmax >= 0``."""
    clipping = {} if clipping is None else clipping
    if not isinstance(clipping, dict):
        raise ValueError(
            "BatchNormalization: `renorm_clipping` must be a dict with the optional keys 'rmax', 'rmin' and "
            f"'dmax'. Received: renorm_clipping={clipping!r}"
        )
    allowed = ("rmax", "rmin", "dmax")
    unknown = sorted(set(clipping) - set(allowed))
    if unknown:
        raise ValueError(
            f"BatchNormalization: `renorm_clipping` takes only the keys {list(allowed)}. Received invalid keys "
            f"{unknown} in renorm_clipping={clipping!r}"
        )
    for key, value in clipping.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
            raise ValueError(
                f"BatchNormalization: `renorm_clipping['{key}']` must be a number or None. "
                f"Received: {key}={value!r}"
            )
    rmax, rmin, dmax = (clipping.get(k) for k in allowed)
    if rmax is not None and rmin is not None and rmax < rmin:
        raise ValueError(
            "BatchNormalization: rmax should be greater than or equal to rmin in `renorm_clipping`. "
            f"Received: rmax={rmax}, rmin={rmin}"
        )
    if dmax is not None and dmax < 0:
        raise ValueError(
            f"BatchNormalization: dmax should be non-negative in `renorm_clipping`. Received: dmax={dmax}"
        )
    return clipping


class BatchNormalization(Layer):
    """Batch normalisation (Ioffe & Szegedy, 2015) over every axis but ``axis``.

    Training (``training=True`` and the layer trainable): ``y = gamma * (x - mean_B) /
    sqrt(var_B + epsilon) + beta`` with the batch's mean and biased variance, and the moving
    statistics are updated as ``moving = moving * momentum + batch * (1 - momentum)``. Inference
    uses the moving statistics instead. Weights: gamma, beta (trainable), moving_mean,
    moving_variance (not trainable). ``call(inputs, training=None, mask=None)``: a mask of the
    input's shape less the last axis (given, or carried by the input from a ``Masking`` layer)
    excludes entries from the batch statistics.

    ``renorm=True`` trains with batch renormalization (see :meth:`_renorm_train`), adding the
    non-trainable ``moving_stddev``, ``renorm_mean`` and ``renorm_stddev``; inference is unchanged.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None, renorm: bool = False,
                 renorm_clipping=None, renorm_momentum: float = 0.99, synchronized: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(
                f"The `axis` of a BatchNormalization layer must be an integer. Received: axis={axis!r}"
            )
        if synchronized:
            raise ValueError(
                "BatchNormalization: `synchronized=True` is only supported with TensorFlow's distribution "
                f"strategies, not by lamina. Received: synchronized={synchronized!r}"
            )
        if renorm:
            renorm_clipping = _check_renorm_clipping(renorm_clipping)
        for name, value in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
                raise ValueError(
                    f"The `{name}` of a BatchNormalization layer must be a number. Received: {name}={value!r}"
                )
        if epsilon <= 0:
            raise ValueError(
                f"The `epsilon` of a BatchNormalization layer must be > 0. Received: epsilon={epsilon!r}"
            )
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.renorm = renorm
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = float(renorm_momentum)
        self.synchronized = synchronized
        self.supports_masking = True
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None
        self.moving_stddev = self.renorm_mean = self.renorm_stddev = None

    def build(self, input_shape) -> None:
        ndim = len(input_shape)
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"BatchNormalization layer '{self.name}': axis {self.axis} is out of bounds for an input of "
                f"rank {ndim}. Received: input_shape={input_shape}"
            )
        size = input_shape[self.axis]
        if size is None:
            raise ValueError(
                f"BatchNormalization layer '{self.name}' needs a known size on axis {self.axis}. "
                f"Received: input_shape={input_shape}"
            )
        shape = (int(size),)
        if self.scale:
            self.gamma = self.add_weight(shape=shape, name="gamma", initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint,
                                         autocast=False)
        if self.center:
            self.beta = self.add_weight(shape=shape, name="beta", initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint,
                                        autocast=False)
        self.moving_mean = self.add_weight(shape=shape, name="moving_mean",
                                           initializer=self.moving_mean_initializer, trainable=False, autocast=False)
        self.moving_variance = self.add_weight(shape=shape, name="moving_variance",
                                               initializer=self.moving_variance_initializer, trainable=False,
                                               autocast=False)
        if self.renorm:
            self._build_renorm(shape)
        self.input_spec = InputSpec(ndim=ndim, axes={self.axis: int(size)})
        self.built = True

    def _build_renorm(self, shape: tuple) -> None:
        """Batch renormalization's weights: the inference statistics as a standard deviation
        (``moving_stddev``) and the training-time ``renorm_mean``/``renorm_stddev``, the standard
        deviations starting at the square root of the moving variance's initial value."""
        stddev = np.sqrt(self.moving_variance._value)
        self.moving_stddev = self.add_weight(shape=shape, name="moving_stddev", initializer=stddev, trainable=False,
                                             autocast=False)
        self.renorm_mean = self.add_weight(shape=shape, name="renorm_mean", initializer=self.moving_mean_initializer,
                                           trainable=False, autocast=False)
        self.renorm_stddev = self.add_weight(shape=shape, name="renorm_stddev", initializer=stddev, trainable=False,
                                             autocast=False)

    def call(self, inputs, training=None, mask=None):
        xv = np.asarray(unwrap(inputs))
        if not np.issubdtype(xv.dtype, np.floating) or xv.dtype.itemsize < 4:
            # Statistics need at least float32 (Keras computes in result_type(dtype, float32)).
            inputs = ops.cast(inputs, np.result_type(xv.dtype, np.float32).name)
        axis = self.axis % xv.ndim
        if mask is None:
            mask = backend.get_keras_mask(inputs)  # set by a Masking layer upstream, as Keras passes it on
        if training and self.trainable:
            if mask is not None:
                mask = np.asarray(unwrap(mask))
                if mask.ndim != xv.ndim - 1:
                    raise ValueError(
                        f"The mask given to BatchNormalization layer '{self.name}' should have one dimension "
                        f"less than the inputs. Received: mask.shape={mask.shape}, inputs.shape={xv.shape}"
                    )
                mask = np.expand_dims(mask.astype(bool), -1)
            if self.renorm:
                out = self._renorm_train(inputs, axis, mask)
            else:
                out, mean, var = batch_norm_train(inputs, self.gamma, self.beta, axis, self.epsilon, mask)
                self._update_moving(mean, var)
        else:
            out = batch_norm_inference(inputs, self.moving_mean._value, self.moving_variance._value,
                                       self.gamma, self.beta, axis, self.epsilon)
        if np.asarray(unwrap(out)).dtype.name != self.compute_dtype:
            out = ops.cast(out, self.compute_dtype)
        return out

    def _renorm_train(self, inputs, axis: int, mask):
        """Batch renormalization (Ioffe, 2017) in training: with the batch's ``mean`` and
        ``sigma = sqrt(var + epsilon)``, ``r = sigma / max(renorm_stddev, sqrt(epsilon))`` and
        ``d = (mean - renorm_mean) / max(renorm_stddev, sqrt(epsilon))`` (clipped by ``renorm_clipping``
        to ``[rmin, rmax]`` and ``[-dmax, dmax]``, and held constant: no gradient flows through them),
        ``y = gamma * (xhat * r + d) + beta``, i.e. batch normalisation with scale ``r * gamma`` and
        offset ``d * gamma + beta``. The statistics are read before this batch updates them."""
        mean, var = batch_moments(np.asarray(unwrap(inputs)), axis, mask)
        sigma = np.sqrt(var + self.epsilon)
        floor = np.sqrt(np.asarray(self.epsilon, sigma.dtype))
        renorm_stddev = np.maximum(self.renorm_stddev._value.astype(sigma.dtype), floor)
        r = sigma / renorm_stddev
        d = (mean - self.renorm_mean._value.astype(mean.dtype)) / renorm_stddev
        clip = self.renorm_clipping
        if clip.get("rmin") is not None:
            r = np.maximum(r, clip["rmin"]).astype(sigma.dtype)
        if clip.get("rmax") is not None:
            r = np.minimum(r, clip["rmax"]).astype(sigma.dtype)
        if clip.get("dmax") is not None:
            d = np.clip(d, -clip["dmax"], clip["dmax"]).astype(sigma.dtype)
        if self.gamma is None:
            scale, offset = r, d
        else:
            scale, offset = ops.multiply(self.gamma, r), ops.multiply(self.gamma, d)
        if self.beta is not None:
            offset = ops.add(offset, self.beta)
        out, _, _ = batch_norm_train(inputs, scale, offset, axis, self.epsilon, mask)
        self._update_renorm(mean, sigma)
        return out

    def _update_renorm(self, mean, sigma) -> None:
        """``renorm_* = renorm_* * renorm_momentum + batch * (1 - renorm_momentum)`` and
        ``moving_* = moving_* * momentum + batch * (1 - momentum)`` for the mean and the standard
        deviation; ``moving_variance = max(moving_stddev**2 - epsilon, 0)`` follows the new stddev."""
        pairs = ((self.renorm_mean, mean, self.renorm_momentum), (self.renorm_stddev, sigma, self.renorm_momentum),
                 (self.moving_mean, mean, self.momentum), (self.moving_stddev, sigma, self.momentum))
        for moving, batch, m in pairs:
            moving.assign(moving._value * m + batch.astype(moving.dtype) * (1.0 - m))
        stddev = self.moving_stddev._value
        self.moving_variance.assign(np.maximum(stddev * stddev - self.epsilon, 0).astype(stddev.dtype))

    def _update_moving(self, mean, var) -> None:
        """``moving = moving * momentum + batch * (1 - momentum)`` for the mean and the variance."""
        m = self.momentum
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, var)):
            moving.assign(moving._value * m + batch.astype(moving.dtype) * (1.0 - m))

    def compute_output_shape(self, input_shape):
        if not -len(input_shape) <= self.axis < len(input_shape):
            raise ValueError(
                f"Axis {self.axis} is out of bounds for input shape {input_shape}. Received: axis={self.axis}"
            )
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
            "synchronized": self.synchronized,
            "renorm": self.renorm,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
        })
        return config
