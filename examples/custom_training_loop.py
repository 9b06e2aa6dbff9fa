"""A custom training loop with GradientTape, as in TensorFlow's guides, on the circles data.

    python examples/custom_training_loop.py
"""

import numpy as np

import lamina as keras
from lamina import layers

x, y = keras.datasets.make_circles(n_samples=2000, noise=0.05, factor=0.5, seed=0)
y = y.astype("float32")[:, None]

model = keras.Sequential([layers.Input((2,)), layers.Dense(16, activation="relu"),
                          layers.Dense(16, activation="relu"), layers.Dense(1, activation="sigmoid")])
optimizer = keras.optimizers.Adam(0.01)
loss_fn = keras.losses.BinaryCrossentropy()
accuracy = keras.metrics.BinaryAccuracy()

rng = np.random.default_rng(0)
for epoch in range(20):
    order = rng.permutation(len(x))
    accuracy.reset_state()
    for start in range(0, len(x), 32):
        idx = order[start:start + 32]
        with keras.GradientTape() as tape:
            probabilities = model(x[idx], training=True)
            loss = loss_fn(y[idx], probabilities)
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        accuracy.update_state(y[idx], keras.ops.convert_to_numpy(probabilities))
    print(f"epoch {epoch + 1}: loss {float(loss):.4f}, accuracy {float(accuracy.result()):.3f}")
