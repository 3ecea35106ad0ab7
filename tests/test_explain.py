"""Gradient × input, first-layer weights and mean activations per class, against NumPy."""

from __future__ import annotations

import numpy as np

from digitnet.explain import (
    first_layer_images,
    gradient_x_input,
    mean_hidden_per_class,
    normalized,
    text_map,
)


def numpy_hidden(model, x):
    """The tutorial's ReLU network by hand: the outputs of every hidden layer."""
    h = (x.reshape(len(x), -1).astype(np.float64) - model.stats["shift"]) * model.stats["scale"]
    outs = []
    for layer in model.params[:-1]:
        h = np.maximum(h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"]), 0)
        outs.append(h)
    return outs


def test_gradient_x_input_matches_the_hand_derived_gradient(trained_model, mnist):
    x = mnist.x_test[:8]
    labels, attr = gradient_x_input(trained_model, x)
    assert labels.tolist() == trained_model.predict(x).tolist()
    assert attr.shape == (8, 28, 28) and attr.dtype == np.float32
    hidden = numpy_hidden(trained_model, x)
    k = [np.asarray(p["kernel"], np.float64) for p in trained_model.params]
    for n in range(8):
        g = k[-1][:, labels[n]]  # d logit / d last hidden
        for layer in range(len(hidden) - 1, -1, -1):
            g = k[layer] @ (g * (hidden[layer][n] > 0))
        g = g * trained_model.stats["scale"]  # through the preprocessing, to raw pixels
        expected = (g * x[n].reshape(-1)).reshape(28, 28)
        np.testing.assert_allclose(attr[n], expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    # blank pixels carry no attribution; a chosen class other than the predicted one works too
    assert np.all(attr[x == 0] == 0)
    other, attr3 = gradient_x_input(trained_model, x[:1], labels=[3])
    assert other.tolist() == [3] and not np.allclose(attr3[0], attr[0])
    norm = normalized(attr)
    assert np.abs(norm).max() == 1.0 and np.allclose(np.abs(norm).reshape(8, -1).max(axis=1), 1)


def test_first_layer_images_and_mean_activations(trained_model, mnist):
    imgs = first_layer_images(trained_model)
    kernel = np.asarray(trained_model.params[0]["kernel"])
    assert imgs.shape == (64, 28, 28)
    np.testing.assert_array_equal(imgs[5].reshape(-1), kernel[:, 5])
    x, y = mnist.x_test[:3000], mnist.y_test[:3000]
    means = mean_hidden_per_class(trained_model, x, y, batch=1024)
    hidden = numpy_hidden(trained_model, x)
    assert [m.shape for m in means] == [(10, 64), (10, 64)]
    for m, h in zip(means, hidden, strict=True):
        for c in range(10):
            np.testing.assert_allclose(m[c], h[y == c].mean(axis=0), rtol=1e-4, atol=1e-5)


def test_text_map_marks_pushes_towards_and_away():
    attr = np.zeros((28, 28))
    attr[5, 3], attr[5, 4], attr[6, 3], attr[6, 4], attr[7, 3] = 1.0, 0.3, -0.3, -0.9, 0.01
    lines = text_map(attr).splitlines()
    assert lines == ["      ##++", "      --==", "      ··"]  # blank rows above and below dropped
