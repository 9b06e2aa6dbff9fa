"""A NumPy stand-in for ``keras.src.testing`` (``TestCase`` and the device probes), built on lamina.

It asserts what Keras's ``TestCase`` asserts, with NumPy: ``assertAllClose`` (shapes and values within
``atol + rtol * |desired|``), ``assertAllEqual``, ``assertLen``, ``assertDType`` and the others Keras's
tests call, ``run_class_serialization_test`` (config and serialization round trips keep the config and
the attribute names) and ``run_layer_test`` (serialization, build, symbolic call, eager call, one
training step and the mixed-precision check). Two deliberate differences from Keras, both so that tests
Keras's NumPy backend cannot run do run on lamina, which trains: ``run_layer_test`` always runs its
training step, and ``skipTest`` ignores "NumPy backend cannot train" reasons.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from absl.testing import parameterized

import lamina

# skipTest reasons that only say Keras's own NumPy backend cannot train: lamina can, so the test runs.
NUMPY_CANNOT_TRAIN = re.compile(r"numpy backend|trainer not implemented", re.IGNORECASE)


def uses_gpu():
    return False  # lamina computes on the CPU with NumPy


def uses_tpu():
    return False


jax_uses_gpu = jax_uses_tpu = tensorflow_uses_gpu = tensorflow_uses_tpu = torch_uses_gpu = uses_gpu


def _backend_name() -> str:
    name = getattr(lamina.backend, "backend", None)
    return name() if callable(name) else "numpy"


# Python scalar types → dtype names, as Keras's non-TensorFlow backends map them.
_PYTHON_DTYPES = {bool: "bool", int: "int32", float: "float32", complex: "complex64", "int": "int32"}


def _standardize_dtype(dtype) -> str:
    if isinstance(dtype, (type, str)) and dtype in _PYTHON_DTYPES:
        return _PYTHON_DTYPES[dtype]
    return lamina.backend.standardize_dtype(dtype)


def _to_numpy(x):
    if isinstance(x, np.ndarray):
        return x
    return np.asarray(lamina.ops.convert_to_numpy(x))


def _flatten(structure) -> list:
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in _flatten(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in _flatten(item)]
    return [structure]


def _is_shape(x) -> bool:
    return isinstance(x, (list, tuple)) and all(isinstance(d, (int, type(None))) for d in x)


def _map_shapes(fn, shape, dtype):
    """Map ``fn(shape_tuple, dtype)`` over a (nested) structure of shape tuples and its dtypes."""
    if _is_shape(shape):
        return fn(tuple(shape), dtype)
    if isinstance(shape, dict):
        return {key: _map_shapes(fn, value, dtype[key]) for key, value in shape.items()}
    if isinstance(shape, (list, tuple)):
        return type(shape)(_map_shapes(fn, s, d) for s, d in zip(shape, dtype))
    raise ValueError(f"run_layer_test: cannot read input_shape {shape!r} with input_dtype {dtype!r}")


def _default_dtypes(shape):
    if _is_shape(shape):
        return "float32"
    if isinstance(shape, dict):
        return {key: _default_dtypes(value) for key, value in shape.items()}
    return type(shape)(_default_dtypes(s) for s in shape)


def _json_with_tuples(value) -> str:
    """JSON that keeps tuples apart from lists, so a round trip that turns one into the other shows."""

    def mark(obj):
        if isinstance(obj, tuple):
            return {"__class__": "tuple", "__value__": [mark(e) for e in obj]}
        if isinstance(obj, list):
            return [mark(e) for e in obj]
        if isinstance(obj, dict):
            return {key: mark(v) for key, v in obj.items()}
        return obj

    return json.dumps(mark(value), sort_keys=True, indent=4, default=repr)


def _tuples_from_json(text: str):
    def unmark(obj):
        if isinstance(obj, dict) and set(obj) == {"__class__", "__value__"}:
            return tuple(obj["__value__"])
        return obj

    return json.loads(text, object_hook=unmark)


def _seed_generators(layer) -> list:
    layers = layer._flatten_layers(True, True) if hasattr(layer, "_flatten_layers") else [layer]
    found, seen = [], set()
    for sub in layers:
        for generator in getattr(sub, "_seed_generators", []):
            if id(generator) not in seen:
                seen.add(id(generator))
                found.append(generator)
    return found


def _call(layer, inputs, call_kwargs):
    if isinstance(inputs, dict):
        return layer(**inputs, **call_kwargs)
    return layer(inputs, **call_kwargs)


class TestCase(parameterized.TestCase):
    maxDiff = None

    def setUp(self):
        super().setUp()
        # Keras clears its global state (auto-name counters) before each test; use lamina's if it has one.
        clear = getattr(lamina.utils, "clear_session", None) or getattr(lamina.backend, "clear_session", None)
        if clear is not None:
            clear()

    def skipTest(self, reason):
        if NUMPY_CANNOT_TRAIN.search(str(reason)):
            return  # lamina trains on NumPy: the test applies and runs on
        super().skipTest(reason)

    def get_temp_dir(self):
        path = tempfile.mkdtemp()
        self.addCleanup(lambda: shutil.rmtree(path, ignore_errors=True))
        return path

    def convert_to_numpy(self, x):
        return _to_numpy(x) if not isinstance(x, (int, float, bool, list, tuple)) else np.array(x)

    def assertAllClose(self, actual, desired, atol=1e-6, rtol=1e-6, tpu_atol=None, tpu_rtol=None, msg=None):
        np.testing.assert_allclose(self.convert_to_numpy(actual), self.convert_to_numpy(desired),
                                   atol=atol, rtol=rtol, err_msg=msg or "")

    def assertNotAllClose(self, x1, x2, atol=1e-6, rtol=1e-6, msg=None):
        try:
            self.assertAllClose(x1, x2, atol=atol, rtol=rtol)
        except AssertionError:
            return
        raise AssertionError(f"The two values are close at all elements.\n{msg or ''}\nValues: {x1}")

    def assertAlmostEqual(self, actual, desired, decimal=3, tpu_decimal=None, msg=None):
        np.testing.assert_almost_equal(self.convert_to_numpy(actual), self.convert_to_numpy(desired),
                                       decimal=decimal, err_msg=msg or "")

    def assertAllEqual(self, actual, desired, msg=None):
        np.testing.assert_array_equal(self.convert_to_numpy(actual), self.convert_to_numpy(desired),
                                      err_msg=msg or "")

    def assertLen(self, iterable, expected_len, msg=None):
        self.assertEqual(len(iterable), expected_len, msg=msg)

    def assertSparse(self, x, sparse=True):
        if hasattr(x, "sparse"):
            self.assertEqual(x.sparse, sparse)
        else:
            self.assertFalse(sparse, "lamina does not support sparse tensors")

    def assertRagged(self, x, ragged=True):
        if hasattr(x, "ragged"):
            self.assertEqual(x.ragged, ragged)
        else:
            self.assertFalse(ragged, "lamina does not support ragged tensors")

    def assertDType(self, x, dtype, msg=None):
        x_dtype = _standardize_dtype(x.dtype if hasattr(x, "dtype") else type(x))
        expected = _standardize_dtype(dtype)
        self.assertEqual(x_dtype, expected, msg=msg or f"The dtype of x does not match the expected one. "
                                                       f"Received: x.dtype={x_dtype} and dtype={dtype}")

    def assertFileExists(self, path):
        if not Path(path).is_file():
            raise AssertionError(f"File {path} does not exist")

    def run_class_serialization_test(self, instance, custom_objects=None):
        """get_config → from_config and serialize → deserialize keep the config and the attribute names."""
        saving = lamina.saving
        cls = instance.__class__
        config_json = _json_with_tuples(instance.get_config())
        names = set(dir(instance)) - {"__annotations__"}
        with saving.custom_object_scope(custom_objects):
            revived = cls.from_config(instance.get_config())
        self.assertEqual(config_json, _json_with_tuples(revived.get_config()))
        self.assertEqual(names, set(dir(revived)) - {"__annotations__"})

        serialized = _tuples_from_json(_json_with_tuples(saving.serialize_keras_object(instance)))
        with saving.custom_object_scope(custom_objects):
            revived = saving.deserialize_keras_object(serialized)
        self.assertEqual(config_json, _json_with_tuples(revived.get_config()))
        self.assertEqual(names, set(dir(revived)) - {"__annotations__"})
        return revived

    def run_layer_test(self, layer_cls, init_kwargs, input_shape=None, input_dtype=None, input_sparse=False,
                       input_ragged=False, input_data=None, call_kwargs=None, expected_output_shape=None,
                       expected_output_dtype=None, expected_output_sparse=False, expected_output_ragged=False,
                       expected_output=None, expected_num_trainable_weights=None,
                       expected_num_non_trainable_weights=None, expected_num_non_trainable_variables=None,
                       expected_num_seed_generators=None, expected_num_losses=None, supports_masking=None,
                       expected_mask_shape=None, custom_objects=None, run_training_check=True,
                       run_mixed_precision_check=True, assert_built_after_instantiation=False,
                       tpu_atol=None, tpu_rtol=None):
        """Keras's layer checks: serialization, build, symbolic and eager calls, training, mixed precision."""
        spec = _LayerSpec(locals())
        spec.validate()
        has_input = input_data is not None or input_shape is not None
        if has_input:
            spec.estimate_counts()
        layer = layer_cls(**spec.init_kwargs)
        self.run_class_serialization_test(layer, custom_objects)
        if supports_masking is not None:
            self.assertEqual(layer.supports_masking, supports_masking, msg="Unexpected supports_masking value")
        if not has_input:
            return
        keras_inputs = self._layer_build_and_symbolic_checks(spec)
        self._layer_eager_checks(spec, keras_inputs)

    def _layer_build_asserts(self, spec, layer):
        self.assertTrue(layer.built)
        for attr, expected in (("trainable_weights", spec.n_trainable), ("non_trainable_weights", spec.n_frozen),
                               ("non_trainable_variables", spec.n_frozen_vars)):
            if expected is not None:
                self.assertLen(getattr(layer, attr), expected, msg=f"Unexpected number of {attr}")
        if spec.n_seeds is not None:
            self.assertLen(_seed_generators(layer), spec.n_seeds, msg="Unexpected number of seed_generators")

    def _layer_output_asserts(self, spec, layer, output, eager):
        a = spec.args
        if a["expected_output_shape"] is not None:
            received = [tuple(x.shape) for x in _flatten(output)]
            expected = _flatten_shapes(a["expected_output_shape"])
            ok = len(received) == len(expected) and all(
                len(r) == len(e) and all(ed is None or ed == rd for ed, rd in zip(e, r))
                for r, e in zip(received, expected))
            self.assertTrue(ok, msg=f"Expected output shapes {a['expected_output_shape']} but received {received}")
        if a["expected_output_dtype"] is not None:
            expected = _flatten(a["expected_output_dtype"])
            received = [_standardize_dtype(x.dtype) for x in _flatten(output)]
            self.assertEqual(expected, received, msg=f"Expected output dtypes {a['expected_output_dtype']}")
        if a["expected_output_sparse"]:
            for x in _flatten(output):
                self.assertSparse(x)
        if a["expected_output_ragged"]:
            for x in _flatten(output):
                self.assertRagged(x)
        if eager and a["expected_output"] is not None:
            self.assertEqual(type(a["expected_output"]), type(output))
            for ref, value in zip(_flatten(a["expected_output"]), _flatten(output)):
                self.assertAllClose(ref, value, msg="Unexpected output value")
        if eager and a["expected_num_losses"] is not None:
            self.assertLen(layer.losses, a["expected_num_losses"])

    def _layer_build_and_symbolic_checks(self, spec):
        a, layer_cls = spec.args, spec.args["layer_cls"]
        if a["input_shape"] is None:
            build_shape = _map_structure(lambda x: tuple(lamina.ops.shape(x)), a["input_data"])
            keras_inputs = _map_structure(lambda x: _keras_tensor(tuple(lamina.ops.shape(x)), x.dtype),
                                          a["input_data"])
        else:
            build_shape = a["input_shape"]
            keras_inputs = _map_shapes(_keras_tensor, a["input_shape"], spec.input_dtype)
        layer = layer_cls(**spec.init_kwargs)
        if isinstance(build_shape, dict):
            layer.build(**build_shape)
        else:
            layer.build(build_shape)
        self._layer_build_asserts(spec, layer)

        layer = layer_cls(**spec.init_kwargs)
        outputs = _call(layer, keras_inputs, spec.call_kwargs)
        self._layer_build_asserts(spec, layer)
        self._layer_output_asserts(spec, layer, outputs, eager=False)
        if a["expected_mask_shape"] is not None:
            self.assertEqual(a["expected_mask_shape"], layer.compute_mask(keras_inputs).shape)
        if a["assert_built_after_instantiation"]:
            self._built_after_instantiation_checks(spec)
        return keras_inputs

    def _built_after_instantiation_checks(self, spec):
        layer_cls = spec.args["layer_cls"]
        self.assertTrue(layer_cls(**spec.init_kwargs).built,
                        msg=f"{layer_cls} is stateless, so it should be built after instantiation.")

        class ModifiedBuildLayer(layer_cls):
            def build(self, *args, **kwargs):
                pass

        self.assertFalse(ModifiedBuildLayer(**spec.init_kwargs).built,
                         msg=f"The `build` of {layer_cls} is overridden, so it should not be built after "
                             "instantiation.")

    def _layer_eager_checks(self, spec, keras_inputs):
        a, layer_cls = spec.args, spec.args["layer_cls"]
        input_data = spec.eager_inputs()
        layer = layer_cls(**spec.init_kwargs)
        output = _call(layer, input_data, spec.call_kwargs)
        self._layer_output_asserts(spec, layer, output, eager=True)
        if a["run_training_check"]:
            _training_step(layer, input_data, output)  # Keras skips this on its NumPy backend; lamina trains
        if a["run_mixed_precision_check"]:
            self._mixed_precision_checks(spec, keras_inputs, input_data)

    def _mixed_precision_checks(self, spec, keras_inputs, input_data):
        # As Keras's run_layer_test, except that it runs on every backend (Keras skips it on torch's CPU).
        layer = spec.args["layer_cls"](**{**spec.init_kwargs, "dtype": "mixed_float16"})
        is_float_dtype = lamina.backend.is_float_dtype

        def as_compute(kt):
            is_float = is_float_dtype(kt.dtype)
            return _keras_tensor(kt.shape, layer.compute_dtype if layer.autocast and is_float else kt.dtype)

        input_spec = _map_structure(as_compute, keras_inputs)
        if isinstance(input_data, dict):
            output, output_spec = layer(**input_data, **spec.call_kwargs), layer.compute_output_spec(**input_spec)
        else:
            output, output_spec = layer(input_data, **spec.call_kwargs), layer.compute_output_spec(input_spec)
        for tensor, out_spec in zip(_flatten(output), _flatten(output_spec)):
            dtype = _standardize_dtype(tensor.dtype)
            self.assertEqual(dtype, out_spec.dtype, f"expected output dtype {out_spec.dtype}, got {dtype}")
        for weight in layer.weights:
            dtype = _standardize_dtype(weight.dtype)
            if is_float_dtype(dtype):
                self.assertEqual(dtype, "float32")


def _flatten_shapes(shapes) -> list:
    if _is_shape(shapes):
        return [tuple(shapes)]
    if isinstance(shapes, dict):
        return [s for key in sorted(shapes) for s in _flatten_shapes(shapes[key])]
    return [s for item in shapes for s in _flatten_shapes(item)]


def _map_structure(fn, structure):
    if isinstance(structure, dict):
        return {key: _map_structure(fn, value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_map_structure(fn, item) for item in structure)
    return fn(structure)


def _keras_tensor(shape, dtype):
    return lamina.layers.keras_tensor.KerasTensor(shape, dtype=_standardize_dtype(dtype))


def _eager_tensor(shape, dtype):
    """Uniform values in [0, 3) cast to ``dtype`` (Keras's recipe), None dimensions taken as 2."""
    concrete = tuple(2 if d is None else d for d in shape)
    values = np.random.default_rng(0).uniform(size=concrete).astype("float32") * 3
    return lamina.ops.cast(values, _standardize_dtype(dtype))


def _training_step(layer, input_data, output_data):
    """One ``fit`` step of a model wrapping the layer, with the loss ``sum(y_pred)`` (as Keras's check)."""

    class TestModel(lamina.Model):
        def __init__(self, layer):
            super().__init__()
            self.layer = layer

        def call(self, x, training=False):
            return self.layer(x, training=training)

    class TestLoss(lamina.losses.Loss):
        def __call__(self, y_true, y_pred, sample_weight=None):
            return lamina.ops.sum(y_pred)

    data = (input_data, output_data)

    def batches():
        while True:
            yield data

    model = TestModel(layer)
    model.compile(optimizer="sgd", loss=TestLoss(), jit_compile="auto")
    model.fit(batches(), steps_per_epoch=1, verbose=0)


class _LayerSpec:
    """``run_layer_test``'s arguments, checked, and the weight counts it expects."""

    def __init__(self, args):
        self.args = args
        self.init_kwargs = args["init_kwargs"] or {}
        self.call_kwargs = args["call_kwargs"] or {}
        self.input_dtype = args["input_dtype"]
        if args["input_shape"] is not None and self.input_dtype is None:
            self.input_dtype = _default_dtypes(args["input_shape"])
        self.n_trainable = args["expected_num_trainable_weights"]
        self.n_frozen = args["expected_num_non_trainable_weights"]
        self.n_frozen_vars = args["expected_num_non_trainable_variables"]
        self.n_seeds = args["expected_num_seed_generators"]
        self._eager = None

    def validate(self):
        a = self.args
        if a["input_shape"] is not None and a["input_data"] is not None:
            raise ValueError("input_shape and input_data cannot be passed at the same time.")
        if a["expected_output_shape"] is not None and a["expected_output"] is not None:
            raise ValueError("expected_output_shape and expected_output cannot be passed at the same time.")
        if a["expected_output"] is not None and a["input_data"] is None:
            raise ValueError("In order to use expected_output, input_data must be provided.")
        if a["expected_mask_shape"] is not None and a["supports_masking"] is not True:
            raise ValueError("In order to use expected_mask_shape, supports_masking must be True.")

    def eager_inputs(self):
        if self._eager is None:
            data = self.args["input_data"]
            self._eager = data if data is not None else _map_shapes(_eager_tensor, self.args["input_shape"],
                                                                    self.input_dtype)
        return self._eager

    def estimate_counts(self):
        """Counts the test leaves open are read from a first built instance, as Keras does."""
        layer = self.args["layer_cls"](**self.init_kwargs)
        _call(layer, self.eager_inputs(), self.call_kwargs)
        if self.n_trainable is None:
            self.n_trainable = len(layer.trainable_weights)
        if self.n_frozen is None:
            self.n_frozen = len(layer.non_trainable_weights)
        if self.n_frozen_vars is None:
            self.n_frozen_vars = len(layer.non_trainable_variables)
        if self.n_seeds is None:
            self.n_seeds = len(_seed_generators(layer))
