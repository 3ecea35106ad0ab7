"""Scenarios run twice: by scripts/keras_record.py with real Keras 3 (its answers are recorded in
tests/fixtures/keras/behaviour.json) and by tests/test_keras_behaviour.py with digitnet.keras,
which compares. Each takes the `keras` module and returns JSON-able values; what it prints is
captured too. Weights are set explicitly wherever values are compared, so both sides compute the
same function; training runs compare the form of what is printed and returned."""

from __future__ import annotations

import numpy as np

RNG = np.random.default_rng(7)
X = RNG.random((100, 784), dtype=np.float32)
IMAGES = X.reshape(-1, 28, 28)
Y = RNG.integers(0, 10, 100)
W = [RNG.normal(0, 0.05, (784, 16)).astype(np.float32), RNG.normal(0, 0.1, 16).astype(np.float32),
     RNG.normal(0, 0.3, (16, 10)).astype(np.float32), RNG.normal(0, 0.1, 10).astype(np.float32)]
LOGITS = RNG.normal(0, 2, (6, 10)).astype(np.float32)
LABELS = np.array([3, 1, 4, 1, 5, 9])
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)


def arr(a) -> list:
    return np.asarray(a, np.float64).round(6).tolist()


def logits_model(keras):
    model = keras.Sequential([keras.layers.Flatten(input_shape=(28, 28)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(10)])
    model.set_weights(W)
    return model


def functional_model(keras, softmax=True):
    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(16, activation="relu", name="dense_1")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax" if softmax else None, name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.set_weights(W)
    return model


def subclassed_model(keras):
    class MLP(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(16, activation="relu")
            self.out = keras.layers.Dense(10)

        def call(self, inputs, training=False):
            return self.out(self.hidden(inputs))

    model = MLP()
    model(X[:1])
    model.set_weights(W)
    return model


def s_summary_sequential(keras):
    logits_model(keras).summary()


def s_summary_functional(keras):
    functional_model(keras).summary()


def s_summary_nested(keras):
    keras.Sequential([logits_model(keras), keras.layers.Softmax()]).summary()


def s_summary_hidden_only(keras):
    keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu")]).summary()


def s_outputs(keras):
    model = logits_model(keras)
    prob = keras.Sequential([model, keras.layers.Softmax()])
    act = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16), keras.layers.Activation("relu"),
                            keras.layers.Dense(10), keras.layers.Activation("softmax")])
    act.set_weights(W)
    sub = subclassed_model(keras)
    out = {
        "predict_logits": arr(model.predict(IMAGES[:3], verbose=0)),
        "call_logits": arr(np.asarray(model(IMAGES[:3]))),
        "predict_prob": arr(prob.predict(IMAGES[:3], verbose=0)),
        "call_prob": arr(np.asarray(prob(IMAGES[:3]))),
        "functional": arr(functional_model(keras).predict(X[:3], verbose=0)),
        "functional_logits": arr(functional_model(keras, softmax=False)(X[:3])),
        "activation_layers": arr(act.predict(X[:3], verbose=0)),
        "subclassed": arr(sub.predict(X[:3], verbose=0)),
        "layer_call": arr(np.asarray(keras.layers.Softmax()(LOGITS[:2]))),
        "predict_type": type(model.predict(IMAGES[:2], verbose=0)).__name__,
        "predict_dtype": str(model.predict(IMAGES[:2], verbose=0).dtype),
        "prob_shape": list(prob.predict(IMAGES[:2], verbose=0).shape),
        "prob_layers": [type(layer).__name__ for layer in prob.layers],
    }
    return out


def s_weights(keras):
    model = logits_model(keras)
    return {"weights": len(model.weights), "trainable": len(model.trainable_weights),
            "shapes": [list(w.shape) for w in model.weights],
            "names": [w.name for w in model.weights],
            "paths": [w.path for w in model.weights],
            "get_weights": [list(np.shape(w)) for w in model.get_weights()],
            "layer_weights": [len(layer.weights) for layer in model.layers],
            "count_params": model.count_params(),
            "first": arr(np.asarray(model.weights[3]))}


def s_functional_layers(keras):
    model = functional_model(keras)
    nested = keras.Sequential([model, keras.layers.Softmax()])
    return {"layers": [[type(layer).__name__, layer.name] for layer in model.layers],
            "weights": [len(layer.weights) for layer in model.layers],
            "second": model.layers[1].name, "get_weights": len(model.get_weights()),
            "nested": [type(layer).__name__ for layer in nested.layers],
            "input_weights": model.layers[0].get_weights()}


def s_losses(keras):
    L = keras.losses
    onehot = np.eye(10, dtype=np.float32)[LABELS]
    return {
        "scce_logits": float(L.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS)),
        "scce_probs": float(L.SparseCategoricalCrossentropy()(LABELS, PROBS)),
        "cce_logits": float(L.CategoricalCrossentropy(from_logits=True)(onehot, LOGITS)),
        "cce_probs": float(L.CategoricalCrossentropy()(onehot, PROBS)),
        "cce_smooth": float(L.CategoricalCrossentropy(label_smoothing=0.1)(onehot, PROBS)),
        "bce_logits": float(L.BinaryCrossentropy(from_logits=True)(onehot, LOGITS)),
        "bce_probs": float(L.BinaryCrossentropy()(onehot, PROBS)),
        "mse": float(L.MeanSquaredError()(onehot, PROBS)),
        "none": arr(L.SparseCategoricalCrossentropy(from_logits=True, reduction="none")(LABELS, LOGITS)),
        "sum": float(L.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(LABELS, LOGITS)),
        "weighted": float(L.SparseCategoricalCrossentropy(from_logits=True)(LABELS, LOGITS,
                                                                           sample_weight=np.arange(6.0))),
        "function": arr(L.sparse_categorical_crossentropy(LABELS, LOGITS, from_logits=True)),
    }


def s_metrics(keras):
    M = keras.metrics
    onehot = np.eye(10, dtype=np.float32)[LABELS]
    out = {}
    for name, metric, args in [
        ("sparse_acc", M.SparseCategoricalAccuracy(), (LABELS, PROBS)),
        ("cat_acc", M.CategoricalAccuracy(), (onehot, PROBS)),
        ("top3", M.SparseTopKCategoricalAccuracy(k=3), (LABELS, PROBS)),
        ("top3_cat", M.TopKCategoricalAccuracy(k=3), (onehot, PROBS)),
        ("precision", M.Precision(), (onehot, PROBS)),
        ("recall", M.Recall(thresholds=0.1), (onehot, PROBS)),
        ("mean", M.Mean(), (LOGITS[:, 0],)),
        ("cce", M.SparseCategoricalCrossentropy(from_logits=True), (LABELS, LOGITS)),
        ("mse", M.MeanSquaredError(), (onehot, PROBS)),
        ("binary_acc", M.BinaryAccuracy(), (onehot, PROBS)),
    ]:
        metric.update_state(*args)
        first = float(metric.result())
        metric.update_state(*(a[:3] for a in args))
        second = float(metric.result())
        metric.reset_state()
        out[name] = [metric.name, first, second, float(metric.result())]
    acc = M.SparseCategoricalAccuracy()
    out["call"] = float(acc(LABELS, PROBS))
    return out


def s_custom_metric(keras):
    ops = keras.ops

    class CategoricalTruePositives(keras.metrics.Metric):
        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            y_pred = ops.reshape(ops.argmax(y_pred, axis=1), (-1, 1))
            values = ops.cast(y_true, "int32") == ops.cast(y_pred, "int32")
            values = ops.cast(values, "float32")
            if sample_weight is not None:
                sample_weight = ops.cast(sample_weight, "float32")
                values = ops.multiply(values, sample_weight)
            self.true_positives.assign_add(ops.sum(values))

        def result(self):
            return self.true_positives.value

        def reset_state(self):
            self.true_positives.assign(0.0)

    m = CategoricalTruePositives()
    m.update_state(LABELS.reshape(-1, 1), PROBS)
    first = float(m.result())
    model = functional_model(keras)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=[CategoricalTruePositives()])
    ev = model.evaluate(X, Y.reshape(-1, 1), verbose=0, return_dict=True, batch_size=100)
    return {"first": first, "evaluate": {k: round(v, 5) for k, v in ev.items()}}


def s_ops(keras):
    ops = keras.ops
    return {"softmax": arr(ops.softmax(LOGITS[:2])),
            "argmax": np.asarray(ops.argmax(LOGITS, axis=1)).tolist(),
            "mean": float(ops.mean(LOGITS)), "sum": float(ops.sum(ops.square(LOGITS[0]))),
            "numpy": arr(ops.convert_to_numpy(ops.convert_to_tensor(LOGITS[0]))),
            "one_hot": arr(ops.one_hot(np.array([1, 3]), 4)),
            "log_softmax": arr(ops.log_softmax(LOGITS[:1]))}


def compiled(keras, metrics=("accuracy",)):
    model = logits_model(keras)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=list(metrics))
    return model


def s_evaluate(keras):
    model = compiled(keras, ["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=3)])
    values = model.evaluate(IMAGES, Y, verbose=0)
    as_dict = model.evaluate(IMAGES, Y, verbose=0, return_dict=True)
    model.evaluate(IMAGES, Y, verbose=2)
    model.evaluate(IMAGES, Y, verbose=1)
    model.evaluate(IMAGES, Y)
    plain = logits_model(keras)
    plain.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.predict(IMAGES, verbose=2)
    model.predict(IMAGES)
    return {"values": arr(values), "dict": {k: round(v, 5) for k, v in as_dict.items()},
            "loss_only": round(float(plain.evaluate(IMAGES, Y, verbose=0)), 5),
            "metrics_names": model.metrics_names}


def s_fit_verbose2(keras):
    model = compiled(keras, ["sparse_categorical_accuracy"])
    h = model.fit(IMAGES, Y, epochs=2, batch_size=32, verbose=2, validation_split=0.2)
    model.fit(IMAGES, Y, epochs=1, batch_size=32, verbose=2)
    return {"history": sorted(h.history), "epochs": h.epoch, "params": dict(sorted(h.params.items()))}


def s_fit_verbose1(keras):
    model = compiled(keras)
    model.fit(IMAGES, Y, epochs=2, batch_size=50)


def s_fit_verbose0(keras):
    h = compiled(keras).fit(IMAGES, Y, epochs=2, verbose=0, validation_data=(IMAGES[:10], Y[:10]))
    return sorted(h.history)


class Recorder:
    def __init__(self, keras):
        self.calls = []

        class Rec(keras.callbacks.Callback):
            pass

        hooks = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
                 "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
                 "on_test_batch_begin", "on_test_batch_end", "on_batch_begin", "on_batch_end"]
        for hook in hooks:
            def fn(self_, *args, hook=hook, logs=None):
                index = args[0] if args and isinstance(args[0], int) else None
                if logs is None and args and isinstance(args[-1], dict):
                    logs = args[-1]
                self.calls.append([hook, index, sorted(logs or {})])
            setattr(Rec, hook, fn)
        self.callback = Rec()


YB = (Y < 5).astype(np.float32)  # a binary task: digits 0-4 against 5-9
WB = [W[0], W[1], W[2][:, :1] * 3, W[3][:1]]  # the 1-unit head: logits of both signs


def binary_model(keras, sigmoid=True, hidden_act="relu"):
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation=hidden_act),
                              keras.layers.Dense(1, activation="sigmoid" if sigmoid else None)])
    model.set_weights(WB)
    return model


def rounded(logs: dict) -> dict:
    return {k: round(v, 5) for k, v in logs.items()}


def s_binary(keras):
    probs = binary_model(keras)
    probs.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    logit = binary_model(keras, sigmoid=False)
    logit.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy", keras.metrics.Precision(), keras.metrics.Recall()])
    obj = binary_model(keras)
    obj.compile(optimizer="rmsprop", loss=keras.losses.BinaryCrossentropy(label_smoothing=0.1),
                metrics=[keras.metrics.BinaryAccuracy(), "mse"])
    first6 = probs.predict(X[:6], verbose=0)
    return {
        "predict": arr(probs.predict(X[:5], verbose=0)), "shape": list(probs.predict(X, verbose=0).shape),
        "logits": arr(logit.predict(X[:5], verbose=0)), "call": arr(np.asarray(probs(X[:2]))),
        "evaluate": arr(probs.evaluate(X, YB, verbose=0)),
        "evaluate_2d": arr(probs.evaluate(X, YB.reshape(-1, 1), verbose=0)),
        "evaluate_int": arr(probs.evaluate(X, (Y < 5).astype("uint8"), verbose=0, batch_size=16)),
        "evaluate_logits": rounded(logit.evaluate(X, YB, verbose=0, return_dict=True)),
        "evaluate_object": rounded(obj.evaluate(X, YB, verbose=0, return_dict=True)),
        "bce": float(keras.losses.BinaryCrossentropy()(YB[:6].reshape(-1, 1), first6)),
        "bce_fn": arr(keras.losses.binary_crossentropy(YB[:6].reshape(-1, 1), first6)),
        "metrics_names": probs.metrics_names,
    }


def s_binary_fit(keras):
    """Deterministic training (set weights, plain SGD, no shuffle): the same steps in both."""
    model = binary_model(keras, hidden_act="tanh")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="binary_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(X, YB, epochs=2, batch_size=25, shuffle=False, verbose=0,
                  validation_data=(X[:40], YB[:40]))
    weights = arr(model.get_weights()[3])
    logit = binary_model(keras, sigmoid=False, hidden_act="tanh")
    logit.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    h2 = logit.fit(X, YB.reshape(-1, 1), epochs=1, batch_size=20, shuffle=False, verbose=0)
    model.fit(X, YB, epochs=1, batch_size=25, verbose=2)
    return {"history": {k: [round(v, 5) for v in vs] for k, vs in h.history.items()},
            "logits_history": {k: [round(v, 5) for v in vs] for k, vs in h2.history.items()},
            "weights": weights}


def s_class_weight(keras):
    """fit(class_weight=...): each example's loss times its class's weight (a class left out
    weighs 1), for integer labels, one-hot rows and a binary head; plain
    SGD, no shuffle, set weights: the same steps in both. The confusion counts beside."""
    weights = {0: 2.0, 3: 0.5, 7: 3.0, 9: 0.0}
    out = {}
    for name, labels, loss in (("sparse", Y, "sparse_categorical_crossentropy"),
                               ("onehot", np.eye(10, dtype=np.float32)[Y], "categorical_crossentropy")):
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="tanh"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.set_weights(W)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss=loss,
                      metrics=["accuracy"])
        h = model.fit(X, labels, epochs=2, batch_size=20, shuffle=False, verbose=0,
                      class_weight=weights, validation_data=(X[:30], labels[:30]))
        out[name] = {"history": {k: [round(v, 5) for v in vs] for k, vs in h.history.items()},
                     "weights": arr(model.get_weights()[3])}
    m = keras.metrics
    binary = binary_model(keras, hidden_act="tanh")
    binary.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="binary_crossentropy",
                   metrics=["accuracy", m.TruePositives(), m.FalsePositives(name="fp"),
                            m.TrueNegatives(), m.FalseNegatives(thresholds=0.7)])
    h = binary.fit(X, YB.reshape(-1, 1), epochs=2, batch_size=25, shuffle=False, verbose=0,
                   class_weight={0: 0.25, 1: 4.0})
    out["binary"] = {"history": {k: [round(v, 5) for v in vs] for k, vs in h.history.items()},
                     "weights": arr(binary.get_weights()[3]),
                     "evaluate": rounded(binary.evaluate(X, YB, verbose=0, return_dict=True))}
    counts = [m.TruePositives(), m.FalsePositives(), m.TrueNegatives(thresholds=0.3), m.FalseNegatives()]
    for c in counts:
        c.update_state(YB[:12], [0.1, 0.8, 0.4, 0.6, 0.95, 0.2, 0.5, 0.35, 0.75, 0.05, 0.65, 0.3],
                       sample_weight=np.arange(12) % 3)
    out["counts"] = [float(c.result()) for c in counts]
    return out


def s_sample_weight(keras):
    """fit(sample_weight=...) and evaluate(sample_weight=...): each example's loss times its
    weight, the metrics unweighted; with validation_split the weights are split with the data
    (keras.io's guide: weight 2 for the digit 5). Plain SGD, no shuffle, set weights."""
    weights = np.where(Y == 5, 2.0, 1.0) * (0.5 + (np.arange(len(Y)) % 3) / 4)
    out = {}
    for name, kwargs in (("plain", {}), ("split", {"validation_split": 0.3}),
                         ("column", {"sample_weight_2d": True}),
                         ("triple", {"validation_data": (X[:30], Y[:30], weights[:30])})):
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="tanh"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.set_weights(W)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.2),
                      loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
        sw = weights.reshape(-1, 1) if kwargs.pop("sample_weight_2d", False) else weights
        h = model.fit(X, Y, epochs=2, batch_size=20, shuffle=False, verbose=0, sample_weight=sw,
                      **kwargs)
        out[name] = {"history": {k: [round(v, 5) for v in vs] for k, vs in h.history.items()},
                     "weights": arr(model.get_weights()[3]),
                     "evaluate": arr(model.evaluate(X, Y, sample_weight=weights, verbose=0)),
                     "unweighted": arr(model.evaluate(X, Y, verbose=0))}
    binary = binary_model(keras, hidden_act="tanh")
    binary.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="binary_crossentropy",
                   metrics=["accuracy"])
    h = binary.fit(X, YB, epochs=2, batch_size=25, shuffle=False, verbose=0,
                   sample_weight=np.linspace(0, 2, len(YB)))
    out["binary"] = {"history": {k: [round(v, 5) for v in vs] for k, vs in h.history.items()},
                     "weights": arr(binary.get_weights()[3])}
    return out


def s_auc(keras):
    """AUC over its curves, summations, thresholds and weights, alone and in a binary fit (the
    TensorFlow imbalanced-data tutorial's METRICS, class_weight, plain SGD, no shuffle)."""
    m = keras.metrics
    pred = np.array([0.1, 0.8, 0.4, 0.6, 0.95, 0.2, 0.5, 0.35, 0.75, 0.05, 0.65, 0.3, 0.5, 1.0, 0.0])
    true = np.array([0, 1, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0])
    weight = np.arange(15) % 4
    made = {"default": m.AUC(), "pr": m.AUC(curve="PR"), "three": m.AUC(num_thresholds=3),
            "minoring": m.AUC(num_thresholds=10, summation_method="minoring"),
            "majoring_pr": m.AUC(num_thresholds=7, curve="PR", summation_method="majoring"),
            "prgain": m.AUC(curve="PRGAIN"), "given": m.AUC(thresholds=[0.7, 0.3, 0.5]),
            "logits": m.AUC(from_logits=True)}
    out = {}
    for name, auc in made.items():
        auc.update_state(true, (pred - 0.5) * 6 if name == "logits" else pred)
        auc.update_state(true[:9], pred[:9] if name != "logits" else (pred[:9] - 0.5) * 6,
                         sample_weight=weight[:9])
        out[name] = round(float(auc.result()), 6)
    out["thresholds"] = arr(made["given"].thresholds)
    out["name"] = made["default"].name
    binary = binary_model(keras, hidden_act="tanh")
    binary.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="binary_crossentropy",
                   metrics=[m.BinaryAccuracy(name="accuracy"), m.AUC(name="auc"),
                            m.AUC(name="prc", curve="PR")])
    h = binary.fit(X, YB, epochs=2, batch_size=25, shuffle=False, verbose=0,
                   class_weight={0: 0.5, 1: 2.0}, validation_data=(X[:40], YB[:40]))
    out["fit"] = {k: [round(v, 5) for v in vs] for k, vs in h.history.items()}
    return out


def s_metric_names(keras):
    """Metrics that share a name are logged as name, name_1, … (Keras' compile)."""
    m = keras.metrics
    model = binary_model(keras, hidden_act="tanh")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="binary_crossentropy",
                  metrics=["auc", "auc", m.Precision(name="p"), m.Recall(name="p"), "accuracy"])
    h = model.fit(X, YB, epochs=1, batch_size=25, shuffle=False, verbose=0,
                  validation_data=(X[:40], YB[:40]))
    return {"history": {k: [round(v, 5) for v in vs] for k, vs in h.history.items()},
            "evaluate": rounded(model.evaluate(X, YB, verbose=0, return_dict=True))}


def s_validation_freq(keras):
    """validation_freq: validation after every n-th epoch, or after the listed epochs."""
    out = {}
    for name, freq in (("every_2", 2), ("listed", [1, 3])):
        model = binary_model(keras, hidden_act="tanh")
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="binary_crossentropy",
                      metrics=["accuracy"])
        h = model.fit(X, YB, epochs=4, batch_size=25, shuffle=False, verbose=0,
                      validation_data=(X[:40], YB[:40]), validation_freq=freq)
        out[name] = {k: [round(v, 5) for v in vs] for k, vs in h.history.items()}
    return out


def s_f_scores(keras):
    """F1Score / FBetaScore over one-hot targets: each average, a threshold, sample weights,
    alone and as a fit's and evaluate's metrics."""
    m = keras.metrics
    onehot = np.eye(10, dtype=np.float32)[Y]
    probs = np.exp(X[:, :10] * 4) / np.exp(X[:, :10] * 4).sum(1, keepdims=True)
    out = {}
    made = {"none": m.F1Score(), "micro": m.F1Score(average="micro"),
            "macro": m.F1Score(average="macro"), "weighted": m.F1Score(average="weighted"),
            "beta": m.FBetaScore(average="macro", beta=2.0), "threshold": m.F1Score(threshold=0.2)}
    for name, metric in made.items():
        metric.update_state(onehot[:60], probs[:60])
        metric.update_state(onehot[60:], probs[60:], sample_weight=np.arange(40) % 3)
        out[name] = arr(metric.result())
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(10, activation="softmax")])
    model.set_weights(W)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="categorical_crossentropy",
                  metrics=[m.F1Score(average="macro"), m.F1Score(average="weighted", name="wf1")])
    h = model.fit(X, onehot, epochs=2, batch_size=20, shuffle=False, verbose=0)
    out["fit"] = {k: [round(v, 5) for v in vs] for k, vs in h.history.items()}
    out["evaluate"] = rounded(model.evaluate(X, onehot, verbose=0, return_dict=True))
    return out


def s_epoch_metrics(keras):
    """Training-log metrics accumulate over the epoch's batches with each step's weights."""
    ops = keras.ops

    class TruePositives(keras.metrics.Metric):
        def __init__(self, name="tp", **kwargs):
            super().__init__(name=name, **kwargs)
            self.total = self.add_weight(shape=(), name="total", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            hit = ops.cast(ops.argmax(y_pred, axis=1), "int32") == labels
            self.total.assign_add(ops.sum(ops.cast(hit, "float32")))

        def result(self):
            return self.total.value

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(10, activation="softmax")])
    model.set_weights(W)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2), TruePositives(),
                           keras.metrics.SparseCategoricalCrossentropy()])
    h = model.fit(X, Y, epochs=2, batch_size=20, shuffle=False, verbose=0, validation_data=(X[:30], Y[:30]))
    return {k: [round(v, 5) for v in vs] for k, vs in h.history.items()}


def s_optimizers(keras):
    """Each optimizer and option, by object and by name: the weights after 8 steps from set
    weights (no dropout, no shuffle), as Keras' update_step computes them."""
    opt = keras.optimizers
    made = {
        "adam_eps_amsgrad": lambda: opt.Adam(learning_rate=0.01, epsilon=1e-8, amsgrad=True),
        "adam_b1_clipvalue": lambda: opt.Adam(learning_rate=0.01, beta_1=0.8, clipvalue=0.01),
        "adamw": lambda: opt.AdamW(learning_rate=0.01, weight_decay=0.1),
        "sgd_nesterov_clipnorm": lambda: opt.SGD(learning_rate=0.1, momentum=0.9, nesterov=True,
                                                 clipnorm=0.5),
        "sgd_global_clipnorm_wd": lambda: opt.SGD(learning_rate=0.1, global_clipnorm=0.5, weight_decay=0.01),
        "rmsprop_centered_momentum": lambda: opt.RMSprop(learning_rate=0.001, centered=True, momentum=0.5),
        "adagrad": lambda: opt.Adagrad(learning_rate=0.05),
        "adadelta": lambda: opt.Adadelta(learning_rate=1.0, rho=0.9),
        "adamax": lambda: opt.Adamax(learning_rate=0.01),
        "nadam": lambda: opt.Nadam(learning_rate=0.01),
        "nadam_cosine": lambda: opt.Nadam(learning_rate=opt.schedules.CosineDecay(0.01, 5, alpha=0.1)),
        "adam_exponential": lambda: opt.Adam(opt.schedules.ExponentialDecay(0.01, 2, 0.5, staircase=True)),
        "sgd_piecewise": lambda: opt.SGD(opt.schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.05, 0.01])),
        "rmsprop_inverse_time": lambda: opt.RMSprop(opt.schedules.InverseTimeDecay(0.01, 1, 0.5)),
        "adagrad_polynomial": lambda: opt.Adagrad(opt.schedules.PolynomialDecay(0.1, 3, 0.01, power=2.0)),
        "lion": lambda: opt.Lion(learning_rate=0.001),
        "ftrl": lambda: opt.Ftrl(learning_rate=0.1, l1_regularization_strength=0.001, beta=0.1,
                                 l2_regularization_strength=0.01, l2_shrinkage_regularization_strength=0.01),
    }
    out = {}
    for name in ("adagrad", "adadelta", "adamax", "nadam", "adamw", "lion", "ftrl"):
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
        try:
            model.compile(optimizer=name, loss="mse")
            config = model.optimizer.get_config()
            out["name_" + name] = [type(model.optimizer).__name__, config["learning_rate"]]
        except ValueError as exc:
            out["name_" + name] = str(exc)[:20]
    rng = np.random.default_rng(11)
    grads = [rng.normal(0, 0.1, w.shape).astype(np.float32) for w in W]
    names = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "epsilon", "amsgrad", "rho",
             "momentum", "nesterov", "centered", "beta_1", "beta_2", "initial_accumulator_value",
             "learning_rate_power", "beta")
    for label, make in made.items():
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(10)])
        model.set_weights(W)
        optimizer = make()
        for step in range(4):  # Keras' update on given gradients, without training
            optimizer.apply_gradients(zip([g * (step - 1.5) for g in grads], model.trainable_variables,
                                          strict=True))
        weights = model.get_weights()
        config = optimizer.get_config()
        out[label] = {"class": type(optimizer).__name__, "kernel": arr(weights[0][:3, :3]),
                      "config": {k: config[k] for k in sorted(config) if k in names},
                      "bias": arr(weights[1][:5]), "out": arr(weights[2][:3, :3]),
                      "out_bias": arr(weights[3])}
        if label not in ("adam_eps_amsgrad", "nadam_cosine"):
            continue  # trained by the engine: two of them (each fit compiles its step)
        model.set_weights(W)
        model.compile(optimizer=make(), metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(X[:64], Y[:64], epochs=2, batch_size=16, shuffle=False, verbose=0)
        weights = model.get_weights()
        out["fit_" + label] = {"kernel": arr(weights[0][:3, :3]), "bias": arr(weights[1][:5]),
                      "out": arr(weights[2][:3, :3]),
                      "loss": round(float(model.evaluate(X[:64], Y[:64], verbose=0)[0]), 5)}
    return out


def s_callback_hooks(keras):
    rec = Recorder(keras)
    model = compiled(keras)
    model.fit(IMAGES[:70], Y[:70], epochs=2, batch_size=32, verbose=0, validation_data=(IMAGES[:40], Y[:40]),
              callbacks=[rec.callback])
    fit_calls = rec.calls[:]
    rec.calls.clear()
    model.evaluate(IMAGES[:40], Y[:40], verbose=0, callbacks=[rec.callback])
    return {"fit": fit_calls, "evaluate": rec.calls, "params": dict(sorted(rec.callback.params.items()))}


def s_batch_logs(keras):
    seen = []
    cb = keras.callbacks.LambdaCallback(on_batch_end=lambda batch, logs: seen.append([batch, sorted(logs)]),
                                        on_epoch_end=lambda epoch, logs: print("epoch", epoch, sorted(logs)))
    compiled(keras).fit(IMAGES, Y, epochs=1, batch_size=40, verbose=0, callbacks=[cb])
    return seen


def s_csv_logger(keras, tmp):
    path = f"{tmp}/log.csv"
    compiled(keras).fit(IMAGES, Y, epochs=2, verbose=0, validation_split=0.1,
                        callbacks=[keras.callbacks.CSVLogger(path)])
    lines = open(path).read().splitlines()
    return {"header": lines[0], "rows": len(lines) - 1, "first_fields": len(lines[1].split(","))}


def s_lr_scheduler(keras):
    def schedule(epoch, lr):
        return lr if epoch < 1 else lr * 0.5

    model = compiled(keras)
    h = model.fit(IMAGES, Y, epochs=3, verbose=2,
                  callbacks=[keras.callbacks.LearningRateScheduler(schedule, verbose=1)])
    return {"lr": [round(v, 8) for v in h.history["learning_rate"]], "keys": sorted(h.history),
            "final": round(float(model.optimizer.learning_rate), 8)}


def s_reduce_lr(keras):
    model = compiled(keras)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    h = model.fit(IMAGES, Y, epochs=4, verbose=0, validation_split=0.2,
                  callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1,
                                                               min_delta=10, verbose=1)])
    return {"lr": [float(np.float32(v)) for v in h.history["learning_rate"]], "keys": sorted(h.history)}


def s_terminate_on_nan(keras):
    model = compiled(keras)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e30),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    h = model.fit(IMAGES * 1e6, Y, epochs=3, batch_size=10, verbose=0,
                  callbacks=[keras.callbacks.TerminateOnNaN()])
    return {"epochs": len(h.history["loss"])}


def s_checkpoint_freq(keras, tmp):
    import os

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    cb = keras.callbacks.ModelCheckpoint(tmp + "/ck-{epoch}-{batch}.weights.h5", save_weights_only=True,
                                         save_freq=3)
    model.fit(X, Y, epochs=2, batch_size=25, verbose=0, callbacks=[cb])
    return sorted(os.listdir(tmp))


def s_errors(keras):
    model = compiled(keras)
    out = {}
    for name, fn in [
        ("fit_epoch", lambda: model.fit(IMAGES, Y, epoch=3, verbose=0)),
        ("evaluate_kw", lambda: model.evaluate(IMAGES, Y, foo=3, verbose=0)),
        ("predict_kw", lambda: model.predict(IMAGES, foo=3, verbose=0)),
        ("compile_kw", lambda: model.compile(optimizer="adam", foo=3)),
        ("sequential_kw", lambda: keras.Sequential([], foo=1)),
        ("dense_kw", lambda: keras.layers.Dense(3, foo=1)),
        ("fit_uncompiled", lambda: logits_model(keras).fit(IMAGES, Y, verbose=0)),
    ]:
        try:
            fn()
            out[name] = None
        except Exception as exc:  # noqa: BLE001
            out[name] = [type(exc).__name__, str(exc)[:200], [c.__name__ for c in type(exc).__mro__]]
    return out


SCENARIOS = {name[2:]: fn for name, fn in sorted(globals().items()) if name.startswith("s_")}
# What to compare: values within 1e-5 ("values"), the text printed with numbers masked
# ("printed"), both, or the exception types only ("errors").
