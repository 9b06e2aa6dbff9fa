"""``lamina.config`` (keras.config) and ``lamina.backend.backend()``: defaults, validation and what each
switch changes, checked against Keras where Keras has an answer."""

import base64
import json
import logging
import marshal

import numpy as np
import pytest

import lamina
from lamina import backend, config, layers
from lamina.callbacks.progbar import Progbar
from lamina.saving import FileFormatError
from tests.helpers.keras_files import read_members, write_zip


@pytest.fixture(autouse=True)
def _restore_settings():
    saved = (backend.floatx(), backend.epsilon(), backend.image_data_format(), backend.interactive_logging(),
             backend.traceback_filtering(), backend.safe_mode_override())
    yield
    backend.set_floatx(saved[0])
    backend.set_epsilon(saved[1])
    backend.set_image_data_format(saved[2])
    backend.set_interactive_logging(saved[3])
    backend.set_traceback_filtering(saved[4])
    backend.set_safe_mode_override(saved[5])


# ----------------------------------------------------------------------------- the backend name


def test_backend_name_is_lamina_everywhere_keras_users_ask():
    import lamina as keras

    assert keras.backend.backend() == keras.config.backend() == "lamina"
    # Keras's tests skip training on "numpy" and import frameworks on the others: lamina is neither.
    assert keras.backend.backend() not in ("numpy", "torch", "jax", "tensorflow", "openvino")


def test_config_and_random_are_public_submodules():
    assert {"config", "random"} <= set(dir(lamina)) and {"config", "random"} <= set(lamina.__all__)
    assert lamina.config.floatx is backend.floatx


# ----------------------------------------------------------------------------- defaults and validation


def test_defaults_match_keras(keras):
    kc = keras.config
    assert config.floatx() == kc.floatx() == "float32"
    assert config.epsilon() == kc.epsilon() == 1e-7
    assert config.image_data_format() == kc.image_data_format() == "channels_last"
    assert config.is_interactive_logging_enabled() is kc.is_interactive_logging_enabled() is True
    assert config.is_traceback_filtering_enabled() is kc.is_traceback_filtering_enabled() is True


@pytest.mark.parametrize("bad", ["float8", "int32", "Float32"])
def test_set_floatx_refuses_what_keras_refuses(keras, bad):
    with pytest.raises(ValueError, match=f"Unknown `floatx` value: {bad}"):
        keras.config.set_floatx(bad)
    with pytest.raises(ValueError, match=rf"Unknown `floatx` value: {bad}\. Expected one of .*Received: value='{bad}'"):
        config.set_floatx(bad)
    assert config.floatx() == "float32"


def test_set_floatx_bfloat16_is_accepted_as_in_keras():
    config.set_floatx("bfloat16")  # ml_dtypes (the lowp extra) supplies the dtype
    try:
        assert config.floatx() == "bfloat16"
    finally:
        config.set_floatx("float32")


def test_set_floatx_changes_what_new_weights_use():
    config.set_floatx("float64")
    assert backend.floatx() == "float64"
    dense = layers.Dense(2)
    dense.build((None, 3))
    assert dense.kernel.dtype == np.float64
    assert lamina.random.normal((2,)).dtype == np.float64


def test_set_epsilon_is_the_backend_epsilon():
    config.set_epsilon(1e-5)
    assert config.epsilon() == backend.epsilon() == 1e-5


@pytest.mark.parametrize("value, expected", [("channels_first", "channels_first"), ("CHANNELS_LAST", "channels_last")])
def test_set_image_data_format_as_keras(keras, value, expected):
    config.set_image_data_format(value)
    assert config.image_data_format() == expected
    keras.config.set_image_data_format(value)
    try:
        assert keras.config.image_data_format() == expected
    finally:
        keras.config.set_image_data_format("channels_last")


def test_set_image_data_format_refuses_other_values_with_keras_wording(keras):
    message = r"must be one of \{'channels_first', 'channels_last'\}. Received: data_format=channels_middle"
    with pytest.raises(ValueError, match=message):
        keras.config.set_image_data_format("channels_middle")
    with pytest.raises(ValueError, match=message):
        config.set_image_data_format("channels_middle")
    assert config.image_data_format() == "channels_last"


def test_traceback_filtering_flag_toggles():
    config.disable_traceback_filtering()
    assert config.is_traceback_filtering_enabled() is False
    config.enable_traceback_filtering()
    assert config.is_traceback_filtering_enabled() is True


# ----------------------------------------------------------------------------- interactive logging


def _bar_run():
    bar = Progbar(3, verbose=1)
    for step in (1, 2, 3):
        bar.update(step, [("loss", 0.5)])


def test_progbar_prints_while_interactive_logging_is_on(capsys):
    _bar_run()
    assert "3/3" in capsys.readouterr().out


def test_disabled_interactive_logging_sends_lines_to_the_logger(capsys, caplog, monkeypatch):
    monkeypatch.setenv("PYCHARM_HOSTED", "1")  # a console that redraws in place, were logging interactive
    config.disable_interactive_logging()
    assert config.is_interactive_logging_enabled() is False
    with caplog.at_level(logging.INFO, logger="lamina"):
        _bar_run()
    assert capsys.readouterr().out == ""
    lines = [r.getMessage() for r in caplog.records if r.name == "lamina"]
    assert len(lines) == 1  # only the final line: no in-place redraws in a log
    assert lines[0].startswith("3/3") and "loss: 0.5000" in lines[0] and "\r" not in lines[0] and "\x1b" not in lines[0]
    config.enable_interactive_logging()
    _bar_run()
    assert "3/3" in capsys.readouterr().out


def test_fit_is_silent_on_stdout_without_interactive_logging(capsys):
    config.disable_interactive_logging()
    model = lamina.Sequential([lamina.Input((2,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 2), "float32"), np.ones((4, 1), "float32"), epochs=2, verbose=1)
    assert capsys.readouterr().out == ""


def test_set_logging_verbosity_sets_the_lamina_logger_threshold(caplog):
    """Callback messages are INFO records of the ``lamina`` logger without interactive logging: a
    threshold of WARNING drops them, INFO lets them reach the handlers."""
    logger = logging.getLogger("lamina")
    before = logger.level
    config.disable_interactive_logging()
    scheduler = lamina.callbacks.LearningRateScheduler(lambda epoch: 0.5, verbose=1)
    model = lamina.Sequential([lamina.Input((2,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")
    try:
        with caplog.at_level(logging.INFO):  # the root's handlers take INFO
            config.set_logging_verbosity("WARNING")
            model.fit(*data, callbacks=[scheduler], verbose=0)
            assert not [r for r in caplog.records if "LearningRateScheduler" in r.getMessage()]
            config.set_logging_verbosity("INFO")
            model.fit(*data, callbacks=[scheduler], verbose=0)
            assert [r.levelno for r in caplog.records if "setting learning rate to 0.5" in r.getMessage()] == [
                logging.INFO]
        with pytest.raises(ValueError, match=r"set_logging_verbosity.*Received: level='LOUD'"):
            config.set_logging_verbosity("LOUD")
    finally:
        logger.setLevel(before)
        config.enable_interactive_logging()


# ----------------------------------------------------------------------------- unsafe deserialization


def _lambda_config():
    fn = lambda x: x * 3.0  # a lambda: what safe mode refuses
    code = base64.encodebytes(marshal.dumps(fn.__code__)).decode("ascii")
    return {"class_name": "__lambda__", "config": {"value": [code, None, None]}}


def test_enable_unsafe_deserialization_overrides_safe_mode_default():
    with pytest.raises(FileFormatError, match="lambda"):
        lamina.saving.deserialize_keras_object(_lambda_config())
    config.enable_unsafe_deserialization()
    assert lamina.saving.deserialize_keras_object(_lambda_config())(2.0) == 6.0


def test_enable_unsafe_deserialization_lets_load_model_rebuild_a_lambda_activation(tmp_path):
    model = lamina.Sequential([lamina.Input((2,)), layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    members = read_members(tmp_path / "m.keras")
    cfg = json.loads(members["config.json"])
    dense = next(layer for layer in cfg["config"]["layers"] if layer["class_name"] == "Dense")
    dense["config"]["activation"] = _lambda_config()
    path = write_zip(tmp_path / "lambda.keras", {**members, "config.json": json.dumps(cfg).encode()})
    with pytest.raises(FileFormatError, match="lambda"):
        lamina.saving.load_model(path)
    config.enable_unsafe_deserialization()
    loaded = lamina.saving.load_model(path)
    np.testing.assert_allclose(loaded.layers[-1].activation(np.ones(2)), [3.0, 3.0])
