"""Keras 3, as the tutorial writes it (Sequential of Dense layers, compile with 'adam' and
categorical cross-entropy, fit 5 epochs at batch 32). The backend comes from KERAS_BACKEND."""

import time

import keras
from common import EpochClock, args, load, report, timed_predict

path, epochs, batch, seed = args()
x_train, y_train, x_test, y_test = load(path)
keras.utils.set_random_seed(seed)
model = keras.Sequential([
    keras.Input(shape=(784,)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.clock = EpochClock()

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.start()

    def on_epoch_end(self, epoch, logs=None):
        self.clock.stop()


timer = EpochTimer()
t_train = time.perf_counter()
model.fit(x_train, keras.utils.to_categorical(y_train), epochs=epochs, batch_size=batch,
          verbose=0, callbacks=[timer])
train_seconds = time.perf_counter() - t_train
_, acc = model.evaluate(x_test, keras.utils.to_categorical(y_test), verbose=0)
backend = keras.backend.backend()
lib = __import__("tensorflow" if backend == "tensorflow" else backend)
report(peer=f"Keras 3 + {backend}", version=f"keras {keras.__version__}, {backend} {lib.__version__}",
       epoch_seconds=timer.clock.wall, epoch_cpu_seconds=timer.clock.cpu,
       train_seconds=train_seconds, test_accuracy=float(acc),
       # model.predict's default batch is 32, as the tutorial calls it.
       predict_seconds=timed_predict(lambda x: model.predict(x, verbose=0), x_test))
