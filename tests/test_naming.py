"""Default names: Keras's snake_case rule and one counter for every kind of object."""

import lamina
from lamina.naming import auto_name, to_snake_case


def test_snake_case_keeps_acronyms_together():
    assert to_snake_case("TopKCategoricalAccuracy") == "top_k_categorical_accuracy"
    assert to_snake_case("KLDivergence") == "kl_divergence"
    assert to_snake_case("PReLU") == "p_re_lu"  # Keras's own rule gives this too


def test_unnamed_objects_get_fresh_names():
    first, second = lamina.layers.Dense(2), lamina.layers.Dense(2)
    assert first.name != second.name and second.name.startswith("dense")

    class KLDivergenceVariant(lamina.losses.KLDivergence):
        def __init__(self):
            super().__init__(name=None)

    assert KLDivergenceVariant().name.startswith("kl_divergence_variant")
    a, b = auto_name("Thing"), auto_name("Thing")
    assert a == "thing" or a.startswith("thing_")
    assert b != a


def test_clear_session_restarts_default_names_as_keras_does(keras):
    import lamina

    for lib in (lamina, keras):
        lib.layers.Dense(2)
        lib.optimizers.Adam()
        lib.utils.clear_session()
        assert lib.layers.Dense(2).name == "dense"
        assert lib.optimizers.Adam().name == "adam"
